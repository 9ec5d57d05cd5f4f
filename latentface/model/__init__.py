"""Detector models: :class:`LatentRetinaFace` (the product) and :class:`RGBRetinaFace` (the baseline)."""

from latentface.model.bridge import BRIDGES, build_bridge
from latentface.model.builder import build_model, model_config, model_from_checkpoint
from latentface.model.detector import LatentRetinaFace, RGBRetinaFace
from latentface.model.heads import HeadOutputs

__all__ = [
    "BRIDGES",
    "HeadOutputs",
    "LatentRetinaFace",
    "RGBRetinaFace",
    "build_bridge",
    "build_model",
    "model_config",
    "model_from_checkpoint",
]
