"""``BENCHMARKS.md`` and its figures, from the stored results alone: tables, targets, plots and the
notes under them. Every number the report prints is read from (or computed from) the results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from latentface.model import LatentRetinaFace
from latentface.tools.bench.codec_report import FRONTIER_FIGURE, codec_section, codec_targets, plot_frontier
from latentface.tools.bench.notes import notes as generated_notes
from latentface.tools.bench.profiles import BASELINE, BRIDGE_BUDGET, FAST_BUDGET, PROFILES, REPORT_FILE, Profile

COST_FIGURE = "cost.png"
RATES_FIGURE = "rate_accuracy.png"


def fmt(value: float | None, digits: int = 2) -> str:
    """``value`` to ``digits`` decimals; a dash for a number that was not measured."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def settings(results: dict) -> dict[str, Any]:
    """The profile settings the results were measured with: stored with them (older files: the named profile's)."""
    if results.get("settings"):
        return results["settings"]
    return (PROFILES.get(results.get("profile")) or Profile("unknown")).to_dict()


def cost_table(cost: dict) -> list[str]:
    rows, base = cost["rows"], cost["rows"][BASELINE]
    cuda = any("cuda_amp_latency_b1" in r for r in rows.values())
    mi = cost.get("measure_image", cost["image"])
    head = ["model", "params (M)", "GMACs", "× RGB", "input stage GMACs", f"activations @{mi} (MB)", "× RGB"]
    for b in cost["batches"]:
        head += [f"{cost['device'].upper()} ms b{b} @{mi}", "× RGB"]
    head += [f"fastest repeat ms b1 @{mi}", "× RGB"]
    if cuda:
        for b in cost["batches"]:
            head += [f"CUDA AMP ms b{b}", f"img/s b{b}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [
            f"`{name}`: {r['description']}",
            fmt(r["params"] / 1e6, 1),
            fmt(r["macs"] / 1e9),
            fmt(ratio(r["macs"], base["macs"])),
            fmt(r["input_stage_macs"] / 1e9),
            fmt(r["activation_bytes"] / 2**20, 0),
            fmt(ratio(r["activation_bytes"], base["activation_bytes"])),
        ]
        for b in cost["batches"]:
            t = r.get(f"latency_b{b}")
            cells += [fmt(t * 1e3 if t else None, 0), fmt(ratio(t, base.get(f"latency_b{b}")))]
        fastest, base_fastest = min(r.get("latency_b1_all") or [None]), min(base.get("latency_b1_all") or [None])
        cells += [fmt(fastest * 1e3 if fastest else None, 0), fmt(ratio(fastest, base_fastest))]
        if cuda:
            for b in cost["batches"]:
                t = r.get(f"cuda_amp_latency_b{b}")
                cells += [fmt(t * 1e3 if t else None, 1), fmt(b / t if t else None, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _acc_cells(r: dict) -> list[str]:
    sizes = r["ap_by_size"]
    return [
        fmt(r["ap"], 3),
        *(
            fmt(sizes.get(k, {}).get("ap") if isinstance(sizes.get(k), dict) else sizes.get(k), 3)
            for k in ("tiny", "small", "medium", "large")
        ),
        fmt(r["coco_map"], 3),
    ]


def accuracy_table(acc: dict) -> list[str]:
    base = acc["rgb"]["ap"]
    head = [
        "model",
        "AP@0.5",
        "tiny <16",
        "small 16-32",
        "medium 32-96",
        "large >96",
        "COCO mAP",
        "AP − RGB",
        "GMACs @640",
        "steps",
        "wall s (side info)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in acc.items():
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{name}`: {r['description']}",
                    *_acc_cells(r),
                    fmt(r["ap"] - base, 3),
                    fmt(r["macs_640"] / 1e9),
                    str(r["steps"]),
                    fmt(r["wall_s"], 0),
                ]
            )
            + " |"
        )
    return lines


def plot_rates(rates: dict, path: Path) -> Path:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for label, curve in rates["curves"].items():
        xs = [int(r) for r in curve]
        ax.plot(xs, [curve[str(r)] for r in xs], marker="o", label=label, linestyle="--" if "RGB" in label else "-")
    ax.set_xlabel("rate (latent_<rate>.npy; built-in codec quality)")
    ax.set_ylabel("AP@0.5 (WIDER protocol)")
    ax.set_title("Rate vs accuracy (synthetic validation split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_cost(cost: dict, path: Path) -> Path:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, r in cost["rows"].items():
        if r.get("latency_b1") is None:
            continue
        ax.scatter(r["macs"] / 1e9, r["latency_b1"] * 1e3, color="tab:red" if name.startswith("rgb") else "tab:blue")
        ax.annotate(
            name, (r["macs"] / 1e9, r["latency_b1"] * 1e3), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.set_xlabel(f"GMACs at {cost['image']}x{cost['image']}")
    ax.set_ylabel(f"{cost['device'].upper()} latency, batch 1 (ms)")
    ax.set_title("Cost: RGB (red) vs latent (blue)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_figures(results: dict, out: Path) -> list[Path]:
    """The figures of every stored section that has one."""
    written = []
    if "cost" in results:
        written.append(plot_cost(results["cost"], out / COST_FIGURE))
    if "rates" in results:
        written.append(plot_rates(results["rates"], out / RATES_FIGURE))
    if results.get("codecs", {}).get("summary"):
        written.append(plot_frontier(results["codecs"], out / FRONTIER_FIGURE))
    return written


def targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target that this run's sections measured."""
    out = []
    cost, acc = results.get("cost"), results.get("accuracy")
    default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    ok = {True: "met", False: "**not met**"}
    if cost and cost["image"] == 640:
        rows = cost["rows"]
        d, base = rows["latent_r50_default"], rows[BASELINE]
        bridge_ok = d["input_stage_macs"] <= BRIDGE_BUDGET
        text = f"{d['input_stage_macs'] / 1e9:.2f} GMACs (seed {rows['latent_r50_seed']['input_stage_macs'] / 1e9:.2f})"
        verdict = ok[bridge_ok]
        if acc and f"latent_{default_bridge}" in acc and "latent_bilinear" in acc:
            gap = acc[f"latent_{default_bridge}"]["ap"] - acc["latent_bilinear"]["ap"]
            text += f"; AP {gap:+.3f} vs seed bridge"
            verdict = ok[bridge_ok and gap >= -0.01]
        else:
            verdict += " on cost; AP not measured in this run"
        out.append(
            (f"Bridge ≤ {BRIDGE_BUDGET / 1e9:g} GMACs at 640, AP within 1 point of the seed bridge", text, verdict)
        )
        mac_r, lat_r = d["macs"] / base["macs"], ratio(d.get("latency_b1"), base.get("latency_b1"))
        fast_r = ratio(min(d.get("latency_b1_all") or [None]), min(base.get("latency_b1_all") or [None]))
        out.append(
            (
                "Default latent R50: fewer MACs and lower CPU latency than the RGB baseline",
                f"MACs × {mac_r:.2f}, CPU latency × {fmt(lat_r)} (median), × {fmt(fast_r)} (fastest repeat)",
                ok[mac_r < 1 and lat_r is not None and lat_r < 1 and fast_r is not None and fast_r < 1],
            )
        )
        f = rows["fast"]
        text = (
            f"{f['macs'] / 1e9:.2f} GMACs (× {f['macs'] / rows['rgb_r50_3level']['macs']:.2f} of the 3-level RGB R50)"
        )
        verdict = ok[f["macs"] <= FAST_BUDGET]
        if acc and "fast" in acc and f"latent_{default_bridge}" in acc:
            gap = acc["fast"]["ap"] - acc[f"latent_{default_bridge}"]["ap"]
            text += f"; AP {gap:+.3f} vs the default's bridge at the proxy width"
            verdict = ok[f["macs"] <= FAST_BUDGET and gap >= -0.02]
        else:
            verdict += " on cost; AP not measured in this run"
        out.append(
            (f"fast preset ≤ {FAST_BUDGET / 1e9:g} GMACs at 640, AP within 2 points of the default", text, verdict)
        )
    rate = settings(results)["main_rate"]
    if acc and "rgb" in acc and f"latent_{default_bridge}" in acc:
        gap = acc[f"latent_{default_bridge}"]["ap"] - acc["rgb"]["ap"]
        text = f"{acc[f'latent_{default_bridge}']['ap']:.3f} vs {acc['rgb']['ap']:.3f} ({gap:+.3f})"
        six = (acc.get(f"latent_{default_bridge}_six"), acc.get("rgb_six"))
        if all(six):  # the same comparison with the anchors for tiny faces on both sides
            six_gap = six[0]["ap"] - six[1]["ap"]
            text += f"; both with 'six' anchors {six[0]['ap']:.3f} vs {six[1]['ap']:.3f} ({six_gap:+.3f})"
            gap = max(gap, six_gap)
        out.append((f"Latent AP@0.5 within 1 point of RGB at equal budget (rate {rate})", text, ok[gap >= -0.01]))
    elif cost:
        out.append(
            (f"Latent AP@0.5 within 1 point of RGB at equal budget (rate {rate})", "not measured in this run", "open")
        )
    return out + codec_targets(results)


def _cost_section(c: dict) -> list[str]:
    mi = c.get("measure_image", c["image"])
    lines = [
        f"## 1. Inference cost at {c['image']}x{c['image']}",
        "",
        f"Per image. MACs at {c['image']}x{c['image']} from `torch.utils.flop_counter` (FLOPs / 2); "
        f"*input stage* is the bridge for latent models and the stem + layer1 it replaces for RGB ones. "
        f"Activations and latency measured at **{mi}x{mi}**"
        + (
            f" (× {(mi / c['image']) ** 2:.2f} of the pixels: what this CPU could time for every main row in "
            "one run; `--full` measures at full size)"
            if mi != c["image"]
            else ""
        )
        + ". Activations: peak bytes of "
        "activation tensors alive at once in one batch-1 forward (every tensor the forward creates, "
        f"followed until released; weights excluded). Latency: median of {c['repeats']} repeats on "
        f"{c['device'].upper()} ({c['threads']} thread(s)), the models taking turns within each repeat; "
        f"batch-{max(c['batches'])} latency only for the main rows. Ratios are to `{BASELINE}`, "
        "measured in the same run.",
        "",
    ]
    return lines + cost_table(c) + ["", f"![cost]({COST_FIGURE})", ""]


def _train_section(t: dict, p: dict) -> list[str]:
    s = t["steps"]
    lines = [
        f"## 2. Training cost ({t['backbone']}, {t['out_channels']}-wide neck, {t['image']}x{t['image']}, "
        f"batch {t['batch']})",
        "",
        "One SGD step (forward, loss, backward, update), median of "
        f"{t['repeats']} repeats in turns. Memory: bytes autograd saves for backward (distinct "
        "tensors) plus weights, gradients and momentum.",
        "",
        "| input | s/step | × RGB | images/s | saved for backward (MB) | × RGB | weights+grads+momentum (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("rgb", "latent"):
        r = s[name]
        lines.append(
            f"| {name} | {r['step_s']:.3f} | {r['step_s'] / s['rgb']['step_s']:.2f} | "
            f"{r['images_per_s']:.2f} | "
            f"{r['saved_bytes'] / 2**20:.0f} | {r['saved_bytes'] / s['rgb']['saved_bytes']:.2f} | "
            f"{r['state_bytes'] / 2**20:.0f} |"
        )
    ld = t["loading"]
    batch = ld["latent"].get("batch", p.get("loading_batch"))
    lines += [
        "",
        f"Data loading ({ld['latent']['workers']} worker(s), batch {batch}, shuffled): latents "
        f"{ld['latent']['per_s']:.1f}/s vs decoded PNG images {ld['rgb']['per_s']:.1f}/s "
        f"(× {ld['latent']['per_s'] / ld['rgb']['per_s']:.2f}) at "
        f"{ld['latent']['image']}x{ld['latent']['image']}.",
        "",
    ]
    return lines


def _accuracy_section(a: dict, p: dict) -> list[str]:
    lines = [
        "## 3. Accuracy at equal budget",
        "",
        f"Synthetic set: {p['n_train']} training / {p['n_val']} validation images at "
        f"{p['data_size']}x{p['data_size']}, latents at rate {p['main_rate']}; the RGB baseline trains on the "
        f"same latents decoded. Every model: {p['backbone']} (unless its preset says otherwise), "
        f"{p['out_channels']}-wide neck, {p['epochs']} epochs of batch {p['batch_size']} (the same steps, data "
        f"order and seed), SGD lr {p['lr']}. WIDER-protocol AP@0.5 (by face height) and COCO mAP@[.5:.95] on "
        "the validation split. Wall time is side information only: the machine was shared.",
        "",
    ]
    return lines + accuracy_table(a) + [""]


def _rates_section(r: dict) -> list[str]:
    lines = [
        "## 4. Rate vs accuracy",
        "",
        "AP@0.5 on the validation split at each rate (RGB: images decoded from "
        "that rate's latents), same schedule as section 3.",
        "",
        "| model | " + " | ".join(f"rate {x}" for x in r["rates"]) + " |",
        "|---|" + "---|" * len(r["rates"]),
    ]
    for label, curve in r["curves"].items():
        lines.append(f"| {label} | " + " | ".join(fmt(curve[str(x)], 3) for x in r["rates"]) + " |")
    return lines + ["", f"![rate vs accuracy]({RATES_FIGURE})", ""]


def render_report(results: dict, notes: str | None = None) -> str:
    """The text of ``BENCHMARKS.md``; ``notes`` defaults to the discussion generated from the results."""
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{results.get('command', 'latentface bench')}` (profile `{results['profile']}`).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('gpu', 'no GPU')}; torch {m['torch']}, "
        f"Python {m['python']}, {m['threads']} torch thread(s); {m['platform']}.",
        "",
    ]
    verdicts = targets(results)
    if verdicts:
        lines += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
        lines += [f"| {t} | {v} | {ok} |" for t, v, ok in verdicts]
        lines.append("")
    p = settings(results)
    if "cost" in results:
        lines += _cost_section(results["cost"])
    if "train" in results:
        lines += _train_section(results["train"], p)
    if "accuracy" in results:
        lines += _accuracy_section(results["accuracy"], p)
    if "rates" in results:
        lines += _rates_section(results["rates"])
    if "codecs" in results:
        lines += codec_section(results)
    notes = generated_notes(results, p) if notes is None else notes
    if notes.strip():
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def write_report(results: dict, out: Path, notes: str | None = None) -> Path:
    """``BENCHMARKS.md`` from the stored results of every section (figures: :func:`plot_figures`)."""
    path = Path(out) / REPORT_FILE
    path.write_text(render_report(results, notes), encoding="utf-8")
    return path
