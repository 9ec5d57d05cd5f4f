"""File layout of a retina-modify dataset: every path, reading and writing one sample.

::

    <root>/<split>/labels.txt                        WIDER bbx, boxes on the input image
    <root>/<split>/labels_landmarks.txt              optional, RetinaFace landmark format
    <root>/<split>/latent/<key>/latent_<rate>.npy    [1,C,H,W] or [C,H,W], float16/32/64
    <root>/<split>/images/<key>.png                  optional RGB images (synth / encode)
    <root>/codec.json                                optional, {"codec": "dct" | "learned", ...} (synth / encode);
                                                     "learned" also names its weights: "weights_digest"
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from latentface.codec import get_codec
from latentface.codec.dct import QUALITIES
from latentface.errors import LatentfaceError
from latentface.util.io import IMAGE_SUFFIXES, read_json, write_image, write_json

LABELS_FILE = "labels.txt"
LANDMARKS_FILE = "labels_landmarks.txt"
CODEC_FILE = "codec.json"
#: The rate files of the real data and of the built-in codec, lowest rate first.
RATE_FILES = tuple(f"latent_{q}.npy" for q in QUALITIES)
#: A rate file name of the layout (``latent_75.npy``), whose folder names the image.
RATE_FILE_PATTERN = re.compile(r"latent_\d+\.npy")


def rate_file(rate: str | int) -> str:
    """Latent file name of a rate: ``75``, ``"75"``, ``"latent_75"`` or ``"latent_75.npy"`` -> ``"latent_75.npy"``."""
    text = str(rate)
    if text.isdigit():
        return f"latent_{text}.npy"
    return text if text.endswith(".npy") else text + ".npy"


def resolve_latent_types(latent_type: str | int | Sequence[str | int]) -> list[str]:
    """File names selected by ``latent_type``: one rate, a list of rates (or ``"12,75"``), or ``"mixed"``
    (every rate)."""
    if latent_type == "mixed":
        return list(RATE_FILES)
    if isinstance(latent_type, str) and "," in latent_type:
        latent_type = [t.strip() for t in latent_type.split(",") if t.strip()]
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


class CodecMismatchError(LatentfaceError, ValueError):
    """A dataset's latents were written with other codec weights than the installed ones."""


def read_codec_description(root: str | os.PathLike) -> dict[str, Any] | None:
    """The whole ``codec.json`` of ``root`` (``codec``, for ``learned`` its ``weights_digest``, and how
    the latents were made: size, rates, seed, generator...), or None when there is none (e.g. JPEG AI data)."""
    path = Path(root) / CODEC_FILE
    if not path.is_file():
        return None
    description = read_json(path, "codec description")
    if not isinstance(description, dict) or not isinstance(description.get("codec"), str):
        raise ValueError(f'{path}: not a codec description (no "codec" name)')
    return description


def read_codec_name(root: str | os.PathLike) -> str | None:
    """The built-in codec that wrote ``root`` (from ``codec.json``), or None (e.g. real JPEG AI data)."""
    description = read_codec_description(root)
    return None if description is None else description["codec"]


def codec_identity(codec: str) -> dict[str, str]:
    """What names a codec exactly in ``codec.json``: ``{"codec": name}``, plus ``weights_digest`` (sha256 of
    the weights file) for a codec with weights (``learned``). An unknown name is a ValueError."""
    module = get_codec(codec)
    identity = {"codec": module.NAME}
    if hasattr(module, "weights_digest"):
        identity["weights_digest"] = module.weights_digest()
    return identity


def write_codec_description(root: str | os.PathLike, codec: str, **details: Any) -> Path:
    """``<root>/codec.json``: the built-in codec that wrote the latents (:func:`codec_identity`), and how
    (size, rates, ...)."""
    return write_json(Path(root) / CODEC_FILE, {**codec_identity(codec), **details})


def check_codec_weights(description: Mapping[str, Any], where: str | os.PathLike) -> ModuleType:
    """The codec module of a ``codec.json`` description, after checking that a codec with weights has
    the weights that wrote the latents (the digests match). A mismatch, or a description of such a
    codec without a digest, raises :class:`CodecMismatchError`: decoding would silently give the image
    of another codec. ``where`` names the description in the message."""
    module = get_codec(description["codec"])
    digest = getattr(module, "weights_digest", None)
    if digest is None:
        return module
    recorded, installed = description.get("weights_digest"), digest()
    if recorded != installed:
        wrote = f"weights with sha256 {recorded}" if recorded else "weights it does not name (no weights_digest)"
        raise CodecMismatchError(
            f"{where}: the latents were written by the {module.NAME} codec with {wrote}, but the installed "
            f"weights {getattr(module, 'WEIGHTS_FILE', '')} have sha256 {installed}; refusing to decode them "
            f"with other weights (re-encode the dataset with `--codec {module.NAME}`, or draw without decoding: "
            "--background image or latent)"
        )
    return module


def dataset_codec(root: str | os.PathLike) -> ModuleType | None:
    """The codec module that decodes ``root``'s latents, as its ``codec.json`` names it (weights checked by
    :func:`check_codec_weights`), or None when the dataset has no ``codec.json``."""
    description = read_codec_description(root)
    return None if description is None else check_codec_weights(description, Path(root) / CODEC_FILE)


def write_sample(
    root: str | os.PathLike, split: str, key: str, image: np.ndarray, latents: Mapping[str | int, np.ndarray]
) -> None:
    """One sample of ``<root>/<split>``: the RGB image ``images/<key>.png`` and ``latent/<key>/latent_<rate>.npy``
    for each rate of ``latents``. A write that fails (e.g. a full disk) is an error naming the file."""
    write_image(image_path(root, split, key), image)
    folder = latent_path(root, split, key).parent
    folder.mkdir(parents=True, exist_ok=True)
    for rate, latent in latents.items():
        np.save(latent_path(root, split, key, rate), latent)


# ------------------------------------------------------------- latent files outside a split


def latent_key(path: str | os.PathLike) -> str:
    """The image key of a latent file: its folder's name in the retina-modify layout
    (``<key>/latent_75.npy``), otherwise the file name without extension."""
    path = Path(path)
    return path.parent.name if RATE_FILE_PATTERN.fullmatch(path.name) else path.stem


def layout_of(path: str | os.PathLike) -> tuple[Path, str] | None:
    """(dataset root, split) when ``path`` is ``<root>/<split>/latent/<key>/<file>.npy``, else None."""
    path = Path(path).resolve()
    if len(path.parents) >= 4 and path.parents[1].name == "latent":
        return path.parents[3], path.parents[2].name
    return None


def find_latents(path: str | os.PathLike, latent_type: str = "latent_75.npy") -> list[Path]:
    """The latent files to run on: ``path`` itself, or every ``latent_type`` file under the folder
    ``path`` (a dataset root, a split, a ``latent/`` folder); a folder without rate files, such
    as a flat folder of ``<key>.npy``, gives all its ``.npy`` files. Sorted; keys must be unique."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"latent not found: {path}")
    name = rate_file(latent_type)
    files = sorted(path.rglob(name))
    if not files:
        every = sorted(path.rglob("*.npy"))
        rates = sorted({p.name for p in every if RATE_FILE_PATTERN.fullmatch(p.name)})
        if rates:
            raise FileNotFoundError(f"{path}: no {name} files (found {', '.join(rates)}; pass --latent_type)")
        files = every
    if not files:
        raise FileNotFoundError(f"{path}: no .npy latent files")
    seen: dict[str, Path] = {}
    for file in files:
        key = latent_key(file)
        if key in seen:
            raise ValueError(f"{file}: key {key!r} is also the key of {seen[key]}; run on one split at a time")
        seen[key] = file
    return files


def find_image(image: str | os.PathLike | None, latent: str | os.PathLike, key: str | None = None) -> Path | None:
    """The RGB image of a latent file: ``image`` (a file, or a folder holding ``<key>.png``, ``.jpg``..)
    when given, else the layout's ``<root>/<split>/images/<key>.png``; None when there is none.
    ``key`` defaults to :func:`latent_key` of ``latent``."""
    key = latent_key(latent) if key is None else key
    if image is not None:
        image = Path(image)
        if image.is_file():
            return image
        if not image.is_dir():
            raise FileNotFoundError(f"image not found: {image}")
        for suffix in IMAGE_SUFFIXES:
            if (image / f"{key}{suffix}").is_file():
                return image / f"{key}{suffix}"
        return None
    layout = layout_of(latent)
    if layout is not None:
        candidate = image_path(layout[0], layout[1], key)
        if candidate.is_file():
            return candidate
    return None
