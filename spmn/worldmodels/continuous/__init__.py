"""The continuous-state world model: learned threshold regions, continuous next-state leaves with
closed-form box probabilities, solved exactly for the piecewise model."""
from .model import ContinuousSolution, ContinuousWorldModel

__all__ = ["ContinuousSolution", "ContinuousWorldModel"]
