import math

import pytest
import torch

from latentface.anchors import PRESETS, AnchorLayout, get_layout
from latentface.boxes import decode_boxes, decode_landmarks, encode_boxes, encode_landmarks
from latentface.model.heads import Heads


def test_default_layout_has_102300_anchors_at_640():
    layout = get_layout("default")
    anchors = layout.generate(640, 640)
    assert anchors.shape == (102300, 4) == (layout.count(640, 640), 4)
    # First anchor: P2 cell (0, 0), sizes 16, 16*2^(1/3), 16*2^(2/3).
    s1, s2 = 16 * 2 ** (1 / 3), 16 * 2 ** (2 / 3)
    assert torch.allclose(anchors[:3], torch.tensor([[2, 2, 16, 16], [2, 2, s1, s1], [2, 2, s2, s2]]))
    # Last anchor: P6 cell (9, 9), centre 9.5*64, size 256*2^(2/3).
    assert anchors[-1].tolist() == pytest.approx([608, 608, 256 * 2 ** (2 / 3), 256 * 2 ** (2 / 3)])


def test_preset_layouts():
    six = PRESETS["six"]
    assert six.per_location == 6 and six.count(640, 640) == 34100 * 6
    a = six.generate(640, 640)[:6]
    # ratio = width / height: ratio 0.5 is a tall anchor with the same area.
    assert a[0, 2].item() == pytest.approx(8 * math.sqrt(0.5)) and a[0, 3].item() == pytest.approx(8 / math.sqrt(0.5))
    three = PRESETS["three_level"]
    assert three.count(640, 640) == (6400 + 1600 + 400) * 2
    with pytest.raises(ValueError, match="unknown anchor layout"):
        get_layout("nine")


def test_anchor_order_matches_head_flattening():
    """Heads whose outputs are the cell centre and the anchor size reproduce the anchors exactly."""
    layout = get_layout("six")
    h, w = 96, 64
    heads = Heads(channels=2, num_levels=len(layout.levels), anchors_per_location=layout.per_location)
    feats = []
    for level, (stride, (gh, gw)) in enumerate(zip(layout.strides, layout.grid_sizes(h, w))):
        ys, xs = torch.meshgrid(torch.arange(gh) + 0.5, torch.arange(gw) + 0.5, indexing="ij")
        feats.append((torch.stack([xs, ys]) * stride)[None].float())
        conv = heads.box[level]
        weight = torch.zeros_like(conv.weight)
        bias = torch.zeros_like(conv.bias)
        level_sizes = torch.tensor(layout.sizes[level])
        r = torch.tensor(layout.ratios)
        wh = torch.stack([(level_sizes[:, None] * r.sqrt()).flatten(), (level_sizes[:, None] / r.sqrt()).flatten()], 1)
        for a in range(layout.per_location):
            weight[4 * a, 0] = weight[4 * a + 1, 1] = 1
            bias[4 * a + 2], bias[4 * a + 3] = wh[a]
        conv.weight.data, conv.bias.data = weight, bias
    with torch.no_grad():
        out = heads(feats).boxes[0]
    assert torch.allclose(out, layout.generate(h, w), atol=1e-4)


def test_box_and_landmark_coding_round_trip():
    g = torch.Generator().manual_seed(0)
    anchors = torch.cat([torch.rand(500, 2, generator=g) * 640, 8 + torch.rand(500, 2, generator=g) * 300], 1)
    xy = torch.rand(500, 2, generator=g) * 600
    boxes = torch.cat([xy, xy + 2 + torch.rand(500, 2, generator=g) * 200], 1)
    assert torch.allclose(decode_boxes(encode_boxes(boxes, anchors), anchors), boxes, atol=1e-4, rtol=1e-5)
    points = torch.rand(500, 5, 2, generator=g) * 640
    assert torch.allclose(decode_landmarks(encode_landmarks(points, anchors), anchors), points, atol=1e-4, rtol=1e-5)


def test_box_coding_hand_computed():
    anchor = torch.tensor([[100.0, 100.0, 20.0, 20.0]])
    box = torch.tensor([[92.0, 94.0, 132.0, 114.0]])  # centre (112, 104), size 40 x 20
    expected = [12 / (0.1 * 20), 4 / (0.1 * 20), math.log(2) / 0.2, 0.0]
    assert encode_boxes(box, anchor)[0].tolist() == pytest.approx(expected)
    lmk = encode_landmarks(torch.tensor([[[102.0, 99.0]] * 5]), anchor)
    assert lmk[0, :2].tolist() == pytest.approx([1.0, -0.5])


def test_layout_validation():
    with pytest.raises(ValueError, match="same number of anchors"):
        AnchorLayout(levels=(2, 3), sizes=((16.0,), (32.0, 64.0)))
