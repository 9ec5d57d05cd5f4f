import math

import pytest
import torch
from torchvision.ops import box_iou

from latentface.anchors import AnchorLayout
from latentface.inference import OperatingPoint, postprocess
from latentface.loss import MultiBoxLoss, match_anchors, match_anchors_adaptive
from latentface.model.heads import HeadOutputs

# Four 16x16 anchors tiling a 32x32 image: centres (8, 8), (24, 8), (8, 24), (24, 24).
TILES = AnchorLayout(levels=(4,), sizes=((16.0,),)).generate(32, 32)
LN2 = math.log(2)


def target(boxes, landmarks=None, has=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    lmk = torch.zeros(n, 5, 2) if landmarks is None else torch.tensor(landmarks, dtype=torch.float32)
    has = torch.ones(n, dtype=torch.bool) if has is None else torch.tensor(has)
    return {"boxes": boxes, "landmarks": lmk, "has_landmarks": has, "key": "k"}


def outputs(value=0.0, n=4, batch=1):
    return HeadOutputs(torch.zeros(batch, n, 2), torch.full((batch, n, 4), value), torch.full((batch, n, 10), value))


def test_face_at_a_known_position_is_matched_to_that_anchor():
    sizes = tuple((16.0 * 2 ** (level - 2),) for level in range(2, 7))
    anchors = AnchorLayout(levels=(2, 3, 4, 5, 6), sizes=sizes).generate(640, 640)
    # P3 (stride 8), cell (y=13, x=25): centre (204, 108), size 32. Offset of P3 = 160*160 anchors.
    face = torch.tensor([[188.0, 92.0, 220.0, 124.0]])
    index = 160 * 160 + 13 * 80 + 25
    assert anchors[index].tolist() == [204, 108, 32, 32]
    matched = match_anchors(face, anchors)
    assert matched[index] == 0
    iou = box_iou(face, torch.cat([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], 1))[0]
    assert int(iou.argmax()) == index
    assert torch.equal(matched >= 0, iou >= 0.35)


def test_matching_best_anchor_rule():
    # IoU with the first tile: 0.25 (< 0.35) -> still takes its best anchor (>= 0.2).
    face = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    assert match_anchors(face, TILES).tolist() == [0, -1, -1, -1]
    # IoU 0.125 with every tile it touches: below 0.2, no anchor.
    tiny = torch.tensor([[4.0, 4.0, 8.0, 8.0]])
    assert match_anchors(tiny, TILES).tolist() == [-1, -1, -1, -1]
    assert match_anchors(torch.zeros(0, 4), TILES).tolist() == [-1, -1, -1, -1]
    # Two faces sharing a best anchor: the later face takes it.
    two = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]])
    assert match_anchors(two, TILES).tolist() == [1, -1, -1, -1]


# Sixteen 16x16 anchors at stride 8 over a 32x32 image: centres 4, 12, 20, 28 on each axis, row-major.
GRID = AnchorLayout(levels=(3,), sizes=((16.0,),))
GRID_ANCHORS, GRID_LEVELS = GRID.generate(32, 32), GRID.levels_of(32, 32)


def test_anchor_levels_follow_the_generated_order():
    six = AnchorLayout(levels=(2, 3), sizes=((8.0, 10.0, 12.0), (16.0, 20.0, 24.0)), ratios=(0.5, 1.0))
    levels = six.levels_of(64, 64)
    assert len(levels) == len(six.generate(64, 64)) == 16 * 16 * 6 + 8 * 8 * 6
    assert levels[: 16 * 16 * 6].eq(0).all() and levels[16 * 16 * 6 :].eq(1).all()


def test_adaptive_matching_gives_a_tiny_face_the_anchor_a_fixed_threshold_refuses():
    face = torch.tensor([[10.0, 10.0, 14.0, 14.0]])  # 4 px, centred on the anchor at (12, 12): IoU 16/256
    assert match_anchors(face, GRID_ANCHORS).eq(-1).all()  # 0.0625 < the best anchor's 0.2 floor
    # Candidates: the 9 nearest centres. IoUs 1/16 (centre), 8/264 (4 edge neighbours), 4/268 (4 corners):
    # mean 0.0256, std 0.0170 -> threshold 0.0426; only the centre anchor reaches it, its centre inside.
    iou = [1 / 16] + [8 / 264] * 4 + [4 / 268] * 4
    mean = sum(iou) / 9
    threshold = mean + math.sqrt(sum((v - mean) ** 2 for v in iou) / 8)
    assert iou[1] < threshold < iou[0]
    expected = [-1] * 16
    expected[1 * 4 + 1] = 0
    assert match_anchors_adaptive(face, GRID_ANCHORS, GRID_LEVELS).tolist() == expected


def test_adaptive_matching_takes_the_candidates_over_mean_plus_std_with_centres_inside():
    face = torch.tensor([[0.0, 0.0, 16.0, 16.0]])  # four anchors at IoU 144/368, four at 48/464, one 16/496
    expected = [-1] * 16
    for i in (0, 1, 4, 5):  # centres (4, 4), (12, 4), (4, 12), (12, 12)
        expected[i] = 0
    assert match_anchors_adaptive(face, GRID_ANCHORS, GRID_LEVELS).tolist() == expected
    # A face with no anchor centre inside it keeps its best anchor (the first of four tied at 4/256).
    between = torch.tensor([[9.0, 9.0, 11.0, 11.0]])
    assert match_anchors_adaptive(between, GRID_ANCHORS, GRID_LEVELS).tolist() == [0] + [-1] * 15
    # Two faces claiming one anchor: it goes to the one it overlaps most.
    two = torch.tensor([[0.0, 0.0, 16.0, 16.0], [4.0, 4.0, 20.0, 20.0]])  # the second is anchor 5 itself
    matched = match_anchors_adaptive(two, GRID_ANCHORS, GRID_LEVELS)
    assert matched[5] == 1 and matched[0] == 0
    assert match_anchors_adaptive(torch.zeros(0, 4), GRID_ANCHORS, GRID_LEVELS).eq(-1).all()


def test_adaptive_matching_takes_every_anchor_of_the_nearest_locations():
    """Two identical anchors per location: the candidates are both of each of the 9 nearest locations (the
    IoUs of the one-anchor case, twice), so the same four locations are positive, with both their anchors.
    Nine nearest anchors would be 4.5 locations, all of them close: a threshold over every IoU there."""
    doubled = AnchorLayout(levels=(3,), sizes=((16.0, 16.0),))
    anchors, levels = doubled.generate(32, 32), doubled.levels_of(32, 32)
    face = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    expected = [-1] * 32
    for i in (0, 1, 4, 5):
        expected[2 * i] = expected[2 * i + 1] = 0
    assert match_anchors_adaptive(face, anchors, levels).tolist() == expected


def test_adaptive_matching_picks_candidates_on_every_level():
    two_levels = AnchorLayout(levels=(2, 3), sizes=((8.0,), (16.0,)))
    anchors, levels = two_levels.generate(32, 32), two_levels.levels_of(32, 32)
    face = torch.tensor([[4.0, 4.0, 15.0, 15.0]])  # 11 px, between the sizes: IoU 64/121 on P2, 121/256 on P3
    positives = match_anchors_adaptive(face, anchors, levels).eq(0).nonzero().squeeze(1)
    assert anchors[positives].tolist() == [[10, 10, 8, 8], [12, 12, 16, 16]] and levels[positives].tolist() == [0, 1]
    with pytest.raises(ValueError, match="adaptive matching needs each anchor's pyramid level"):
        MultiBoxLoss(matching="adaptive").targets([target([[4, 4, 15, 15]])], anchors)
    with pytest.raises(ValueError, match="unknown anchor matching 'atss'"):
        MultiBoxLoss(matching="atss")


def test_loss_no_faces():
    loss = MultiBoxLoss()(outputs(), [target([])], TILES)
    # Zero logits: CE = ln 2 per anchor; 7 mined negatives (3 available), normalised by max(1, 0 positives).
    assert loss["cls"].item() == pytest.approx(3 * LN2)
    assert loss["box"].item() == 0 and loss["landmark"].item() == 0
    assert loss["total"].item() == pytest.approx(3 * LN2)


def test_loss_one_face_exactly_on_an_anchor():
    lmk = [[[8.0, 8.0]] * 5]  # landmarks at the anchor centre -> zero targets
    loss = MultiBoxLoss()(outputs(1.0), [target([0, 0, 16, 16], lmk)], TILES)
    # Targets are zero, outputs 1: smooth-L1 = 0.5 per coordinate.
    assert loss["box"].item() == pytest.approx(4 * 0.5)
    assert loss["landmark"].item() == pytest.approx(10 * 0.5)
    assert loss["cls"].item() == pytest.approx(4 * LN2)  # 1 positive + 3 negatives, / 1
    assert loss["total"].item() == pytest.approx(2 * 2.0 + 4 * LN2 + 5.0)


def test_loss_faces_without_landmarks_and_zero_area_boxes():
    no_lmk = MultiBoxLoss()(outputs(1.0), [target([0, 0, 16, 16], None, [False])], TILES)
    assert no_lmk["landmark"].item() == 0 and no_lmk["box"].item() == pytest.approx(2.0)
    zero_area = MultiBoxLoss()(outputs(1.0), [target([[5, 5, 5, 20], [16, 16, 32, 32]])], TILES)
    # Only the second face counts: one positive (anchor 3).
    assert zero_area["box"].item() == pytest.approx(2.0)
    assert zero_area["cls"].item() == pytest.approx(4 * LN2)


def test_loss_is_finite_for_tiny_faces_and_batches():
    loss = MultiBoxLoss()(outputs(0.3, batch=2), [target([1, 1, 2, 2]), target([])], TILES)
    assert all(torch.isfinite(v) for v in loss.values())


def brute_force_nms(boxes, scores, iou_threshold):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def test_postprocess_equals_a_brute_force_reference():
    g = torch.Generator().manual_seed(3)
    n, batch = 300, 2
    anchors = torch.cat([torch.rand(n, 2, generator=g) * 200, 10 + torch.rand(n, 2, generator=g) * 60], 1)
    logits = torch.randn(batch, n, 2, generator=g) * 2
    deltas = torch.randn(batch, n, 4, generator=g) * 0.5
    lmk = torch.randn(batch, n, 10, generator=g)
    dets = postprocess(HeadOutputs(logits, deltas, lmk), anchors, OperatingPoint(conf=0.3, nms=0.4, topk=150, keep=40))
    from latentface.boxes import decode_boxes

    for b in range(batch):
        scores = logits[b].softmax(-1)[:, 1]
        cand = torch.nonzero(scores > 0.3).squeeze(1)
        cand = cand[scores[cand].argsort(descending=True)][:150]
        boxes = decode_boxes(deltas[b, cand], anchors[cand])
        keep = brute_force_nms(boxes, scores[cand], 0.4)[:40]
        assert torch.allclose(dets[b]["boxes"], boxes[keep], atol=1e-5)
        assert torch.allclose(dets[b]["scores"], scores[cand][keep])
        assert dets[b]["landmarks"].shape == (len(keep), 5, 2)


def test_postprocess_with_nothing_above_threshold():
    dets = postprocess(outputs(batch=2), TILES, OperatingPoint(conf=0.6))
    assert [len(d["boxes"]) for d in dets] == [0, 0]
