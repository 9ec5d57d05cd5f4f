"""``latentface stats --report`` (latentface.data.latent_report): luma vs chroma statistics, skipped
residuals (exact for the built-in codecs, a labelled proxy or "cannot be told" otherwise) and how
far apart the rates of one image are."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentface.cli import main
from latentface.data import latent_report as lr
from latentface.data.layout import latent_path, write_codec_description, write_sample
from latentface.data.synth import generate_dataset


def _write(root, key, rate, latent, split="val"):
    path = latent_path(root, split, key, rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, latent[None])


def _hand_built():
    """[256, 4, 4]: luma 1 +- 2 (a checkerboard), chroma -3 +- 0.5 except channels 250-255 (all 0)."""
    sign = np.where((np.arange(4)[:, None] + np.arange(4)[None]) % 2, 1.0, -1.0)
    base = np.empty((256, 4, 4), dtype=np.float32)
    base[:160] = 1 + 2 * sign
    base[160:] = -3 + 0.5 * sign
    base[250:] = 0
    return base


@pytest.fixture
def hand_built(tmp_path):
    """Two images; rate 100 the base latent, 50 a copy (identical), 25 x1.01 (near), 12 its negative (far)."""
    base = _hand_built()
    for key, scale in (("a", 1.0), ("b", 2.0)):
        latent = base * np.float32(scale)
        _write(tmp_path, key, 100, latent)
        _write(tmp_path, key, 50, latent.copy())
        _write(tmp_path, key, 25, latent * np.float32(1.01))
        _write(tmp_path, key, 12, -latent)
    return tmp_path


def test_hand_built_luma_chroma_statistics_are_exact(hand_built):
    report = lr.latent_report(hand_built, "val")
    assert report["codec"] is None and report["images"] == 2 and report["shape"] == [256, 4, 4]
    assert list(report["rates"]) == ["12", "25", "50", "100"]
    r = report["rates"]["100"]
    luma, chroma = r["parts"]["luma"], r["parts"]["chroma"]
    assert (luma["channels"], chroma["channels"], chroma["channels_from"]) == (160, 96, 160)
    # image a: 1 +- 2; image b: 2 +- 4 -> mean 1.5, E[x^2] = (5 + 20) / 2
    assert luma["mean"] == pytest.approx(1.5)
    assert luma["std"] == pytest.approx(np.sqrt(12.5 - 2.25))
    assert (luma["min"], luma["max"]) == (-2.0, 6.0)
    assert luma["zero_share"] == 0 and luma["live_channels"] == 160
    # chroma: 90 channels -3 +- 0.5 (then -6 +- 1), 6 channels of zeros
    mean = 90 / 96 * -4.5
    sq = 90 / 96 * (9.25 + 37) / 2
    assert chroma["mean"] == pytest.approx(mean)
    assert chroma["std"] == pytest.approx(np.sqrt(sq - mean**2))
    assert (chroma["min"], chroma["max"]) == (-7.0, 0.0)
    assert chroma["zero_share"] == pytest.approx(6 / 96)
    assert chroma["live_channels"] == 90 and chroma["floored_channels"] == 6
    # per-channel std over both images: luma sqrt(12.5 - 2.25), chroma sqrt((9.25 + 37) / 2 - 4.5^2)
    assert r["luma_chroma_std_ratio"] == pytest.approx(np.sqrt(10.25) / np.sqrt(23.125 - 20.25))
    assert r["live_luma_chroma_std_ratio"] == r["luma_chroma_std_ratio"]  # the 6 dead channels are not the median
    assert chroma["median_live_channel_std"] == pytest.approx(np.sqrt(23.125 - 20.25))
    same = lambda parts: {p: {k: v for k, v in q.items() if not k.endswith("_rounding")} for p, q in parts.items()}  # noqa: E731
    assert same(report["rates"]["50"]["parts"]) == same(r["parts"])  # rate 50 is a copy (the baseline is random)


def test_hand_built_rate_pairs_identical_near_far(hand_built):
    pairs = lr.latent_report(hand_built, "val")["rate_pairs"]
    assert set(pairs) == {"12-25", "12-50", "12-100", "25-50", "25-100", "50-100"}
    same = pairs["50-100"]
    assert same["verdict"] == "identical" and same["identical"] == 2 and same["median_relative_l2"] == 0
    near = pairs["25-100"]
    assert near["verdict"] == "near" and (near["identical"], near["near"], near["far"]) == (0, 2, 0)
    assert near["median_relative_l2"] == pytest.approx(0.01, rel=1e-4)
    assert near["median_channel_corr"] == pytest.approx(1.0)
    far = pairs["12-100"]
    assert far["verdict"] == "far" and far["far"] == 2
    assert far["median_relative_l2"] == pytest.approx(2.0) and far["median_channel_corr"] == pytest.approx(-1.0)
    assert far["equal_share"] == {"luma": 0.0, "chroma": pytest.approx(6 / 96)}  # only the zero channels agree
    assert lr.classify({"identical": False, "relative_l2": 0.049}) == "near"
    assert lr.classify({"identical": False, "relative_l2": 0.05}) == "far"


def test_without_codec_json_a_grid_is_a_labelled_proxy_and_identical_rates_cannot_tell(hand_built):
    skipped = lr.latent_report(hand_built, "val")["skipped"]
    # rate 100 against the next lower rate (50): the same files, nothing to read from them
    assert skipped["100"]["method"] == "proxy" and skipped["100"]["text"].startswith("cannot be told")
    assert "identical" in skipped["100"]["text"]
    # two values per channel: far more repeats than float16/32 rounding explains -> a grid
    s25 = skipped["25"]
    assert s25["grid"] and s25["repeated_share"] == 1.0 and s25["repeated_share_rounding"] < 0.05
    assert s25["text"].startswith("proxy:") and s25["cross_rate"]["with_rate"] == 12


def test_continuous_values_without_codec_json_cannot_be_told(tmp_path):
    """y_hat = mu + r/g with mu varying per position: skipped positions do not repeat, and the rates
    here share no value, so the report says it cannot tell instead of giving a number."""
    rng = np.random.default_rng(1)
    for key in ("a", "b"):
        for rate in (12, 100):
            _write(tmp_path, key, rate, rng.normal(size=(256, 6, 6)).astype(np.float16))
    report = lr.latent_report(tmp_path, "val")
    for rate in ("12", "100"):
        k = report["skipped"][rate]
        assert k["method"] == "proxy" and not k["grid"] and "parts" not in k
        assert k["text"].startswith("cannot be told") and "mu varying per position" in k["text"]
    assert report["rate_pairs"]["12-100"]["verdict"] == "far"
    assert "cannot be told" in lr.format_report(report)


def test_repeat_counts():
    values = np.array([[1.0, 2.0, 2.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    repeated, mode = lr.repeat_counts(values)
    assert repeated.tolist() == [3, 5, 0] and mode.tolist() == [3, 5, 1]


def test_dct_dataset_cli_prints_and_writes_json(tmp_path, capsys):
    root = tmp_path / "d"
    generate_dataset(root, 0, 3, size=32, rates=(12, 100), progress=False)
    assert main(["stats", "--dataset_root", str(root), "--split", "val", "--report"]) == 0
    out = capsys.readouterr().out
    assert "luma" in out and "chroma" in out and "12-100" in out and "dct codec predicts 0" in out
    report = json.loads((root / lr.REPORT_FILE).read_text())
    assert report["codec"] == "dct" and report["images"] == 3 and list(report["rates"]) == ["12", "100"]
    for rate, k in report["skipped"].items():
        assert k["method"] == "exact"
        for part, q in k["parts"].items():
            assert q["skipped_share"] == report["rates"][rate]["parts"][part]["zero_share"]
    # coarser quantisation: more zeros at rate 12
    assert report["rates"]["12"]["parts"]["luma"]["zero_share"] > report["rates"]["100"]["parts"]["luma"]["zero_share"]
    assert report["rate_pairs"]["12-100"]["verdict"] in ("near", "far")
    # --output, --images
    other = tmp_path / "r.json"
    assert (
        main(
            [
                "stats",
                "--dataset_root",
                str(root),
                "--split",
                "val",
                "--report",
                "--images",
                "1",
                "--output",
                str(other),
            ]
        )
        == 0
    )
    assert json.loads(other.read_text())["images"] == 1


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["stats", "--dataset_root", str(tmp_path), "--report"]) == 2
    assert "no latent folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def learned_codec():
    from latentface.codec import get_codec

    codec = get_codec("learned")
    try:
        codec.get_model()
    except codec.CodecWeightsError as e:
        pytest.skip(f"learned codec weights unusable: {e}")
    return codec


def test_learned_dataset_skipped_share_is_exact(tmp_path, learned_codec):
    from latentface.data.synth import draw_image

    rng = np.random.default_rng(3)
    expected = {12: [], 100: []}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the dataset writers encode
    try:
        for key in ("a", "b"):
            image, _ = draw_image(rng, 64)
            latents = {}
            for rate in expected:
                out = learned_codec.estimate(image, rate)
                latents[rate] = out["latent"]
                expected[rate].append(out["skipped"])
            write_sample(tmp_path, "val", key, image, latents)
    finally:
        torch.set_num_threads(threads)
    write_codec_description(tmp_path, "learned", weights_digest=learned_codec.weights_digest())
    report = lr.latent_report(tmp_path, "val")
    for rate, shares in expected.items():
        k = report["skipped"][str(rate)]
        assert k["method"] == "exact"
        luma, chroma = k["parts"]["luma"], k["parts"]["chroma"]
        assert (160 * luma["skipped_share"] + 96 * chroma["skipped_share"]) / 256 == pytest.approx(np.mean(shares))
        assert luma["reencode_match_share"] == 1.0 and chroma["reencode_match_share"] == 1.0
        assert luma["equal_to_mean_share"] >= luma["skipped_share"]
    # higher gain -> fewer skipped residuals
    assert (
        report["skipped"]["12"]["parts"]["luma"]["skipped_share"]
        > report["skipped"]["100"]["parts"]["luma"]["skipped_share"]
    )
    # latents of other weights: not re-run with the installed ones
    write_codec_description(tmp_path, "learned", weights_digest="0" * 64)
    k = lr.latent_report(tmp_path, "val")["skipped"]["12"]
    assert k["method"] == "none" and f"written by the learned codec with weights with sha256 {'0' * 64}" in k["text"]
    write_codec_description(tmp_path, "learned", weights_digest=learned_codec.weights_digest())
    # without the images there is nothing to re-run the codec on
    for png in (tmp_path / "val" / "images").iterdir():
        png.unlink()
    k = lr.latent_report(tmp_path, "val")["skipped"]["12"]
    assert k["method"] == "none" and k["text"].startswith("cannot be told: no image")


@pytest.mark.parametrize("gain", [3.7, 4.0])
def test_cross_rate_proxy_finds_the_values_equal_to_mu_of_a_gain_coded_latent(tmp_path, gain):
    """Without codec.json: y_hat = mu + r/g with mu real-valued and shared by the rates (one model, the
    rate set by the gain): the values equal at two rates are the ones equal to mu at the higher rate, plus
    values coded alike at both (which a gain ratio of 4 makes: r = 1 at gain 1 and r = 4 at gain 4)."""
    rng = np.random.default_rng(2)
    truth = []
    for key in ("a", "b", "c"):
        mu = rng.normal(size=(256, 8, 8))
        sigma = rng.uniform(0.01, 1.0, size=mu.shape)
        y = mu + rng.normal(size=mu.shape) * sigma
        for rate, g in ((25, 1.0), (75, gain)):
            r = np.where(sigma * g < 0.25, 0, np.round((y - mu) * g))
            _write(tmp_path, key, rate, (mu + r / g).astype(np.float16))
            if rate == 75:
                truth.append((r == 0).mean())
    k = lr.latent_report(tmp_path, "val")["skipped"]["75"]
    assert k["method"] == "proxy" and not k["grid"] and k["cross_rate"]["bound"] == "at most"
    assert k["text"].startswith("proxy: at most")
    share = (160 * k["parts"]["luma"]["equal_to_mean_share"] + 96 * k["parts"]["chroma"]["equal_to_mean_share"]) / 256
    if gain == 4.0:
        assert share > np.mean(truth) + 0.03
    else:
        assert share == pytest.approx(np.mean(truth), abs=0.005)
