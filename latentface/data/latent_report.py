"""What to look at first in a split's latents (``latentface stats --report``).

Three questions, answered per rate from the files alone (no labels needed):

1. **Luma vs chroma.** JPEG AI's latent (and both built-in codecs') has a luma part
   (channels 0-159) and a chroma part (160-255) with different statistics: per part the
   mean, std, value range, share of exact zeros, live channels (per-channel std above
   :data:`LIVE_FRACTION` of the rate's rms channel std; the channels under the floor
   ``latentface stats`` raises stds to are counted too) and the median per-channel std ratio
   luma / chroma.
2. **Skipped residuals** (values equal to the predicted mean). JPEG AI codes
   ``r = round((y - mu) * g)`` and stores ``y_hat = mu + r / g``; where the predicted scale is
   small the residual is skipped (``y_hat = mu``). Told exactly where the codec is known:
   the ``learned`` built-in codec is re-run (analysis + hyperprior) on ``<split>/images``;
   the ``dct`` codec predicts 0, so the share is that of exact zeros. For data without
   ``codec.json`` only proxies exist, labelled as such. Where ``mu`` does not depend on the rate
   (one model, the rate set by the gain), a value equal to ``mu`` at a rate is ``mu`` at every
   lower rate too, so the share of values equal at a rate and the next lower one bounds the
   share equal to ``mu`` from above (exact unless coded values coincide). Within one channel,
   ``mu`` varies per position, so skipped positions are not a repeated value: how often values
   repeat, next to how often float16 rounding alone makes them repeat (the same values jittered
   by 1 % of the channel's std), only shows whether values lie on a grid. When neither proxy
   holds, the report says the share cannot be told rather than give a number.
3. **Are two rates of one image the same latent?** Per image and pair of rates, the
   relative L2 difference ``||a - b|| / ||b||`` (``b`` the higher rate) and the per-channel
   correlation; over images: identical (every value equal), near (relative difference under
   :data:`NEAR_THRESHOLD`) or far.
"""

from __future__ import annotations

import itertools
import os
import re
import textwrap
from pathlib import Path

import numpy as np
from tqdm import tqdm

from latentface.codec import learned
from latentface.data.dataset import load_latent, read_latent_header
from latentface.data.latent_skips import (
    JITTER_FRACTION,
    PROXY_NOTE,
    LearnedSkips,
    learned_unusable,
    parts,
    percent,
    skipped_section,
)
from latentface.data.layout import image_path, read_codec_name
from latentface.data.stats import STD_FLOOR_FRACTION
from latentface.util.io import read_image, write_json

REPORT_FILE = "latent_report.json"
#: Two rates of one image are "near" when ``||a - b|| / ||b||`` is below this.
NEAR_THRESHOLD = 0.05
#: Images read by default (the first ones in key order).
DEFAULT_IMAGES = 200
#: A channel is live when its std (over the split) is above this fraction of the rate's rms channel std.
LIVE_FRACTION = 0.1
_RATE = re.compile(r"latent_(\d+)\.npy")


def default_report_path(root: str | os.PathLike) -> Path:
    return Path(root) / REPORT_FILE


def find_samples(root: str | os.PathLike, split: str) -> dict[str, dict[int, Path]]:
    """``{key: {rate: latent file}}`` of ``<root>/<split>/latent/<key>/latent_<rate>.npy``, keys sorted."""
    folder = Path(root) / split / "latent"
    if not folder.is_dir():
        raise FileNotFoundError(f"no latent folder: {folder}")
    samples = {}
    for sample in sorted(p for p in folder.iterdir() if p.is_dir()):
        rates = {int(m.group(1)): f for f in sample.iterdir() if (m := _RATE.fullmatch(f.name))}
        if rates:
            samples[sample.name] = dict(sorted(rates.items()))
    if not samples:
        raise FileNotFoundError(f"{folder}: no latent_<rate>.npy files")
    return samples


def repeat_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``values`` [C, n]: how many values equal another value of the row, and how
    many equal the row's most frequent value."""
    c, n = values.shape
    s = np.sort(values, axis=1)
    eq = s[:, 1:] == s[:, :-1]
    repeated = np.zeros(s.shape, dtype=bool)
    repeated[:, 1:] |= eq
    repeated[:, :-1] |= eq
    run = np.cumsum(np.concatenate([np.ones((c, 1), dtype=bool), ~eq], axis=1), axis=1)  # run ids 1..n
    flat = run + (n + 1) * np.arange(c)[:, None]
    mode = np.bincount(flat.ravel(), minlength=c * (n + 1)).reshape(c, n + 1).max(axis=1)
    return repeated.sum(axis=1), mode


def jittered(values: np.ndarray, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """``values`` [C, n] moved by N(0, (1 % of the channel's std)^2) and stored as ``dtype`` again:
    values without a grid, rounded like the file's. A constant channel takes the std of the whole latent
    (1 if that is 0 too), so its repeats count as repeats beyond rounding."""
    std = values.std(axis=1)
    scale = JITTER_FRACTION * np.where(std > 0, std, float(values.std()) or 1.0)
    with np.errstate(over="ignore"):
        return (values + rng.normal(size=values.shape) * scale[:, None]).astype(dtype)


# ------------------------------------------------------------------ per-rate accumulation


class _RateStats:
    """Streaming per-channel sums of one rate's latents (float64)."""

    def __init__(self, channels: int):
        z = lambda: np.zeros(channels, dtype=np.float64)  # noqa: E731
        self.sum, self.sq, self.zeros = z(), z(), z()
        self.repeated, self.mode, self.repeated_base, self.mode_base = z(), z(), z(), z()
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.cells = 0  # values per channel so far
        self.images = 0
        self.dtypes: set[str] = set()

    def add(self, latent: np.ndarray, dtype: np.dtype, rng: np.random.Generator) -> None:
        v = latent.reshape(latent.shape[0], -1)
        w = v.astype(np.float64)
        self.sum += w.sum(axis=1)
        self.sq += np.square(w).sum(axis=1)
        self.zeros += (v == 0).sum(axis=1)
        self.min = np.minimum(self.min, w.min(axis=1))
        self.max = np.maximum(self.max, w.max(axis=1))
        stored = v.astype(dtype)  # the file's values (float32 holds float16 exactly)
        rep, mode = repeat_counts(stored)
        rep_b, mode_b = repeat_counts(jittered(w, dtype, rng))
        self.repeated += rep
        self.mode += mode
        self.repeated_base += rep_b
        self.mode_base += mode_b
        self.cells += v.shape[1]
        self.images += 1
        self.dtypes.add(np.dtype(dtype).name)

    def channel_std(self) -> np.ndarray:
        mean = self.sum / self.cells
        return np.sqrt(np.maximum(self.sq / self.cells - np.square(mean), 0))

    def summary(self) -> dict:
        std_c = self.channel_std()
        live = LIVE_FRACTION * float(np.sqrt(np.mean(np.square(std_c))))
        floor = max(STD_FLOOR_FRACTION * float(np.median(std_c)), 1e-6)  # what `latentface stats` raises stds to
        out: dict = {
            "images": self.images,
            "values_per_channel": self.cells,
            "dtype": "/".join(sorted(self.dtypes)),
            "live_floor": live,
            "normalisation_floor": floor,
            "parts": {},
        }
        for name, sl in parts(len(std_c)).items():
            n = self.cells * (sl.stop - sl.start)
            mean = float(self.sum[sl].sum() / n)
            out["parts"][name] = {
                "channels": sl.stop - sl.start,
                "channels_from": sl.start,
                "mean": mean,
                "std": float(np.sqrt(max(self.sq[sl].sum() / n - mean * mean, 0.0))),
                "min": float(self.min[sl].min()),
                "max": float(self.max[sl].max()),
                "zero_share": float(self.zeros[sl].sum() / n),
                "live_channels": int((std_c[sl] > live).sum()),
                "floored_channels": int((std_c[sl] < floor).sum()),
                "median_channel_std": float(np.median(std_c[sl])),
                "median_live_channel_std": float(np.median(live_std))
                if (live_std := std_c[sl][std_c[sl] > live]).size
                else 0.0,
                "repeated_share": float(self.repeated[sl].sum() / n),
                "repeated_share_rounding": float(self.repeated_base[sl].sum() / n),
                "mode_share": float(self.mode[sl].sum() / n),
                "mode_share_rounding": float(self.mode_base[sl].sum() / n),
            }
        p = out["parts"]
        if "luma" in p:
            for key, stat in (
                ("luma_chroma_std_ratio", "median_channel_std"),
                ("live_luma_chroma_std_ratio", "median_live_channel_std"),
            ):
                chroma = p["chroma"][stat]
                out[key] = p["luma"][stat] / chroma if chroma > 0 else None
        return out


# ------------------------------------------------------------------ skipped residuals


# ------------------------------------------------------------------ rate pairs


class _Prepared:
    """One latent [C, H, W] as float64 rows, centred per channel, with its norms: computed once per rate,
    used by every pair it is in."""

    def __init__(self, latent: np.ndarray):
        self.flat = latent.reshape(latent.shape[0], -1).astype(np.float64)
        self.centred = self.flat - self.flat.mean(axis=1, keepdims=True)
        self.norm = float(np.linalg.norm(self.flat))
        self.channel_norm = np.sqrt(np.einsum("ij,ij->i", self.centred, self.centred))


def compare_rates(a: np.ndarray | _Prepared, b: np.ndarray | _Prepared) -> dict:
    """Latent ``a`` against ``b`` (the reference, [C, H, W]): identical?, ``||a - b|| / ||b||``,
    the median per-channel correlation (channels constant in either left out; None if all are)
    and per part the share of values exactly equal in both."""
    a = a if isinstance(a, _Prepared) else _Prepared(a)
    b = b if isinstance(b, _Prepared) else _Prepared(b)
    equal = a.flat == b.flat
    identical = bool(equal.all())
    diff = float(np.linalg.norm(a.flat - b.flat))
    rel = 0.0 if diff == 0 else (diff / b.norm if b.norm > 0 else float("inf"))
    ok = (a.channel_norm > 0) & (b.channel_norm > 0)
    corr = np.einsum("ij,ij->i", a.centred[ok], b.centred[ok]) / (a.channel_norm[ok] * b.channel_norm[ok])
    return {
        "identical": identical,
        "relative_l2": rel,
        "channel_corr": float(np.median(corr)) if ok.any() else None,
        "equal_share": {name: float(equal[sl].mean()) for name, sl in parts(len(equal)).items()},
    }


def classify(comparison: dict, threshold: float = NEAR_THRESHOLD) -> str:
    if comparison["identical"]:
        return "identical"
    return "near" if comparison["relative_l2"] < threshold else "far"


def _pair_summary(rows: list[dict], threshold: float) -> dict:
    kinds = [classify(r, threshold) for r in rows]
    rel = np.array([r["relative_l2"] for r in rows])
    corr = [r["channel_corr"] for r in rows if r["channel_corr"] is not None]
    median_rel = float(np.median(rel))
    verdict = "identical" if all(k == "identical" for k in kinds) else "near" if median_rel < threshold else "far"
    return {
        "images": len(rows),
        "identical": kinds.count("identical"),
        "near": kinds.count("near"),
        "far": kinds.count("far"),
        "median_relative_l2": median_rel,
        "max_relative_l2": float(rel.max()),
        "median_channel_corr": float(np.median(corr)) if corr else None,
        "verdict": verdict,
        "equal_share": {
            name: float(np.mean([r["equal_share"][name] for r in rows])) for name in rows[0]["equal_share"]
        },
    }


# ------------------------------------------------------------------ the report


def latent_report(
    root: str | os.PathLike,
    split: str = "train",
    images: int | None = DEFAULT_IMAGES,
    near_threshold: float = NEAR_THRESHOLD,
    model: learned.LearnedCodecModel | None = None,
    progress: bool = False,
) -> dict:
    """The report of ``<root>/<split>`` over its first ``images`` samples (None: all); see the module text."""
    root = Path(root)
    samples = find_samples(root, split)
    keys = list(samples)[: images if images is not None else None]
    codec = read_codec_name(root)
    skips, why_not = None, None
    if codec == learned.NAME:
        why_not = learned_unusable(root, split, keys)
        if why_not is None:
            try:
                skips = LearnedSkips(model)
            except learned.CodecWeightsError as e:
                why_not = f"the learned codec cannot be loaded ({e})"
    rng = np.random.default_rng(0)
    rates: dict[int, _RateStats] = {}
    pairs: dict[tuple[int, int], list[dict]] = {}
    shape, first, sizes_seen = None, None, set()
    for key in tqdm(keys, desc=f"report {root.name}/{split}", unit="image", disable=not progress):
        latents = {}
        for rate, path in samples[key].items():
            dtype = read_latent_header(path)[1]
            latent = load_latent(path).numpy()  # checked: dtype, shape, finite
            if shape is not None and latent.shape[0] != shape[0]:
                raise ValueError(f"{path}: {latent.shape[0]} channels, {first} has {shape[0]}")
            if shape is None:
                shape, first = latent.shape, path
            sizes_seen.add(latent.shape[1:])
            if dtype == np.float64:  # load_latent gives float32: the repeats are counted on the file's values
                latent = np.load(path, allow_pickle=False).reshape(latent.shape)
            latents[rate] = latent.astype(dtype)
            rates.setdefault(rate, _RateStats(latent.shape[0])).add(latent, dtype, rng)
        sizes = {latent.shape for latent in latents.values()}
        if len(sizes) > 1:
            raise ValueError(
                f"{Path(samples[key][min(latents)]).parent}: its rates have different shapes {sorted(map(list, sizes))}"
            )
        prepared = {rate: _Prepared(latent) for rate, latent in latents.items()}
        for lo, hi in itertools.combinations(sorted(latents), 2):
            pairs.setdefault((lo, hi), []).append(compare_rates(prepared[lo], prepared[hi]))
        if skips is not None:
            try:
                skips.add(read_image(image_path(root, split, key)), latents)
            except ValueError as e:
                raise ValueError(f"{image_path(root, split, key)}: {e}") from None
    summaries = {str(r): s.summary() for r, s in sorted(rates.items())}
    pair_summaries = {pair: _pair_summary(rows, near_threshold) for pair, rows in sorted(pairs.items())}
    return {
        "root": str(root),
        "split": split,
        "images": len(keys),
        "images_in_split": len(samples),
        "codec": codec,
        "shape": list(shape),
        "sizes": sorted(map(list, sizes_seen)),
        "near_threshold": near_threshold,
        "rates": summaries,
        "skipped": skipped_section(codec, summaries, pair_summaries, skips, why_not),
        "rate_pairs": {f"{lo}-{hi}": p for (lo, hi), p in pair_summaries.items()},
    }


def save_report(report: dict, path: str | os.PathLike) -> Path:
    return write_json(path, report)  # atomic


# ------------------------------------------------------------------ the table


def _ratio(ratio: float | None, row: int, rate_summary: dict) -> str:
    if row or "luma" not in rate_summary["parts"]:
        return ""
    return "inf" if ratio is None else f"{ratio:.3g}"  # None: the chroma median is 0


def format_report(report: dict) -> str:
    """The report as a readable table (what ``latentface stats --report`` prints)."""
    codec = report["codec"] or "none (no codec.json: e.g. JPEG AI)"
    lines = [
        f"latent report: {report['root']}/{report['split']}, {report['images']} of {report['images_in_split']} "
        f"images, latents {report['shape']}, codec {codec}",
        "",
        f"1. values per rate and part (live: channel std above {LIVE_FRACTION:.0%} of the rate's rms channel "
        f"std; ch.std: median channel std, of all / of the live channels; ratio: luma / chroma of it)",
        f"{'rate':>4} {'part':<7}{'channels':>9}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}{'zeros':>8}"
        f"{'live':>6}{'ch.std':>10}{'ratio':>8}{'live std':>10}{'ratio':>8}",
    ]
    for rate, s in report["rates"].items():
        for i, (name, q) in enumerate(s["parts"].items()):
            last = q["channels_from"] + q["channels"] - 1
            lines.append(
                f"{rate if i == 0 else '':>4} {name:<7}{q['channels_from']:>4}-{last:<4}"
                f"{q['mean']:>10.4g}{q['std']:>10.4g}{q['min']:>10.4g}{q['max']:>10.4g}"
                f"{percent(q['zero_share']):>8}{q['live_channels']:>6}{q['median_channel_std']:>10.3g}"
                f"{_ratio(s.get('luma_chroma_std_ratio'), i, s):>8}{q['median_live_channel_std']:>10.3g}"
                f"{_ratio(s.get('live_luma_chroma_std_ratio'), i, s):>8}"
            )
    lines += ["", "2. skipped residuals (values equal to the predicted mean)"]
    for rate, k in report["skipped"].items():
        if k["method"] != "exact":
            lines.append(f"{rate:>4}: {k['text']}")
            continue
        shares = "  ".join(
            f"{n} {percent(q['skipped_share'])}"
            + (
                f" (equal to mu {percent(q['equal_to_mean_share'])},"
                f" re-encode match {percent(q['reencode_match_share'])})"
                if "reencode_match_share" in q
                else ""
            )
            for n, q in k["parts"].items()
        )
        lines.append(f"{rate:>4}: {shares} -- {k['text']}")
    if any(k["method"] == "proxy" for k in report["skipped"].values()):
        lines += textwrap.wrap(PROXY_NOTE, 110, initial_indent="  ", subsequent_indent="  ")
    lines += [
        "",
        f"3. rate pairs: ||a - b|| / ||b||, b the higher rate; identical = every value equal, near = "
        f"median under {report['near_threshold']:.0%}, else far",
    ]
    if not report["rate_pairs"]:
        lines.append("  (one rate per image: nothing to compare)")
    for pair, p in report["rate_pairs"].items():
        corr = "-" if p["median_channel_corr"] is None else f"{p['median_channel_corr']:.3f}"
        lines.append(
            f"{pair:>7}: {p['verdict']:<9} identical {p['identical']}, near {p['near']}, far {p['far']} "
            f"of {p['images']}; median {percent(p['median_relative_l2'])}, max {percent(p['max_relative_l2'])}, "
            f"median channel corr {corr}"
        )
    return "\n".join(lines)
