"""The codec study (section ``codecs``): the same models on ``dct`` and on ``learned`` latents over
several seeds, the decoder a decode-then-detect pipeline pays, and the cost-accuracy frontier of
whole pipelines (latent: the detector alone; RGB: the codec's decoder plus the detector).

Every training run is stored on its own (one directory per codec, variant and seed) and the
section's results are written after each one, so an interrupted study resumes where it stopped
and a partial study still renders: rows report the seeds they have.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from latentface.codec import learned
from latentface.model import LatentRetinaFace, build_model
from latentface.tools.bench.accuracy import (
    FINAL_WEIGHTS,
    Variant,
    evaluate_run,
    prepare_data,
    run_summary,
    train_variant,
)
from latentface.tools.bench.measure import macs, model_input
from latentface.tools.bench.notes import size_ap
from latentface.tools.bench.profiles import LONG_SCHEDULES, Profile

#: Stands for the finished RGB run of the same codec and seed, which teaches a distillation variant.
TEACHER = "<rgb run of this codec and seed>"
#: The reconstruction lever's weight: its L1 on [-1, 1] pixels starts near 0.3 against a detection loss near 25.
RECONSTRUCT_WEIGHT = 1.0

#: JPEG AI's published decoder operating points (kMAC per pixel x 640 x 640 pixels), literature rows.
JPEG_AI_DECODERS = {
    "JPEG AI simple": 14e3 * 640 * 640,
    "JPEG AI base": 28e3 * 640 * 640,
    "JPEG AI high": 215e3 * 640 * 640,
}


@dataclass(frozen=True)
class StudyJob:
    """One training run of the study: a variant on one codec's latents with one seed."""

    codec: str
    variant: Variant
    seed: int

    @property
    def key(self) -> str:
        return f"{self.codec}/{self.variant.name}/{self.seed}"


def study_profile(profile: Profile) -> Profile:
    """The accuracy fields of ``profile`` replaced by the study's (smaller) data and schedule."""
    s = profile.study
    return dataclasses.replace(
        profile,
        data_size=s["size"],
        n_train=s["n_train"],
        n_val=s["n_val"],
        epochs=s["epochs"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        rates=(s["rate"],),
        main_rate=s["rate"],
        seed=0,
    )


def study_variants(profile: Profile) -> dict[str, Variant]:
    """The study's models by name: RGB, one latent model per bridge, the fast preset, the other anchor
    layout for both inputs, and the frontier's backbone x neck-width grid for both inputs."""
    s = profile.study
    anchors = {"anchors": s["anchors"]}
    other = s["other_anchors"]
    rate = s["rate"]
    v = {"rgb": Variant("rgb", f"RGB on images decoded from rate {rate}", input="rgb", overrides=anchors)}
    for bridge in s["bridges"]:
        v[f"latent_{bridge}"] = Variant(
            f"latent_{bridge}", f"latent, {bridge} bridge", bridge=bridge, overrides=anchors
        )
    v["fast"] = Variant("fast", "fast preset", preset="fast", keep_architecture=True, overrides=anchors)
    default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    v[f"latent_{default_bridge}_distill"] = Variant(
        f"latent_{default_bridge}_distill",
        f"latent, {default_bridge} bridge, taught by the RGB model of its seed (feature + soft-label distillation)",
        bridge=default_bridge,
        overrides={**anchors, "teacher": TEACHER},
    )
    v[f"latent_{default_bridge}_{other}"] = Variant(
        f"latent_{default_bridge}_{other}",
        f"latent, {default_bridge} bridge, '{other}' anchors",
        bridge=default_bridge,
        overrides={"anchors": other},
    )
    for term, off in (("feature", "distill_soft"), ("soft", "distill_feature")):  # each term alone
        name = f"latent_{default_bridge}_distill_{term}"
        v[name] = Variant(
            name,
            f"latent, {default_bridge} bridge, taught by the RGB model of its seed ({term} term only)",
            bridge=default_bridge,
            overrides={**anchors, "teacher": TEACHER, off: 0.0},
        )
    v[f"rgb_{other}"] = Variant(f"rgb_{other}", f"RGB, '{other}' anchors", input="rgb", overrides={"anchors": other})
    adaptive = {**anchors, "matching": "adaptive"}
    v[f"latent_{default_bridge}_adaptive"] = Variant(
        f"latent_{default_bridge}_adaptive",
        f"latent, {default_bridge} bridge, adaptive (ATSS) anchor matching",
        bridge=default_bridge,
        overrides=adaptive,
    )
    v["rgb_adaptive"] = Variant("rgb_adaptive", "RGB, adaptive (ATSS) anchor matching", input="rgb", overrides=adaptive)
    v[f"latent_{default_bridge}_reconstruct"] = Variant(
        f"latent_{default_bridge}_reconstruct",
        f"latent, {default_bridge} bridge, the image rebuilt from the bridge output (L1 x {RECONSTRUCT_WEIGHT:g})",
        bridge=default_bridge,
        overrides={**anchors, "reconstruct": RECONSTRUCT_WEIGHT},
    )
    v[f"latent_{default_bridge}_res"] = Variant(
        f"latent_{default_bridge}_res",
        f"latent, {default_bridge}_res bridge (layer1's residual blocks at stride 4)",
        bridge=f"{default_bridge}_res",
        overrides=anchors,
    )
    for ending, times in LONG_SCHEDULES.items():
        longer = {**anchors, "epochs": times * s["epochs"]}
        v[f"latent_{default_bridge}_{ending}"] = Variant(
            f"latent_{default_bridge}_{ending}",
            f"latent, {default_bridge} bridge, {times}x the study's epochs",
            bridge=default_bridge,
            overrides=longer,
        )
        v[f"rgb_{ending}"] = Variant(
            f"rgb_{ending}", f"RGB, {times}x the study's epochs", input="rgb", overrides=longer
        )
    for backbone, width in s["frontier"]:
        tag = f"r{backbone[6:]}_{width}"
        size = {"model": backbone, "out_channels": width, **anchors}
        v[f"rgb_{tag}"] = Variant(f"rgb_{tag}", f"RGB R{backbone[6:]}, {width}-wide neck", input="rgb", overrides=size)
        v[f"latent_{tag}"] = Variant(
            f"latent_{tag}",
            f"latent R{backbone[6:]}, {default_bridge} bridge, {width}-wide neck",
            bridge=default_bridge,
            overrides=size,
        )
    return v


def study_jobs(profile: Profile, runs: dict[str, dict] | None = None) -> list[StudyJob]:
    """Every run, most decisive first: RGB and the default bridge on one seed of both codecs; then, on the
    deciding codec (the last), the other seeds, every other bridge on the first seed (and, once those are
    stored in ``runs``, the other seeds of a bridge that beat the default there), fast and the anchor check
    (the default bridge and RGB with the other layout, every seed); the same rows on the other codec; the
    frontier; last the small-face levers, the deciding codec's first: each on the first seed (the teacher,
    adaptive matching and a longer schedule on both inputs, the reconstruction term, each distillation term
    alone, layer1's blocks in the bridge), then the other seeds of each lever trained at the same budget that
    beat the default there, and on the deciding codec the schedule again at 4x and 8x."""
    s = profile.study
    runs = runs or {}
    variants = study_variants(profile)
    default = f"latent_{LatentRetinaFace.PRESETS['default']['bridge']}"
    first, *more = s["seeds"]
    codecs = s["codecs"]
    jobs: list[StudyJob] = []

    def add(codec: str, name: str, seeds) -> None:
        jobs.extend(StudyJob(codec, variants[name], seed) for seed in seeds)

    def beats_default(codec: str, names: list[str]) -> str | None:
        """The one of ``names`` that beat the default on the first seed (all measured there), if one did."""
        leader = leading_variant(runs, codec, [default, *names], first)
        return None if leader == default else leader

    for codec in codecs:
        add(codec, "rgb", [first])
        add(codec, default, [first])
    for codec in codecs[::-1]:
        deciding = codec == codecs[-1]
        add(codec, "rgb", more)
        add(codec, default, more)
        others = [f"latent_{b}" for b in s["bridges"] if f"latent_{b}" != default]
        for name in others:
            add(codec, name, [first])
        if deciding and (leader := beats_default(codec, others)):
            add(codec, leader, more)
        add(codec, "fast", s["seeds"])
        if deciding:  # the anchor layout decides a default (and the target rows): both inputs on every seed
            add(codec, f"{default}_{s['other_anchors']}", s["seeds"])
            add(codec, f"rgb_{s['other_anchors']}", s["seeds"])
    for name in variants:
        if name.startswith(("rgb_r", "latent_r")):
            add(codecs[-1], name, [first])
    # the small-face levers, the deciding codec first: each on the first seed (the longer schedule on both
    # inputs, every distillation term alone, a deeper stride-4 map), then the other seeds of those that beat the
    # default there, and on the deciding codec 4x and 8x schedules on both inputs
    distill, adaptive, reconstruct = (f"{default}_{lever}" for lever in ("distill", "adaptive", "reconstruct"))
    base_schedule, *longer_schedules = LONG_SCHEDULES
    levers = (distill, adaptive, "rgb_adaptive", reconstruct, f"{default}_{base_schedule}", f"rgb_{base_schedule}")
    for codec in codecs[::-1]:
        for name in (*levers, f"{distill}_feature", f"{distill}_soft", f"{default}_res"):
            add(codec, name, [first])
        for lever in (distill, adaptive, reconstruct, f"{default}_res"):
            if beats_default(codec, [lever]):
                add(codec, lever, more)
                if lever == adaptive:
                    add(codec, "rgb_adaptive", more)
        if codec == codecs[-1]:  # the trend of the schedule, which narrowed the gap at 2x: 4x and 8x, both inputs
            for ending in longer_schedules:
                add(codec, f"{default}_{ending}", [first])
                add(codec, f"rgb_{ending}", [first])
    return jobs


def _seeded(variant: Variant, seed: int) -> Variant:
    """``variant``'s run on ``seed``: its own name and run folder (``<name>_s<seed>``), its own overrides."""
    return dataclasses.replace(variant, name=f"{variant.name}_s{seed}", overrides={**variant.overrides, "seed": seed})


def leading_variant(runs: dict[str, dict], codec: str, names: list[str], seed: int) -> str | None:
    """The variant of ``names`` with the best AP@0.5 on ``seed``, once every one has a stored run there."""
    keys = {name: f"{codec}/{name}/{seed}" for name in names}
    if not all(key in runs for key in keys.values()):
        return None
    return max(names, key=lambda name: runs[keys[name]]["ap"])


def decoder_macs(image: int = 640) -> float:
    """Multiply-adds of the learned codec's synthesis (latent -> RGB) for one ``image`` x ``image`` picture."""
    model = learned.get_model().eval()
    return float(macs(_Synthesis(model), torch.zeros(1, 256, image // 16, image // 16)))


class _Synthesis(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, y_hat):
        return self.model.synthesis(y_hat)


def _mean_spread(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise(runs: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Per codec and variant: mean, spread and count over seeds of AP@0.5, AP by size and COCO mAP."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for key, result in runs.items():
        codec, name, _seed = key.split("/")
        grouped.setdefault((codec, name), []).append(result)
    out: dict[str, dict[str, dict]] = {}

    for (codec, name), results in sorted(grouped.items()):
        sizes = results[0]["ap_by_size"].keys()
        out.setdefault(codec, {})[name] = {
            "description": results[0]["description"],
            "input": results[0]["input"],
            "macs_640": results[0]["macs_640"],
            "steps": results[0]["steps"],
            "ap": _mean_spread([r["ap"] for r in results]),
            "coco_map": _mean_spread([r["coco_map"] for r in results]),
            "ap_by_size": {
                size: _mean_spread([size_ap(r, size) for r in results if size_ap(r, size) is not None])
                for size in sizes
                if any(size_ap(r, size) is not None for r in results)
            },
            "seeds": sorted(int(k.split("/")[2]) for k, r in runs.items() if k.startswith(f"{codec}/{name}/")),
        }
    return out


def codecs_section(
    profile: Profile,
    runs: Path,
    device: torch.device,
    stored: dict | None = None,
    save: Callable[[dict], None] = lambda section: None,
    log=print,
    reuse_only: bool = False,
    max_jobs: int | None = None,
) -> dict:
    """Run (or reuse) every study job in order, calling ``save`` with the section after each one."""
    study = study_profile(profile)
    settings = json.loads(json.dumps(profile.study))  # tuples as lists, as a stored study reads back
    if stored and stored.get("settings") != settings:
        log("codecs: the stored study has other settings; its runs are evaluated again where their training matches")
        stored = None
    section = {
        "settings": settings,
        "decoder_macs_640": decoder_macs(640),
        "literature_decoders": JPEG_AI_DECODERS,
        "runs": dict((stored or {}).get("runs", {})),
    }
    roots = {codec: prepare_data(runs / f"data-{codec}", study, log, codec=codec) for codec in profile.study["codecs"]}
    variants = study_variants(profile)
    done, skipped = 0, set()
    while max_jobs is None or done < max_jobs:
        # the list is made again after each run: a bridge that beat the default earns more seeds
        finished = section["runs"].keys() | skipped
        job = next((j for j in study_jobs(profile, section["runs"]) if j.key not in finished), None)
        if job is None:
            break
        variant = _seeded(job.variant, job.seed)
        if variant.overrides.get("teacher") == TEACHER:  # the RGB run of the seed, trained again if it is gone
            teacher = _seeded(variants["rgb"], job.seed)
            teacher_dir = train_variant(teacher, study, roots[job.codec], runs / job.codec, device, log, reuse_only)
            if teacher_dir is None:
                skipped.add(job.key)
                continue
            variant.overrides["teacher"] = str(teacher_dir / FINAL_WEIGHTS)
        # a run stopped early (a signal) raises: the study stops there and resumes from its stored runs
        run_dir = train_variant(variant, study, roots[job.codec], runs / job.codec, device, log, reuse_only)
        if run_dir is None:
            skipped.add(job.key)
            continue
        result = evaluate_run(run_dir, roots[job.codec], study.main_rate, device)
        result.update(run_summary(run_dir), description=job.variant.description, input=job.variant.input)
        model = build_model(result["model"])
        result["macs_640"] = macs(model.eval(), model_input(model, 640, 1, torch.device("cpu")))
        result.pop("model")
        section["runs"][job.key] = result
        section["summary"] = summarise(section["runs"])
        save(section)
        done += 1
        log(f"codecs: {job.key} AP@0.5 {result['ap']:.3f} ({len(section['runs'])} runs stored)")
    section["summary"] = summarise(section["runs"])
    return section
