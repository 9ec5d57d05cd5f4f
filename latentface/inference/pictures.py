"""The backgrounds of detection pictures, honest about what they show.

Over a real image only when one is given (``image``) or stored in the dataset layout
(``<split>/images/<key>.png``); over the decoded latent only when its codec is known
(``codec`` or the layout's ``codec.json``); otherwise over a false-colour view of the latent
itself (:func:`latentface.viz.latent_pca_image`). Latents whose ``codec.json`` names the
``learned`` codec with other weights than the installed ones are refused, not decoded into
another codec's image (:class:`latentface.data.layout.CodecMismatchError`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from latentface.codec import get_codec
from latentface.data.layout import (
    CODEC_FILE,
    check_codec_weights,
    find_image,
    latent_key,
    layout_of,
    read_codec_description,
    read_codec_name,
)
from latentface.util.io import read_image
from latentface.viz import latent_pca_image

BACKGROUNDS = ("auto", "image", "decoded", "latent")


def known_codec(latent: str | os.PathLike, codec: str | None = None) -> str | None:
    """The codec that decodes ``latent``: ``codec`` if given, else the layout's ``codec.json``, else None."""
    if codec:
        return codec
    layout = layout_of(latent)
    return None if layout is None else read_codec_name(layout[0])


def decoder(latent: str | os.PathLike, name: str):
    """The codec module ``name`` to decode ``latent`` with; when the latent's layout has a ``codec.json``
    naming that codec, its weights are checked first (a mismatch raises CodecMismatchError)."""
    codec = get_codec(name)
    layout = layout_of(latent)
    description = None if layout is None else read_codec_description(layout[0])
    if description is not None and description["codec"] == codec.NAME:
        check_codec_weights(description, layout[0] / CODEC_FILE)
    return codec


def picture_background(
    latent_file: str | os.PathLike,
    latent: torch.Tensor | np.ndarray,
    background: str = "auto",
    image: str | os.PathLike | None = None,
    codec: str | None = None,
) -> tuple[np.ndarray, str]:
    """(RGB uint8 image, what it is) to draw detections on.

    ``background``: ``image`` (``image`` or the layout's RGB image), ``decoded`` (the latent
    decoded with ``codec`` or the layout's codec), ``latent`` (false-colour PCA view), or
    ``auto``: the first of those that is available. An explicitly requested background that is
    not available is an error naming the file; so is decoding a ``learned`` latent whose
    ``codec.json`` records other weights than the installed ones (in ``auto`` too, when there is no image).
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    latent_file = Path(latent_file)
    key = latent_key(latent_file)
    arr = latent.cpu().numpy() if torch.is_tensor(latent) else np.asarray(latent)
    if background in ("auto", "image"):
        found = find_image(image, latent_file, key)
        if found is not None:
            return read_image(found), f"image {found.name}"
        if background == "image":
            raise FileNotFoundError(f"{latent_file}: no RGB image for key {key!r} (pass --image FILE or DIR)")
    if background in ("auto", "decoded"):
        name = known_codec(latent_file, codec)
        if name is not None:
            codec_module = decoder(latent_file, name)  # other weights than the latents': refused here
            try:
                return codec_module.decode(arr), f"decoded ({name} codec)"
            except ValueError as exc:
                raise ValueError(f"{latent_file}: cannot decode with the {name!r} codec: {exc}") from None
        if background == "decoded":
            raise ValueError(
                f"{latent_file}: its codec is unknown (no codec.json in its dataset root); "
                "pass --codec dct if it was written by the built-in codec"
            )
    return latent_pca_image(arr), "latent (PCA false colour)"
