"""Detector models: :class:`LatentRetinaFace` (the product) and :class:`RGBRetinaFace` (the baseline)."""
from __future__ import annotations

from typing import Any

from latentface.model.bridge import BRIDGES, build_bridge
from latentface.model.detector import LatentRetinaFace, RGBRetinaFace
from latentface.model.heads import HeadOutputs

__all__ = ["BRIDGES", "HeadOutputs", "LatentRetinaFace", "RGBRetinaFace", "build_bridge", "build_model"]


def build_model(config: dict[str, Any]):
    """Rebuild a detector from its ``model.config`` (as stored in checkpoints)."""
    kwargs = dict(config)
    kind = kwargs.pop("kind", None)
    if kind == "latent":
        return LatentRetinaFace(**kwargs)
    if kind == "rgb":
        return RGBRetinaFace(**kwargs)
    raise ValueError(f"model config has unknown kind {kind!r} (expected 'latent' or 'rgb')")
