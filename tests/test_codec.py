"""The built-in dct codec: layout, shapes, errors, rate-distortion, exact flip."""

import cv2
import numpy as np
import pytest

from latentface.codec import dct, get_codec


def natural_image(h, w, seed):
    """A smooth multi-scale colour field with blurred shapes: natural-looking statistics (1/f spectrum)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 128.0, np.float32)
    for scale in (64, 32, 16, 8, 4):
        noise = rng.normal(size=(h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        img += cv2.resize(noise, (w + 2 * scale, h + 2 * scale), interpolation=cv2.INTER_CUBIC)[:h, :w] * scale * 0.8
    for _ in range(12):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, centre, int(rng.integers(4, 60)), colour, -1, cv2.LINE_AA)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)


def psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.fixture(scope="module")
def images():
    return [natural_image(160, 224, seed) for seed in range(3)]


def test_get_codec():
    assert get_codec("dct") is dct
    with pytest.raises(ValueError, match="unknown codec 'jpegai'"):
        get_codec("jpegai")


@pytest.mark.parametrize("h,w", [(640, 640), (320, 320), (160, 224), (16, 48)])
def test_shapes_and_dtype(h, w):
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    lat = dct.encode(img, 75)
    assert lat.shape == (1, 256, h // 16, w // 16) and lat.dtype == np.float16
    assert dct.decode(lat).shape == (h, w, 3) and dct.decode(lat).dtype == np.uint8
    np.testing.assert_array_equal(dct.decode(lat[0]), dct.decode(lat))  # [C,h,w] accepted too


@pytest.mark.parametrize("h,w", [(650, 640), (640, 8), (0, 16)])
def test_sizes_not_multiple_of_16_rejected(h, w):
    with pytest.raises(ValueError, match=f"image size {w}x{h} is not a multiple of 16"):
        dct.encode(np.zeros((h, w, 3), np.uint8), 75)


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8 RGB image"):
        dct.encode(np.zeros((32, 32), np.uint8), 75)
    with pytest.raises(ValueError, match="uint8 RGB image"):
        dct.encode(np.zeros((32, 32, 3), np.float32), 75)
    with pytest.raises(ValueError, match=r"quality must be one of \(12, 25, 50, 75, 100\), got 90"):
        dct.encode(np.zeros((32, 32, 3), np.uint8), 90)
    with pytest.raises(ValueError, match=r"got \[1, 192, 2, 2\]"):
        dct.decode(np.zeros((1, 192, 2, 2), np.float16))


def test_channel_layout_luma_first():
    """A flat colour: channel 0 = Y-128, 160 = Cb-128, 208 = Cr-128 (the DCs); every AC channel 0."""
    r, g, b = 200, 100, 50
    img = np.empty((32, 48, 3), np.uint8)
    img[:] = (r, g, b)
    lat = dct.transform(img)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    np.testing.assert_allclose(lat[0], y - 128, atol=1e-3)
    np.testing.assert_allclose(lat[160], cb, atol=1e-3)
    np.testing.assert_allclose(lat[208], cr, atol=1e-3)
    ac = np.delete(lat, [0, 160, 208], axis=0)
    assert np.abs(ac).max() < 1e-3
    # luma detail lives in channels 0..159 only; a grey pattern has no chroma at all
    grey = np.repeat(natural_image(32, 48, 5)[..., :1], 3, axis=2)
    lat = dct.transform(grey)
    assert np.abs(lat[1:160]).max() > 1 and np.abs(lat[160:]).max() < 1e-3
    # channel k of a 16x16 block is the k-th zig-zag coefficient: 1 = horizontal, 2 = vertical frequency 1
    assert dct.channel_frequencies()[:3].tolist() == [[0, 0], [0, 1], [1, 0]]
    ramp = np.repeat(np.tile(np.linspace(0, 255, 16, dtype=np.float32), (16, 1))[..., None], 3, 2).astype(np.uint8)
    lat = dct.transform(ramp)[:, 0, 0]
    assert abs(lat[1]) > 10 and abs(lat[2]) < 1e-3


def test_psnr_rises_with_quality(images):
    scores = np.array([[psnr(img, dct.decode(dct.encode(img, q))) for q in dct.QUALITIES] for img in images])
    assert np.all(np.diff(scores, axis=1) > 0.5), scores
    assert scores[:, -1].min() >= 38.0, scores
    assert scores[:, 0].max() < scores[:, -1].min() - 6, scores


def test_quality_100_keeps_kept_coefficients_nearly_exactly(images):
    coef = dct.transform(images[0])
    lat = dct.encode(images[0], 100)[0].astype(np.float32)
    steps = dct.quantisation_steps(100)
    assert steps.max() == pytest.approx(1 / 8) and steps[:160].max() == pytest.approx(1 / 16)
    assert np.all(np.abs(lat - coef) <= steps[:, None, None] / 2 + 1e-4)
    # the stored values sit on the quantisation grid exactly (float16 holds them)
    for q in dct.QUALITIES:
        lat = dct.encode(images[0], q)[0].astype(np.float64)
        s = dct.quantisation_steps(q).astype(np.float64)[:, None, None]
        np.testing.assert_allclose(lat / s, np.round(lat / s), atol=1e-3)


def test_steps_grow_with_frequency_and_shrink_with_quality():
    s12, s50, s100 = (dct.quantisation_steps(q) for q in (12, 50, 100))
    assert np.all(s12 >= s50) and np.all(s50 >= s100) and s12.sum() > 3 * s50.sum()
    assert s50[0] == pytest.approx(16 / 16) and s50[159] >= 3 * s50[0]


def test_flip_is_exact():
    """encode(mirrored image) == mirrored latent with the odd horizontal frequencies negated, and decoding commutes."""
    img = natural_image(64, 96, 7)
    signs = dct.hflip_signs()[:, None, None]
    assert signs[1] == -1 and signs[2] == 1 and signs[0] == 1
    for q in dct.QUALITIES:
        lat = dct.encode(img, q)[0]
        flipped = (lat[:, :, ::-1] * signs).astype(np.float16)
        np.testing.assert_array_equal(flipped, dct.encode(np.ascontiguousarray(img[:, ::-1]), q)[0])
        diff = np.abs(dct.decode(flipped).astype(int) - dct.decode(lat)[:, ::-1])
        assert diff.max() <= 1  # only uint8 rounding of identical float values in mirrored order
