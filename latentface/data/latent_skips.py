"""Section 2 of the latent report (``latentface stats --report``): skipped residuals, the values
equal to the predicted mean. Exact where the codec is known (``dct`` predicts 0; ``learned`` is re-run
on the split's images), else the labelled proxies of :mod:`latentface.data.latent_report`'s text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentface.codec import learned
from latentface.codec.learned import CHANNELS, LUMA_CHANNELS
from latentface.data.encode import one_thread
from latentface.data.layout import (
    CODEC_FILE,
    CodecMismatchError,
    check_codec_weights,
    image_path,
    read_codec_description,
)

#: Shares of repeats above those of rounding alone, or of equal values across rates, that count as real.
GRID_MARGIN = 0.01
#: The jitter (a fraction of the channel std) that shows how often rounding alone makes values repeat.
JITTER_FRACTION = 0.01


def percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def parts(channels: int) -> dict[str, slice]:
    """Luma 0-159 and chroma 160-255 for 256-channel latents; one part ``all`` otherwise."""
    if channels == CHANNELS:
        return {"luma": slice(0, LUMA_CHANNELS), "chroma": slice(LUMA_CHANNELS, channels)}
    return {"all": slice(0, channels)}


# ------------------------------------------------------------------ repeats within a channel


class LearnedSkips:
    """Exact skipped shares of ``learned``-codec latents: the codec's analysis and hyperprior re-run
    on each image give ``mu``, ``sigma`` and, per rate, the skip mask ``sigma * g < threshold``
    (:func:`latentface.codec.entropy.gain_quantise`), from the model's own modules.

    Per rate and part: ``skipped_share`` (the mask), ``equal_to_mean_share`` (stored values equal
    to ``mu``: skipped, or coded with ``r = 0``) and ``reencode_match_share`` (stored values equal
    to the re-encoded ``y_hat``: how far the first two describe these very files).
    """

    def __init__(self, model: learned.LearnedCodecModel | None = None):
        self.model = model or learned.get_model()
        self.acc: dict[int, dict] = {}

    def add(self, image: np.ndarray, latents: dict[int, np.ndarray]) -> None:
        """One RGB uint8 image and its stored latents ``{rate: [C, H, W]}``. Runs on one thread, as the
        dataset writers encode (a float reduction split over threads can round differently)."""
        with one_thread():
            self._add(image, latents)

    def _add(self, image: np.ndarray, latents: dict[int, np.ndarray]) -> None:
        rates = [rate for rate in latents if rate in learned.QUALITIES]
        for rate, coded in learned.code(image, rates, self.model).items():
            stored = latents[rate]
            y_hat, mu, skipped = coded["latent"][0], coded["mu"][0], coded["skipped"][0]
            if y_hat.shape != stored.shape:
                raise ValueError(
                    f"latent_{rate}.npy has shape {list(stored.shape)}, its image encodes to {list(y_hat.shape)}"
                )
            c = stored.shape[0]
            a = self.acc.setdefault(
                rate, {"skipped": np.zeros(c), "equal": np.zeros(c), "match": np.zeros(c), "cells": 0}
            )
            a["skipped"] += skipped.reshape(c, -1).sum(1)
            a["equal"] += (stored == mu.astype(stored.dtype)).reshape(c, -1).sum(1)
            a["match"] += (stored == y_hat.astype(stored.dtype)).reshape(c, -1).sum(1)
            a["cells"] += stored.shape[1] * stored.shape[2]

    def summary(self) -> dict[int, dict]:
        out = {}
        for rate, a in sorted(self.acc.items()):
            out[rate] = {}
            for name, sl in parts(len(a["skipped"])).items():
                n = a["cells"] * (sl.stop - sl.start)
                out[rate][name] = {
                    "skipped_share": float(a["skipped"][sl].sum() / n),
                    "equal_to_mean_share": float(a["equal"][sl].sum() / n),
                    "reencode_match_share": float(a["match"][sl].sum() / n),
                }
        return out


def _proxy(rate: int, rate_summary: dict, pair_summaries: dict[tuple[int, int], dict]) -> dict:
    """The honest stand-ins when the codec is unknown (see the module text): do values repeat
    within a channel beyond float16 rounding (a grid)? Are values equal at two rates?"""
    p = rate_summary["parts"]
    n = sum(q["channels"] for q in p.values())
    share = lambda k: sum(q[k] * q["channels"] for q in p.values()) / n  # noqa: E731
    repeated, base = share("repeated_share"), share("repeated_share_rounding")
    mode, mode_base = share("mode_share"), share("mode_share_rounding")
    grid = repeated - base > GRID_MARGIN
    rounding = f"{rate_summary['dtype']} rounding"
    if grid:
        within = (
            f"a per-channel grid (within-channel repeats {repeated:.1%}, {rounding} alone {base:.1%}; "
            f"the most frequent value per channel {mode:.1%})"
        )
    else:
        within = f"no per-channel grid (within-channel repeats {repeated:.1%}, {rounding} alone {base:.1%})"
    out = {
        "method": "proxy",
        "grid": bool(grid),
        "repeated_share": repeated,
        "repeated_share_rounding": base,
        "mode_share": mode,
        "mode_share_rounding": mode_base,
    }
    lower = [lo for lo, hi in pair_summaries if hi == rate]
    higher = [hi for lo, hi in pair_summaries if lo == rate]
    other = max(lower) if lower else (min(higher) if higher else None)
    unequal = ""
    if other is not None:
        lo, hi = min(rate, other), max(rate, other)
        if pair_summaries[(lo, hi)]["verdict"] == "identical":
            out["text"] = f"cannot be told: rates {lo} and {hi} are identical files (section 3)"
            return out
        equal = pair_summaries[(lo, hi)]["equal_share"]
        total = sum(equal[k] * p[k]["channels"] for k in equal) / n
        bound = "at most" if other < rate else "at least"
        out["cross_rate"] = {"with_rate": other, "bound": bound, "parts": equal, "share": total}
        if total > GRID_MARGIN:
            shares = "  ".join(f"{k} {percent(v)}" for k, v in equal.items())
            out["parts"] = {k: {"equal_to_mean_share": v} for k, v in equal.items()}
            out["text"] = f"proxy: {bound} {shares} (the values equal at rates {lo} and {hi}); {within}"
            return out
        unequal = f"hardly any value is equal at rates {lo} and {hi} ({total:.1%}), and "
    if grid:
        out["text"] = (
            f"proxy: {unequal}values lie on {within}: the skipped share only if the prediction is constant per channel"
        )
    else:
        out["text"] = (
            f"cannot be told: {unequal}values repeat within a channel no more than {rounding} "
            f"explains ({repeated:.1%}, rounding alone {base:.1%}); with y_hat = mu + r/g and mu varying "
            f"per position, skipped residuals are not a repeated value"
        )
    return out


#: Printed under the skipped shares when a proxy stands in for them.
PROXY_NOTE = (
    "proxy: where the prediction mu does not depend on the rate (one model, the rate set by a gain that grows with "
    "the rate, as in the learned codec), every value equal to mu at rate r is also mu at any lower rate, so the "
    "values equal at rate r and the next lower rate are the ones equal to mu at r plus the values coded alike at "
    "both ('at most'; exact when the gains' ratio is no simple fraction); the lowest rate is read against the next "
    "higher rate, whose share it has at least. Within one channel y_hat = mu + r/g with mu "
    "varying per position, so skipped residuals are not repeated values: repeats beyond rounding to the file's "
    f"precision (the same values jittered by {JITTER_FRACTION:.0%} of the channel std) only show that values lie on "
    "a grid."
)


def skipped_section(
    codec: str | None, summaries: dict, pair_summaries: dict, skips: LearnedSkips | None, why_not: str | None
) -> dict:
    """Section 2 of the report: exact shares, a labelled proxy, or why they cannot be told."""
    if skips is not None:
        return {
            str(r): {
                "method": "exact",
                "parts": p,
                "text": "exact: the learned codec's analysis + hyperprior re-run on the split's images",
            }
            for r, p in skips.summary().items()
        }
    if why_not is not None:
        return {r: {"method": "none", "text": f"cannot be told: {why_not}"} for r in summaries}
    if codec == "dct":
        return {
            r: {
                "method": "exact",
                "parts": {
                    n: {"skipped_share": q["zero_share"], "equal_to_mean_share": q["zero_share"]}
                    for n, q in s["parts"].items()
                },
                "text": "exact: the dct codec predicts 0, so the values equal to the prediction are the exact zeros",
            }
            for r, s in summaries.items()
        }
    out = {r: _proxy(int(r), s, pair_summaries) for r, s in summaries.items()}
    for k in out.values():
        if codec is not None:
            k["text"] = f"codec {codec!r} is not a built-in one; " + k["text"]
    return out


def learned_unusable(root: Path, split: str, keys: list[str]) -> str | None:
    """Why the learned codec cannot be re-run on these files (no images, other weights), or None."""
    missing = [k for k in keys if not image_path(root, split, k).is_file()]
    if missing:
        return f"no image for {len(missing)} of {len(keys)} latents (e.g. {image_path(root, split, missing[0])})"
    try:
        check_codec_weights(read_codec_description(root), root / CODEC_FILE)
    except (CodecMismatchError, learned.CodecWeightsError) as e:
        return str(e)
    return None
