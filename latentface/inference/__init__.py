"""Inference: the operating point, post-processing, the :class:`Detector`, detection pictures and export.

The names below are imported on first use (PEP 562): ``latentface.inference.operating_point``
is read by the command line's argument parser, which must not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "Detector": "detector",
    "predict_dataset": "detector",
    "detect_files": "detector",
    "load_model_latent": "detector",
    "OperatingPoint": "operating_point",
    "OperatingPointError": "operating_point",
    "EVAL_CONF": "operating_point",
    "DISPLAY_CONF": "operating_point",
    "postprocess": "postprocessing",  # the module is not called postprocess: it would shadow the function
    "picture_background": "pictures",
}
__all__ = sorted(_HOMES)

if TYPE_CHECKING:  # the names as static analysis sees them
    from latentface.inference.detector import Detector, detect_files, load_model_latent, predict_dataset  # noqa: F401
    from latentface.inference.operating_point import DISPLAY_CONF, EVAL_CONF, OperatingPoint, OperatingPointError  # noqa: F401
    from latentface.inference.pictures import picture_background  # noqa: F401
    from latentface.inference.postprocessing import postprocess  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
