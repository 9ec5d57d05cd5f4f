"""What the notebooks show, computed here so it is tested: label and latent statistics,
bridge costs and receptive-field extents, and which pyramid level responds to which face size.

Every function returns plain numbers (NumPy arrays, dicts); the ``plot_*`` functions turn
them into matplotlib figures (object API, no pyplot state) and compute nothing of their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from statistics import median

import cv2
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from latentface import LATENT_STRIDE, viz
from latentface.codec.dct import LUMA_CHANNELS
from latentface.data.dataset import NestedLatentWiderFaceDataset, collate_faces, load_latent
from latentface.data.layout import RATE_FILES
from latentface.metrics.sizes import BUCKET_EDGES, SIZE_BUCKETS, bucket_index
from latentface.model.backbone import CHANNELS, resnet, stem_and_layer1
from latentface.model.bridge import BRIDGES, build_bridge
from latentface.tools import bench


def _figure(figsize):
    return Figure(figsize=figsize, layout="constrained")


# ------------------------------------------------------------------------------ labels

#: The fields of :meth:`NestedLatentWiderFaceDataset.summary` that describe a split rather than count a problem.
_DESCRIPTIVE = (
    "split_dir",
    "latent_types",
    "labelled_images",
    "latent_folders",
    "samples",
    "faces",
    "images_without_faces",
)


def dataset_problems(summary: Mapping[str, object]) -> dict[str, object]:
    """The label/latent mismatches of a dataset summary that are present (non-zero, non-empty)."""
    return {name: value for name, value in summary.items() if name not in _DESCRIPTIVE and value}


def available_rates(dataset: NestedLatentWiderFaceDataset, index: int = 0) -> list[str]:
    """The rate files (:data:`~latentface.data.layout.RATE_FILES` order) beside sample ``index``'s latent."""
    folder = dataset.latent_files(index)[0].parent
    return [rate for rate in RATE_FILES if (folder / rate).is_file()]


def label_summary(records: Mapping[str, object]) -> dict:
    """Per-face and per-image label numbers of a split (``{key: FaceRecord}``).

    Returns ``faces_per_image`` [images], and per face ``width``, ``height``, ``aspect``
    (width / height), ``has_landmarks``, ``ignore``, ``bucket`` (index into
    :data:`latentface.metrics.sizes.SIZE_BUCKETS`), plus ``bucket_counts`` and
    ``landmark_fraction`` per bucket (None for an empty bucket).
    """
    recs = list(records.values())
    boxes = np.concatenate([np.asarray(r.boxes, np.float64).reshape(-1, 4) for r in recs]) if recs else np.zeros((0, 4))
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    has_lm = np.concatenate([np.asarray(r.has_landmarks, bool) for r in recs]) if recs else np.zeros(0, bool)
    ignore = np.concatenate([np.asarray(r.ignore, bool) for r in recs]) if recs else np.zeros(0, bool)
    bucket = bucket_index(boxes)
    counts = {name: int((bucket == i).sum()) for i, name in enumerate(SIZE_BUCKETS)}
    return {
        "images": len(recs),
        "faces_per_image": np.array([len(r.boxes) for r in recs], dtype=np.int64),
        "width": width,
        "height": height,
        "aspect": np.divide(width, height, out=np.full(len(boxes), np.nan), where=height > 0),
        "has_landmarks": has_lm,
        "ignore": ignore,
        "bucket": bucket,
        "bucket_counts": counts,
        "landmark_fraction": {
            name: (float(has_lm[bucket == i].mean()) if counts[name] else None) for i, name in enumerate(SIZE_BUCKETS)
        },
    }


def plot_label_summary(summary: dict, title: str = ""):
    """Faces per image, face heights (log scale, bucket edges marked), aspect ratios, landmarks per bucket."""
    fig = _figure((14, 3.4))
    ax_n, ax_h, ax_a, ax_l = fig.subplots(1, 4)
    n = summary["faces_per_image"]
    ax_n.hist(n, bins=np.arange(n.max() + 2) - 0.5 if len(n) else 1, color="tab:blue")
    ax_n.set(xlabel="faces per image", ylabel="images", title=f"{summary['images']} images, {int(n.sum())} faces")
    height = summary["height"][summary["height"] > 0]
    if len(height):
        bins = np.geomspace(max(1.0, height.min()), height.max() * 1.01, 40)
        ax_h.hist(height, bins=bins, color="tab:orange")
    ax_h.set_xscale("log")
    for edge in BUCKET_EDGES:
        ax_h.axvline(edge, color="k", lw=0.8, ls="--")
    counts = summary["bucket_counts"]
    ax_h.set(
        xlabel="face height (px, log)",
        ylabel="faces",
        title=" / ".join(f"{name} {counts[name]}" for name in SIZE_BUCKETS),
    )
    ax_h.title.set_fontsize(9)
    aspect = summary["aspect"][np.isfinite(summary["aspect"])]
    ax_a.hist(np.clip(aspect, 0, 2.5), bins=np.linspace(0, 2.5, 41), color="tab:green")
    ax_a.set(
        xlabel="aspect ratio (width / height; 2.5 = 2.5 or more)",
        ylabel="faces",
        title=f"median {np.median(aspect):.2f}" if len(aspect) else "no faces",
    )
    fractions = [summary["landmark_fraction"][name] or 0.0 for name in SIZE_BUCKETS]
    ax_l.bar(SIZE_BUCKETS, fractions, color="tab:purple")
    ax_l.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_l.set(
        ylim=(0, 1),
        ylabel="share of faces with 5 landmarks",
        title=f"landmarks: {summary['has_landmarks'].mean():.0%} of faces"
        if len(summary["has_landmarks"])
        else "landmarks",
    )
    for ax in (ax_n, ax_h, ax_a, ax_l):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------ latents


def latent_channel_stats(
    latents: Callable[[str], Sequence[torch.Tensor]] | Mapping[str, Sequence], rates: Sequence[str] | None = None
) -> dict[str, dict]:
    """Per-channel statistics of latents at each rate: ``{rate: {mean, std, zero_fraction, count}}``.

    ``latents`` maps a rate to its latents [C, H, W] (a mapping, or a function of the rate
    name, so files can stream). ``zero_fraction`` is the share of exactly-zero values per
    channel: with a quantising codec, how much of a channel the rate throws away.
    """
    rates = list(rates if rates is not None else latents)
    out = {}
    for rate in rates:
        items = latents[rate] if isinstance(latents, Mapping) else latents(rate)
        total = total_sq = zeros = None
        count = cells = 0
        for latent in items:
            x = torch.as_tensor(latent, dtype=torch.float64)
            x = x.reshape(x.shape[-3], -1)
            if total is None:
                total, total_sq, zeros = (torch.zeros(x.shape[0], dtype=torch.float64) for _ in range(3))
            total += x.sum(1)
            total_sq += x.square().sum(1)
            zeros += (x == 0).sum(1)
            count += 1
            cells += x.shape[1]
        if not count:
            raise ValueError(f"no latent for rate {rate!r}")
        mean = total / cells
        std = (total_sq / cells - mean.square()).clamp_min(0).sqrt()
        out[rate] = {"mean": mean.numpy(), "std": std.numpy(), "zero_fraction": (zeros / cells).numpy(), "count": count}
    return out


def dataset_latents(root: str | os.PathLike, split: str = "val", max_images: int | None = None):
    """A function ``rate -> iterator of latents`` over ``<root>/<split>`` (the first ``max_images``),
    for :func:`latent_channel_stats`."""

    def read(rate: str):
        ds = NestedLatentWiderFaceDataset(root, split, rate)
        for i in range(len(ds) if max_images is None else min(max_images, len(ds))):
            yield load_latent(ds.latent_files(i)[0], ds.expected_shape)

    return read


def luma_chroma_table(stats: Mapping[str, dict], luma: int = LUMA_CHANNELS, reference: str | None = None) -> list[dict]:
    """One row per rate, for the luma channels (``0..luma-1``) and the chroma channels apart.

    ``*_live_channels``: channels that are not zero everywhere (a low rate drops whole channels);
    ``*_zero_fraction``: share of exactly-zero values; ``*_std_ratio``: median over the
    channels that vary at ``reference`` (default: the last rate) of std / reference std,
    i.e. how far a rate's inputs drift from the statistics a model was normalised with.
    """
    reference = reference or list(stats)[-1]
    ref_std = stats[reference]["std"]
    rows = []
    for rate, s in stats.items():
        row = {"rate": rate}
        for part, sl in (("luma", slice(0, luma)), ("chroma", slice(luma, None))):
            live = ref_std[sl] > 0
            row[f"{part}_live_channels"] = int((s["zero_fraction"][sl] < 1).sum())
            row[f"{part}_zero_fraction"] = float(s["zero_fraction"][sl].mean())
            ratio = np.median(s["std"][sl][live] / ref_std[sl][live]) if live.any() else np.nan
            row[f"{part}_std_ratio"] = float(ratio)
        rows.append(row)
    return rows


def plot_channel_stats(stats: Mapping[str, dict], luma: int = LUMA_CHANNELS):
    """Std and zero share per channel for each rate, luma and chroma parts marked."""
    fig = _figure((14, 3.6))
    ax_std, ax_zero = fig.subplots(1, 2)
    colours = _rate_colours(len(stats))
    for (rate, s), colour in zip(stats.items(), colours):
        channels = np.arange(len(s["std"]))
        ax_std.plot(channels, np.maximum(s["std"], 1e-6), lw=0.8, color=colour, label=rate)
        ax_zero.plot(channels, s["zero_fraction"], lw=0.8, color=colour, label=rate)
    for ax in (ax_std, ax_zero):
        ax.axvline(luma - 0.5, color="k", lw=1, ls="--")
        ax.text(luma * 0.5, 1.0, "luma", transform=ax.get_xaxis_transform(), ha="center", va="bottom")
        ax.text(
            luma + (len(s["std"]) - luma) * 0.5,
            1.0,
            "chroma",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
        )
        ax.set_xlabel("channel")
        ax.grid(alpha=0.3)
    ax_std.set(yscale="log", ylabel="std over cells and images")
    ax_zero.set(ylabel="share of exact zeros", ylim=(0, 1.02))
    ax_zero.legend(fontsize=8, ncol=len(stats))
    return fig


def _outline(ax, boxes, colour="lime") -> None:
    """True faces as rectangles on ``ax`` (data coordinates = image pixels), visible at any zoom."""
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour, lw=1.0))


def plot_latent_views(
    latent,
    pictures: Mapping[str, np.ndarray],
    truth: np.ndarray,
    channels: Sequence[int] = (0, 1, LUMA_CHANNELS, LUMA_CHANNELS + 48),
):
    """Top row: ``pictures`` (e.g. the decoded image per rate) with the true boxes;
    bottom row: the latent in false colour (its first three principal components) and single channels."""
    latent = np.asarray(latent, dtype=np.float32).reshape(-1, *np.shape(latent)[-2:])
    channels = [c for c in channels if c < len(latent)]
    cols = max(len(pictures), 1 + len(channels))
    fig = _figure((2.6 * cols, 5.6))
    axes = fig.subplots(2, cols, squeeze=False)
    height, width = latent.shape[-2] * LATENT_STRIDE, latent.shape[-1] * LATENT_STRIDE
    extent = (0, width, height, 0)  # every panel in input-image pixels, whatever its resolution
    for ax, (name, rgb) in zip(axes[0], pictures.items()):
        ax.imshow(rgb, extent=extent)
        _outline(ax, truth)
        ax.set_title(name, fontsize=9)
    axes[1, 0].imshow(viz.latent_pca_image(latent), extent=extent)
    _outline(axes[1, 0], truth)
    axes[1, 0].set_title("latent, PCA false colour", fontsize=9)
    for ax, c in zip(axes[1, 1:], channels):
        scale = float(np.abs(latent[c]).max())
        ax.imshow(latent[c], cmap="RdBu_r", vmin=-scale, vmax=scale, extent=extent, interpolation="nearest")
        # the range in the title, not a colour bar: every panel of both rows keeps one size and spacing
        ax.set_title(f"channel {c} ({'luma' if c < LUMA_CHANNELS else 'chroma'}), ±{scale:.3g}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.has_data():
            ax.set_visible(False)
    return fig


def busiest_image(records: Sequence, min_height: float = 24.0) -> int:
    """Index of the record with the most faces at least ``min_height`` pixels high (a telling example)."""
    counts = [
        int(((np.asarray(r.boxes).reshape(-1, 4)[:, 3] - np.asarray(r.boxes).reshape(-1, 4)[:, 1]) >= min_height).sum())
        for r in records
    ]
    return int(np.argmax(counts)) if counts else 0


def _rate_colours(n: int):
    return [colormaps["viridis"](x) for x in np.linspace(0.05, 0.9, max(n, 1))]


# ------------------------------------------------------------------------------ bridges


def bridge_costs(
    bridges: Sequence[str] | None = None,
    backbone: str = "resnet50",
    image: int = 640,
    repeats: int = 5,
    in_channels: int = 256,
) -> list[dict]:
    """Each bridge next to what it replaces (the RGB stem + layer1 of ``backbone``), at ``image`` pixels.

    Per row: output shape, parameters, multiply-adds and median CPU latency (batch 1, rows
    measured in turns: :func:`latentface.tools.bench.latency`), from :mod:`latentface.tools.bench`'s counters.
    """
    c1 = CHANNELS[backbone][0]
    cells = image // LATENT_STRIDE
    latent = torch.randn(1, in_channels, cells, cells, generator=torch.Generator().manual_seed(0))
    rgb = torch.rand(1, 3, image, image) * 255
    modules = {f"RGB stem + layer1 ({backbone})": (stem_and_layer1(resnet(backbone)), rgb)}
    modules.update({name: (build_bridge(name, in_channels, c1), latent) for name in (bridges or BRIDGES)})
    rows, calls = [], {}
    for name, (module, x) in modules.items():
        module.eval()
        with torch.inference_mode():
            shape = list(module(x).shape[1:])
        rows.append(
            {
                "name": name,
                "input": list(x.shape[1:]),
                "output": shape,
                "params": bench.parameters(module),
                "macs": bench.macs(module, x),
            }
        )
        calls[name] = bench.inference_call(module, x)
    times = bench.latency(calls, repeats=repeats, warmup=1)
    for row in rows:
        row["cpu_ms"] = 1000 * median(times[row["name"]])
    return rows


def erf_extent(erf: np.ndarray, fraction: float = 0.9) -> int:
    """Side (in input positions) of the smallest square around the ERF's centre of mass holding ``fraction`` of it."""
    h, w = erf.shape
    ys, xs = np.mgrid[0:h, 0:w]
    cy, cx = float((erf * ys).sum()), float((erf * xs).sum())
    distance = np.maximum(np.abs(ys - cy), np.abs(xs - cx))  # Chebyshev: squares
    order = np.argsort(distance, axis=None, kind="stable")
    reached = np.searchsorted(np.cumsum(erf.ravel()[order]), fraction - 1e-9)
    radius = distance.ravel()[order[min(reached, order.size - 1)]]
    return int(2 * np.floor(radius + 0.5) + 1)


def plot_erfs(erfs: Mapping[str, np.ndarray], unit: str = "latent cell"):
    """One panel per effective receptive field (e.g. :func:`latentface.tools.bench.effective_receptive_field`
    of each bridge), with its 50 % / 90 % extents in the title."""
    fig = _figure((3.2 * len(erfs), 3.3))
    axes = np.atleast_1d(fig.subplots(1, len(erfs)))
    for ax, (name, erf) in zip(axes, erfs.items()):
        ax.imshow(erf, cmap="magma")
        ax.set_title(f"{name}\n50%: {erf_extent(erf, 0.5)}, 90%: {erf_extent(erf, 0.9)} {unit}s", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


# --------------------------------------------------------- pyramid levels and face sizes


def level_slices(model, height: int, width: int) -> dict[int, slice]:
    """Which rows of the flattened head outputs belong to which pyramid level, for an input image size."""
    layout = model.anchor_layout
    out, start = {}, 0
    for level, (gh, gw) in zip(layout.levels, layout.grid_sizes(height, width)):
        n = gh * gw * layout.per_location
        out[level] = slice(start, start + n)
        start += n
    return out


@torch.no_grad()
def level_response(model, dataset, max_images: int | None = None, batch_size: int = 8) -> dict:
    """Which pyramid level fires for which face size.

    For every counted face: the highest face score among each level's anchors centred inside
    the face box. Returns ``levels``, ``buckets`` (:data:`SIZE_BUCKETS`), ``scores`` [faces,
    levels] (NaN where a level has no anchor centre in the box), ``height`` [faces],
    ``bucket`` [faces], ``fires`` [buckets, levels] (faces whose best level is that level)
    and ``mean_score`` [buckets, levels] (mean over faces of each bucket, NaN where empty).
    """
    model.eval()
    device = next(model.parameters()).device
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    records = getattr(dataset, "records", None)
    scores_rows, face_boxes = [], []
    levels = list(model.anchor_layout.levels)
    for start in range(0, n, batch_size):
        latents, targets = collate_faces([dataset[i] for i in range(start, min(start + batch_size, n))])
        latents = latents.to(device)
        face = model(latents).logits.float().softmax(-1)[..., 1].cpu()
        anchors = model.anchors(latents).cpu()
        slices = level_slices(model, *model.image_size(latents))
        for b, target in enumerate(targets):
            boxes = target["boxes"].reshape(-1, 4)
            if records is not None:
                boxes = boxes[torch.from_numpy(~np.asarray(records[target["key"]].ignore, bool))]
            row = torch.full((len(boxes), len(levels)), float("nan"), dtype=torch.float64)
            for j, sl in enumerate(slices.values() if len(boxes) else ()):
                cx, cy = anchors[sl, 0], anchors[sl, 1]
                inside = (
                    (cx >= boxes[:, None, 0])
                    & (cx <= boxes[:, None, 2])
                    & (cy >= boxes[:, None, 1])
                    & (cy <= boxes[:, None, 3])
                )  # [faces, anchors]
                best = torch.where(inside, face[b, sl], -1.0).amax(1)
                row[:, j] = torch.where(best >= 0, best.double(), float("nan"))
            scores_rows.append(row.numpy())
            face_boxes.append(boxes.numpy())
    scores = np.concatenate(scores_rows) if scores_rows else np.zeros((0, len(levels)))
    face_boxes = np.concatenate(face_boxes) if face_boxes else np.zeros((0, 4))
    height = face_boxes[:, 3] - face_boxes[:, 1]
    bucket = bucket_index(face_boxes)
    fires = np.zeros((len(SIZE_BUCKETS), len(levels)), dtype=np.int64)
    mean_score = np.full((len(SIZE_BUCKETS), len(levels)), np.nan)
    has_any = ~np.isnan(scores).all(axis=1)
    best = np.full(len(height), -1)
    best[has_any] = np.nanargmax(scores[has_any], axis=1)
    for i in range(len(SIZE_BUCKETS)):
        in_bucket = bucket == i
        np.add.at(fires[i], best[in_bucket & has_any], 1)
        for j in range(len(levels)):
            column = scores[in_bucket, j]
            column = column[~np.isnan(column)]
            if len(column):
                mean_score[i, j] = column.mean()
    return {
        "levels": levels,
        "buckets": list(SIZE_BUCKETS),
        "scores": scores,
        "height": height,
        "bucket": bucket,
        "fires": fires,
        "mean_score": mean_score,
    }


def plot_level_response(response: dict):
    """Share of each size bucket's faces whose strongest level is each level, and the mean scores."""
    fig = _figure((10, 3.4))
    ax_f, ax_s = fig.subplots(1, 2)
    fires = response["fires"].astype(np.float64)
    totals = fires.sum(1, keepdims=True)
    share = np.divide(fires, totals, out=np.zeros_like(fires), where=totals > 0)
    labels = [f"P{level}" for level in response["levels"]]
    rows = [f"{name} ({int(c)})" for name, c in zip(response["buckets"], fires.sum(1))]
    for ax, values, title, fmt in (
        (ax_f, share, "faces whose strongest level it is", "{:.0%}"),
        (ax_s, response["mean_score"], "mean best face score in the box", "{:.2f}"),
    ):
        ax.imshow(np.nan_to_num(values, nan=0.0), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(title, fontsize=10)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(
                    j, i, fmt.format(v), ha="center", va="center", fontsize=8, color="white" if v > 0.6 else "black"
                )
    return fig


def plot_detections(panels: Sequence[dict], columns: int = 4):
    """A grid of pictures with detections (red, landmarks coloured) and true faces (green outlines).

    Each panel: ``image`` (RGB), ``detections`` (a Detector output), ``truth`` [N, 4],
    ``input_size`` (height, width of the model's input image) and ``title``.
    """
    rows = -(-len(panels) // columns)
    fig = _figure((3.3 * min(columns, len(panels)), 3.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, min(columns, len(panels)), squeeze=False)).ravel()
    for ax, panel in zip(axes, panels):
        image = panel["image"]
        height, width = panel.get("input_size") or image.shape[:2]
        ax.imshow(
            viz.draw_detections(image, panel["detections"], input_size=(height, width)), extent=(0, width, height, 0)
        )
        _outline(ax, panel.get("truth", np.zeros((0, 4))))
        ax.set_title(panel.get("title", ""), fontsize=8)
    for ax in axes:
        ax.axis("off")
    return fig


def channel_image(latent, channel: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """One latent channel as an RGB picture (diverging colours, symmetric around 0), upsampled with
    nearest-neighbour to ``size`` (height, width; default 16x the grid), to draw detections on."""
    values = np.asarray(latent, dtype=np.float64).reshape(-1, *np.shape(latent)[-2:])[channel]
    scale = np.abs(values).max() or 1.0
    rgb = (colormaps["RdBu_r"](0.5 + 0.5 * values / scale)[..., :3] * 255).round().astype(np.uint8)
    height, width = size or (values.shape[0] * LATENT_STRIDE, values.shape[1] * LATENT_STRIDE)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_NEAREST)


def plot_feature_maps(maps: Mapping[str, np.ndarray], truth: np.ndarray, image_size: tuple[int, int]):
    """One panel per 2-D map (e.g. :func:`feature_energy` of P2..P6) with the true faces, in image pixels."""
    height, width = image_size
    fig = _figure((2.8 * len(maps), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(maps)))
    for ax, (name, values) in zip(axes, maps.items()):
        ax.imshow(values, cmap="inferno", extent=(0, width, height, 0), interpolation="nearest")
        _outline(ax, truth)
        ax.set_title(f"{name}: {values.shape[0]}x{values.shape[1]} (stride {height // values.shape[0]})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def feature_energy(
    maps: Mapping[str, torch.Tensor], names: Sequence[str] | None = None, index: int = 0
) -> dict[str, np.ndarray]:
    """Per named feature map (e.g. ``model.extract(x)``'s P2..P6), the L2 norm over channels [h, w]
    of image ``index``."""
    names = list(names if names is not None else maps)
    return {name: maps[name][index].detach().float().norm(dim=0).cpu().numpy() for name in names}
