"""torchvision ResNets, whole (the RGB baseline) or pruned to layer2..layer4 (the latent model)."""

from __future__ import annotations

import os

from torch import nn
from torchvision import models

from latentface.checkpoint import CheckpointError, read_state_dict

# Output channels of layer1..layer4.
CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
}
_WEIGHTS = {
    "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": models.ResNet50_Weights.IMAGENET1K_V2,
}


def resnet(name: str, weights: str | None = None) -> nn.Module:
    """A torchvision ResNet, randomly initialised unless ``weights`` is given.

    ``weights`` is the path of a torchvision ImageNet state dict (``resnet50-11ad3fa6.pth``)
    or ``"imagenet"`` to use torchvision's own download (needs internet or a filled cache).
    """
    if name not in CHANNELS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(CHANNELS)}")
    net = getattr(models, name)(weights=None)
    if weights is None:
        return net
    if weights == "imagenet":
        try:
            state = _WEIGHTS[name].get_state_dict(progress=False)
        except Exception as exc:  # no internet, no cache: say what to do instead
            raise CheckpointError(
                f"could not download ImageNet weights for {name} ({exc}); download "
                f"{_WEIGHTS[name].url} elsewhere and pass its path instead"
            ) from exc
    else:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"ImageNet weights file not found: {weights}")
        state = read_state_dict(weights, "torchvision state dict")
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"{weights}: does not match torchvision {name}: {str(exc).splitlines()[-1].strip()}"
        ) from exc
    return net


def stem_and_layer1(net: nn.Module) -> nn.Sequential:
    """What the bridge replaces: conv1-bn-relu-maxpool and layer1 (stride 4)."""
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
