"""The codec study's part of ``BENCHMARKS.md``: accuracy on both codecs (mean and spread over seeds),
the decode a decode-then-detect pipeline pays, the cost-accuracy frontier and the study's targets."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from latentface.metrics.sizes import SIZE_BUCKETS
from latentface.model import LatentRetinaFace
from latentface.model.bridge import BRIDGES
from latentface.model.builder import preset_anchors
from latentface.tools.bench.profiles import LONG_SCHEDULES

FRONTIER_FIGURE = "frontier.png"
#: The codec the decisions are read from: the closer stand-in for JPEG AI.
DECIDING_CODEC = "learned"
#: Pipeline cost of a latent point that beats an RGB point: at most this share of the RGB pipeline's.
FRONTIER_RATIO = 0.5
#: How close (AP@0.5 points) the latent default must come to RGB on the deciding codec.
RGB_GAP = 0.03
OK = {True: "met", False: "**not met**"}
#: Name endings of the small-face levers' rows (training recipes, not architectures: off the frontier).
LEVERS = (
    "_distill",
    "_distill_feature",
    "_distill_soft",
    "_adaptive",
    "_reconstruct",
    *(f"_{e}" for e in LONG_SCHEDULES),
)


def _pm(stat: dict | None, digits: int = 3) -> str:
    """``mean ± std (n)``; one seed: the value alone."""
    if not stat:
        return "—"
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _default_name() -> str:
    return f"latent_{LatentRetinaFace.PRESETS['default']['bridge']}"


def target_names(settings: dict) -> tuple[str, str]:
    """The rows the targets read: the default preset as it trains (its bridge with its anchor layout, which the
    study measures either as its main layout or as the other one) and the RGB baseline with the same layout."""
    latent, layout = _default_name(), preset_anchors()
    if layout != settings.get("anchors") and layout == settings.get("other_anchors"):
        return f"{latent}_{layout}", f"rgb_{layout}"
    return latent, "rgb"


def pipeline_macs(row: dict, decoder_macs: float) -> float:
    """Whole-pipeline multiply-adds at 640x640: a latent detector alone; an RGB one after the decoder."""
    return row["macs_640"] + (decoder_macs if row["input"] == "rgb" else 0.0)


def frontier_points(study: dict, codec: str = DECIDING_CODEC) -> dict[str, list[tuple[str, float, float]]]:
    """(name, pipeline GMACs, mean AP@0.5) of every model of ``codec``, by input."""
    rows = study.get("summary", {}).get(codec, {})
    points: dict[str, list[tuple[str, float, float]]] = {"latent": [], "rgb": []}
    other = study["settings"]["other_anchors"]
    for name, row in rows.items():
        if name.endswith((f"_{other}", *LEVERS)):
            continue  # another anchor layout or training lever: not a point of the same training recipe
        points[row["input"]].append((name, pipeline_macs(row, study["decoder_macs_640"]) / 1e9, row["ap"]["mean"]))
    return points


def frontier_verdict(points: dict[str, list[tuple[str, float, float]]]) -> tuple[list[str], bool]:
    """For each RGB point the cheapest latent point at least as accurate at <= FRONTIER_RATIO of its cost."""
    lines, ok = [], bool(points["rgb"])
    for name, cost, ap in sorted(points["rgb"], key=lambda p: p[1]):
        better = [p for p in points["latent"] if p[2] >= ap and p[1] <= FRONTIER_RATIO * cost]
        if better:
            best = min(better, key=lambda p: p[1])
            lines.append(f"`{name}` ({cost:.1f} G, {ap:.3f}): `{best[0]}` ({best[1]:.1f} G, {best[2]:.3f})")
        else:
            ok = False
            lines.append(f"`{name}` ({cost:.1f} G, {ap:.3f}): none")
    return lines, ok


def codec_targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) of the codec study's targets, where its rows exist."""
    study = results.get("codecs")
    rows = (study or {}).get("summary", {}).get(DECIDING_CODEC, {})
    out = []
    latent_name, rgb_name = target_names(study["settings"]) if study else (None, None)
    default, rgb = rows.get(latent_name), rows.get(rgb_name)
    if default and rgb:
        gap = default["ap"]["mean"] - rgb["ap"]["mean"]
        out.append(
            (
                f"On `{DECIDING_CODEC}`: latent default within {RGB_GAP * 100:g} AP points of RGB at equal budget",
                f"{_pm(default['ap'])} vs {_pm(rgb['ap'])} ({gap:+.3f}; seeds {len(default['seeds'])}, "
                f"{len(rgb['seeds'])})",
                OK[gap >= -RGB_GAP],
            )
        )
    points = frontier_points(study) if study else {"rgb": []}
    if len(points["rgb"]) >= 2:
        lines, ok = frontier_verdict(points)
        out.append(
            (
                f"Frontier on `{DECIDING_CODEC}`: for every RGB point a latent point at least as accurate at "
                f"≤ {FRONTIER_RATIO:g}× its pipeline cost",
                "; ".join(lines),
                OK[ok],
            )
        )
    return out


def plot_frontier(study: dict, path: Path) -> Path:
    """AP@0.5 against whole-pipeline GMACs at 640x640 on the deciding codec; JPEG AI's decoders as offsets."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    points = frontier_points(study)
    decoder = study["decoder_macs_640"] / 1e9
    for kind, colour, label in (
        ("latent", "tab:blue", "latent (detector)"),
        ("rgb", "tab:red", "RGB (decoder + detector)"),
    ):
        pts = sorted(points[kind], key=lambda p: p[1])
        if not pts:
            continue
        ax.plot([p[1] for p in pts], [p[2] for p in pts], "o", color=colour, label=label)
        for name, x, y in pts:
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for (name, macs), marker in zip(study["literature_decoders"].items(), ("^", "s", "D")):
        if name == "JPEG AI simple":
            continue
        shift = macs / 1e9 - decoder
        pts = points["rgb"]
        ax.plot(
            [p[1] + shift for p in pts],
            [p[2] for p in pts],
            marker,
            mfc="none",
            color="tab:red",
            alpha=0.6,
            label=f"RGB after the {name} decoder ({macs / 1e9:.0f} G, literature)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("whole-pipeline GMACs at 640x640 (log)")
    ax.set_ylabel("AP@0.5 (mean over seeds)")
    ax.set_title(f"Cost vs accuracy on '{DECIDING_CODEC}' latents")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _decode_table(study: dict, cost: dict | None) -> list[str]:
    """Latent detectors against decode + RGB detector at 640x640 (the cost section's multiply-adds)."""
    decoders = {"learned (this repo)": study["decoder_macs_640"], **study["literature_decoders"]}
    lines = [
        "Decoders at 640x640: "
        + ", ".join(f"{name} {macs / 1e9:.1f} GMACs" for name, macs in decoders.items())
        + " (JPEG AI: the published kMAC/pixel of its operating points, literature).",
        "",
    ]
    if not cost or cost.get("image") != 640:
        return lines + ["(no 640x640 cost section stored: the detector rows are missing)", ""]
    rows = cost["rows"]
    base = rows["rgb_r50"]["macs"]
    head = ["latent model", "GMACs", "× RGB R50"] + [f"× ({name} + RGB R50)" for name in decoders]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ("latent_r50_default", "latent_r18", "fast"):
        if name not in rows:
            continue
        m = rows[name]["macs"]
        cells = [f"`{name}`", f"{m / 1e9:.2f}", f"{m / base:.2f}"] + [
            f"{m / (base + d):.2f}" for d in decoders.values()
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def codec_section(results: dict) -> list[str]:
    """Section 5 of the report: the codec study."""
    study = results["codecs"]
    s = study["settings"]
    p = results.get("settings", {})
    lines = [
        "## 5. Codec study: `dct` vs `learned` latents, several seeds",
        "",
        f"Synthetic set per codec: {s['n_train']} training / {s['n_val']} validation images at "
        f"{s['size']}x{s['size']}, latents at rate {s['rate']}, the same images for both codecs; the RGB models "
        f"train on the same latents decoded by the same codec. Every model: {p.get('backbone', 'resnet18')} and a "
        f"{p.get('out_channels', 64)}-wide neck unless its name or preset says otherwise, "
        f"'{s['anchors']}' anchors unless its name says otherwise, {s['epochs']} epochs "
        f"of batch {s['batch_size']}, SGD lr {s['lr']}, seeds {', '.join(map(str, s['seeds']))} (the target rows; "
        "other rows one seed): the same steps and data order for every model of one seed. AP@0.5 and COCO "
        "mAP: mean ± sample standard deviation over the seeds a row has. GMACs at 640x640; pipeline (on "
        f"`{DECIDING_CODEC}`): a latent model alone, an RGB model plus the learned codec's decoder.",
        "",
    ]
    head = ["model", "codec", "seeds", "steps", "teacher's steps", "AP@0.5", *SIZE_BUCKETS, "COCO mAP", "AP − RGB"]
    head += ["GMACs", "pipeline GMACs"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # a row is compared with RGB trained alike (the same anchor layout, matching or schedule) where the study has it
    alike_endings = (s["other_anchors"], "adaptive", *LONG_SCHEDULES)
    for codec, rows in sorted(study.get("summary", {}).items(), key=lambda kv: kv[0] != DECIDING_CODEC):
        for name, row in rows.items():
            by_size = row["ap_by_size"]
            alike = next((f"rgb_{end}" for end in alike_endings if name.endswith(f"_{end}")), None)
            rgb = rows.get(alike) if alike in rows else rows.get("rgb")
            gap = f"{row['ap']['mean'] - rgb['ap']['mean']:+.3f}" if rgb else "—"
            teacher = rows.get("rgb") if "_distill" in name else None  # the RGB run of each seed teaches
            cells = [
                f"`{name}`: {row['description']}",
                codec,
                str(len(row["seeds"])),
                str(row["steps"]),
                str(teacher["steps"]) if teacher else "—",
                _pm(row["ap"]),
                *[_pm(by_size.get(size)) for size in SIZE_BUCKETS],
                _pm(row["coco_map"]),
                gap,
                f"{row['macs_640'] / 1e9:.2f}",
                f"{pipeline_macs(row, study['decoder_macs_640']) / 1e9:.2f}" if codec == DECIDING_CODEC else "—",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Decode then detect vs detect on latents", ""]
    lines += _decode_table(study, results.get("cost"))
    if frontier_points(study)["rgb"]:
        lines += [f"![cost vs accuracy]({FRONTIER_FIGURE})", ""]
    return lines


def _size(row: dict, size: str) -> float | None:
    stat = row["ap_by_size"].get(size)
    return stat["mean"] if stat else None


def _paired_gap(runs: dict, codec: str, name: str, other: str, seeds=None) -> tuple[float, int]:
    """Mean AP@0.5 of ``name`` minus ``other`` over the seeds both have (of ``seeds`` when given), and
    their count: a lever's single seed is compared with the same seed of its reference, not with the
    reference's mean over seeds it never ran."""

    def ap(n: str) -> dict[int, float]:
        return {int(k.split("/")[2]): r["ap"] for k, r in runs.items() if k.split("/")[:2] == [codec, n]}

    a, b = ap(name), ap(other)
    shared = sorted(set(a) & set(b) & (set(seeds) if seeds is not None else set(a)))
    if not shared:
        return float("nan"), 0
    return sum(a[s] - b[s] for s in shared) / len(shared), len(shared)


def codec_notes(study: dict) -> list[str]:
    """Paragraphs on the codec study: the gap to RGB and where it is, what the teacher changes, which bridge
    leads on each codec, and why a target is missed where one is."""
    summary = study.get("summary", {})
    default = _default_name()
    latent_name, rgb_name = target_names(study["settings"])
    layout = preset_anchors()
    main = study["settings"].get("anchors", layout)
    out = []
    for codec in sorted(summary, key=lambda c: c != DECIDING_CODEC):
        rows = summary[codec]
        # the default preset as it trains where this codec has its rows (the anchor check runs on one codec)
        names, anchors = ((latent_name, rgb_name), layout) if latent_name in rows else ((default, "rgb"), main)
        lat, rgb = rows.get(names[0]), rows.get(names[1])
        if not (rgb and lat):
            continue
        gap = lat["ap"]["mean"] - rgb["ap"]["mean"]
        pairs = {  # face height -> (latent, RGB) where both were measured
            size: (_size(lat, size), _size(rgb, size))
            for size in SIZE_BUCKETS
            if _size(lat, size) is not None and _size(rgb, size) is not None
        }
        text = (
            f"On `{codec}` the default preset's bridge with '{anchors}' anchors (`{names[0]}`) reaches "
            f"{_pm(lat['ap'])} against RGB's {_pm(rgb['ap'])} (`{names[1]}`) "
            f"({gap * 100:+.1f} points; {len(lat['seeds'])} and {len(rgb['seeds'])} seeds); by face height "
            + ", ".join(f"{size} {a:.3f} vs {b:.3f}" for size, (a, b) in pairs.items())
            + "."
        )
        gaps = {size: a - b for size, (a, b) in pairs.items()}
        if codec == DECIDING_CODEC and gap < -RGB_GAP and gaps:
            widest = min(gaps, key=gaps.get)
            text += (
                f" The target (within {RGB_GAP * 100:g} points) is not met at this budget; the widest gap is in "
                f"{widest} faces ({gaps[widest] * 100:+.1f} points)."
            )
        levers = (
            ("distill", "taught by the RGB model of its seed"),
            ("adaptive", "with adaptive (ATSS) matching"),
            ("reconstruct", "rebuilding the image from its bridge output"),
        )
        base = rows.get(default)  # the levers train with the study's main layout: compared with it
        runs = study.get("runs", {})
        for lever, how in levers:
            row = rows.get(f"{default}_{lever}")
            if row and base:
                lift, seeds = _paired_gap(runs, codec, f"{default}_{lever}", default)
                text += (
                    f" `{default}` {how} reaches {_pm(row['ap'])} ({lift * 100:+.1f} points over the same student "
                    f"alone on the same {seeds} seed(s); tiny faces {_size(row, 'tiny') or 0:.3f} vs "
                    f"{_size(base, 'tiny') or 0:.3f})."
                )
        if rows.get("rgb_adaptive"):
            lift, seeds = _paired_gap(runs, codec, "rgb_adaptive", "rgb")
            text += (
                f" RGB with adaptive matching: {_pm(rows['rgb_adaptive']['ap'])} ({lift * 100:+.1f} points on the "
                f"same {seeds} seed(s))."
            )
        for ending in LONG_SCHEDULES:
            longer, rgb_longer = rows.get(f"{default}_{ending}"), rows.get(f"rgb_{ending}")
            if not (longer and rgb_longer and base and rows.get("rgb")):
                continue
            gap, _ = _paired_gap(runs, codec, f"{default}_{ending}", f"rgb_{ending}")
            before, seeds = _paired_gap(runs, codec, default, "rgb", seeds=longer["seeds"])
            text += (
                f" Trained {longer['steps'] // base['steps']}x as long, `{default}` reaches {_pm(longer['ap'])} and "
                f"RGB {_pm(rgb_longer['ap'])}: a gap of {gap * 100:+.1f} points against {before * 100:+.1f} at the "
                f"study's schedule on the same {seeds} seed(s) (tiny faces {_size(longer, 'tiny') or 0:.3f} vs "
                f"{_size(rgb_longer, 'tiny') or 0:.3f})."
            )
        out.append(text)
    first = study["settings"]["seeds"][0]
    first_seed: dict[str, dict[str, float]] = {}  # codec -> {bridge: AP} on the first seed (every bridge has it)
    for key, run in study.get("runs", {}).items():
        codec, name, seed = key.split("/")
        bridge = name[len("latent_") :] if name.startswith("latent_") else None
        if int(seed) == first and bridge in BRIDGES:
            first_seed.setdefault(codec, {})[bridge] = run["ap"]
    leaders = {codec: max(aps.items(), key=lambda kv: kv[1]) for codec, aps in first_seed.items() if len(aps) > 1}
    if len(leaders) == 2:
        names = {best[0] for best in leaders.values()}
        text = "Best bridge by AP@0.5 (first seed): " + ", ".join(
            f"`{codec}` {name} ({ap:.3f})" for codec, (name, ap) in sorted(leaders.items())
        )
        text += (
            "; the same on both codecs."
            if len(names) == 1
            else f"; they differ, and the choice follows `{DECIDING_CODEC}` (the Kaggle kernel on data without "
            "codec.json uses the default preset's bridge)."
        )
        out.append(text)
    out += _preset_notes(study, default)
    out += _frontier_notes(study)
    return out


def _frontier_notes(study: dict) -> list[str]:
    """Where the frontier target fails: per RGB point without a cheap-enough latent match, the best latent
    point under the cost cap and how far it falls short."""
    points = frontier_points(study)
    missed = []
    for name, cost, ap in sorted(points["rgb"], key=lambda p: p[1]):
        cheap = [p for p in points["latent"] if p[1] <= FRONTIER_RATIO * cost]
        if cheap and not any(p[2] >= ap for p in cheap):
            best = max(cheap, key=lambda p: p[2])
            missed.append(f"`{name}` {ap:.3f}: best `{best[0]}` {best[2]:.3f} ({(best[2] - ap) * 100:+.1f} points)")
    if not missed:
        return []
    return [
        f"Frontier on `{DECIDING_CODEC}`: RGB points without a latent point as accurate at <= {FRONTIER_RATIO:g}x "
        "their pipeline cost, against the most accurate latent point under that cost: " + "; ".join(missed) + ". "
        "The shortfall is the latent-vs-RGB gap at equal architecture above."
    ]


def _preset_notes(study: dict, default: str) -> list[str]:
    """The `fast` preset against the default bridge, and the anchor check, on the deciding codec."""
    rows = study.get("summary", {}).get(DECIDING_CODEC, {})
    out = []
    fast, lat = rows.get("fast"), rows.get(default)
    if fast and lat:
        out.append(
            f"On `{DECIDING_CODEC}` the `fast` preset reaches {_pm(fast['ap'])} ({len(fast['seeds'])} seeds) at "
            f"{fast['macs_640'] / 1e9:.2f} GMACs, against {_pm(lat['ap'])} for `{default}` at the study's width "
            f"({lat['macs_640'] / 1e9:.2f} GMACs): {(fast['ap']['mean'] - lat['ap']['mean']) * 100:+.1f} points at "
            f"x {fast['macs_640'] / lat['macs_640']:.2f} the cost."
        )
    study_anchors, other = study["settings"]["anchors"], study["settings"]["other_anchors"]
    parts = [
        f"`{name}` '{study_anchors}' {_pm(a['ap'])} vs '{other}' {_pm(b['ap'])} ({len(a['seeds'])} and "
        f"{len(b['seeds'])} seeds)"
        for name, a, b in ((n, rows.get(n), rows.get(f"{n}_{other}")) for n in (default, "rgb"))
        if a and b
    ]
    if parts:
        out.append(
            f"Anchor layout on `{DECIDING_CODEC}`: " + "; ".join(parts) + f". The `default` preset trains with "
            f"'{preset_anchors()}' anchors, the `seed` preset with 'six' (its own training code's)."
        )
    return out
