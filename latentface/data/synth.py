"""``latentface synth``: a synthetic face dataset in the exact retina-modify layout.

Why: the real data (WIDER FACE encoded with JPEG AI) is not available offline, yet
training, evaluation and every test must run. Images are drawn with OpenCV and
encoded with a built-in codec (``dct``, the default, or ``learned``) at every requested rate.

What makes detection non-trivial: a WIDER-like face-size distribution (most faces
8-32 px high, a few up to 400), 0-20 faces per image, varied skin tones, hair,
roll and yaw, lighting gradients, blur, partial occlusion, faces cut by the border
(boxes clipped; faces less than 40 % visible are marked ``invalid``), cluttered
backgrounds and face-like distractors (skin-coloured ellipses without features)
that are not labelled. Five landmarks per face sit on the drawn features (eye
centres, nose tip, mouth corners); faces with a landmark outside the image are
labelled without landmarks.

Each image has its own random generator seeded by (seed, split, index), so the
output is a pure function of the arguments: same seed, same bytes (whatever the number of
worker processes; the ``learned`` codec encodes on one thread per process for that, see
:class:`latentface.data.encode.one_thread`); a larger ``n_train`` extends a smaller one.
"""

from __future__ import annotations

import math
import resource
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from latentface import LATENT_STRIDE
from latentface.codec import dct, get_codec
from latentface.data.encode import check_rates, one_thread, worker_start
from latentface.data.labels import FaceRecord, write_retinaface, write_wider
from latentface.data.layout import LABELS_FILE, LANDMARKS_FILE, write_codec_description, write_sample

EVENT = "0--Synthetic"
SPLITS = ("train", "val")
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing
_ONE = 1 << _SHIFT

_SKIN = np.array(
    [
        (255, 224, 196),
        (241, 194, 167),
        (224, 172, 138),
        (198, 134, 99),
        (165, 110, 75),
        (120, 80, 55),
        (88, 57, 39),
        (60, 40, 28),
    ],
    dtype=np.float64,
)
_HAIR = np.array(
    [(20, 15, 10), (60, 40, 25), (110, 75, 40), (200, 170, 110), (150, 150, 150), (40, 30, 30)], dtype=np.float64
)
# Feature positions in face coordinates (u, v in [-1, 1] across the box), WIDER-like:
# the box spans hairline to chin, eyes about 35 % down, mouth about 70 %.
_EYE_U, _EYE_V = 0.38, -0.30
_NOSE_V = 0.12
_MOUTH_U, _MOUTH_V = 0.32, 0.42


def image_key(index: int) -> str:
    return f"0_Synthetic_Synthetic_0_{index}"


def _pt(p) -> tuple[int, int]:
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def _ax(a, b) -> tuple[int, int]:
    return max(1, int(round(a * _ONE))), max(1, int(round(b * _ONE)))


def _colour(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _face_height(rng: np.random.Generator, size: int) -> float:
    """WIDER-like heights: about 60 % 8-32 px, 30 % 32-96 px, 10 % 96-400 px (log-uniform in each)."""
    lo, hi = [(8, 32), (32, 96), (96, 400)][rng.choice(3, p=[0.6, 0.3, 0.1])]
    hi = min(hi, 0.8 * size)
    lo = min(lo, hi)
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour field + clutter shapes + stripes."""
    cells = int(rng.integers(2, 7))
    field = rng.uniform(20, 235, (cells, cells, 3)).astype(np.float32)
    img = cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(5, 31))):
        colour = _colour(rng.uniform(0, 255, 3))
        kind = rng.integers(4)
        p1 = rng.uniform(-0.1, 1.1, 2) * size
        extent = math.exp(rng.uniform(math.log(4), math.log(size / 2)))
        thickness = -1 if rng.random() < 0.6 else int(rng.integers(1, 4))
        if kind == 0:
            p2 = p1 + rng.uniform(-1, 1, 2) * extent
            cv2.rectangle(img, _pt(p1), _pt(p2), colour, thickness, cv2.LINE_AA, _SHIFT)
        elif kind == 1:
            cv2.circle(img, _pt(p1), int(extent / 2 * _ONE), colour, thickness, cv2.LINE_AA, _SHIFT)
        elif kind == 2:
            p2 = p1 + rng.uniform(-1, 1, 2) * extent
            cv2.line(img, _pt(p1), _pt(p2), colour, int(rng.integers(1, 5)), cv2.LINE_AA, _SHIFT)
        else:
            pts = (p1 + rng.uniform(-1, 1, (int(rng.integers(3, 7)), 2)) * extent / 2) * _ONE
            cv2.fillPoly(img, [pts.astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)
    if rng.random() < 0.3:  # a striped patch: high-frequency texture
        x0, y0 = (rng.uniform(0, 0.8, 2) * size).astype(int)
        w, h = (rng.uniform(0.1, 0.4, 2) * size).astype(int) + 2
        period = int(rng.integers(2, 8))
        stripes = (np.arange(w) // period % 2).astype(bool)
        patch = img[y0 : y0 + h, x0 : x0 + w]
        patch[:, stripes[: patch.shape[1]]] = _colour(rng.uniform(0, 255, 3))
    return img


def _skin(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A skin tone (interpolated along a light-to-dark palette) and its illumination gain."""
    t = rng.uniform(0, len(_SKIN) - 1)
    i = min(int(t), len(_SKIN) - 2)
    tone = _SKIN[i] * (i + 1 - t) + _SKIN[i + 1] * (t - i)
    gain = float(rng.uniform(0.45, 1.3))
    return tone * gain, gain


def _distractor(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """A face-sized, skin-toned ellipse with no features (sometimes with hair): not a face."""
    h = _face_height(rng, size)
    w = h * rng.uniform(0.6, 1.0)
    c = rng.uniform(0, size, 2)
    tone, _ = _skin(rng)
    angle = float(rng.uniform(-90, 90))
    if rng.random() < 0.4:
        cv2.ellipse(
            img,
            _pt(c - (0, 0.1 * h)),
            _ax(0.55 * w, 0.55 * h),
            angle,
            0,
            360,
            _colour(_HAIR[rng.integers(len(_HAIR))]),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    cv2.ellipse(img, _pt(c), _ax(w / 2, h / 2), angle, 0, 360, _colour(tone), -1, cv2.LINE_AA, _SHIFT)


def _draw_face(
    img: np.ndarray, rng: np.random.Generator, c: np.ndarray, w: float, h: float
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Draw one face centred at ``c`` (unrotated box w x h). Returns (box xyxy, landmarks [5,2], attributes)."""
    size = img.shape[0]
    roll = float(rng.normal(0, 8)) if rng.random() < 0.8 else float(rng.uniform(-30, 30))
    yaw = float(np.clip(rng.normal(0, 0.25), -0.7, 0.7))
    rad = math.radians(roll)
    rot = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])

    def at(u: float, v: float) -> np.ndarray:
        """Face coordinates (yaw shifts features sideways) -> image coordinates."""
        u = u * (1 - 0.35 * abs(yaw)) + 0.4 * yaw
        return c + rot @ np.array([u * w / 2, v * h / 2])

    tone, gain = _skin(rng)
    feature = tone * rng.uniform(0.35, 0.6)
    if rng.random() < 0.75:  # hair behind the top of the head
        cv2.ellipse(
            img,
            _pt(c + rot @ np.array([0, -0.09 * h])),
            _ax(0.56 * w, 0.58 * h),
            roll,
            0,
            360,
            _colour(_HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.7, 1.2)),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    cv2.ellipse(img, _pt(c), _ax(w / 2, h / 2), roll, 0, 360, _colour(tone), -1, cv2.LINE_AA, _SHIFT)

    eyes = [at(-_EYE_U, _EYE_V), at(_EYE_U, _EYE_V)]
    nose = at(0, _NOSE_V)
    mouth = [at(-_MOUTH_U, _MOUTH_V), at(_MOUTH_U, _MOUTH_V)]
    eye_colour = _colour(np.array([250, 250, 245]) * min(gain, 1.0))
    iris = _colour(rng.uniform(10, 90, 3))
    for e in eyes:
        if rng.random() < 0.6:  # eyebrow
            d = rot @ np.array([0.13 * w, 0])
            up = rot @ np.array([0, -0.14 * h])
            cv2.line(
                img, _pt(e + up - d), _pt(e + up + d), _colour(feature * 0.7), max(1, int(h / 30)), cv2.LINE_AA, _SHIFT
            )
        cv2.ellipse(img, _pt(e), _ax(0.11 * w, 0.055 * h), roll, 0, 360, eye_colour, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(img, _pt(e), max(_ONE // 2, int(0.05 * w * _ONE)), iris, -1, cv2.LINE_AA, _SHIFT)
    cv2.line(img, _pt(at(0, -0.12)), _pt(nose), _colour(feature), max(1, int(w / 25)), cv2.LINE_AA, _SHIFT)
    cv2.ellipse(img, _pt(nose), _ax(0.07 * w, 0.03 * h), roll, 0, 360, _colour(feature * 0.8), -1, cv2.LINE_AA, _SHIFT)
    open_mouth = rng.random() < 0.3
    lips = _colour(np.array([150, 50, 60]) * rng.uniform(0.5, 1.1) * min(gain, 1.1))
    centre = (mouth[0] + mouth[1]) / 2
    half = float(np.linalg.norm(mouth[1] - mouth[0]) / 2)
    if open_mouth:
        cv2.ellipse(img, _pt(centre), _ax(half, 0.09 * h), roll, 0, 360, lips, -1, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(img, _pt(centre), _ax(0.8 * half, 0.05 * h), roll, 0, 360, (40, 10, 15), -1, cv2.LINE_AA, _SHIFT)
    else:
        cv2.ellipse(img, _pt(centre), _ax(half, 0.04 * h), roll, 0, 180, lips, max(1, int(h / 25)), cv2.LINE_AA, _SHIFT)
    if rng.random() < 0.1:  # glasses
        for e in eyes:
            cv2.circle(img, _pt(e), int(0.17 * w * _ONE), (20, 20, 20), max(1, int(w / 30)), cv2.LINE_AA, _SHIFT)
    landmarks = np.stack([eyes[0], eyes[1], nose, mouth[0], mouth[1]]).astype(np.float32)

    # axis-aligned box of the rotated head ellipse
    a, b = w / 2, h / 2
    ex = math.sqrt((a * math.cos(rad)) ** 2 + (b * math.sin(rad)) ** 2)
    ey = math.sqrt((a * math.sin(rad)) ** 2 + (b * math.cos(rad)) ** 2)
    box = np.array([c[0] - ex, c[1] - ey, c[0] + ex, c[1] + ey])
    x0, y0 = np.floor(np.clip(box[:2] - 2, 0, size)).astype(int)
    x1, y1 = np.ceil(np.clip(box[2:] + 2, 0, size)).astype(int)

    illumination = int(gain < 0.6 or gain > 1.15)
    if h >= 12 and x1 > x0 and y1 > y0 and rng.random() < 0.6:  # directional lighting across the head
        patch = img[y0:y1, x0:x1]
        mask = np.zeros(patch.shape[:2], np.uint8)
        cv2.ellipse(mask, _pt(c - (x0, y0)), _ax(a, b), roll, 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-9
        strength = rng.uniform(0.2, 0.8)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        shade = 1 + strength * ((xx - c[0]) * direction[0] + (yy - c[1]) * direction[1]) / max(a, b) / 2
        lit = np.clip(patch * shade[..., None], 0, 255).astype(np.uint8)
        np.copyto(patch, lit, where=mask[..., None].astype(bool))
        illumination = max(illumination, int(strength > 0.6))

    occlusion = 0
    if rng.random() < 0.2:  # an object over part of the face
        frac = rng.uniform(0.2, 0.7)
        ox0, oy0, ox1, oy1 = box
        side = rng.integers(4)  # covers the left, right, bottom or top part
        if side == 0:
            ox1 = ox0 + frac * (ox1 - ox0)
        elif side == 1:
            ox0 = ox1 - frac * (ox1 - ox0)
        elif side == 2:
            oy0 = oy1 - frac * (oy1 - oy0)
        else:
            oy1 = oy0 + frac * (oy1 - oy0)
        cv2.rectangle(img, _pt((ox0, oy0)), _pt((ox1, oy1)), _colour(rng.uniform(0, 255, 3)), -1, cv2.LINE_AA, _SHIFT)
        occlusion = 1 if frac < 0.4 else 2

    blur = 0
    if rng.random() < 0.3 and x1 > x0 and y1 > y0:
        sigma = rng.uniform(0.5, max(1.0, h / 12))
        patch = img[y0:y1, x0:x1]
        patch[:] = cv2.GaussianBlur(patch, (0, 0), sigma)
        blur = 1 if sigma < h / 25 else 2
    pose = int(abs(roll) > 20 or abs(yaw) > 0.45)
    return box, landmarks, [blur, int(open_mouth), illumination, 0, occlusion, pose]


def draw_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """One synthetic RGB image [size, size, 3] uint8 and its faces.

    Faces: {"boxes" [N,4] xyxy int-valued, clipped to the image; "landmarks" [N,5,2];
    "has_landmarks" [N]; "attributes" [N,6] (WIDER columns; invalid = less than 40 % visible)}.
    """
    img = _background(rng, size)
    for _ in range(int(rng.integers(0, 7))):
        _distractor(img, rng, size)
    n = 0 if rng.random() < 0.05 else 1 + int(19 * rng.random() ** 2)
    placed: list[np.ndarray] = []
    boxes, lms, has, attrs = [], [], [], []
    heights = sorted((_face_height(rng, size) for _ in range(n)), reverse=True)  # large faces drawn first
    for h in heights:
        w = h * rng.uniform(0.72, 0.86)
        for _ in range(10):  # a centre where at most a quarter of either face hides the other
            margin = 0.5 * min(w, h) if rng.random() < 0.15 else -0.5 * min(w, h)
            c = rng.uniform(-margin, size + margin, 2)
            rough = np.array([c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2])
            if all(_overlap(rough, p) < 0.25 for p in placed):
                break
        else:
            continue
        placed.append(rough)
        box, landmarks, attributes = _draw_face(img, rng, c, w, h)
        clipped = np.clip(np.round(box), 0, size)
        cw, ch = clipped[2] - clipped[0], clipped[3] - clipped[1]
        if cw < 2 or ch < 2:
            continue  # a sliver: drawn, not labelled
        visible = cw * ch / ((box[2] - box[0]) * (box[3] - box[1]))
        attributes[3] = int(visible < 0.4)
        boxes.append(clipped)
        lms.append(np.round(landmarks, 2))
        has.append(bool(np.all((landmarks >= 0) & (landmarks < size))))
        attrs.append(attributes)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2))
    if rng.random() < 0.5:
        noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1, 6))
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    n = len(boxes)
    faces = {
        "boxes": np.array(boxes, dtype=np.float32).reshape(n, 4),
        "landmarks": np.array(lms, dtype=np.float32).reshape(n, 5, 2),
        "has_landmarks": np.array(has, dtype=bool).reshape(n),
        "attributes": np.array(attrs, dtype=np.int64).reshape(n, 6),
    }
    faces["landmarks"][~faces["has_landmarks"]] = -1.0
    return img, faces


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


def _make_one(job: tuple) -> FaceRecord:
    """Draw, encode and write one image; returns its label record."""
    root, split, split_id, index, size, rates, seed, codec = job
    rng = np.random.default_rng([seed, split_id, index])
    img, faces = draw_image(rng, size)
    key = image_key(index)
    write_sample(root, split, key, img, get_codec(codec).encode_rates(img, rates))
    return FaceRecord(
        key,
        f"{EVENT}/{key}.jpg",
        faces["boxes"],
        faces["landmarks"],
        faces["has_landmarks"],
        faces["attributes"][:, 3] != 0,
        faces["attributes"],
    )


def generate_dataset(
    root,
    n_train: int,
    n_val: int,
    size: int = 640,
    rates: Sequence[int] = dct.QUALITIES,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    workers: int = 1,
    codec: str = "dct",
) -> dict:
    """Write ``n_train`` + ``n_val`` synthetic images in the retina-modify layout under ``root``.

    Per split: ``labels.txt`` (WIDER bbx), ``labels_landmarks.txt`` (RetinaFace),
    ``latent/<key>/latent_<q>.npy`` for every rate (encoded with the built-in ``codec``:
    ``dct`` or ``learned``), ``images/<key>.png``; plus ``root/codec.json`` (the codec, the
    learned codec's weights digest, size, rates, seed). Val keys continue the train numbering, so keys are unique.
    An existing split folder is an error unless ``overwrite`` (which deletes it first).
    Returns counts and the measured images/s.
    """
    coder = get_codec(codec)
    if size <= 0 or size % LATENT_STRIDE:
        raise ValueError(f"size must be a positive multiple of {LATENT_STRIDE}, got {size}")
    rates = check_rates(coder, rates)
    root = Path(root)
    counts = {"train": n_train, "val": n_val}
    for split in SPLITS:
        folder = root / split
        if counts[split] and folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"{folder} already exists and is not empty; pass overwrite (--overwrite) to replace it"
                )
            shutil.rmtree(folder)
    root.mkdir(parents=True, exist_ok=True)
    write_codec_description(root, coder.NAME, size=size, rates=list(rates), seed=seed, generator="latentface synth")

    jobs = []
    offset = 0
    for split_id, split in enumerate(SPLITS):
        if counts[split]:
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "latent").mkdir(parents=True, exist_ok=True)
        jobs += [(root, split, split_id, offset + i, size, rates, seed, coder.NAME) for i in range(counts[split])]
        offset += counts[split]
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    bar = tqdm(total=len(jobs), desc="synth", unit="img", disable=not progress)
    records = []
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=worker_start) as pool:
            for rec in pool.map(_make_one, jobs, chunksize=8):
                records.append(rec)
                bar.update()
    else:
        with one_thread():
            for job in jobs:
                records.append(_make_one(job))
                bar.update()
    bar.close()
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start

    faces = 0
    for split in SPLITS:
        recs = [r for r, job in zip(records, jobs) if job[1] == split]
        if counts[split]:
            write_wider(recs, root / split / LABELS_FILE)
            write_retinaface(recs, root / split / LANDMARKS_FILE)
        faces += sum(len(r) for r in recs)
    return {
        "root": str(root),
        "codec": coder.NAME,
        "images": len(jobs),
        "faces": faces,
        "size": size,
        "rates": list(rates),
        "seconds": seconds,
        "images_per_s": len(jobs) / seconds if seconds > 0 else float("inf"),
        "images_per_cpu_s": len(jobs) / cpu if cpu > 0 else float("inf"),
    }


def _cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes (robust to a busy machine)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime
