"""Encoders: image frames -> the state variables a world model learns over.

:class:`PCAKMeansEncoder` (numpy only), :class:`TorchEncoder` (optional extra ``neural``; torch
is imported when it is fitted or loaded), :class:`CallableEncoder` (any function). The world
model over encoded frames is :class:`spmn.worldmodels.EncodedWorldModel`. The codebook size
is found from the frames (:func:`merge_close_codes`, ``n_codes="auto"``) and codes that merge
states are found from the dynamics (:func:`find_aliasing`, :func:`refine`).
"""
from __future__ import annotations

from .aliasing import find_aliasing, refine
from .base import (
                   CallableEncoder,
                   Encoder,
                   EncoderSchema,
                   check_frames,
                   code_usage,
                   inverse_purity,
                   purity,
)
from .codebook import merge_close_codes
from .numpy_encoder import KMeans, PCAKMeansEncoder
from .torch_encoder import TorchEncoder

__all__ = [
                   "CallableEncoder",
                   "Encoder",
                   "EncoderSchema",
                   "KMeans",
                   "PCAKMeansEncoder",
                   "TorchEncoder",
                   "check_frames",
                   "code_usage",
                   "find_aliasing",
                   "inverse_purity",
                   "merge_close_codes",
                   "purity",
                   "refine",
]
