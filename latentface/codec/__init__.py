"""Built-in latent codecs. ``get_codec("dct")`` returns the module with encode/decode."""

from __future__ import annotations

import importlib
from types import ModuleType

CODECS = {"dct": "latentface.codec.dct", "learned": "latentface.codec.learned"}


def get_codec(name: str) -> ModuleType:
    """The codec module called ``name`` (it has ``encode``, ``decode``, ``QUALITIES``, ``hflip_signs``)."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; available: {sorted(CODECS)}")
    return importlib.import_module(CODECS[name])
