"""Pick an operating point (score threshold, NMS IoU, top-k, keep) by looking at its effect.

:class:`ThresholdTuner` runs the detector once per validation image and rate and caches
every candidate above a low score floor *before* NMS. Any operating point is then
reached without the network, and exactly (see :meth:`ThresholdTuner.detections`):

- greedy NMS on a score-sorted list keeps, among the boxes above a threshold, the same
  boxes it keeps when run on all of them (a box is only ever suppressed by higher-scored
  boxes), and pre-NMS top-k of a sorted list commutes with a score threshold;
- so the detections at an operating point need NMS over the candidates above its score
  threshold only (a few per face: fast), and once NMS has run over every candidate (for
  the PR curve, once per rate, NMS IoU and top-k) any threshold or keep is a cut of it;
- matching a score-sorted list to the faces is prefix-consistent too (each detection's
  fate depends only on higher-scored ones), so the operating point lies on the curve.

Matching is :func:`latentface.metrics.wider.match_outcomes`, the WIDER FACE protocol (each
detection takes its highest-IoU face, +1 pixel convention, IoU >= 0.5; a detection on an
ignored face neither counts nor penalises; a second detection on a recalled face is a false
positive; a detection on an image without faces is a false positive, as the official ``.mat``'s
dummy box makes it). The point and its curve follow that one rule; how many of the false positives
are on face-less images is counted beside it (``false_positives_faceless``), with the precision
without them (``precision_without_faceless``, the rule of the widely used Python evaluation code).

The curve (:func:`exact_pr_curve`) has a vertex at every distinct score, on the raw scores: the
operating point at ``conf`` *is* the vertex of the smallest score above ``conf``, the same counts
divided the same way. (The official curve, :func:`latentface.metrics.wider.wider_pr_curve`, samples
1000 thresholds of min-max *normalised* scores: with ``keep=1`` the lowest kept score is about 0.5,
so its threshold 0.3 is a raw score of about 0.65, and read at the point's threshold it shows another
precision; its AP is :meth:`ThresholdTuner.wider_ap`.)

The operating point is an :class:`~latentface.inference.operating_point.OperatingPoint`
(:attr:`ThresholdTuner.point`), saved as the thresholds JSON ``--thresholds`` reads. The
interactive view is :mod:`latentface.tools.tuner.widgets` (:meth:`ThresholdTuner.widgets`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import batched_nms

from latentface import viz
from latentface.data.layout import rate_file
from latentface.inference.detector import Detector, predict_dataset
from latentface.inference.operating_point import DISPLAY_CONF, EVAL_CONF, OperatingPoint
from latentface.inference.pictures import picture_background
from latentface.metrics.wider import ground_truth_arrays, match_outcomes, wider_ap

#: Candidates kept per image and rate before NMS (the default pre-NMS top-k): also the largest top-k
#: the tuner offers.
MAX_CANDIDATES = OperatingPoint().topk


@dataclass
class _Candidates:
    """One image's detections above the floor, best first, before NMS."""

    boxes: np.ndarray  # [K, 4] float32 xyxy
    scores: np.ndarray  # [K] float32, descending
    landmarks: np.ndarray  # [K, 5, 2] float32


def _ground_truth(dataset) -> dict:
    """{key: record} with .boxes and .ignore: the dataset's label records, else its targets (nothing ignored)."""
    records = getattr(dataset, "records", None)
    if records is not None:
        return {key: records[key] for key in dataset.keys}
    out = {}
    for i in range(len(dataset)):
        target = dataset[i][1]
        boxes = np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4)
        out[target["key"]] = {"boxes": boxes, "ignore": np.zeros(len(boxes), bool)}
    return out


def _count_above(scores: np.ndarray, conf: float) -> int:
    """How many of a best-first score list are strictly above ``conf`` (compared in float32, as post-processing)."""
    return int(np.searchsorted(-scores, -np.float32(conf), side="left"))


def _run_nms(
    cands: Mapping[str, _Candidates], keys: list[str], nms: float, topk: int, above: float | None
) -> dict[str, np.ndarray]:
    """Per image: the first ``topk`` candidates (those above ``above`` only), NMS at IoU ``nms``;
    kept candidate indices, best first. One ``batched_nms`` call keyed by image."""
    counts = np.array(
        [min(topk, len(cands[k].scores) if above is None else _count_above(cands[k].scores, above)) for k in keys],
        dtype=np.int64,
    )
    boxes = torch.from_numpy(np.concatenate([cands[k].boxes[:n] for k, n in zip(keys, counts)]).reshape(-1, 4))
    scores = torch.from_numpy(np.concatenate([cands[k].scores[:n] for k, n in zip(keys, counts)]))
    image = np.repeat(np.arange(len(keys)), counts)
    keep = batched_nms(boxes, scores, torch.from_numpy(image), nms).numpy()  # decreasing score
    starts = np.cumsum(counts) - counts
    return {k: keep[image[keep] == i] - starts[i] for i, k in enumerate(keys)}


@dataclass
class Curve:
    """The exact PR curve of one prediction set: one vertex per distinct score, best first.

    Vertex ``j`` counts the detections scoring ``>= thresholds[j]``: ``precision`` and ``recall`` by
    the WIDER rule, ``proposals`` (the detections precision counts), ``faceless`` (those of them on
    images without faces).
    """

    thresholds: np.ndarray  # [V] float32, descending
    precision: np.ndarray  # [V] float64
    recall: np.ndarray  # [V] float64
    faceless: np.ndarray  # [V] int64
    proposals: np.ndarray  # [V] int64

    def at(self, conf: float) -> int | None:
        """The vertex of the detections scoring strictly above ``conf`` (None: no detection is)."""
        count = _count_above(self.thresholds, conf)
        return count - 1 if count else None


def exact_pr_curve(
    scores: np.ndarray, is_proposal: np.ndarray, recalls: np.ndarray, on_faceless: np.ndarray, faces: int
) -> Curve:
    """The curve of detections with these scores and WIDER outcomes (every image's, concatenated; ``on_faceless``
    marks those on images without faces) over ``faces`` counted faces."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    proposals = np.cumsum(is_proposal[order], dtype=np.int64)
    recalled = np.cumsum(recalls[order], dtype=np.int64)
    faceless = np.cumsum(on_faceless[order], dtype=np.int64)
    last = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True]) if len(ranked) else np.zeros(0, np.int64)
    proposals, recalled = proposals[last], recalled[last]
    precision = np.divide(recalled, proposals, out=np.zeros(len(last)), where=proposals > 0)
    recall = recalled / faces if faces else np.zeros(len(last))
    return Curve(ranked[last], precision, recall, faceless[last], proposals)


class ThresholdTuner:
    """Interactive operating-point choice over cached detections (see the module docstring).

    ``datasets``: ``{rate name: dataset}`` (e.g. ``{"latent_75.npy": NestedLatentWiderFaceDataset(...)}``)
    or one dataset. The detector's model runs once per image and rate, on first use of that rate.
    ``floor``: candidates at or below this score are never cached, so ``conf`` must be >= floor.
    Options: ``floor``, ``max_candidates`` (cap per image, the largest ``topk``), the starting
    ``point`` (an :class:`OperatingPoint`; default the display threshold with the detector's NMS
    IoU, top-k and keep) and single fields ``conf``, ``nms``, ``topk``, ``keep`` over it,
    ``iou_threshold`` (matching).
    """

    def __init__(self, detector: Detector, datasets, *, batch_size: int = 8, progress: bool = False, **options):
        if not isinstance(datasets, Mapping):
            datasets = {(getattr(datasets, "latent_types", None) or ["latent"])[0]: datasets}
        if not datasets:
            raise ValueError("ThresholdTuner needs at least one validation dataset")
        self.detector, self.datasets = detector, dict(datasets)
        self.batch_size, self.progress = batch_size, progress
        if options.get("point") is None:
            own = detector.point
            topk = min(own.topk, options.get("max_candidates", MAX_CANDIDATES))
            options["point"] = OperatingPoint(conf=DISPLAY_CONF, nms=own.nms, topk=topk, keep=own.keep)
        self._setup({rate: _ground_truth(ds) for rate, ds in self.datasets.items()}, **options)

    def _setup(
        self,
        ground_truth: Mapping[str, Mapping[str, object]],
        floor: float = EVAL_CONF,
        max_candidates: int = MAX_CANDIDATES,
        point: OperatingPoint | None = None,
        conf: float | None = None,
        nms: float | None = None,
        topk: int | None = None,
        keep: int | None = None,
        iou_threshold: float = 0.5,
    ) -> None:
        if not 0 <= floor < 1:
            raise ValueError(f"floor must be in [0, 1), got {floor}")
        self.ground_truth = {rate: dict(records) for rate, records in ground_truth.items()}
        self.rates = list(self.ground_truth)
        self.keys = {rate: list(records) for rate, records in self.ground_truth.items()}
        self._gt = {
            rate: {key: ground_truth_arrays(r, key) for key, r in records.items()}
            for rate, records in self.ground_truth.items()
        }
        self._faces = {
            rate: int(sum((~ignore).sum() for _, ignore in arrays.values())) for rate, arrays in self._gt.items()
        }
        self.floor, self.max_candidates, self.iou_threshold = float(floor), int(max_candidates), iou_threshold
        self._candidates: dict[str, dict[str, _Candidates]] = {}
        self._nms_cache: dict[tuple, dict[str, np.ndarray]] = {}
        self._curve_cache: dict[tuple, Curve] = {}
        self._pictures: dict[tuple, tuple[np.ndarray, str]] = {}
        self.detection_seconds: dict[str, float] = {}
        self.point = point or OperatingPoint(topk=min(OperatingPoint().topk, self.max_candidates))
        self.rate, self.image = self.rates[0], 0
        given = {k: v for k, v in dict(conf=conf, nms=nms, topk=topk, keep=keep).items() if v is not None}
        self.set(**{**self.point.to_dict(), **given})  # the tuner's own checks (floor, cached candidates)

    @classmethod
    def from_candidates(
        cls,
        candidates: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
        ground_truth: Mapping[str, Mapping[str, object]],
        **kwargs,
    ) -> ThresholdTuner:
        """A tuner over given candidates ``{rate: {key: {"boxes", "scores", "landmarks"}}}`` (no model).

        ``ground_truth``: ``{rate: {key: record}}`` with ``.boxes``/``.ignore`` (or dicts with those keys).
        Candidates at or below ``floor`` are dropped, the rest sorted best first and capped.
        """
        tuner = cls.__new__(cls)
        tuner.detector, tuner.datasets = None, {}
        tuner._setup({rate: ground_truth[rate] for rate in candidates}, **kwargs)
        for rate, per_image in candidates.items():
            tuner._candidates[rate] = {}
            for key in tuner.keys[rate]:
                det = per_image.get(key, {})
                scores = np.asarray(det.get("scores", ()), np.float32).reshape(-1)
                boxes = np.asarray(det.get("boxes", ()), np.float32).reshape(-1, 4)
                lms = det.get("landmarks")
                lms = (
                    np.zeros((len(scores), 5, 2), np.float32)
                    if lms is None
                    else np.asarray(lms, np.float32).reshape(-1, 5, 2)
                )
                order = np.argsort(-scores, kind="stable")
                order = order[scores[order] > tuner.floor][: tuner.max_candidates]
                tuner._candidates[rate][key] = _Candidates(boxes[order], scores[order], lms[order])
        return tuner

    # ------------------------------------------------------------------ state
    def set(
        self,
        conf: float | None = None,
        nms: float | None = None,
        topk: int | None = None,
        keep: int | None = None,
        rate: str | int | None = None,
        image: int | str | None = None,
    ) -> ThresholdTuner:
        """Change any of the operating point, the rate shown and the image shown; checks every value first."""
        new_conf = self.conf if conf is None else float(conf)
        new_nms = self.nms if nms is None else float(nms)
        new_topk = self.topk if topk is None else int(topk)
        new_keep = self.keep if keep is None else int(keep)
        new_rate = self.rate if rate is None else self._rate_name(rate)
        if not self.floor <= new_conf <= 1:
            raise ValueError(
                f"conf must be in [{self.floor}, 1] (candidates were cached above floor {self.floor}), got {new_conf}"
            )
        if not 0 < new_nms <= 1:
            raise ValueError(f"nms IoU must be in (0, 1], got {new_nms}")
        if not 1 <= new_topk <= self.max_candidates:
            raise ValueError(
                f"topk must be in [1, {self.max_candidates}] (the cached candidates per image), got {new_topk}"
            )
        if new_keep < 1:
            raise ValueError(f"keep must be at least 1, got {new_keep}")
        new_image = self.image if image is None else self._image_index(image, new_rate)
        if new_image >= len(self.keys[new_rate]):
            new_image = 0
        self.point = OperatingPoint(conf=new_conf, nms=new_nms, topk=new_topk, keep=new_keep)
        self.rate, self.image = new_rate, new_image
        return self

    @property
    def conf(self) -> float:
        return self.point.conf

    @property
    def nms(self) -> float:
        return self.point.nms

    @property
    def topk(self) -> int:
        return self.point.topk

    @property
    def keep(self) -> int:
        return self.point.keep

    def _rate_name(self, rate) -> str:
        if rate in self.rates:
            return rate
        if rate_file(rate) in self.rates:
            return rate_file(rate)
        raise ValueError(f"unknown rate {rate!r}; the tuner has {self.rates}")

    def _image_index(self, image, rate: str) -> int:
        keys = self.keys[rate]
        if isinstance(image, str):
            if image not in keys:
                raise ValueError(f"unknown image key {image!r} (rate {rate} has {len(keys)} images)")
            return keys.index(image)
        index = int(image)
        if not 0 <= index < len(keys):
            raise ValueError(f"image index {index} out of range [0, {len(keys)})")
        return index

    def thresholds(self) -> dict:
        """The operating point in the JSON layout ``latentface detect --thresholds`` reads."""
        return self.point.to_dict()

    @property
    def key(self) -> str:
        return self.keys[self.rate][self.image]

    # --------------------------------------------------------------- caches
    def candidates(self, rate: str | int | None = None) -> dict[str, _Candidates]:
        """Every image's pre-NMS candidates at ``rate`` (runs the model the first time only)."""
        rate = self.rate if rate is None else self._rate_name(rate)
        if rate not in self._candidates:
            self._candidates[rate] = self._detect(rate)
        return self._candidates[rate]

    def _detect(self, rate: str) -> dict[str, _Candidates]:
        # NMS at IoU 1.0 suppresses nothing: the Detector's own decoding, sorted, capped, above the floor.
        everything = OperatingPoint(conf=self.floor, nms=1.0, topk=self.max_candidates, keep=self.max_candidates)
        raw = Detector(self.detector.model, everything, device=self.detector.device)
        start = time.perf_counter()
        preds, landmarks = predict_dataset(raw, self.datasets[rate], batch_size=self.batch_size, progress=self.progress)
        self.detection_seconds[rate] = time.perf_counter() - start
        return {
            key: _Candidates(
                preds[key][:, :4].astype(np.float32),
                preds[key][:, 4].astype(np.float32),
                landmarks[key].astype(np.float32),
            )
            for key in self.keys[rate]
        }

    def _nms(
        self, rate: str, nms: float, topk: int, above: float | None = None, keys: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """{key: candidate indices} kept by pre-NMS top-k and NMS, best first, of the candidates
        scoring above ``above`` (None: all, the result cached per (rate, nms, topk)).

        NMS of a best-first prefix is the prefix of NMS, so a cached full result serves any
        ``above`` by a cut; without one, NMS runs on the (small) prefix of ``keys`` only.
        """
        cands, keys = self.candidates(rate), keys or self.keys[rate]
        full = self._nms_cache.get((rate, nms, topk))
        if full is None and above is None:
            full = self._nms_cache[rate, nms, topk] = _run_nms(cands, self.keys[rate], nms, topk, None)
        if full is None:
            return _run_nms(cands, keys, nms, topk, above)
        if above is None:
            return {key: full[key] for key in keys}
        return {key: full[key][: _count_above(cands[key].scores[full[key]], above)] for key in keys}

    def _kept(self, rate: str, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """{key: candidate indices} of the detections at the operating point."""
        return {key: idx[: self.keep] for key, idx in self._nms(rate, self.nms, self.topk, self.conf, keys).items()}

    # -------------------------------------------------------------- results
    def detections(self, image: int | str | None = None, rate: str | int | None = None) -> dict[str, np.ndarray]:
        """One image's detections at the operating point: what ``Detector`` with these thresholds returns."""
        rate = self.rate if rate is None else self._rate_name(rate)
        key = self.keys[rate][self.image if image is None else self._image_index(image, rate)]
        c, idx = self.candidates(rate)[key], self._kept(rate, [key])[key]
        return {"boxes": c.boxes[idx], "scores": c.scores[idx], "landmarks": c.landmarks[idx]}

    def predictions(self, rate: str | int | None = None) -> dict[str, np.ndarray]:
        """Every image's detections at the operating point as evaluation predictions ``{key: [K, 5]}``."""
        rate = self.rate if rate is None else self._rate_name(rate)
        cands = self.candidates(rate)
        return {
            key: np.concatenate([cands[key].boxes[idx], cands[key].scores[idx, None]], axis=1)
            for key, idx in self._kept(rate).items()
        }

    def pr_curve(self, rate: str | int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(precision, recall) of the exact curve over all cached scores at the current NMS, top-k and keep:
        the operating point at any score threshold is one of its vertices."""
        curve = self.curve_at(self.rate if rate is None else self._rate_name(rate), self.nms, self.topk, self.keep)
        return curve.precision, curve.recall

    def has_curve(self, rate: str, nms: float, topk: int, keep: int) -> bool:
        """Whether the curve at these settings is computed already (:meth:`curve_at` returns at once)."""
        return (rate, nms, topk, keep) in self._curve_cache

    def _outcomes(self, rate: str, kept: Mapping[str, np.ndarray]):
        """(scores, is proposal, recalls a face, on a face-less image) of the detections ``kept``, concatenated."""
        cands, gt = self.candidates(rate), self._gt[rate]
        scores, proposal, recalls, faceless = [], [], [], []
        for key, idx in kept.items():
            boxes_gt, ignore = gt[key]
            p, r = match_outcomes(cands[key].boxes[idx], boxes_gt, ignore, self.iou_threshold)
            scores.append(cands[key].scores[idx])
            proposal.append(p)
            recalls.append(r)
            faceless.append(np.full(len(idx), len(boxes_gt) == 0))

        def cat(parts, dtype):
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        return cat(scores, np.float32), cat(proposal, bool), cat(recalls, bool), cat(faceless, bool)

    def curve_at(self, rate: str, nms: float, topk: int, keep: int) -> Curve:
        """The exact :class:`Curve` at a rate, NMS IoU, top-k and keep: NMS over every candidate, cached."""
        if (rate, nms, topk, keep) not in self._curve_cache:
            kept = {key: idx[:keep] for key, idx in self._nms(rate, nms, topk).items()}
            self._curve_cache[rate, nms, topk, keep] = exact_pr_curve(*self._outcomes(rate, kept), self._faces[rate])
        return self._curve_cache[rate, nms, topk, keep]

    def predictions_at_floor(self, rate: str | int | None = None) -> dict[str, np.ndarray]:
        """Every cached candidate kept by the current NMS IoU, top-k and keep, as evaluation predictions
        ``{key: [K, 5]}``: what ``latentface evaluate`` scores at these settings (conf at the floor)."""
        rate = self.rate if rate is None else self._rate_name(rate)
        cands = self.candidates(rate)
        return {
            key: np.concatenate([cands[key].boxes[idx[: self.keep]], cands[key].scores[idx[: self.keep], None]], 1)
            for key, idx in self._nms(rate, self.nms, self.topk).items()
        }

    def wider_ap(self, rate: str | int | None = None) -> float:
        """The official WIDER AP (:func:`latentface.metrics.wider.wider_ap`) of :meth:`predictions_at_floor`."""
        rate = self.rate if rate is None else self._rate_name(rate)
        return wider_ap(self.predictions_at_floor(rate), self.ground_truth[rate], self.iou_threshold)

    def metrics(self, rate: str | int | None = None, curve: bool = True) -> dict:
        """Precision, recall and F1 over the validation set at the operating point, by the WIDER rule.

        Also the counts (true and false positives, counted faces, detections), how many of the false
        positives are on images without faces (``false_positives_faceless``) and the precision without
        them (``precision_without_faceless``); with ``curve``, the
        exact PR curve (``precision_curve``, ``recall_curve``, ``threshold_curve``, ``faceless_curve``)
        and ``curve_index``, the vertex the point is (None when nothing scores above the threshold).
        Without the curve only the candidates above the threshold are suppressed and matched.
        """
        rate = self.rate if rate is None else self._rate_name(rate)
        kept = self._kept(rate)
        _, proposal, recalls, faceless = self._outcomes(rate, kept)
        tp, proposals, on_faceless = int(recalls.sum()), int(proposal.sum()), int(faceless.sum())
        faces = self._faces[rate]
        precision = tp / proposals if proposals else 0.0
        recall = tp / faces if faces else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "true_positives": tp,
            "false_positives": proposals - tp,
            "false_positives_faceless": on_faceless,
            "precision_without_faceless": tp / (proposals - on_faceless) if proposals - on_faceless else 0.0,
            "faces": faces,
            "detections": sum(len(idx) for idx in kept.values()),
            "images": len(self.keys[rate]),
            "rate": rate,
            **self.thresholds(),
        }
        if curve:
            c = self.curve_at(rate, self.nms, self.topk, self.keep)
            result.update(
                precision_curve=c.precision,
                recall_curve=c.recall,
                threshold_curve=c.thresholds,
                faceless_curve=c.faceless,
                proposals_curve=c.proposals,
                curve_index=c.at(self.conf),
            )
        return result

    def sweep(self, confs=None, rate: str | int | None = None) -> list[dict]:
        """Precision, recall and F1 at each score threshold in ``confs`` (default: floor..0.99 in
        steps of 0.01), the other settings as they are; the tuner's own threshold is left unchanged."""
        confs = np.round(np.arange(np.ceil(self.floor * 100), 100) / 100, 2) if confs is None else confs
        rate = self.rate if rate is None else self._rate_name(rate)
        self._nms(rate, self.nms, self.topk)  # once, in full: every threshold is then a cut of it
        current = self.point
        try:
            return [self.set(conf=float(c)).metrics(rate, curve=False) for c in confs]
        finally:
            self.point = current

    def save(self, path: str | os.PathLike) -> Path:
        """Write the operating point as the thresholds JSON ``latentface detect --thresholds`` reads."""
        return self.point.save(path)

    # ---------------------------------------------------------------- views
    def picture(
        self, image: int | str | None = None, rate: str | int | None = None, background: str = "auto"
    ) -> tuple[np.ndarray, str]:
        """(RGB image, what it is) to draw an image's detections on, as ``latentface detect`` picks it:
        the stored image, else the decoded latent where the codec is known, else a false-colour latent."""
        rate = self.rate if rate is None else self._rate_name(rate)
        index = self.image if image is None else self._image_index(image, rate)
        if (rate, index, background) not in self._pictures:
            dataset = self.datasets[rate]
            self._pictures.clear()  # one picture is all the widgets redraw on
            self._pictures[rate, index, background] = picture_background(
                dataset.latent_files(index)[0], dataset[index][0], background
            )
        return self._pictures[rate, index, background]

    def drawing(self, background: str = "auto") -> np.ndarray:
        """The current image (RGB uint8) with its detections and, thin and green, the true faces."""
        rgb, _ = self.picture(background=background)
        boxes_gt, _ = self._gt[self.rate][self.key]
        width, height = getattr(self.datasets[self.rate], "image_size", (rgb.shape[1], rgb.shape[0]))
        return viz.draw_detections(rgb, self.detections(), input_size=(height, width), truth=boxes_gt)

    def pr_artists(self, ax) -> tuple:
        """The PR curve, the operating-point marker and the marker of the point with the false positives
        on face-less images counted, on ``ax``, the legend below the axes (it hides no point); update them
        with :meth:`update_curve` and :meth:`update_point`."""
        (curve,) = ax.plot([], [], lw=1.5, label="PR curve (WIDER rule)")
        (point,) = ax.plot([], [], "o", ms=8, color="crimson", label="operating point")
        (faceless,) = ax.plot(
            [], [], "o", ms=7, mfc="none", mec="crimson", label="without FP on face-less images", zorder=1
        )
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7, frameon=False)
        return curve, point, faceless

    def update_curve(self, ax, curve, metrics: dict) -> None:
        """The curve of ``metrics`` (:meth:`metrics` with the curve) and the axes' title."""
        shown = metrics["proposals_curve"] > 0  # where nothing counts yet, precision is undefined
        curve.set_data(metrics["recall_curve"][shown], metrics["precision_curve"][shown])
        ax.set_title(f"validation at {self.rate}: {metrics['images']} images, {metrics['faces']} faces", fontsize=9)

    @staticmethod
    def update_point(point, faceless, metrics: dict) -> None:
        """The operating point (a vertex of the curve) and, hollow, the same without the false positives on
        face-less images; nothing where no detection counted in precision scores above the threshold."""
        shown = metrics["true_positives"] + metrics["false_positives"] > 0
        point.set_data(*(([metrics["recall"]], [metrics["precision"]]) if shown else ([], [])))
        extra = shown and metrics["false_positives_faceless"] > 0
        faceless.set_data(*(([metrics["recall"]], [metrics["precision_without_faceless"]]) if extra else ([], [])))

    def point_text(self, metrics: dict) -> str:
        """One line: the threshold and P/R/F1 at the operating point, and the face-less false positives."""
        return (
            f"score > {self.conf:.2f}: P {metrics['precision']:.3f}, R {metrics['recall']:.3f}, "
            f"F1 {metrics['f1']:.3f}; {metrics['false_positives_faceless']} of the FP on face-less images "
            f"(P {metrics['precision_without_faceless']:.3f} without them)"
        )

    def update_pr(self, ax, curve, point, faceless, metrics: dict) -> None:
        """Curve, point and title at once (the static figure)."""
        self.update_curve(ax, curve, metrics)
        self.update_point(point, faceless, metrics)
        numbers, faceless_text = self.point_text(metrics).split("; ", 1)
        ax.set_title(f"{ax.get_title()}\n{numbers}\n{faceless_text}", fontsize=8)

    def plot(self, background: str = "auto"):
        """A figure: the current image with its detections and true faces, and the PR curve with the point."""
        # imported here (start-up time): the tuner's numbers need no plotting
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 4.6), layout="constrained")
        ax_img, ax_pr = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
        ax_img.imshow(self.drawing(background))
        det = self.detections()
        ax_img.set_title(f"{self.key} at {self.rate}: {len(det['scores'])} detections", fontsize=9)
        ax_img.axis("off")
        self.update_pr(ax_pr, *self.pr_artists(ax_pr), self.metrics())
        return fig

    def widgets(self, save_path: str | os.PathLike = "thresholds.json", background: str = "auto"):
        """Sliders, dropdowns and a save button over this tuner (ipywidgets): see
        :func:`latentface.tools.tuner.widgets.tuner_widgets`."""
        # imported here: ipywidgets is optional (the notebooks extra)
        from latentface.tools.tuner.widgets import tuner_widgets

        return tuner_widgets(self, save_path, background)
