"""Pictures of detections: boxes and landmarks over an image, and a false-colour view of a latent.

A latent has 256 channels, not three, so to show what the detector reads without a
decoder the channels are projected on their first three principal components and
the result is upsampled to the image size: regions the latent codes alike get alike
colours. Each latent cell becomes a 16x16 block (nearest-neighbour upsampling), so
the picture shows the resolution the detector actually sees.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from latentface import LATENT_STRIDE
from latentface.util.io import as_rgb_uint8

#: RGB colours of the five landmarks (left eye, right eye, nose, left mouth, right mouth), as RetinaFace draws them.
LANDMARK_COLOURS = ((255, 0, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (0, 0, 255))
#: RGB colour of detected boxes (orange-red) and of ground-truth boxes (green), in every picture.
DETECTION_COLOUR = (255, 64, 32)
TRUTH_COLOUR = (40, 220, 60)


def draw_detections(
    image: np.ndarray,
    detections: Mapping[str, np.ndarray],
    input_size: tuple[int, int] | None = None,
    truth: np.ndarray | None = None,
    min_score: float = 0.0,
) -> np.ndarray:
    """A copy of RGB ``image`` with detection boxes, scores and landmarks drawn on it.

    ``detections`` is a Detector output (``boxes`` [K,4] xyxy, ``scores`` [K], optional
    ``landmarks`` [K,5,2]) in input-image pixels; ``input_size`` (height, width) of that input image, when it
    differs from ``image``'s, scales the drawing to ``image``. ``truth`` [N,4] xyxy (input pixels)
    are drawn first, thinner and in :data:`TRUTH_COLOUR`, so misses show; detections are in
    :data:`DETECTION_COLOUR`. Every picture of the project uses these two colours.
    """
    out = as_rgb_uint8(image).copy()
    h, w = out.shape[:2]
    ih, iw = input_size or (h, w)
    scale = np.array([w / iw, h / ih], dtype=np.float64)
    thick = max(1, round(min(h, w) / 320))
    if truth is not None:
        for box in np.asarray(truth, dtype=np.float64).reshape(-1, 4):
            p1, p2 = box[:2] * scale, box[2:] * scale
            cv2.rectangle(out, tuple(map(round, p1)), tuple(map(round, p2)), TRUTH_COLOUR, 1, cv2.LINE_8)
    boxes = np.asarray(detections["boxes"], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(detections["scores"], dtype=np.float64).reshape(-1)
    landmarks = detections.get("landmarks")
    landmarks = None if landmarks is None else np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    for i in np.flatnonzero(scores >= min_score)[::-1]:  # best drawn last, on top
        p1, p2 = boxes[i, :2] * scale, boxes[i, 2:] * scale
        cv2.rectangle(out, tuple(map(round, p1)), tuple(map(round, p2)), DETECTION_COLOUR, thick, cv2.LINE_8)
        for point, colour in zip(() if landmarks is None else landmarks[i] * scale, LANDMARK_COLOURS):
            cv2.circle(out, tuple(map(round, point)), thick + 1, colour, -1, cv2.LINE_AA)
        if p2[1] - p1[1] >= 12:  # no label on faces too small to read it beside
            cv2.putText(
                out,
                f"{scores[i]:.2f}",
                (round(p1[0]), max(10, round(p1[1]) - 3)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35 * thick,
                DETECTION_COLOUR,
                thick,
                cv2.LINE_8,
            )
    return out


def latent_pca_image(latent, size: tuple[int, int] | None = None) -> np.ndarray:
    """False-colour RGB view [H, W, 3] uint8 of a latent [C, h, w] (or [1, C, h, w]).

    The centred channels are projected on their first three principal components over the
    latent's cells (covariance PCA: the directions along which the latent varies most, which
    for a transform codec is mostly the coarse colour layout), each component stretched between
    its 1st and 99th percentile, and the result upsampled with nearest-neighbour to ``size``
    (height, width; default 16x the latent grid). Component signs are fixed (largest loading
    positive) so the same latent always gives the same colours.
    """
    lat = np.asarray(latent, dtype=np.float64)
    if lat.ndim == 4 and lat.shape[0] == 1:
        lat = lat[0]
    if lat.ndim != 3:
        raise ValueError(f"expected a latent [C, h, w] or [1, C, h, w], got shape {list(np.shape(latent))}")
    c, h, w = lat.shape
    x = lat.reshape(c, h * w).T  # cells x channels
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    k = min(3, vt.shape[0])
    comps = vt[:k]
    comps *= np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])[:, None]
    proj = x @ comps.T  # cells x k
    if k < 3:
        proj = np.concatenate([proj, np.zeros((h * w, 3 - k))], axis=1)
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    rgb = np.clip((proj - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1) * 255
    small = np.rint(rgb).astype(np.uint8).reshape(h, w, 3)
    out_h, out_w = size or (h * LATENT_STRIDE, w * LATENT_STRIDE)
    return cv2.resize(small, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
