"""The discussion under the benchmark tables, written from the stored results: every number in it is
read from them, so regenerating the report after a re-measurement cannot leave a stale figure behind."""

from __future__ import annotations

import textwrap
from typing import Any

from latentface.model import LatentRetinaFace
from latentface.tools.bench.codec_report import codec_notes
from latentface.tools.bench.profiles import BASELINE, BRIDGE_BUDGET, FAST_BUDGET, recipe_schedule
from latentface.training.recipes import RECIPES

SIZES = {"tiny": "under 16 px", "small": "at 16-32 px", "medium": "at 32-96 px", "large": "above 96 px"}

#: What each bridge does (no numbers: those come from the cost rows).
BRIDGE_TEXT = {
    "bilinear": "the original design's bridge: a bilinear upsampling to stride 4 and a 3x3 convolution there",
    "pixelshuffle": "per cell; each stride-4 pixel sees one latent cell only",
    "context": "a 3x3 convolution over neighbouring cells at the latent's resolution, then 1x1 + PixelShuffle(4)",
    "context_dw": "`context` plus a depthwise 3x3 at stride 4 across cell borders",
    "codec": "a 1x1 + PixelShuffle(4) initialised to the built-in codec's inverse transform, i.e. the decoded "
    "image in space-to-depth form at stride 4, then a stem-like 3x3 convolution and a 1x1 to layer1's width",
    "codec_res": "`codec` with ResNet-18's layer1 (two residual blocks) after its stem, at stride 4",
}


def _g(macs: float) -> str:
    return f"{macs / 1e9:.2f}"


def _points(gap: float) -> str:
    return f"{abs(gap) * 100:.1f} points"


def size_ap(result: dict, size: str) -> float | None:
    """AP of one face-size bucket of an evaluation result (stored as ``{"ap", "faces"}`` or as a number)."""
    value = result.get("ap_by_size", {}).get(size)
    return value.get("ap") if isinstance(value, dict) else value


def _by_size(a: dict, b: dict) -> str:
    """``a`` vs ``b`` AP for every face-size bucket both have."""
    parts = [
        f"{size_ap(a, k):.3f} vs {size_ap(b, k):.3f} {label}"
        for k, label in SIZES.items()
        if size_ap(a, k) is not None and size_ap(b, k) is not None
    ]
    return ", ".join(parts)


def _widest_gap(a: dict, b: dict) -> str | None:
    gaps = {k: size_ap(b, k) - size_ap(a, k) for k in SIZES if size_ap(a, k) is not None and size_ap(b, k) is not None}
    return max(gaps, key=gaps.get) if gaps else None


def _bridge_rows(rows: dict) -> dict[str, dict]:
    """Bridge name -> its R50 cost row (the seed preset's row for ``bilinear``, the default's for its bridge)."""
    default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    found = {}
    for name, row in rows.items():
        if name == "latent_r50_seed":
            found[LatentRetinaFace.PRESETS["seed"]["bridge"]] = row
        elif name == "latent_r50_default":
            found[default_bridge] = row
        elif name.startswith("latent_r50_"):
            found[name[len("latent_r50_") :]] = row
    return found


def cost_notes(cost: dict) -> list[str]:
    rows, out = cost["rows"], []
    base, default = rows.get(BASELINE), rows.get("latent_r50_default")
    seed, fast = rows.get("latent_r50_seed"), rows.get("fast")
    if not (base and default):
        return out
    default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    text = (
        f"**Where the cost goes.** At {cost['image']}x{cost['image']} the RGB baseline's stem and layer1 cost "
        f"{_g(base['input_stage_macs'])} of its {_g(base['macs'])} GMACs: the neck at stride 4, not the "
        "backbone's first stage, dominates. The latent model therefore saves what its bridge saves over the "
        f"stem and layer1 ({_g(base['macs'] - default['macs'])} GMACs with the `{default_bridge}` bridge: "
        f"× {default['macs'] / base['macs']:.2f} of the RGB baseline)"
    )
    if seed:
        dearer = seed["macs"] > base["macs"]
        text += (
            f"; the original design's bilinear bridge ({_g(seed['input_stage_macs'])} GMACs) costs "
            f"{'more' if seed['input_stage_macs'] > base['input_stage_macs'] else 'less'} than what it replaces, "
            f"so the seed model is {'dearer' if dearer else 'cheaper'} than RGB "
            f"(× {seed['macs'] / base['macs']:.2f})"
        )
    text += "."
    if fast:
        text += (
            f" The `fast` preset ({_g(fast['macs'])} GMACs, × {fast['macs'] / base['macs']:.2f}) gets "
            f"{'under' if fast['macs'] <= FAST_BUDGET else 'to'} the {FAST_BUDGET / 1e9:g}-GMAC budget by cutting "
            "the backbone too: fewer residual blocks per stage, a narrower neck, and depthwise-separable FPN "
            "merge and SSH convolutions on P2 (`light_p2`); its row names its settings."
        )
    out.append(text)
    if default.get("latency_b1") and base.get("latency_b1"):
        fastest = min(default["latency_b1_all"]) / min(base["latency_b1_all"])
        text = (
            f"**Latency.** In this run ({cost['device'].upper()}, {cost['threads']} torch thread(s), "
            f"{cost['repeats']} repeats, the models taking turns) the default latent R50 runs in "
            f"× {default['latency_b1'] / base['latency_b1']:.2f} of the RGB baseline's time (median; "
            f"× {fastest:.2f} in the fastest repeat) for × {default['macs'] / base['macs']:.2f} of its "
            "multiply-adds"
        )
        if fast and fast.get("latency_b1"):
            text += f"; the `fast` preset in × {fast['latency_b1'] / base['latency_b1']:.2f}"
        text += (
            ". On a loaded machine the medians of a few repeats carry noise of tens of percent, which is why "
            "the fastest repeat is shown too; `--full` on a GPU gives firm ratios at both batch sizes."
        )
        out.append(text)
    bridges = _bridge_rows(rows)
    if bridges:
        items = []
        for name, row in bridges.items():
            over = row["input_stage_macs"] / BRIDGE_BUDGET
            budget = f", × {over:.2f} the budget" if over > 1 else ""
            what = BRIDGE_TEXT.get(name)
            items.append(f"`{name}` ({what + '; ' if what else ''}{_g(row['input_stage_macs'])} GMACs{budget})")
        out.append(
            f"**Bridges measured** (all kept in `latentface.model.bridge.BRIDGES`; input stage at "
            f"{cost['image']}x{cost['image']} against the {BRIDGE_BUDGET / 1e9:g}-GMAC budget): "
            + ", ".join(items)
            + "."
        )
    return out


def accuracy_notes(acc: dict, p: dict, cost: dict | None) -> list[str]:
    default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    rgb, default = acc.get("rgb"), acc.get(f"latent_{default_bridge}")
    out = []
    if not (rgb and default):
        return out
    demo = recipe_schedule("demo")
    what = "The demo's data and schedule" if all(p.get(k) == v for k, v in demo.items()) else "The profile's schedule"
    walls = [r["wall_s"] for r in acc.values() if r.get("wall_s")]
    text = (
        f"**Accuracy at equal budget (section 3).** {what}: {p['n_train']} synthetic images at "
        f"{p['data_size']}x{p['data_size']}, {p['backbone']} with a {p['out_channels']}-wide neck, "
        f"{rgb['steps']} SGD steps of batch {p['batch_size']}, one seed"
    )
    if walls:
        text += f"; {min(walls) / 60:.0f}-{max(walls) / 60:.0f} minutes of training per model on this machine"
    bridges = {
        name[len("latent_") :]: r
        for name, r in acc.items()
        if name.startswith("latent_") and name[len("latent_") :] in BRIDGE_TEXT
    }
    text += "."
    if len(bridges) > 1:
        ranked = sorted(bridges, key=lambda b: -bridges[b]["ap"])
        text += (
            " The bridge decides most of the latent model's accuracy: `"
            + ranked[0]
            + f"` scores {bridges[ranked[0]]['ap']:.3f}, then "
            + ", ".join(f"`{b}` {bridges[b]['ap']:.3f}" for b in ranked[1:])
        )
        rows = _bridge_rows(cost["rows"]) if cost else {}
        if ranked[0] in rows and "bilinear" in rows and ranked[0] != "bilinear":
            text += (
                f", at × {rows[ranked[0]]['input_stage_macs'] / rows['bilinear']['input_stage_macs']:.2f} of "
                "the original bilinear bridge's cost"
            )
        users = [name for name, preset in LatentRetinaFace.PRESETS.items() if preset.get("bridge") == ranked[0]]
        if users:
            text += f"; the {' and '.join(f'`{u}`' for u in users)} preset{'s use' if len(users) > 1 else ' uses'} it."
        else:
            text += "."
    if "fast" in acc:
        gap = acc["fast"]["ap"] - default["ap"]
        text += (
            f" The `fast` preset (its own backbone and width) scores {acc['fast']['ap']:.3f}, {_points(gap)} "
            f"{'above' if gap >= 0 else 'below'} the default's bridge at the proxy width."
        )
    gap = default["ap"] - rgb["ap"]
    widest = _widest_gap(default, rgb)
    text += (
        f" The gap to RGB ({rgb['ap']:.3f}) is {_points(gap)}; by face height, latent vs RGB: "
        f"{_by_size(default, rgb)}" + (f", widest {SIZES[widest]}." if widest else ".")
    )
    out.append(text)
    six, rgb_six = acc.get(f"latent_{default_bridge}_six"), acc.get("rgb_six")
    if six and rgb_six:
        demo_anchors = " the demo uses it;" if RECIPES["demo"].train.get("anchors") == "six" else ""
        text = (
            f"The `six` anchor layout (base 8 px, two aspect ratios;{demo_anchors} aimed at tiny faces) gives "
            f"latent {six['ap']:.3f} (tiny {size_ap(six, 'tiny'):.3f}) and RGB {rgb_six['ap']:.3f} "
            f"(tiny {size_ap(rgb_six, 'tiny'):.3f}), against {default['ap']:.3f} and {rgb['ap']:.3f} with the "
            f"default anchors. With the same anchors the gap is {_points(six['ap'] - rgb_six['ap'])}; by face "
            f"height {_by_size(six, rgb_six)}."
        )
        out.append(text)
    if p.get("name") != "full":
        out.append(
            "What a latent cell loses about a face smaller than itself is the open problem; not tried here "
            "for lack of CPU time: auxiliary losses (reconstructing the decoded image, matching an RGB "
            "model's layer1) and longer schedules (`--full` trains one of twice the epochs):\n\n"
            "    latentface bench --full --device cuda     # the full-size study: every bridge, six anchors, "
            "a longer schedule"
        )
    return out


def rates_notes(rates: dict) -> list[str]:
    curves = rates["curves"]
    if not curves:
        return []
    spans = {label: (min(c.values()), max(c.values())) for label, c in curves.items()}
    lo, hi = min(rates["rates"]), max(rates["rates"])
    parts = [f"{label}: {a:.3f}-{b:.3f} ({_points(b - a)} apart)" for label, (a, b) in spans.items()]
    return [
        f"**Rate vs accuracy (section 4).** AP@0.5 over the rates {lo} to {hi}, lowest to highest: "
        + "; ".join(parts)
        + ". The built-in codec's rates differ only in quantisation; JPEG AI's come from "
        "different encoder networks, so on retina-modify this section is the one to re-run."
    ]


def notes(results: dict, p: dict[str, Any]) -> str:
    """The ``## Notes`` section of the report ('' when no section has enough numbers to discuss)."""
    paragraphs = []
    if "cost" in results:
        paragraphs += cost_notes(results["cost"])
    if "accuracy" in results:
        paragraphs += accuracy_notes(results["accuracy"], p, results.get("cost"))
    if "rates" in results:
        paragraphs += rates_notes(results["rates"])
    if "codecs" in results:
        paragraphs += codec_notes(results["codecs"])
    if not paragraphs:
        return ""
    wrapped = [
        "\n".join(
            textwrap.fill(line, 110, break_on_hyphens=False) if not line.startswith(" ") else line
            for line in p.split("\n")
        )
        for p in paragraphs
    ]
    return "\n\n".join(["## Notes", *wrapped])
