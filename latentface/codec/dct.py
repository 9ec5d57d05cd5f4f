"""The built-in ``dct`` codec: a block-DCT transform codec laid out like JPEG AI's latent.

Why it exists: the JPEG AI reference codec is not available offline, yet the whole
pipeline (data, training, detection, drawing detections on decoded images) must run
and be tested. This codec produces latents with JPEG AI's geometry: 256 channels at
stride 16, a luma part (channels 0-159) and a chroma part (160-255).

Transform:

- RGB -> YCbCr (JPEG full range, BT.601), each plane centred by subtracting 128.
- Y: orthonormal 16x16 block DCT; the 160 lowest zig-zag coefficients of each block
  become channels 0..159 (channel k = k-th zig-zag coefficient).
- Cb, Cr: 2x2 averaged, orthonormal 8x8 block DCT (one 8x8 block per 16x16 image
  block); the 48 lowest zig-zag coefficients become channels 160..207 (Cb) and
  208..255 (Cr).

Quantisation: JPEG's luminance / chrominance tables, scaled by quality with JPEG's own
rule (quality 50 = the tables, 100 = every step 1, 12 = about 4x coarser). The tables'
8x8 frequencies are stretched over the 16x16 luma block (coefficient (u, v) takes the
step of (u//2, v//2)), so a step means the same spatial frequency as in JPEG. Because
both DCTs are orthonormal, a step of 1 costs the same pixel MSE (1/12) per coefficient
in both block sizes.

Stored value: the dequantised coefficient divided by the block size (16 for luma, 8
for chroma). The DC channels then hold the block's mean minus 128 (range -128..127)
and AC channels are smaller, so values are O(1..100) and float16 holds the quality-100
steps (1/16 and 1/8) exactly. Files are float16 ``[1, 256, H/16, W/16]`` like the real
data.

The decoder is the exact inverse of the transform (inverse DCT of the stored
coefficients, missing high frequencies set to zero, chroma upsampled bilinearly): the
only losses are the dropped coefficients, chroma subsampling and quantisation.
"""

from __future__ import annotations

import cv2
import numpy as np

from latentface.codec import check_image

NAME = "dct"
#: Quality levels, named like the real files' rates (``latent_75.npy`` = quality 75).
QUALITIES = (12, 25, 50, 75, 100)
LUMA_CHANNELS = 160
CHROMA_CHANNELS_EACH = 48
CHANNELS = LUMA_CHANNELS + 2 * CHROMA_CHANNELS_EACH  # 256

# JPEG (ITU T.81 Annex K) quantisation tables, quality 50.
_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
_JPEG_CHROMA = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ],
    dtype=np.float64,
)

_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
# Affine maps for cv2.transform: RGB -> YCbCr - 128 and back.
_RGB_TO_CENTRED_YCBCR = np.concatenate([_RGB_TO_YCBCR, [[-128.0], [0.0], [0.0]]], axis=1).astype(np.float32)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR.astype(np.float64))
_CENTRED_YCBCR_TO_RGB = np.concatenate([_YCBCR_TO_RGB, _YCBCR_TO_RGB @ [[128.0], [0.0], [0.0]]], axis=1).astype(
    np.float32
)


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix D: coefficients = D @ block @ D.T."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


def zigzag(n: int) -> np.ndarray:
    """(row, col) pairs of an n x n block in JPEG zig-zag order, shape [n*n, 2]."""
    order = sorted(
        ((u, v) for u in range(n) for v in range(n)),
        key=lambda uv: (uv[0] + uv[1], uv[1] if (uv[0] + uv[1]) % 2 == 0 else uv[0]),
    )
    return np.array(order, dtype=np.int64)


_D16 = _dct_matrix(16)
_D8 = _dct_matrix(8)
_ZZ16 = zigzag(16)[:LUMA_CHANNELS]
_ZZ8 = zigzag(8)[:CHROMA_CHANNELS_EACH]
_LUMA_FLAT = _ZZ16[:, 0] * 16 + _ZZ16[:, 1]
_CHROMA_FLAT = _ZZ8[:, 0] * 8 + _ZZ8[:, 1]
#: Scale from DCT coefficient to stored value, per channel (1/16 luma, 1/8 chroma).
_STORE_SCALE = np.concatenate([np.full(LUMA_CHANNELS, 1 / 16), np.full(2 * CHROMA_CHANNELS_EACH, 1 / 8)]).astype(
    np.float32
)


def channel_frequencies() -> np.ndarray:
    """Per channel ``(vertical, horizontal)`` DCT frequency index, shape [256, 2]."""
    return np.concatenate([_ZZ16, _ZZ8, _ZZ8])


def hflip_signs() -> np.ndarray:
    """Per-channel signs that, with a mirror along W, give the latent of the mirrored image.

    Mirroring a block negates every DCT coefficient of odd horizontal frequency, so
    ``latent[..., ::-1] * hflip_signs()[:, None, None]`` is exactly ``encode(image[:, ::-1])``.
    """
    return np.where(channel_frequencies()[:, 1] % 2 == 1, -1.0, 1.0).astype(np.float32)


def _scaled_table(table: np.ndarray, quality: int) -> np.ndarray:
    """JPEG's quality scaling of a quantisation table (libjpeg's jpeg_quality_scaling)."""
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return np.clip(np.floor((table * scale + 50.0) / 100.0), 1.0, 255.0)


def quantisation_steps(quality: int) -> np.ndarray:
    """Quantisation step of each of the 256 channels, in stored units, float32 [256]."""
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    luma = _scaled_table(_JPEG_LUMA, quality)[_ZZ16[:, 0] // 2, _ZZ16[:, 1] // 2]
    chroma = _scaled_table(_JPEG_CHROMA, quality)[_ZZ8[:, 0], _ZZ8[:, 1]]
    steps = np.concatenate([luma, chroma, chroma]).astype(np.float32)
    return steps * _STORE_SCALE


def _block_dct(plane: np.ndarray, d: np.ndarray, flat_index: np.ndarray) -> np.ndarray:
    """Block DCT of a [H, W] plane with n x n blocks -> kept coefficients [len(flat_index), H/n, W/n]."""
    n = d.shape[0]
    h, w = plane.shape
    blocks = plane.reshape(h // n, n, w // n, n).transpose(0, 2, 1, 3)  # [H/n, W/n, n, n]
    coef = (d @ blocks @ d.T).reshape(h // n, w // n, n * n)[:, :, flat_index]
    return np.ascontiguousarray(coef.transpose(2, 0, 1))


def _block_idct(coef: np.ndarray, d: np.ndarray, flat_index: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_block_dct` with the dropped coefficients set to zero."""
    n = d.shape[0]
    _, bh, bw = coef.shape
    full = np.zeros((bh, bw, n * n), dtype=np.float32)
    full[:, :, flat_index] = coef.transpose(1, 2, 0)
    blocks = d.T @ full.reshape(bh, bw, n, n) @ d
    return blocks.transpose(0, 2, 1, 3).reshape(bh * n, bw * n)


def transform(image: np.ndarray) -> np.ndarray:
    """Unquantised latent of an RGB uint8 image: float32 [256, H/16, W/16] in stored units.

    Separate from :func:`quantise` so that one transform serves every quality.
    """
    h, w = check_image(image)
    ycc = cv2.transform(image.astype(np.float32), _RGB_TO_CENTRED_YCBCR)
    luma, cb, cr = cv2.split(ycc)
    parts = [_block_dct(luma, _D16, _LUMA_FLAT)]
    for plane in (cb, cr):  # 2x2 mean (INTER_AREA at an integer factor), then 8x8 blocks
        half = cv2.resize(plane, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        parts.append(_block_dct(half, _D8, _CHROMA_FLAT))
    return np.concatenate(parts) * _STORE_SCALE[:, None, None]


def quantise(coefficients: np.ndarray, quality: int) -> np.ndarray:
    """Quantise a :func:`transform` output at ``quality`` -> float16 [1, 256, h, w]."""
    steps = quantisation_steps(quality)[:, None, None]
    return (np.round(coefficients / steps) * steps).astype(np.float16)[None]


def encode(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB uint8 image [H, W, 3] (H, W multiples of 16) -> float16 [1, 256, H/16, W/16]."""
    return quantise(transform(image), quality)


def encode_rates(image: np.ndarray, qualities) -> dict[int, np.ndarray]:
    """``{quality: encode(image, quality)}`` from one transform (only the quantisation differs per rate)."""
    coefficients = transform(image)
    return {q: quantise(coefficients, q) for q in qualities}


def decode(latent: np.ndarray) -> np.ndarray:
    """Decode a latent [1, 256, h, w] or [256, h, w] -> RGB uint8 [16h, 16w, 3]."""
    lat = np.asarray(latent)
    if lat.ndim == 4 and lat.shape[0] == 1:
        lat = lat[0]
    if lat.ndim != 3 or lat.shape[0] != CHANNELS:
        raise ValueError(
            f"expected a latent of shape [1, {CHANNELS}, h, w] or [{CHANNELS}, h, w], got {list(np.shape(latent))}"
        )
    coef = lat.astype(np.float32) / _STORE_SCALE[:, None, None]
    y = _block_idct(coef[:LUMA_CHANNELS], _D16, _LUMA_FLAT)
    cb, cr = (
        _block_idct(
            coef[LUMA_CHANNELS + i * CHROMA_CHANNELS_EACH : LUMA_CHANNELS + (i + 1) * CHROMA_CHANNELS_EACH],
            _D8,
            _CHROMA_FLAT,
        )
        for i in range(2)
    )
    h, w = y.shape
    chroma = [cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in (cb, cr)]
    rgb = cv2.transform(cv2.merge([y, *chroma]), _CENTRED_YCBCR_TO_RGB)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
