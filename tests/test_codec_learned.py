"""The ``learned`` codec: entropy pieces on hand-built tensors, the model's API, the shipped
weights' rate ordering, the weights file errors, and a resumable training run."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from latentface.cli.codec import synthetic_image
from latentface.codec import entropy, get_codec, learned, training
from latentface.errors import LatentfaceError

TINY = {"width": 8, "chroma_width": 8, "groups": 4, "hyper_width": 8, "z_channels": 4}


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return learned.LearnedCodecModel(**TINY).eval()


def _image(size: int = 64, seed: int = 0) -> np.ndarray:
    return synthetic_image(np.random.default_rng(seed), size)


# -- entropy pieces ----------------------------------------------------------------------------
def test_ste_round_rounds_forward_and_passes_the_gradient():
    x = torch.tensor([-1.6, -0.4, 0.2, 0.5, 1.49, 2.7], requires_grad=True)
    y = entropy.ste_round(x)
    assert y.tolist() == [-2.0, -0.0, 0.0, 0.0, 1.0, 3.0]  # round half to even, like torch.round
    (y * torch.arange(6.0)).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_noise_is_uniform_within_half_a_step():
    x = torch.zeros(10000)
    n = entropy.noisy(x, torch.Generator().manual_seed(0))
    assert float(n.min()) >= -0.5 and float(n.max()) < 0.5
    assert abs(float(n.mean())) < 0.02 and abs(float(n.var()) - 1 / 12) < 0.005
    assert torch.equal(n, entropy.noisy(x, torch.Generator().manual_seed(0)))


def test_gain_scaled_rounding_and_skip_exact_values():
    y = torch.tensor([1.0, 1.3, -0.7, 2.0, 5.0])
    mu = torch.tensor([0.0, 1.0, 0.0, 1.9, 4.0])
    sigma = torch.tensor([1.0, 1.0, 1.0, 0.1, 0.04])
    gain = torch.tensor(2.0)
    y_hat, r, skipped = entropy.gain_quantise(y, mu, sigma, gain)
    # (y - mu) * g = [2, 0.6, -1.4, 0.2, 2]; sigma * g = [2, 2, 2, 0.2, 0.08] -> last two skipped (< 0.25)
    assert skipped.tolist() == [False, False, False, True, True]
    assert r.tolist() == [2.0, 1.0, -1.0, 0.0, 0.0]
    assert y_hat.tolist() == [1.0, 1.5, -0.5, pytest.approx(1.9), 4.0]
    # a per-channel gain vector broadcasts along the channel axis
    y2 = torch.full((1, 2, 1, 1), 0.75)
    g2 = torch.tensor([1.0, 4.0])[None, :, None, None]
    out, r2, _ = entropy.gain_quantise(y2, torch.zeros_like(y2), torch.ones_like(y2), g2)
    assert r2.flatten().tolist() == [1.0, 3.0] and out.flatten().tolist() == [1.0, 0.75]


def test_skip_mask_threshold_and_bad_mode():
    mask = entropy.skip_mask(torch.tensor([0.1, 0.125, 0.2]), torch.tensor(2.0), threshold=0.25)
    assert mask.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="mode"):
        entropy.gain_quantise(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1), mode="floor")


def test_gain_quantise_straight_through_gradient():
    y = torch.tensor([0.3, 1.2, 0.0], requires_grad=True)
    mu, sigma, gain = torch.zeros(3), torch.tensor([1.0, 1.0, 0.01]), torch.tensor(2.0)
    y_hat, _, _ = entropy.gain_quantise(y, mu, sigma, gain, mode="ste")
    y_hat.sum().backward()
    assert y.grad.tolist() == [1.0, 1.0, 0.0]  # identity where coded, zero where skipped


def test_gaussian_likelihood_against_the_normal_cdf():
    r = torch.tensor([0.0, 1.0, -2.0, 3.0, 0.0, 7.0], dtype=torch.float64)
    s = torch.tensor([1.0, 0.5, 2.0, 1.5, 0.05, 1.0], dtype=torch.float64)
    got = entropy.gaussian_likelihood(r, s).numpy()
    s_used = np.maximum(s.numpy(), entropy.SCALE_BOUND)
    want = norm.cdf((r.numpy() + 0.5) / s_used) - norm.cdf((r.numpy() - 0.5) / s_used)
    np.testing.assert_allclose(got, np.maximum(want, entropy.LIKELIHOOD_BOUND), rtol=1e-9)
    assert got[0] == pytest.approx(0.3829249225480262, abs=1e-12)  # P(|x| < 0.5), x ~ N(0, 1)
    # with a mean, and the bits of the symbols
    p = entropy.gaussian_likelihood(torch.tensor([2.0]), torch.tensor([1.0]), mean=2.0)
    assert float(p) == pytest.approx(0.3829249225480262, rel=1e-6)
    assert float(entropy.bits(torch.tensor([0.5, 0.25]))) == pytest.approx(3.0)
    # far tails keep the floor instead of 0
    floor = float(entropy.gaussian_likelihood(torch.tensor([60.0]), torch.tensor([1.0])))
    assert floor == pytest.approx(entropy.LIKELIHOOD_BOUND, rel=1e-6)


# -- the model and the API -----------------------------------------------------------------------
def test_registry_and_api():
    codec = get_codec("learned")
    assert codec is learned and codec.NAME == "learned" and codec.QUALITIES == (12, 25, 50, 75, 100)
    assert codec.hflip_signs() is None


@pytest.mark.parametrize("h,w", [(16, 16), (48, 80), (64, 128)])
def test_shapes_and_dtypes(tiny_model, h, w):
    img = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    lat = learned.encode(img, 50, model=tiny_model)
    assert lat.dtype == np.float16 and lat.shape == (1, 256, h // 16, w // 16)
    out = learned.decode(lat, model=tiny_model)
    assert out.dtype == np.uint8 and out.shape == (h, w, 3)
    assert learned.decode(lat[0], model=tiny_model).shape == (h, w, 3)


def test_bad_inputs_give_clear_errors(tiny_model):
    with pytest.raises(ValueError, match="not a multiple of 16"):
        learned.encode(np.zeros((40, 64, 3), np.uint8), 50, model=tiny_model)
    with pytest.raises(ValueError, match="uint8 RGB"):
        learned.encode(np.zeros((64, 64), np.uint8), 50, model=tiny_model)
    with pytest.raises(ValueError, match="quality must be one of"):
        learned.encode(np.zeros((64, 64, 3), np.uint8), 60, model=tiny_model)
    with pytest.raises(ValueError, match="expected a latent"):
        learned.decode(np.zeros((1, 192, 4, 4), np.float16), model=tiny_model)


def test_encode_decode_are_deterministic(tiny_model):
    img = _image(64, 3)
    a, b = learned.encode(img, 75, model=tiny_model), learned.encode(img, 75, model=tiny_model)
    assert np.array_equal(a, b)
    assert np.array_equal(learned.decode(a, model=tiny_model), learned.decode(b, model=tiny_model))


def test_ycc_round_trip():
    rgb = torch.rand(2, 3, 4, 4) * 255
    torch.testing.assert_close(learned.ycc_to_rgb(learned.rgb_to_ycc(rgb)), rgb, atol=1e-3, rtol=0)
    grey = torch.full((1, 3, 1, 1), 127.5)
    torch.testing.assert_close(learned.rgb_to_ycc(grey).flatten(), torch.tensor([0.0, 0.5 / 128, 0.5 / 128]))


def test_skipped_residuals_decode_to_the_predicted_mean(tiny_model):
    img = torch.from_numpy(_image(64, 4).transpose(2, 0, 1).copy()).float()[None]
    with torch.no_grad():
        y = tiny_model.analysis(learned.rgb_to_ycc(img))
        mu, sigma, _ = tiny_model.hyper(y, "round")
        gain = tiny_model.gains(torch.tensor([0]))
    with torch.no_grad():
        out, out_high = tiny_model.compress(img, [0, 4])
    skipped = entropy.skip_mask(sigma, gain)
    assert torch.equal(out["skipped"], skipped) and torch.equal(out["mu"], mu)
    assert torch.equal(out["y_hat"][skipped], mu[skipped])
    assert out["bits_z"] == out_high["bits_z"]  # one hyperprior for every rate
    # code(): the same masks and latents as compress, per quality, and encode() is one of them
    image = _image(64, 4)
    coded = learned.code(image, [12, 100], tiny_model)
    assert np.array_equal(coded[12]["skipped"], skipped.numpy())
    assert np.array_equal(coded[12]["latent"], learned.encode(image, 12, tiny_model))
    assert np.array_equal(coded[100]["latent"], learned.encode(image, 100, tiny_model))
    assert learned.estimate(image, 12, tiny_model)["skipped"] == pytest.approx(float(skipped.float().mean()))


# -- weights files ---------------------------------------------------------------------------
def test_missing_and_corrupt_weights_name_the_file(tmp_path, tiny_model):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(learned.CodecWeightsError, match="nowhere.pt") as info:
        learned.load_model(missing)
    assert isinstance(info.value, LatentfaceError)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(learned.CodecWeightsError, match="corrupt.pt"):
        learned.load_model(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"a": torch.zeros(1)}, foreign)
    with pytest.raises(learned.CodecWeightsError, match="foreign.pt"):
        learned.load_model(foreign)
    good = learned.save_weights(tiny_model, tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(learned.CodecWeightsError, match="truncated.pt"):
        learned.load_model(truncated)
    with pytest.raises(learned.CodecWeightsError, match="nowhere.pt"):
        learned.weights_digest(missing)


def test_weights_round_trip_as_float16(tmp_path, tiny_model):
    path = learned.save_weights(tiny_model, tmp_path / "w.pt")
    blob = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values())
    loaded = learned.load_model(path)
    img = _image(64, 5)
    a = learned.encode(img, 50, model=loaded)
    assert np.array_equal(a, learned.encode(img, 50, model=learned.load_model(path)))
    assert len(learned.weights_digest(path)) == 64


def test_shipped_weights_size_and_digest():
    assert learned.WEIGHTS_FILE.is_file()
    assert learned.WEIGHTS_FILE.stat().st_size <= 8 * 1024 * 1024
    blob = torch.load(learned.WEIGHTS_FILE, weights_only=True)
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values())
    assert learned.weights_digest() == learned.weights_digest(learned.WEIGHTS_FILE)


def test_shipped_weights_rate_ordering():
    """Default API (lazily loaded shipped weights): bpp and PSNR rise with the rate."""
    images = [_image(128, 100 + i) for i in range(3)]
    bpp, psnr = [], []
    for q in learned.QUALITIES:
        est = [learned.estimate(img, q) for img in images]
        bpp.append(np.mean([e["bpp"] for e in est]))
        psnr.append(np.mean([learned.psnr(img, learned.decode(e["latent"])) for img, e in zip(images, est)]))
    assert all(a < b for a, b in zip(bpp, bpp[1:])), bpp
    assert all(a < b for a, b in zip(psnr, psnr[1:])), psnr
    assert psnr[-1] > 28.0, psnr  # 29.4 dB with the shipped weights (30+ on the report set at 256 px)


# -- training and report -----------------------------------------------------------------------
def _settings(**kw) -> training.CodecTrainSettings:
    base = dict(steps=4, batch=2, crop=64, render=64, checkpoint_minutes=0.0, **TINY)
    base.update(kw)
    return training.CodecTrainSettings(**base)


def test_training_resumes_from_its_checkpoint(tmp_path):
    settings = _settings(time_schedule=False)  # a step-only schedule: exactly reproducible
    straight = training.train_codec(settings, synthetic_image, out=tmp_path / "a", progress=False)
    part = training.train_codec(settings, synthetic_image, out=tmp_path / "b", progress=False, stop_after=2)
    assert part["steps_done"] == 2 and not part["finished"] and not (tmp_path / "b" / "learned.pt").exists()
    resumed = training.train_codec(settings, synthetic_image, out=tmp_path / "b", resume=True, progress=False)
    assert resumed["steps_done"] == straight["steps_done"] == 4 and resumed["finished"]
    a = torch.load(tmp_path / "a" / training.CHECKPOINT_NAME, weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / training.CHECKPOINT_NAME, weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert (tmp_path / "b" / training.TRAIN_RECORD_NAME).is_file()
    model = learned.load_model(tmp_path / "b" / "learned.pt")
    assert model.config == {k: TINY[k] for k in model.config}
    other = dataclasses.replace(settings, width=16)
    with pytest.raises(LatentfaceError, match="trained with"):
        training.train_codec(other, synthetic_image, out=tmp_path / "b", resume=True, progress=False)


def test_learning_rate_schedule():
    s = _settings(steps=100, lr=1e-3, lr_final=1e-4, minutes=10.0)
    assert training._lr(s, 0, 0.0) == pytest.approx(1e-3)
    assert training._lr(s, 50, 0.0) == pytest.approx(5.5e-4)
    assert training._lr(s, 100, 0.0) == pytest.approx(1e-4)
    assert training._lr(s, 10, 300.0) == pytest.approx(5.5e-4)  # half the time budget gone: the time decides
    assert training._lr(dataclasses.replace(s, time_schedule=False), 10, 300.0) > 9e-4


def test_training_batches_are_a_function_of_the_step(tmp_path):
    settings = _settings(batch=3)
    a, ra = training.batch_for_step(settings, 5, [], synthetic_image)
    b, rb = training.batch_for_step(settings, 5, [], synthetic_image)
    assert a.shape == (3, 3, 64, 64) and torch.equal(a, b) and torch.equal(ra, rb)
    assert not torch.equal(a, training.batch_for_step(settings, 6, [], synthetic_image)[0])
    folder = tmp_path / "imgs"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "x.png"), np.full((40, 50, 3), 200, np.uint8))  # smaller than the crop: upscaled
    files = training._folder_images(str(folder))
    x, _ = training.batch_for_step(_settings(batch=8), 0, files, synthetic_image)
    assert x.shape == (8, 3, 64, 64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LatentfaceError, match="no images"):
        training._folder_images(str(tmp_path / "empty"))
    with pytest.raises(LatentfaceError, match="not found"):
        training._folder_images(str(tmp_path / "absent"))


def test_one_training_step_has_finite_gradients():
    model = learned.LearnedCodecModel(**TINY)
    rgb = torch.from_numpy(_image(64, 9).transpose(2, 0, 1).copy()).float()[None].repeat(2, 1, 1, 1)
    out = model(rgb, torch.tensor([0, 4]), torch.Generator().manual_seed(0))
    loss = (out["bpp"] + 0.01 * out["mse"]).mean()
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert model.log_gain.grad is not None and torch.isfinite(model.log_gain.grad).all()
    assert model.log_gain.grad[1:4].abs().sum() == 0  # only the two rates in the batch get a gradient


def test_report_table(tmp_path, tiny_model):
    path = learned.save_weights(tiny_model, tmp_path / "w.pt")
    images = training.report_images(synthetic_image, 2, 64)
    report = training.codec_report(images, path, progress=False)
    assert [r["rate"] for r in report["rows"]] == list(learned.QUALITIES)
    dct_bpp = [r["dct_bpp_entropy"] for r in report["rows"]]
    dct_psnr = [r["dct_psnr"] for r in report["rows"]]
    assert all(a < b for a, b in zip(dct_bpp, dct_bpp[1:])) and all(a < b for a, b in zip(dct_psnr, dct_psnr[1:]))
    assert "dct bpp*" in training.format_report(report)


def test_cli_report_and_error_boundary(tmp_path, tiny_model, capsys):
    from latentface.cli import main

    path = learned.save_weights(tiny_model, tmp_path / "w.pt")
    assert main(["codec", "report", "--weights", str(path), "--images", "1", "--size", "32", "--no-progress"]) == 0
    assert (tmp_path / training.REPORT_NAME).is_file()
    assert "learned PSNR" in capsys.readouterr().out
    assert main(["codec", "report", "--weights", str(tmp_path / "missing.pt"), "--no-progress"]) == 2
    assert "missing.pt" in capsys.readouterr().err


def test_flip_augmentation_mirrors_plainly_for_the_learned_codec():
    from latentface.data.augment import hflip

    latent = torch.arange(256 * 2 * 3, dtype=torch.float32).reshape(256, 2, 3)
    target = {
        "boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0]]),
        "landmarks": torch.full((1, 5, 2), -1.0),
        "has_landmarks": torch.tensor([False]),
        "labels": torch.ones(1, dtype=torch.long),
    }
    flipped, _ = hflip(latent, target, channel_signs="learned")
    assert torch.equal(flipped, latent.flip(-1))
