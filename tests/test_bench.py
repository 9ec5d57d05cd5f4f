import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from latentface.cli import bench as bench_cli
from latentface.cli import main
from latentface.model import LatentRetinaFace, build_model
from latentface.model.bridge import CodecBridge, build_bridge
from latentface.tools import bench
from latentface.training.recipes import RECIPES
from latentface.util.io import read_json

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_cli.configure_parser(parser)
    return parser.parse_args(list(argv))


def test_macs_and_parameters_are_hand_computable():
    conv = nn.Conv2d(4, 8, 1, bias=False)
    assert bench.macs(conv, torch.randn(1, 4, 10, 10)) == 4 * 8 * 100
    assert bench.parameters(conv) == 32
    # The context bridge of a ResNet-50 at 640x640: 3x3 256->128 and 1x1 128->16*256 at 40x40.
    bridge = build_bridge("context", 256, 256).eval()
    assert bench.macs(bridge, torch.randn(1, 256, 40, 40)) == 256 * 128 * 9 * 1600 + 128 * 4096 * 1600


def test_activation_peak_follows_tensors_until_released():
    x = torch.randn(1, 4, 8, 8)  # 1024 bytes
    # While the second ReLU runs, its input and its output are alive: 2 KiB, however long the chain.
    assert bench.activation_peak(nn.Sequential(nn.ReLU(), nn.ReLU()), x) == 2048
    assert bench.activation_peak(nn.Sequential(*[nn.ReLU() for _ in range(5)]), x) == 2048
    # In-place ops allocate nothing; weights and the input are not activations.
    assert bench.activation_peak(nn.Sequential(nn.ReLU(inplace=True)), x.clone()) == 0


def test_latency_takes_turns_and_returns_every_repeat():
    calls = []
    cases = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    times = bench.latency(cases, repeats=3, warmup=1)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in times.values() for t in v)


def test_effective_receptive_field_of_per_cell_and_context_bridges():
    torch.manual_seed(0)
    per_cell = bench.effective_receptive_field(build_bridge("pixelshuffle", 16, 8), in_channels=16, cells=5)
    assert per_cell[2, 2] == pytest.approx(1.0) and per_cell.sum() == pytest.approx(1.0)
    context = bench.effective_receptive_field(build_bridge("context", 16, 8), in_channels=16, cells=5)
    assert (context[1:4, 1:4] > 0).all() and context[0].sum() == 0 and context[:, 4].sum() == 0


def test_codec_bridge_starts_as_the_dct_decoder_and_survives_renormalisation():
    from latentface.codec import dct

    rng = np.random.default_rng(0)
    image = (rng.random((32, 48, 3)) * 255).astype(np.uint8)
    latent = dct.encode(image, 100)[0].astype(np.float32)
    bridge = CodecBridge(256, 64)
    x = torch.from_numpy(latent)[None]
    with torch.no_grad():
        s2d = bridge.shuffle(bridge.decode(x))[0]  # [48, 8, 12]: 4x4 patches of (Y, Cb, Cr) / 64
    luma = s2d[:16].reshape(4, 4, 8, 12).permute(2, 0, 3, 1).reshape(32, 48) * 64
    coefficients = latent[: dct.LUMA_CHANNELS] * 16
    exact = dct._block_idct(coefficients, dct._D16, dct._LUMA_FLAT)
    assert np.abs(luma.numpy() - exact).max() < 1e-3
    # The model's input normalisation is folded in: the bridge still decodes the raw latent.
    model = LatentRetinaFace(backbone="resnet18", bridge="codec", out_channels=16).eval()
    before = model.bridge.decode(model.normalize(x)).detach()
    model.set_normalization(torch.randn(256), torch.rand(256) + 0.5)
    after = model.bridge.decode(model.normalize(x)).detach()
    assert torch.allclose(before, after, atol=1e-3)


def test_codec_res_bridge_is_the_codec_bridge_plus_layer1s_two_blocks_and_starts_as_the_dct_decoder():
    x = torch.randn(1, 256, 40, 40)  # a 640x640 image
    plain, deep = CodecBridge(256, 64).eval(), build_bridge("codec_res", 256, 64).eval()
    # two BasicBlocks of two 3x3 convolutions, 64 -> 64 channels, on 160x160 pixels
    assert bench.macs(deep, x) - bench.macs(plain, x) == 2 * 2 * 160 * 160 * 64 * 64 * 9
    assert isinstance(deep, CodecBridge) and torch.equal(deep.decode.weight, plain.decode.weight)
    assert deep(x).shape == plain(x).shape == (1, 64, 160, 160)


def test_fast_preset_is_under_10_gmacs_and_its_options_round_trip():
    fast = LatentRetinaFace.preset("fast").eval()
    assert fast.config["blocks"] == 1 and fast.config["light_p2"] is True
    assert len(fast.layer2) == len(fast.layer3) == len(fast.layer4) == 1
    assert bench.macs(fast, torch.randn(1, 256, 40, 40)) <= 10e9
    rebuilt = build_model(fast.config)
    assert rebuilt.config == fast.config
    assert set(rebuilt.state_dict()) == set(fast.state_dict())
    with pytest.raises(ValueError, match="blocks must be at least 1"):
        LatentRetinaFace(backbone="resnet18", blocks=0)


def _table(md: str, heading: str) -> list[list[str]]:
    section = md.split(heading, 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    end = next((i for i, line in enumerate(rows[2:], 2) if not line.startswith("| `")), len(rows))
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows[:end]]


@pytest.mark.slow  # builds and times every cost row: half a minute on 2 cores
def test_quick_cost_section_reports_measured_ratios(tmp_path, capsys):
    args = _args(
        "--sections",
        "cost",
        "--quick",
        "--out",
        str(tmp_path),
        "--runs",
        str(tmp_path / "runs"),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--fresh",
    )
    assert bench_cli.run(args) == 0
    md = (tmp_path / "BENCHMARKS.md").read_text()
    stored = json.loads((tmp_path / "benchmarks.json").read_text())
    assert (tmp_path / "cost.png").stat().st_size > 0
    assert "Machine:" in md and stored["machine"]["torch"] == torch.__version__
    table = _table(md, "## 1. Inference cost")
    head, rows = table[0], {r[0].split("`")[1]: r for r in table[2:]}
    assert head[:4] == ["model", "params (M)", "GMACs", "× RGB"] and "CPU ms b1 @64" in head and "CPU ms b2 @64" in head
    assert set(rows) == set(stored["cost"]["rows"])
    base = stored["cost"]["rows"]["rgb_r50"]
    i_mac, i_lat = head.index("× RGB"), head.index("CPU ms b1 @64") + 1
    assert rows["rgb_r50"][i_mac] == "1.00" and rows["rgb_r50"][i_lat] == "1.00"
    timed = set(bench.PROFILES["quick"].latency_rows)
    for name, r in stored["cost"]["rows"].items():
        assert rows[name][i_mac] == f"{r['macs'] / base['macs']:.2f}"
        assert r["activation_bytes"] > 0
        if name in timed:
            assert r["latency_b1"] == pytest.approx(float(np.median(r["latency_b1_all"])))
            assert rows[name][i_lat] == f"{r['latency_b1'] / base['latency_b1']:.2f}"
        else:  # not timed in this profile: a dash, never a made-up number
            assert "latency_b1" not in r and rows[name][i_lat] == "—"
    # Batch 2 was measured for the main rows only.
    assert rows["latent_r50_default"][head.index("CPU ms b2 @64")] != "—"
    assert rows["latent_r18"][head.index("CPU ms b2 @64")] == "—"
    # The RGB stem + layer1 of a ResNet-50 is what the bridges are measured against.
    assert base["input_stage_macs"] == bench.macs(
        build_model({"kind": "rgb", "backbone": "resnet50"}).stem, torch.zeros(1, 3, 64, 64)
    )


def _fake_results() -> dict:
    def acc(ap):
        return {
            "ap": ap,
            "ap_by_size": {k: {"ap": ap, "faces": 3} for k in ("tiny", "small", "medium", "large")},
            "coco_map": ap / 2,
            "faces": 12,
            "steps": 10,
            "wall_s": 5.0,
            "macs_640": 5e9,
            "description": "d",
        }

    rows = {
        name: {
            "description": name,
            "params": 1e6,
            "macs": m,
            "input_stage_macs": s,
            "activation_bytes": 2**20,
            "latency_b1": lat,
            "latency_b1_all": [lat, 2 * lat],
        }
        for name, m, s, lat in [
            ("rgb_r50", 76e9, 6.4e9, 1.0),
            ("rgb_r50_3level", 44e9, 6.4e9, 0.8),
            ("latent_r50_seed", 85e9, 15e9, 1.2),
            ("latent_r50_default", 71e9, 1.3e9, 0.9),
            ("fast", 9e9, 0.7e9, 0.2),
        ]
    }
    return {
        "profile": "cpu",
        "machine": bench.machine(),
        "cost": {"rows": rows, "image": 640, "batches": [1], "repeats": 2, "device": "cpu", "threads": 1},
        "accuracy": {"rgb": acc(0.80), "latent_bilinear": acc(0.70), "latent_codec": acc(0.695), "fast": acc(0.60)},
        "rates": {"rates": [50, 75], "curves": {"latent": {"50": 0.5, "75": 0.7}}},
    }


def test_targets_and_report_from_numbers(tmp_path):
    results = _fake_results()
    verdicts = {t.split(" ")[0]: (measured, ok) for t, measured, ok in bench.targets(results)}
    assert verdicts["Bridge"] == ("1.30 GMACs (seed 15.00); AP -0.005 vs seed bridge", "met")
    assert verdicts["Default"] == ("MACs × 0.93, CPU latency × 0.90 (median), × 0.90 (fastest repeat)", "met")
    assert verdicts["fast"][1] == "**not met**"  # 0.60 is 9.5 points below the default's bridge
    assert verdicts["Latent"] == ("0.695 vs 0.800 (-0.105)", "**not met**")
    md = bench.write_report(results, tmp_path).read_text()
    acc = _table(md, "## 3. Accuracy")
    assert acc[0][:2] == ["model", "AP@0.5"] and len(acc) == 2 + 4
    assert [r[7] for r in acc[2:]] == ["0.000", "-0.100", "-0.105", "-0.200"]  # AP - RGB
    assert re.search(r"\| latent \| 0\.500 \| 0\.700 \|", md)


def test_unknown_section_is_a_clear_error(tmp_path, capsys):
    args = _args("--sections", "cost,speed", "--quick", "--out", str(tmp_path), "--device", "cpu")
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['speed'\]"):
        bench_cli.run(args)
    # the command line's error boundary turns it into one line and exit status 2
    assert main(["bench", "--sections", "cost,speed", "--quick", "--out", str(tmp_path)]) == 2
    assert "latentface bench: error: unknown section(s) ['speed']" in capsys.readouterr().err


def test_latent_vs_rgb_target_also_compares_the_six_anchor_pair():
    def ap(value):
        return {"ap": value}

    acc = {"rgb": ap(0.90), "latent_codec": ap(0.80)}
    assert bench.targets({"accuracy": acc})[-1][1:] == ("0.800 vs 0.900 (-0.100)", "**not met**")
    acc |= {"latent_codec_six": ap(0.945), "rgb_six": ap(0.95)}
    assert bench.targets({"accuracy": acc})[-1][1:] == (
        "0.800 vs 0.900 (-0.100); both with 'six' anchors 0.945 vs 0.950 (-0.005)",
        "met",
    )  # one pair within a point


def test_report_only_rerenders_the_stored_results_without_measuring(tmp_path, capsys):
    results = _fake_results()
    (tmp_path / "benchmarks.json").write_text(json.dumps(results))
    assert main(["bench", "--report_only", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert md == bench.render_report(results)
    assert (tmp_path / "cost.png").stat().st_size > 0 and (tmp_path / "rate_accuracy.png").stat().st_size > 0
    assert json.loads((tmp_path / "benchmarks.json").read_text()) == results  # the results are only read


def test_a_stored_section_keeps_what_another_bench_process_stored_meanwhile(tmp_path):
    from latentface.tools.bench.runner import store_section

    results = _fake_results()
    mine = {k: v for k, v in results.items() if k != "cost"}  # a study process started before cost was stored
    (tmp_path / "benchmarks.json").write_text(json.dumps(results))  # another process stored cost meanwhile
    accuracy = {**results["accuracy"], "rgb": {**results["accuracy"]["rgb"], "ap": 0.85}}  # its new measurement
    merged = store_section(mine, "accuracy", accuracy, tmp_path)
    assert merged["cost"] == results["cost"] and merged["accuracy"] == accuracy
    assert json.loads((tmp_path / "benchmarks.json").read_text()) == merged
    assert (tmp_path / "BENCHMARKS.md").read_text() == bench.render_report(merged)
    assert "cost" not in store_section(mine, "accuracy", accuracy, tmp_path, merge=False)  # --fresh forgets it


def test_notes_are_written_from_the_results():
    results = _fake_results()
    md = bench.render_report(results)
    notes = " ".join(md.split("## Notes", 1)[1].split())  # one line: the report wraps its paragraphs
    assert "The gap to RGB (0.800) is 10.5 points" in notes  # the default's bridge vs RGB: 0.695 vs 0.800
    assert "`bilinear` scores 0.700, then `codec` 0.695" in notes
    results["accuracy"]["latent_codec"]["ap"] = 0.75
    notes = " ".join(bench.render_report(results).split("## Notes", 1)[1].split())
    assert "The gap to RGB (0.800) is 5.0 points" in notes and "`codec` scores 0.750, then `bilinear` 0.700" in notes


def test_docs_benchmarks_md_is_the_report_of_docs_benchmarks_json():
    """Every number in docs/BENCHMARKS.md comes from docs/benchmarks.json: the file is exactly its rendering
    (regenerate it with `latentface bench --report_only`)."""
    assert (DOCS / "BENCHMARKS.md").read_text() == bench.render_report(read_json(DOCS / "benchmarks.json"))


def test_cpu_profile_trains_on_the_demo_recipe():
    cpu, demo = bench.PROFILES["cpu"], RECIPES["demo"]
    assert (cpu.data_size, cpu.n_train, cpu.n_val) == (demo.size, demo.n_train, demo.n_val)
    assert (cpu.epochs, cpu.batch_size, cpu.lr) == (demo.train["epochs"], demo.train["batch_size"], demo.train["lr"])


def test_codec_study_runs_the_target_rows_first_on_every_seed_and_both_codecs():
    jobs = [job.key for job in bench.study_jobs(bench.PROFILES["cpu"])]
    assert jobs[:4] == ["dct/rgb/0", "dct/latent_codec/0", "learned/rgb/0", "learned/latent_codec/0"]
    bridges = [f"latent_{b}/0" for b in ("bilinear", "context", "pixelshuffle", "context_dw")]
    for start, codec in ((4, "learned"), (21, "dct")):  # the deciding codec's rows first, then the other's
        rows = [f"{codec}/{name}/{seed}" for name in ("rgb", "latent_codec") for seed in (1, 2)]
        rows += [f"{codec}/{b}" for b in bridges] + [f"{codec}/fast/{seed}" for seed in (0, 1, 2)]
        assert jobs[start : start + 11] == rows
    assert jobs[15:21] == [f"learned/{name}_default/{seed}" for name in ("latent_codec", "rgb") for seed in (0, 1, 2)]
    frontier = jobs[32:38]
    assert all(j.startswith("learned/") and j.split("/")[1].startswith(("rgb_r", "latent_r")) for j in frontier)
    levers = ("distill", "adaptive", "rgb_adaptive", "reconstruct", "long", "rgb_long")
    levers += ("distill_feature", "distill_soft", "res")  # each term alone, the deeper bridge
    for start, codec in ((38, "learned"), (51, "dct")):  # the deciding codec's levers first, then the other's
        rows = [f"{codec}/{'' if v.startswith('rgb') else 'latent_codec_'}{v}/0" for v in levers]
        assert jobs[start : start + 9] == rows
    longer = [f"learned/{name}_{end}/0" for end in ("longer", "longest") for name in ("latent_codec", "rgb")]
    assert jobs[47:51] == longer  # the schedule's trend at 4x and 8x
    assert len(jobs) == len(set(jobs)) == 60  # every run once


def test_a_bridge_or_lever_that_beats_the_default_on_the_first_seed_earns_the_other_seeds_next():
    profile = bench.PROFILES["cpu"]
    names = ("codec", "bilinear", "context", "pixelshuffle")
    runs = {f"learned/latent_{b}/0": {"ap": ap} for b, ap in zip(names, (0.30, 0.45, 0.40, 0.20))}
    jobs = [job.key for job in bench.study_jobs(profile, runs)]
    assert jobs == [job.key for job in bench.study_jobs(profile)]  # context_dw not yet measured: no leader
    runs["learned/latent_context_dw/0"] = {"ap": 0.44}
    jobs = [job.key for job in bench.study_jobs(profile, runs)]
    at = jobs.index("learned/latent_context_dw/0") + 1
    assert jobs[at : at + 3] == ["learned/latent_bilinear/1", "learned/latent_bilinear/2", "learned/fast/0"]
    runs["learned/latent_codec/0"] = {"ap": 0.5}  # the default leads: nothing added
    assert [job.key for job in bench.study_jobs(profile, runs)] == [job.key for job in bench.study_jobs(profile)]
    runs["learned/latent_codec_adaptive/0"] = {"ap": 0.55}  # adaptive matching beats it: both inputs, all seeds
    runs["learned/latent_codec_distill/0"] = {"ap": 0.52}  # so does the teacher
    jobs = [job.key for job in bench.study_jobs(profile, runs)]
    at = jobs.index("learned/latent_codec_res/0") + 1
    assert jobs[at : at + 6] == [
        f"learned/{v}/{seed}"
        for v in ("latent_codec_distill", "latent_codec_adaptive", "rgb_adaptive")
        for seed in (1, 2)
    ]
    assert jobs[at + 6 : at + 8] == ["learned/latent_codec_longer/0", "learned/rgb_longer/0"]
    assert jobs[at + 10] == "dct/latent_codec_distill/0"  # after 8x, the other codec's levers


def test_codec_study_summary_is_the_mean_and_sample_spread_over_seeds():
    def run(ap, tiny):
        by_size = {"tiny": {"ap": tiny, "faces": 2}, "small": {"ap": None, "faces": 0}}
        return dict(ap=ap, coco_map=ap / 2, ap_by_size=by_size, description="d", input="latent", macs_640=2e9, steps=9)

    summary = bench.codecs.summarise(
        {"learned/latent_codec/0": run(0.5, 0.1), "learned/latent_codec/2": run(0.7, 0.3), "dct/rgb/0": run(0.9, 0.2)}
    )
    row = summary["learned"]["latent_codec"]
    assert row["ap"]["mean"] == pytest.approx(0.6) and row["ap"]["std"] == pytest.approx(0.1414213562, abs=1e-9)
    assert row["ap"]["n"] == 2 and row["seeds"] == [0, 2]
    assert row["ap_by_size"]["tiny"]["mean"] == pytest.approx(0.2) and "small" not in row["ap_by_size"]
    assert summary["dct"]["rgb"]["ap"] == {"mean": 0.9, "std": None, "min": 0.9, "max": 0.9, "n": 1}


def test_frontier_verdict_wants_a_latent_point_as_good_at_half_the_pipeline_cost():
    from latentface.tools.bench.codec_report import frontier_verdict

    points = {"rgb": [("rgb", 20.0, 0.80)], "latent": [("fast", 9.0, 0.81), ("big", 30.0, 0.9)]}
    assert frontier_verdict(points) == (["`rgb` (20.0 G, 0.800): `fast` (9.0 G, 0.810)"], True)
    points["latent"][0] = ("fast", 10.5, 0.81)  # just over half the cost
    assert frontier_verdict(points) == (["`rgb` (20.0 G, 0.800): none"], False)


def test_frontier_notes_name_the_best_latent_point_under_the_cost_cap_where_the_target_fails():
    from latentface.tools.bench.codec_report import codec_notes

    def run(ap, macs, kind):
        return dict(ap=ap, coco_map=0.1, ap_by_size={}, description="d", input=kind, macs_640=macs * 1e9, steps=5)

    runs = {
        "learned/rgb/0": run(0.70, 18.0, "rgb"),  # pipeline 18 + 2 (decoder) = 20 G: a latent point <= 10 G
        "learned/rgb_r18_128/0": run(0.30, 30.0, "rgb"),  # 32 G: matched by `fast`
        "learned/fast/0": run(0.33, 9.0, "latent"),
        "learned/latent_codec/0": run(0.60, 14.0, "latent"),  # over 10 G
    }
    settings = {"seeds": [0], "anchors": "six", "other_anchors": "default"}
    study = {"settings": settings, "runs": runs, "summary": bench.codecs.summarise(runs), "decoder_macs_640": 2e9}
    text = " ".join(codec_notes(study))
    assert "`rgb` 0.700: best `fast` 0.330 (-37.0 points)." in text and "rgb_r18_128` 0.300" not in text


def test_learned_decoder_macs_are_counted_at_640():
    macs = bench.codecs.decoder_macs(640)
    assert macs == 4 * bench.codecs.decoder_macs(320)  # convolutions only: MACs scale with the pixels
    assert 1e9 < macs < bench.codecs.JPEG_AI_DECODERS["JPEG AI high"]


@pytest.mark.slow  # trains 18 tiny models: about a minute on 2 cores
def test_quick_codec_study_resumes_from_its_stored_runs_and_renders(tmp_path):
    profile = bench.PROFILES["quick"]
    device = torch.device("cpu")
    saved = []
    first = bench.codecs.codecs_section(profile, tmp_path / "runs", device, save=saved.append, max_jobs=3)
    assert list(first["runs"]) == ["dct/rgb/0", "dct/latent_codec/0", "learned/rgb/0"] and len(saved) == 3
    stored = json.loads(json.dumps(first))
    resumed = bench.codecs.codecs_section(profile, tmp_path / "runs", device, stored=stored, max_jobs=2)
    assert list(resumed["runs"])[:5] == [*first["runs"], "learned/latent_codec/0", "learned/rgb/1"]
    assert resumed["runs"]["dct/rgb/0"] == stored["runs"]["dct/rgb/0"]  # kept, not trained again
    results = {"profile": "quick", "machine": bench.machine(), "settings": profile.to_dict(), "codecs": resumed}
    md = bench.render_report(results)
    rows = _table(md, "## 5. Codec study")
    assert rows[0][:6] == ["model", "codec", "seeds", "steps", "teacher's steps", "AP@0.5"] and len(rows) == 2 + 4
    assert [r[1] for r in rows[2:]] == ["learned", "learned", "dct", "dct"]  # the deciding codec first
    assert "On `learned`: latent default within 3 AP points of RGB" in md


def test_codec_notes_give_the_gap_where_it_is_the_teachers_lift_and_the_leading_bridge():
    from latentface.tools.bench.codec_report import codec_notes, target_names

    def run(ap, tiny, name):
        sizes = {"tiny": {"ap": tiny, "faces": 3}, "large": {"ap": 0.9, "faces": 3}}
        kind = "rgb" if name.startswith("rgb") else "latent"
        return dict(ap=ap, coco_map=0.1, ap_by_size=sizes, description=name, input=kind, macs_640=1e9, steps=5)

    runs = {
        "learned/rgb/0": run(0.80, 0.60, "rgb"),
        "learned/latent_codec/0": run(0.70, 0.20, "c"),
        "learned/latent_codec/1": run(0.72, 0.22, "c"),
        "learned/latent_codec_distill/0": run(0.76, 0.40, "d"),
        "learned/latent_codec_adaptive/0": run(0.74, 0.35, "a"),
        "learned/rgb_adaptive/0": run(0.81, 0.62, "rgb a"),
        "learned/latent_codec_reconstruct/0": run(0.69, 0.25, "r"),
        "learned/latent_codec_long/0": {**run(0.78, 0.3, "l"), "steps": 10},
        "learned/rgb_long/0": {**run(0.83, 0.7, "rgb l"), "steps": 10},
        "learned/latent_codec_longer/0": {**run(0.82, 0.4, "l4"), "steps": 20},
        "learned/rgb_longer/0": {**run(0.85, 0.75, "rgb l4"), "steps": 20},
        "learned/latent_bilinear/0": run(0.75, 0.30, "b"),
        "dct/latent_codec/0": run(0.8, 0.5, "c"),
        "dct/latent_context/0": run(0.6, 0.5, "x"),
    }
    for seed, ap in enumerate((0.60, 0.64, 0.62)):
        runs[f"learned/fast/{seed}"] = {**run(ap, 0.1, "f"), "macs_640": 0.25e9}
    runs["learned/latent_codec_default/0"] = run(0.66, 0.1, "c, default anchors")
    runs["learned/rgb_default/0"] = run(0.79, 0.5, "rgb, default anchors")
    runs["dct/rgb/0"] = run(0.85, 0.6, "rgb")  # no anchor check on dct: its main rows are read
    settings = {"seeds": [0, 1, 2], "anchors": "six", "other_anchors": "default"}
    study = {"settings": settings, "runs": runs, "summary": bench.codecs.summarise(runs), "decoder_macs_640": 1e9}
    text = " ".join(codec_notes(study))
    assert "the `fast` preset reaches 0.620 ± 0.020 (3 seeds) at 0.25 GMACs, against 0.710 ± 0.014" in text
    assert "(1.00 GMACs): -9.0 points at x 0.25 the cost." in text
    assert (
        "Anchor layout on `learned`: `latent_codec` 'six' 0.710 ± 0.014 vs 'default' 0.660 (2 and 1 seeds); `rgb` "
        "'six' 0.800 vs 'default' 0.790 (1 and 1 seeds)." in text
    )
    assert f"The `default` preset trains with '{LatentRetinaFace.PRESETS['default']['anchors']}' anchors" in text
    # the target rows: the default preset as it trains ('default' anchors, the study's other layout here)
    assert target_names(settings) == ("latent_codec_default", "rgb_default")
    assert target_names({"anchors": "default", "other_anchors": "six"}) == ("latent_codec", "rgb")
    assert "with 'default' anchors (`latent_codec_default`) reaches 0.660 against RGB's 0.790 (`rgb_default`)" in text
    assert "(-13.0 points; 1 and 1 seeds); by face height tiny 0.100 vs 0.500, large 0.900 vs 0.900" in text
    assert "the widest gap is in tiny faces (-40.0 points)" in text
    assert (
        "On `dct` the default preset's bridge with 'six' anchors (`latent_codec`) reaches 0.800 against RGB's" in text
    )
    # the levers train with the main layout: compared with the default bridge there on the same seed (0.70 on
    # seed 0; its mean over two seeds is 0.71)
    assert (
        "`latent_codec` taught by the RGB model of its seed reaches 0.760 (+6.0 points over the same student "
        "alone on the same 1 seed(s); tiny faces" in text
    )
    assert "`latent_codec` with adaptive (ATSS) matching reaches 0.740 (+4.0 points over the same student" in text
    assert "RGB with adaptive matching: 0.810 (+1.0 points on the same 1 seed(s))." in text
    assert "`latent_codec` rebuilding the image from its bridge output reaches 0.690 (-1.0 points" in text
    # the longer schedule: the gap at twice the steps (0.78 - 0.83) against seed 0's at the study's (0.70 - 0.80)
    assert (
        "Trained 2x as long, `latent_codec` reaches 0.780 and RGB 0.830: a gap of -5.0 points against -10.0 at "
        "the study's schedule on the same 1 seed(s)" in text
    )
    assert "Trained 4x as long, `latent_codec` reaches 0.820 and RGB 0.850: a gap of -3.0 points against -10.0" in text
    # the first seed decides between bridges: bilinear 0.75 beats codec's 0.70 on learned, codec leads on dct
    assert "`dct` codec (0.800), `learned` bilinear (0.750); they differ, and the choice follows `learned`" in text
    # one bridge over several seeds is no comparison of bridges
    del runs["learned/latent_bilinear/0"]
    study["summary"] = bench.codecs.summarise(runs)
    assert "Best bridge" not in " ".join(codec_notes(study))


def test_codec_table_counts_the_teachers_training_apart_and_compares_a_schedule_with_rgb_trained_alike():
    from latentface.tools.bench.codec_report import codec_section

    def run(ap, name, steps=225):
        sizes = {"tiny": {"ap": ap / 4, "faces": 3}}
        kind = "rgb" if name.startswith("rgb") else "latent"
        return dict(ap=ap, coco_map=0.1, ap_by_size=sizes, description=name, input=kind, macs_640=2e9, steps=steps)

    runs = {
        "learned/rgb/0": run(0.70, "rgb"),
        "learned/latent_codec/0": run(0.30, "plain"),
        "learned/latent_codec_distill/0": run(0.32, "taught"),
        "learned/latent_codec_longer/0": run(0.60, "latent 4x", 900),
        "learned/rgb_longer/0": run(0.85, "rgb 4x", 900),
    }
    settings = {"n_train": 6, "n_val": 2, "size": 64, "rate": 75, "anchors": "six", "other_anchors": "default"}
    settings.update(epochs=3, batch_size=8, lr=0.02, seeds=[0])
    study = {"settings": settings, "runs": runs, "summary": bench.codecs.summarise(runs), "decoder_macs_640": 1e9}
    study["literature_decoders"] = {}
    rows = {line.split("`")[1]: line.split(" | ")[1:] for line in codec_section({"codecs": study}) if line[:3] == "| `"}
    # codec, seeds, steps, teacher's steps, AP@0.5, tiny..large, COCO mAP, AP - RGB, GMACs, pipeline GMACs
    assert rows["latent_codec_distill"][:6] == ["learned", "1", "225", "225", "0.320", "0.080"]
    assert rows["latent_codec_distill"][10] == "-0.380"  # against the RGB row, which is also its teacher
    assert rows["latent_codec"][2:4] == ["225", "—"]
    assert rows["latent_codec_longer"][2:4] == ["900", "—"] and rows["latent_codec_longer"][10] == "-0.250"
    assert rows["rgb"][11:] == ["2.00", "3.00 |"]  # an RGB pipeline pays the decoder


@pytest.mark.slow  # trains two tiny models
def test_a_distilled_run_trains_its_teacher_again_when_the_teachers_files_are_gone(tmp_path):
    profile = bench.PROFILES["quick"]
    fake = dict(ap=0.5, coco_map=0.1, ap_by_size={}, description="d", input="latent", macs_640=1e9, steps=5)
    runs: dict[str, dict] = {}
    while True:  # every run before the first distilled one stored, none of them on disk
        job = next(j for j in bench.study_jobs(profile, runs) if j.key not in runs)
        if "teacher" in job.variant.overrides:
            break
        runs[job.key] = fake
    stored = {"settings": json.loads(json.dumps(profile.study)), "runs": runs}
    section = bench.codecs.codecs_section(profile, tmp_path / "runs", torch.device("cpu"), stored=stored, max_jobs=1)
    assert list(section["runs"]) == [*runs, job.key]
    teacher = tmp_path / "runs" / job.codec / f"rgb_s{job.seed}" / "weight_final.pth"
    student = json.loads(
        (tmp_path / "runs" / job.codec / f"{job.variant.name}_s{job.seed}" / "bench_config.json").read_text()
    )
    assert teacher.is_file() and student["teacher"] == str(teacher)
