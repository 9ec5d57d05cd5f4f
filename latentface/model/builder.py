"""The one model builder: choices (preset, backbone, bridge, ...) -> a model config -> a detector.

A model config is what ``model.config`` returns and checkpoints store: ``kind`` ("latent" or
"rgb") plus the constructor arguments, the anchor layout written out in full.
:func:`model_config` makes one from a preset and explicit choices over it, :func:`build_model`
builds the detector it describes, and :func:`model_from_checkpoint` rebuilds a saved one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from latentface.anchors import get_layout
from latentface.checkpoint import CheckpointError, load_checkpoint, load_weights
from latentface.model.detector import Anchors, LatentRetinaFace, RGBRetinaFace

KINDS = {"latent": LatentRetinaFace, "rgb": RGBRetinaFace}
#: Neck width and backbone of the RGB baseline unless chosen.
RGB_DEFAULTS = dict(backbone="resnet50", out_channels=256)


def preset_anchors(kind: str = "latent", preset: str | None = None) -> str:
    """The anchor layout a preset trains with (the RGB baseline: the default preset's)."""
    return LatentRetinaFace.PRESETS["default" if kind == "rgb" or preset is None else preset]["anchors"]


def model_config(
    kind: str = "latent",
    preset: str | None = None,
    backbone: str | None = None,
    bridge: str | None = None,
    out_channels: int | None = None,
    anchors: Anchors | None = None,
    in_channels: int = 256,
) -> dict[str, Any]:
    """The model config of ``preset`` (latent only; default "default") with every explicit choice over it.

    Cost options of a preset (``blocks``, ``light_p2``) and its anchor layout come with it. The RGB
    baseline takes ``backbone``, ``out_channels`` and ``anchors`` only, its anchors by default the
    default preset's (the baseline is compared with it).
    """
    if kind == "rgb":
        layout = get_layout(anchors or preset_anchors("rgb")).to_dict()
        return dict(
            kind="rgb",
            backbone=backbone or RGB_DEFAULTS["backbone"],
            out_channels=out_channels or RGB_DEFAULTS["out_channels"],
            anchors=layout,
        )
    if kind != "latent":
        raise ValueError(f"model kind must be 'latent' or 'rgb', got {kind!r}")
    name = preset or "default"
    if name not in LatentRetinaFace.PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(LatentRetinaFace.PRESETS)}")
    chosen = LatentRetinaFace.PRESETS[name]
    layout = get_layout(anchors or preset_anchors("latent", name)).to_dict()
    return {
        "kind": "latent",
        **chosen,
        "backbone": backbone or chosen["backbone"],
        "bridge": bridge or chosen["bridge"],
        "out_channels": out_channels or chosen["out_channels"],
        "in_channels": in_channels,
        "anchors": layout,
    }


def build_model(config: Mapping[str, Any], pretrained: str | None = None):
    """The detector a model config describes; ``pretrained``: ImageNet weights for its backbone."""
    kwargs = dict(config)
    kind = kwargs.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"model config has unknown kind {kind!r} (expected 'latent' or 'rgb')")
    return KINDS[kind](**kwargs, pretrained=pretrained)


def model_from_checkpoint(path: str | os.PathLike, map_location="cpu"):
    """Rebuild the model a checkpoint describes and load its weights: (model, payload)."""
    payload = load_checkpoint(path, map_location)
    try:
        model = build_model(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its model config {payload['config']} is not buildable ({exc})") from exc
    load_weights(model, payload["model"], path)
    return model, payload
