"""File layout of a retina-modify dataset (DESIGN.md 1); no heavy imports, so writers stay light.

::

    <root>/<split>/labels.txt                        WIDER bbx, boxes on the input image
    <root>/<split>/labels_landmarks.txt              optional, RetinaFace landmark format
    <root>/<split>/latent/<key>/latent_<rate>.npy    [1,C,H,W] or [C,H,W], float16/32/64
    <root>/<split>/images/<key>.png                  optional RGB images (synth / encode)
    <root>/codec.json                                optional, {"codec": "dct", ...} (synth / encode)
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from latentface.codec.dct import QUALITIES

LABELS_FILE = "labels.txt"
LANDMARKS_FILE = "labels_landmarks.txt"
CODEC_FILE = "codec.json"
#: The rate files of the real data and of the built-in codec, lowest rate first.
RATE_FILES = tuple(f"latent_{q}.npy" for q in QUALITIES)


def rate_file(rate: str | int) -> str:
    """Latent file name of a rate: ``75``, ``"75"``, ``"latent_75"`` or ``"latent_75.npy"`` -> ``"latent_75.npy"``."""
    text = str(rate)
    if text.isdigit():
        return f"latent_{text}.npy"
    return text if text.endswith(".npy") else text + ".npy"


def resolve_latent_types(latent_type: str | int | Sequence[str | int]) -> list[str]:
    """File names selected by ``latent_type``: one rate, a list of rates, or ``"mixed"`` (every rate)."""
    if latent_type == "mixed":
        return list(RATE_FILES)
    if isinstance(latent_type, (str, int)):
        return [rate_file(latent_type)]
    names = list(dict.fromkeys(rate_file(t) for t in latent_type))
    if not names:
        raise ValueError("latent_type is an empty list")
    return names


def image_path(root: str | os.PathLike, split: str, key: str) -> Path:
    """Where synth / encode store the RGB image of ``key``."""
    return Path(root) / split / "images" / f"{key}.png"


def latent_path(root: str | os.PathLike, split: str, key: str, latent_type: str | int = "latent_75.npy") -> Path:
    return Path(root) / split / "latent" / key / rate_file(latent_type)


def read_codec_name(root: str | os.PathLike) -> str | None:
    """The built-in codec that wrote ``root`` (from ``codec.json``), or None (e.g. real JPEG AI data)."""
    path = Path(root) / CODEC_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["codec"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a codec description ({e})") from None
