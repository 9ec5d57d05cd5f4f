import math

import numpy as np
import pytest
import torch

from latentface.anchors import PRESETS, AnchorLayout, get_layout
from latentface.boxes import (
    VARIANCES,
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
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


def test_layouts_write_out_and_read_back():
    for name, layout in PRESETS.items():
        written = layout.to_dict()
        assert written["strides"] == [2**level for level in layout.levels] and written["variances"] == list(VARIANCES)
        assert get_layout(written) == AnchorLayout.from_dict(written) == layout, name
    with pytest.raises(ValueError, match=r"strides \[4, 8\] are not 2\*\*level of levels \[3, 4\]"):
        AnchorLayout.from_dict({"levels": [3, 4], "strides": [4, 8], "sizes": [[8.0], [16.0]]})
    with pytest.raises(ValueError, match="not an anchor layout"):
        AnchorLayout.from_dict({"levels": [3], "sizes": [[8.0]], "scales": [1]})
    with pytest.raises(ValueError, match="variances are two positive numbers"):
        AnchorLayout(levels=(3,), sizes=((8.0,),), variances=(0.1, 0.0))


def test_xywh_and_xyxy_are_inverse_and_keep_wider_coordinates():
    xywh = np.array([[449, 330, 122, 149], [0.5, 1.25, 0, 3]])
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[449, 330, 571, 479], [0.5, 1.25, 0.5, 4.25]]  # x2 = x + w, no +1
    assert xyxy_to_xywh(xyxy).tolist() == xywh.tolist()
    assert xywh_to_xyxy(np.zeros((0, 4))).shape == (0, 4) and xywh_to_xyxy([1, 2, 3, 4]).tolist() == [1, 2, 4, 6]


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
