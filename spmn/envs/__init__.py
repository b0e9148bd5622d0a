"""Small environments made here: pixel observations of tabular MDPs for the encoder bridge."""
from __future__ import annotations

from .pixels import Corruption, GridRenderer, GymRenderer, PixelMDP

__all__ = ["Corruption", "GridRenderer", "GymRenderer", "PixelMDP"]
