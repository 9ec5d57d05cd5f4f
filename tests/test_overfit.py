"""A tiny detector fits two latents: the loss, the anchors, the heads and post-processing agree."""

import pytest
import torch
from torchvision.ops import box_iou

from latentface.inference.operating_point import OperatingPoint
from latentface.inference.postprocessing import postprocess
from latentface.loss import MultiBoxLoss
from latentface.model import LatentRetinaFace

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # hundreds of optimiser steps: about 15 s on 2 cores
def test_tiny_model_overfits_two_latents():
    torch.manual_seed(0)
    model = LatentRetinaFace(backbone="resnet18", bridge="pixelshuffle", out_channels=16, in_channels=16)
    latents = torch.randn(2, 16, 8, 8)  # two 128x128 images
    boxes = [
        torch.tensor([[20.0, 24.0, 52.0, 64.0], [80.0, 70.0, 112.0, 110.0]]),
        torch.tensor([[40.0, 30.0, 100.0, 100.0]]),
    ]
    targets = [
        {
            "boxes": b,
            "landmarks": ((b[:, None, :2] + b[:, None, 2:]) / 2).expand(-1, 5, -1).clone(),
            "has_landmarks": torch.ones(len(b), dtype=torch.bool),
            "key": str(i),
        }
        for i, b in enumerate(boxes)
    ]
    anchors = model.anchors(latents)
    criterion = MultiBoxLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        loss = criterion(model(latents), targets, anchors)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 10, (first, loss.item())

    model.eval()
    with torch.no_grad():
        dets = postprocess(model(latents), anchors, OperatingPoint(conf=0.5))
    for det, truth in zip(dets, boxes):
        assert len(det["boxes"]) >= len(truth)
        best = box_iou(truth, det["boxes"][: len(truth) + 1]).max(dim=1).values
        assert (best >= 0.7).all(), best
