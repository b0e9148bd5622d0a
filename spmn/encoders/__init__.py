"""Encoders: image frames -> the state variables a world model learns over.

:class:`PCAKMeansEncoder` (numpy only), :class:`TorchEncoder` (optional extra ``neural``; torch
is imported when it is fitted or loaded), :class:`CallableEncoder` (any function), and
:class:`EncodedWorldModel`, which chains an encoder, a :class:`~spmn.worldmodel.WorldModel`
and its exact solution.
"""
from __future__ import annotations

from .base import (CallableEncoder, Encoder, EncoderSchema, check_frames, code_usage,
                   inverse_purity, purity)
from .encoded_model import EncodedWorldModel
from .numpy_encoder import KMeans, PCAKMeansEncoder
from .torch_encoder import TorchEncoder

__all__ = ["Encoder", "EncoderSchema", "CallableEncoder", "PCAKMeansEncoder", "TorchEncoder",
           "KMeans", "EncodedWorldModel", "purity", "inverse_purity", "code_usage",
           "check_frames"]
