"""The assembled detectors: RetinaFace on a latent (the product) and on RGB (the baseline).

Both share one body: an input stage that produces C1 (stride 4, layer1's shape), ResNet
layer2..layer4 (C2..C4), the FPN, an SSH module per level and the heads. They differ only in
the input stage: a bridge from the latent, or the ResNet stem + layer1 from pixels.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from latentface import LATENT_STRIDE
from latentface.anchors import AnchorLayout, get_layout
from latentface.boxes import VARIANCES
from latentface.model.backbone import CHANNELS, resnet, stem_and_layer1
from latentface.model.bridge import build_bridge
from latentface.model.heads import HeadOutputs, Heads
from latentface.model.neck import FPN, SSH

#: What a model takes as ``anchors``: a preset name of :mod:`latentface.anchors`, a layout, or one written out.
Anchors = str | AnchorLayout | Mapping[str, Any]

# ImageNet statistics in 0..255 pixel units: the RGB baseline takes images as float 0..255.
_IMAGENET_MEAN = (123.675, 116.28, 103.53)
_IMAGENET_STD = (58.395, 57.12, 57.375)


class _RetinaFace(nn.Module):
    """Shared body; subclasses set ``self.input_stage`` and ``pixels_per_cell``."""

    pixels_per_cell = 1

    def __init__(
        self,
        net: nn.Module,
        backbone: str,
        out_channels: int,
        anchors: Anchors,
        in_channels: int,
        light_p2: bool = False,
    ):
        super().__init__()
        self.anchor_layout: AnchorLayout = get_layout(anchors)
        if self.anchor_layout.variances != VARIANCES:  # the loss and post-processing code with these
            raise ValueError(
                f"anchor variances {list(self.anchor_layout.variances)}: this version trains and decodes "
                f"with {list(VARIANCES)} only"
            )
        c = CHANNELS[backbone]
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4
        light = (2,) if light_p2 else ()
        self.fpn = FPN({2: c[0], 3: c[1], 4: c[2], 5: c[3]}, out_channels, self.anchor_layout.levels, light)
        self.ssh = nn.ModuleList(SSH(out_channels, separable=level in light) for level in self.anchor_layout.levels)
        self.heads = Heads(out_channels, len(self.anchor_layout.levels), self.anchor_layout.per_location)
        self._frozen = False

    # -- the network -------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.input_mean.numel():
            raise ValueError(
                f"{type(self).__name__} expects input [B, {self.input_mean.numel()}, H, W], got {list(x.shape)}"
            )
        return (x - self.input_mean[:, None, None]) / self.input_std[:, None, None]

    def extract(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """The named feature maps: C1..C4 (backbone) then the pyramid levels (P2..P6 by default)."""
        c1 = self.input_stage(self.normalize(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        maps = OrderedDict(C1=c1, C2=c2, C3=c3, C4=c4)
        maps.update(self.fpn(maps))
        return maps

    def forward(
        self, x: torch.Tensor, return_maps: bool = False
    ) -> HeadOutputs | tuple[HeadOutputs, OrderedDict[str, torch.Tensor]]:
        """Head outputs; with ``return_maps`` also the named maps they came from (what distillation compares),
        through the one call a DistributedDataParallel wrapper sees."""
        maps = self.extract(x)
        levels = [ssh(maps[f"P{level}"]) for ssh, level in zip(self.ssh, self.anchor_layout.levels)]
        outputs = self.heads(levels)
        return (outputs, maps) if return_maps else outputs

    # -- geometry ----------------------------------------------------------------------------
    def image_size(self, x: torch.Tensor) -> tuple[int, int]:
        """(height, width) in pixels of the image that input ``x`` represents."""
        return x.shape[-2] * self.pixels_per_cell, x.shape[-1] * self.pixels_per_cell

    def anchors(self, x: torch.Tensor) -> torch.Tensor:
        """Anchors [A, 4] (cx, cy, w, h) in image pixels, in the heads' order, on ``x``'s device."""
        return self.anchor_layout.generate(*self.image_size(x), device=x.device)

    # -- training helpers --------------------------------------------------------------------
    def set_normalization(self, mean, std) -> None:
        """Per-channel input statistics (e.g. from ``latentface stats``), saved with the weights."""
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.shape != self.input_mean.shape or std.shape != self.input_std.shape:
            raise ValueError(
                f"normalisation needs {self.input_mean.numel()} channels, got {mean.numel()} / {std.numel()}"
            )
        if not torch.isfinite(std).all() or (std <= 0).any():
            raise ValueError("normalisation std must be finite and positive")
        bridge = getattr(self, "bridge", None)
        if hasattr(bridge, "renormalize"):  # a bridge that decodes raw latents keeps doing so
            bridge.renormalize(self.input_mean, self.input_std, mean, std)
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def backbone_modules(self) -> list[nn.Module]:
        return [self.layer2, self.layer3, self.layer4]

    def freeze_backbone(self) -> None:
        """Freeze the (pruned) ResNet: no gradients and BatchNorm statistics kept as they are."""
        self._frozen = True
        for module in self.backbone_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self._frozen:
            for module in self.backbone_modules():
                module.eval()
        return self

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model (see :func:`latentface.model.build_model`), the anchor
        layout written out in full: a checkpoint decodes the same whatever the presets become."""
        return copy.deepcopy(self._config)


class LatentRetinaFace(_RetinaFace):
    """RetinaFace on a codec latent [B, C, H, W] at stride 16: bridge -> ResNet layer2..4 -> FPN -> SSH -> heads.

    Cost options (for the ``fast`` preset): ``blocks`` keeps only the first residual blocks of
    each of layer2..4 (1 turns resnet18/34 into a ResNet-10); ``light_p2`` makes the stride-4
    level's FPN merge and SSH depthwise-separable.
    """

    pixels_per_cell = LATENT_STRIDE

    def __init__(
        self,
        backbone: str = "resnet50",
        bridge: str = "codec",
        out_channels: int = 256,
        in_channels: int = 256,
        anchors: Anchors = "default",
        pretrained: str | None = None,
        blocks: int | None = None,
        light_p2: bool = False,
    ):
        if backbone not in CHANNELS:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(CHANNELS)}")
        if blocks is not None and blocks < 1:
            raise ValueError(f"blocks must be at least 1 (or None for the whole ResNet), got {blocks}")
        net = resnet(backbone, pretrained)
        if blocks is not None:
            for name in ("layer2", "layer3", "layer4"):
                setattr(net, name, getattr(net, name)[:blocks])
        super().__init__(net, backbone, out_channels, anchors, in_channels, light_p2=light_p2)
        self.bridge = build_bridge(bridge, in_channels, CHANNELS[backbone][0])
        self._config = dict(
            kind="latent",
            backbone=backbone,
            bridge=bridge,
            out_channels=out_channels,
            in_channels=in_channels,
            anchors=self.anchor_layout.to_dict(),
            blocks=blocks,
            light_p2=light_p2,
        )

    def input_stage(self, x: torch.Tensor) -> torch.Tensor:
        return self.bridge(x)

    PRESETS: dict[str, dict[str, Any]] = {
        # The original design exactly, with the seed training code's six anchors per location.
        "seed": dict(backbone="resnet50", bridge="bilinear", out_channels=256, anchors="six"),
        # The best configuration by measurement (docs/BENCHMARKS.md).
        "default": dict(backbone="resnet50", bridge="codec", out_channels=256, anchors="default"),
        # Under 10 GMACs at 640x640: ResNet-10 (one block per stage), 128-wide neck, light P2.
        "fast": dict(backbone="resnet18", bridge="codec", out_channels=128, blocks=1, light_p2=True, anchors="default"),
    }

    @classmethod
    def preset(cls, name: str, **overrides) -> LatentRetinaFace:
        try:
            kwargs = {**cls.PRESETS[name], **overrides}
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(cls.PRESETS)}") from None
        return cls(**kwargs)


class RGBRetinaFace(_RetinaFace):
    """The baseline: the same neck and heads on the full ResNet, for float RGB images 0..255 [B, 3, H, W]."""

    def __init__(
        self,
        backbone: str = "resnet50",
        out_channels: int = 256,
        anchors: Anchors = "default",
        pretrained: str | None = None,
    ):
        if backbone not in CHANNELS:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(CHANNELS)}")
        net = resnet(backbone, pretrained)
        super().__init__(net, backbone, out_channels, anchors, in_channels=3)
        self.set_normalization(_IMAGENET_MEAN, _IMAGENET_STD)
        self.stem = stem_and_layer1(net)
        self._config = dict(
            kind="rgb", backbone=backbone, out_channels=out_channels, anchors=self.anchor_layout.to_dict()
        )

    def input_stage(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def backbone_modules(self) -> list[nn.Module]:
        return [self.stem, *super().backbone_modules()]
