"""Encoders: image frames -> the state variables a world model learns over.

:class:`PCAKMeansEncoder` (numpy only), :class:`TorchEncoder` (optional extra ``neural``; torch
is imported when it is fitted or loaded), :class:`CallableEncoder` (any function). The world
model over encoded frames is :class:`spmn.worldmodels.EncodedWorldModel`.
"""
from __future__ import annotations

from .base import (
                   CallableEncoder,
                   Encoder,
                   EncoderSchema,
                   check_frames,
                   code_usage,
                   inverse_purity,
                   purity,
)
from .numpy_encoder import KMeans, PCAKMeansEncoder
from .torch_encoder import TorchEncoder

__all__ = ["Encoder", "EncoderSchema", "CallableEncoder", "PCAKMeansEncoder", "TorchEncoder",
           "KMeans", "purity", "inverse_purity", "code_usage",
           "check_frames"]
