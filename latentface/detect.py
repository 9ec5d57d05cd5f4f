"""The stable public names of detection, at the path users import them from.

The code lives in :mod:`latentface.inference` (``Detector``, ``predict_dataset``, ``detect_files``,
``load_model_latent``, the pictures' backgrounds), :mod:`latentface.data.layout` (``latent_key``,
``find_latents``) and :mod:`latentface.formats.detections` (the detections JSON); the
``latentface detect`` command in :mod:`latentface.cli.detect`.
"""

from __future__ import annotations

from latentface.data.layout import find_latents, latent_key
from latentface.formats.detections import detection_record, detections_json
from latentface.inference.detector import Detector, detect_files, load_model_latent, predict_dataset
from latentface.inference.pictures import picture_background

__all__ = [
    "Detector",
    "detect_files",
    "detection_record",
    "detections_json",
    "find_latents",
    "latent_key",
    "load_model_latent",
    "picture_background",
    "predict_dataset",
]
