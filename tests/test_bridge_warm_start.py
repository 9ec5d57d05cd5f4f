"""The codec bridge's warm start: the ridge fit of its linear decode, and which start a dataset gets."""

import shutil

import numpy as np
import pytest
import torch

from latentface.codec import dct
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.data.layout import write_codec_description
from latentface.model.bridge import dct_synthesis_basis
from latentface.model.detector import LatentRetinaFace
from latentface.model.warm_start import RidgeFit, decode_error, decode_target, fit_decode, image_target
from latentface.training.bridge_init import fit_bridge, initialise_bridge, pairs


def _model(mean=None, std=None) -> LatentRetinaFace:
    model = LatentRetinaFace(backbone="resnet18", bridge="codec", out_channels=16).eval()
    if mean is not None:
        model.set_normalization(mean, std)
    return model


def _decode(model) -> tuple[torch.Tensor, torch.Tensor]:
    return model.bridge.decode.weight.detach().flatten(1).double(), model.bridge.decode.bias.detach().double()


def test_ridge_fit_recovers_a_linear_map_exactly():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 12, 5, 7, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, 12)[None, :, None, None]
    w, b = torch.randn(20, 12, generator=g, dtype=torch.float64), torch.randn(20, generator=g, dtype=torch.float64)
    y = torch.einsum("kc,nchw->nkhw", w, x) + b[None, :, None, None]
    fw, fb = fit_decode(x, y, ridge=0.0)
    assert torch.allclose(fw, w, atol=1e-10) and torch.allclose(fb, b, atol=1e-10)
    # Filled image by image, the sums give the same solution.
    fit = RidgeFit(12, 20)
    for i in range(len(x)):
        fit.add(x[i], y[i])
    assert fit.images == 6 and fit.cells == 6 * 35
    assert torch.allclose(fit.solve(0.0)[0], w, atol=1e-10)
    assert decode_error(fw, fb, x, y) < 1e-20


def test_ridge_strength_shrinks_the_weights_but_not_the_bias():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 8, 6, 6, generator=g, dtype=torch.float64) + 2.0
    y = torch.einsum("kc,nchw->nkhw", torch.randn(5, 8, generator=g, dtype=torch.float64), x) + 7.0
    norms = [float(fit_decode(x, y, ridge=r)[0].norm()) for r in (0.0, 0.1, 1.0, 10.0)]
    assert norms == sorted(norms, reverse=True) and norms[-1] < 0.2 * norms[0]
    w, b = fit_decode(x, y, ridge=1e9)  # all shrinkage: the bias alone predicts, the mean target
    assert float(w.abs().max()) < 1e-6
    assert torch.allclose(b, y.mean((0, 2, 3)), atol=1e-5)
    with pytest.raises(ValueError):
        fit_decode(x, y, ridge=-1.0)
    with pytest.raises(ValueError, match="pair up"):
        RidgeFit(8, 5).add(x, y[:, :, :3])


def _codec_pixels(latent: np.ndarray) -> torch.Tensor:
    """The centred YCbCr planes a ``dct`` latent [256, h, w] stands for, from the codec's own inverse
    transform (chroma at half resolution, repeated: the codec's 4:2:0 before its bilinear upsampling)."""
    coef = latent / dct._STORE_SCALE[:, None, None]
    y = dct._block_idct(coef[: dct.LUMA_CHANNELS], dct._D16, dct._LUMA_FLAT)
    n = dct.CHROMA_CHANNELS_EACH
    chroma = [
        dct._block_idct(coef[dct.LUMA_CHANNELS + i * n : dct.LUMA_CHANNELS + (i + 1) * n], dct._D8, dct._CHROMA_FLAT)
        .repeat(2, 0)
        .repeat(2, 1)
        for i in range(2)
    ]
    return torch.from_numpy(np.stack([y, *chroma])).double()


def test_on_dct_latents_the_ridge_fit_is_the_dct_synthesis_the_bridge_starts_from():
    """The key check: target layout, cell order and the folded normalisation all agree with the dct start."""
    rng = np.random.default_rng(0)
    # Latents in stored units with the codec's spread (DC ~ +-100, AC smaller): 6 x 8 x 8 cells, > 257 unknowns.
    scale = np.concatenate(
        [[60.0], np.full(dct.LUMA_CHANNELS - 1, 4.0), [30.0], np.full(47, 2.0), [30.0], np.full(47, 2.0)]
    )
    latents = [(rng.standard_normal((256, 8, 8)) * scale[:, None, None]).astype(np.float32) for _ in range(6)]
    targets = torch.stack([decode_target(_codec_pixels(lat)[None])[0] for lat in latents])
    raw = torch.from_numpy(np.stack(latents)).double()
    mean, std = torch.randn(256) * 5, torch.rand(256) * 3 + 0.5
    model = _model(mean, std)
    model.bridge.set_dct_synthesis(model.input_mean, model.input_std)
    expected_w, expected_b = _decode(model)
    x = (raw - mean.double()[None, :, None, None]) / std.double()[None, :, None, None]  # what the bridge sees
    for ridge, tolerance in ((1e-6, 1e-3), (1e-12, 1e-5)):  # the default strength, and next to none
        w, b = fit_decode(x, targets, ridge=ridge)
        assert float((w - expected_w).abs().max()) < tolerance * float(expected_w.abs().max())
        assert float((b - expected_b).abs().max()) < tolerance * float(expected_b.abs().max())
    # The dct start itself: the basis on the raw latent, bias zero, whatever the normalisation.
    assert torch.allclose(
        model.bridge.decode(model.normalize(raw.float())).double(),
        torch.einsum("kc,nchw->nkhw", dct_synthesis_basis().double(), raw),
        atol=1e-3,
    )
    assert torch.allclose(model.bridge.decode(model.normalize(raw.float())).double(), targets, atol=1e-3)


def test_image_target_of_an_rgb_image_is_what_the_dct_synthesis_decodes():
    """On a real image at quality 100, the dct start's output and the image's target differ by quantisation only."""
    rng = np.random.default_rng(2)
    image = np.clip(rng.normal(128, 20, (32, 48, 3)).cumsum(1) / 8 + 60, 0, 255).astype(np.uint8)
    latent = torch.from_numpy(dct.encode(image, 100)[0].astype(np.float32))[None]
    decoded = torch.einsum("kc,nchw->nkhw", dct_synthesis_basis().double(), latent.double())
    target = image_target(torch.from_numpy(image).permute(2, 0, 1)[None].float())
    assert decoded.shape == target.shape == (1, 768, 2, 3)
    # 160 of 256 luma frequencies are kept: a smooth image loses little; every value is / 64.
    assert float((decoded - target).abs().mean()) < 2.0 / 64


@pytest.fixture()
def dataset_copy(synthetic_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset(12, 2, size=128), root)  # 12 x 64 cells: more than the 257 unknowns
    return root


def test_initialisation_by_codec_and_images(dataset_copy):
    root = dataset_copy
    lines: list[str] = []
    stats = dict(mean=torch.randn(256), std=torch.rand(256) + 0.5)

    model = _model(**stats)
    assert initialise_bridge(model, NestedLatentWiderFaceDataset(root, "train"), lines.append) == "dct synthesis"
    dct_w, dct_b = _decode(model)

    write_codec_description(root, "learned")  # dct latents under another name: fitted, not assumed
    model = _model(**stats)
    how = initialise_bridge(model, NestedLatentWiderFaceDataset(root, "train"), lines.append, max_images=8)
    assert how == "ridge fit on 8 training images (codec learned)"
    ridge_w, ridge_b = _decode(model)
    # The latents are dct's: on the images it was fitted to, the fit reconstructs at least as well as the
    # codec's inverse (least squares), and far better than a random decode.
    pairs_ = list(pairs(NestedLatentWiderFaceDataset(root, "train"), 8))
    x = torch.stack([(lat - stats["mean"][:, None, None]) / stats["std"][:, None, None] for lat, _ in pairs_])
    y = torch.cat([image_target(img[None]) for _, img in pairs_])
    ridge_error, dct_error = decode_error(ridge_w, ridge_b, x, y), decode_error(dct_w, dct_b, x, y)
    model.bridge.reset_decode()
    random_error = decode_error(*_decode(model), x, y)
    assert ridge_error <= dct_error * 1.001 and ridge_error < 0.05 * random_error

    (root / "codec.json").unlink()
    model = _model(**stats)
    assert initialise_bridge(model, NestedLatentWiderFaceDataset(root, "train"), lines.append).startswith(
        "ridge fit on 12 training images (codec unnamed"
    )
    shutil.rmtree(root / "train" / "images")
    model = _model(**stats)
    before = model.bridge.decode.weight.detach().clone()
    assert (
        initialise_bridge(model, NestedLatentWiderFaceDataset(root, "train"), lines.append)
        == "random (no training images)"
    )
    assert not torch.equal(before, model.bridge.decode.weight)  # the dct basis is gone
    assert lines[0] == "codec bridge: dct synthesis"
    assert lines[1] == "codec bridge: ridge fit on 8 training images (codec learned)"
    assert lines[-1] == "codec bridge: random (no training images)"
    # Models without a codec bridge are left alone.
    other = LatentRetinaFace(backbone="resnet18", bridge="pixelshuffle", out_channels=16)
    assert initialise_bridge(other, NestedLatentWiderFaceDataset(root, "train"), lines.append) is None


def test_the_fit_uses_the_models_normalisation(dataset_copy):
    """Fitted on normalised latents, the decode is the same function of the raw latent whatever the statistics."""
    dataset = NestedLatentWiderFaceDataset(dataset_copy, "train")
    raw = torch.stack([dataset[i][0].float() for i in range(2)])
    outputs = []
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        mean, std = torch.randn(256, generator=g) * 3, torch.rand(256, generator=g) + 0.5
        model = _model(mean, std)
        weight, bias, used = fit_bridge(dataset, model.input_mean, model.input_std, max_images=12)
        assert used == 12
        model.bridge.set_decode(weight, bias)
        with torch.no_grad():
            outputs.append(model.bridge.decode(model.normalize(raw)))
    # Equal up to the ridge term (which acts on normalised units) and float32 rounding.
    assert float((outputs[0] - outputs[1]).abs().max()) < 5e-3 < float(outputs[0].abs().max())


def test_images_of_another_size_pair_with_their_latents(dataset_copy):
    from latentface.util.io import read_image, write_image

    path = dataset_copy / "train" / "images"
    first = sorted(path.iterdir())[0]
    write_image(first, read_image(first)[:124, :120])  # less than a cell short: encoded with padding
    third = sorted(path.iterdir())[2]
    write_image(third, read_image(third)[:98])  # two cells short (a codec padding to 64 pixels)
    second = sorted(path.iterdir())[1]
    image = read_image(second)
    write_image(second, np.concatenate([image, image], 1))  # another size: resized to the latent's
    dataset = NestedLatentWiderFaceDataset(dataset_copy, "train")
    shapes = {tuple(lat.shape[1:]): tuple(img.shape[1:]) for lat, img in pairs(dataset, 12)}
    assert shapes == {(8, 8): (128, 128), (7, 7): (112, 112), (6, 8): (96, 128)}


def test_a_training_run_logs_and_records_its_bridge_start(synthetic_dataset, tmp_path, capsys):
    from latentface.training import TrainConfig, train

    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset(8, 4, size=64, rates=(75,), seed=3), root)
    write_codec_description(root, "learned")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train(
            TrainConfig(
                dataset_root=str(root),
                preset="fast",
                out_channels=16,
                batch_size=4,
                epochs=1,
                workers=0,
                out=str(tmp_path / "runs"),
                name="run",
                no_wandb=True,
                progress=False,
                max_steps=1,
            )
        )
    finally:
        torch.set_num_threads(before)
    assert "codec bridge: ridge fit on 8 training images (codec learned)" in capsys.readouterr().err
    payload = torch.load(run / "weight_final.pth", weights_only=True)
    assert payload["bridge_init"] == "ridge fit on 8 training images (codec learned)"
