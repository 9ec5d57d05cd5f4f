"""Built-in latent codecs. ``get_codec("dct")`` returns the module with encode/decode."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from latentface import LATENT_STRIDE

CODECS = {"dct": "latentface.codec.dct", "learned": "latentface.codec.learned"}


def get_codec(name: str) -> ModuleType:
    """The codec module called ``name`` (it has ``encode``, ``decode``, ``QUALITIES``, ``hflip_signs``)."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; available: {sorted(CODECS)}")
    return importlib.import_module(CODECS[name])


def check_image(image: np.ndarray) -> tuple[int, int]:
    """(H, W) of an RGB uint8 image [H, W, 3] that a codec can encode; a clear error otherwise (sizes are
    multiples of the latent stride, 16, and the message suggests the nearest one)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a uint8 RGB image of shape [H, W, 3], got {desc}")
    h, w = image.shape[:2]
    if h % LATENT_STRIDE or w % LATENT_STRIDE or h == 0 or w == 0:
        raise ValueError(
            f"image size {w}x{h} is not a multiple of {LATENT_STRIDE}; resize or pad it first "
            f"(e.g. to {max(LATENT_STRIDE, round(w / LATENT_STRIDE) * LATENT_STRIDE)}x"
            f"{max(LATENT_STRIDE, round(h / LATENT_STRIDE) * LATENT_STRIDE)})"
        )
    return h, w
