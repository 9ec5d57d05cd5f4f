"""The built-in ``learned`` codec: a small learned image codec shaped like JPEG AI.

Why it exists: the ``dct`` codec is a linear block transform, while JPEG AI's latent is
the output of a nonlinear analysis network with a hyperprior. This codec imitates that
structure at a width a CPU can train, so design choices of the detector can be measured
on a nonlinear learned latent too. Its latents have JPEG AI's geometry: float16
``[1, 256, H/16, W/16]``, channels 0-159 from the luma branch, 160-255 from the chroma
branch.

Architecture (width ``N``, 64 in the shipped weights; JPEG AI uses 128):

- RGB -> YCbCr (BT.709, full range), each plane normalised as ``(x - 127.5) / 128``.
- Luma analysis, from Y: conv3x3/2 (1 -> N) + residual attention unit (RAU,
  ``x * (1 + conv1x1(groupconv3x3(ReLU6(x))))``), two more conv3x3/2 N -> N + RAU,
  conv3x3/2 N -> 160, conv1x1 160 -> 160. No output nonlinearity.
- Chroma analysis, from 12 channels at half resolution (Y pixel-unshuffled by 2: 4
  channels; Cb and Cr pixel-unshuffled by 2: 8 channels): three conv3x3/2 N wide (RAU
  after the first two), conv1x1 N -> 96.
- Hyperprior: ``z`` at stride 64 from ``|y|`` (conv3x3, two conv3x3/2); ``y`` is padded
  to a multiple of 4 cells for it, so any size that is a multiple of 16 works. ``z`` is
  rounded (around a learned per-channel mean) and costed with a per-channel Gaussian.
  The hyper decoder predicts the mean ``mu`` and scale ``sigma`` of ``y``.
- Gain-scaled coding (:mod:`latentface.codec.entropy`): ``r = round((y - mu) * g)`` with a
  learned gain vector ``g`` per rate (one model, five rates), ``y_hat = mu + r / g``;
  residuals with ``sigma * g < 0.25`` are skipped (``y_hat = mu``). The stored latent
  is ``y_hat``.
- Synthesis mirrors the analysis with sub-pixel convolutions (conv3x3 + pixel shuffle);
  the chroma synthesis also sees the decoded luma (pixel-unshuffled) at half resolution.

The weights ship inside the package (``weights/learned.pt``, float16) and are loaded on
the first :func:`encode` / :func:`decode`. ``latentface codec train`` reproduces them and
``latentface codec report`` measures them (``weights/learned.json``).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentface import LATENT_STRIDE
from latentface.codec import check_image, entropy
from latentface.errors import LatentfaceError

NAME = "learned"
#: Rates, named like the real files' rates (``latent_75.npy``); index i uses gain vector i.
QUALITIES = (12, 25, 50, 75, 100)
LUMA_CHANNELS = 160
CHROMA_CHANNELS = 96
CHANNELS = LUMA_CHANNELS + CHROMA_CHANNELS  # 256
#: Stride of the hyperprior's ``z``: ``y`` is padded to a multiple of this for it.
HYPER_STRIDE = 64
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "learned.pt"
WEIGHTS_FORMAT = "latentface-learned-codec"
DEFAULT_CONFIG = {"width": 64, "chroma_width": 32, "groups": 4, "hyper_width": 64, "z_channels": 32}

# BT.709 full range: Y = Kr R + Kg G + Kb B, Cb = (B - Y) / 1.8556, Cr = (R - Y) / 1.5748 (+128).
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_RGB_TO_YCC = np.array(
    [
        [_KR, _KG, _KB],
        [-_KR / (2 * (1 - _KB)), -_KG / (2 * (1 - _KB)), 0.5],
        [0.5, -_KG / (2 * (1 - _KR)), -_KB / (2 * (1 - _KR))],
    ],
    dtype=np.float64,
)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)
_YCC_OFFSET = np.array([0.0, 128.0, 128.0])


class CodecWeightsError(LatentfaceError, RuntimeError):
    """The learned codec's weights file is missing or not a weights file."""


def rgb_to_ycc(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in 0..255 [B, 3, H, W] -> normalised YCbCr ``(x - 127.5) / 128`` (BT.709 full range)."""
    m = torch.as_tensor(_RGB_TO_YCC, dtype=rgb.dtype, device=rgb.device)
    off = torch.as_tensor(_YCC_OFFSET - 127.5, dtype=rgb.dtype, device=rgb.device)
    return (torch.einsum("ij,bjhw->bihw", m, rgb) + off[None, :, None, None]) / 128.0


def ycc_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycc`: RGB in 0..255, not clipped."""
    m = torch.as_tensor(_YCC_TO_RGB, dtype=ycc.dtype, device=ycc.device)
    off = torch.as_tensor(_YCC_OFFSET - 127.5, dtype=ycc.dtype, device=ycc.device)
    return torch.einsum("ij,bjhw->bihw", m, ycc * 128.0 - off[None, :, None, None])


class RAU(nn.Module):
    """Residual attention unit ``x * (1 + conv1x1(groupconv3x3(ReLU6(x))))``; the identity at initialisation."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group = nn.Conv2d(channels, channels, 3, padding=1, groups=groups)
        self.point = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.point.weight)
        nn.init.zeros_(self.point.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + self.point(self.group(F.relu6(x))))


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=2, padding=1)


class _Up(nn.Sequential):
    """Sub-pixel upsampling by 2: conv3x3 to 4x the channels, then pixel shuffle."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2))


class LearnedCodecModel(nn.Module):
    """Analysis, hyperprior, gains and synthesis of the ``learned`` codec (see the module text)."""

    def __init__(
        self, width: int = 64, chroma_width: int = 32, groups: int = 4, hyper_width: int = 64, z_channels: int = 32
    ):
        super().__init__()
        self.config = {
            "width": width,
            "chroma_width": chroma_width,
            "groups": groups,
            "hyper_width": hyper_width,
            "z_channels": z_channels,
        }
        n, c, g, nh = width, chroma_width, groups, hyper_width
        half = n // 2  # the luma synthesis' last stage (half resolution) is half as wide
        self.luma_analysis = nn.Sequential(
            _down(1, n),
            RAU(n, g),
            _down(n, n),
            RAU(n, g),
            _down(n, n),
            RAU(n, g),
            _down(n, LUMA_CHANNELS),
            nn.Conv2d(LUMA_CHANNELS, LUMA_CHANNELS, 1),
        )
        self.chroma_analysis = nn.Sequential(
            _down(12, c), RAU(c, g), _down(c, c), RAU(c, g), _down(c, c), nn.Conv2d(c, CHROMA_CHANNELS, 1)
        )
        self.hyper_analysis = nn.Sequential(
            nn.Conv2d(CHANNELS, nh, 3, padding=1), nn.ReLU(), _down(nh, nh), nn.ReLU(), _down(nh, z_channels)
        )
        self.hyper_synthesis = nn.Sequential(
            nn.Conv2d(z_channels, nh, 3, padding=1),
            nn.ReLU(),
            _Up(nh, nh),
            nn.ReLU(),
            _Up(nh, nh),
            nn.ReLU(),
            nn.Conv2d(nh, 2 * CHANNELS, 3, padding=1),
        )
        self.luma_synthesis = nn.Sequential(
            nn.Conv2d(LUMA_CHANNELS, n, 1),
            RAU(n, g),
            _Up(n, n),
            RAU(n, g),
            _Up(n, n),
            RAU(n, g),
            _Up(n, half),
            RAU(half, g),
            _Up(half, 1),
        )
        self.chroma_synthesis = nn.Sequential(
            nn.Conv2d(CHROMA_CHANNELS, c, 1), RAU(c, g), _Up(c, c), RAU(c, g), _Up(c, c), RAU(c, g), _Up(c, c)
        )
        self.chroma_fusion = nn.Sequential(
            nn.Conv2d(c + 4, c, 3, padding=1), RAU(c, g), nn.Conv2d(c, 8, 3, padding=1), nn.PixelShuffle(2)
        )
        #: log of the per-channel gain of each rate: gains 0.5, 1, 2, 4, 8 at initialisation.
        self.log_gain = nn.Parameter(
            torch.log(torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0]))[:, None].repeat(1, CHANNELS).contiguous()
        )
        self.z_mean = nn.Parameter(torch.zeros(z_channels))
        self.z_log_scale = nn.Parameter(torch.zeros(z_channels))

    # -- the parts -------------------------------------------------------------------------
    def analysis(self, ycc: torch.Tensor) -> torch.Tensor:
        """Normalised YCbCr [B, 3, H, W] -> y [B, 256, H/16, W/16] (luma channels first)."""
        luma = ycc[:, :1]
        chroma_in = torch.cat([F.pixel_unshuffle(luma, 2), F.pixel_unshuffle(ycc[:, 1:], 2)], dim=1)
        return torch.cat([self.luma_analysis(luma), self.chroma_analysis(chroma_in)], dim=1)

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """y_hat [B, 256, h, w] -> normalised YCbCr [B, 3, 16h, 16w]."""
        luma = self.luma_synthesis(y_hat[:, :LUMA_CHANNELS])
        half = self.chroma_synthesis(y_hat[:, LUMA_CHANNELS:])
        chroma = self.chroma_fusion(torch.cat([half, F.pixel_unshuffle(luma, 2)], dim=1))
        return torch.cat([luma, chroma], dim=1)

    def hyper(self, y: torch.Tensor, mode: str, generator: torch.Generator | None = None):
        """-> ``(mu, sigma, z_likelihood)``; ``mode``: "round" (inference) or "train" (rate: noise; decoder: STE)."""
        h, w = y.shape[-2:]
        cells = HYPER_STRIDE // LATENT_STRIDE
        padded = F.pad(y.abs(), (0, -w % cells, 0, -h % cells))
        z = self.hyper_analysis(padded)
        zm = self.z_mean[None, :, None, None]
        if mode == "round":
            z_hat = torch.round(z - zm) + zm
            z_rate = z_hat
        else:
            z_hat = entropy.ste_round(z - zm) + zm
            z_rate = entropy.noisy(z, generator)
        z_lik = entropy.gaussian_likelihood(z_rate, torch.exp(self.z_log_scale)[None, :, None, None], zm)
        params = self.hyper_synthesis(z_hat)[..., :h, :w]
        mu, raw = params[:, :CHANNELS], params[:, CHANNELS:]
        return mu, F.softplus(raw), z_lik

    def gains(self, rate_index: torch.Tensor) -> torch.Tensor:
        """Gain vectors [B, 256, 1, 1] of the rates ``rate_index`` [B] (indices into QUALITIES)."""
        return torch.exp(self.log_gain[rate_index])[:, :, None, None]

    # -- training and inference ---------------------------------------------------------------
    def forward(self, rgb: torch.Tensor, rate_index: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Training pass on RGB 0..255 [B, 3, H, W]: per sample ``bpp``, ``mse`` (RGB 0..255), the reconstruction."""
        y = self.analysis(rgb_to_ycc(rgb))
        mu, sigma, z_lik = self.hyper(y, "train", generator)
        gain = self.gains(rate_index)
        y_hat, _, skipped = entropy.gain_quantise(y, mu, sigma, gain, mode="ste")
        _, r_noisy, _ = entropy.gain_quantise(y, mu, sigma, gain, mode="noise", generator=generator)
        lik = entropy.gaussian_likelihood(r_noisy, sigma * gain)
        lik = torch.where(skipped, torch.ones_like(lik), lik)
        pixels = rgb.shape[-2] * rgb.shape[-1]
        bits = -torch.log2(lik).flatten(1).sum(1) - torch.log2(z_lik).flatten(1).sum(1)
        x_hat = ycc_to_rgb(self.synthesis(y_hat))
        mse = (x_hat - rgb).pow(2).flatten(1).mean(1)
        return {"bpp": bits / pixels, "mse": mse, "x_hat": x_hat, "skipped": skipped.float().flatten(1).mean(1)}

    @torch.no_grad()
    def compress(self, rgb: torch.Tensor, rate_indices) -> list[dict]:
        """Inference at several rates from one analysis and hyperprior (the rates differ only in their
        gains): per rate ``y_hat`` [B, 256, h, w] float32, ``mu``, the ``skipped`` mask and the bits."""
        y = self.analysis(rgb_to_ycc(rgb))
        mu, sigma, z_lik = self.hyper(y, "round")
        bits_z = float(entropy.bits(z_lik))
        out = []
        for rate_index in rate_indices:
            gain = self.gains(torch.full((rgb.shape[0],), rate_index, dtype=torch.long))
            y_hat, r, skipped = entropy.gain_quantise(y, mu, sigma, gain, mode="round")
            lik = entropy.gaussian_likelihood(r, sigma * gain)
            lik = torch.where(skipped, torch.ones_like(lik), lik)
            out.append(
                {"y_hat": y_hat, "mu": mu, "skipped": skipped, "bits_y": float(entropy.bits(lik)), "bits_z": bits_z}
            )
        return out


# -- weights ---------------------------------------------------------------------------------
def save_weights(model: LearnedCodecModel, path: str | os.PathLike) -> Path:
    """Write the model's weights as float16 (atomically: a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": WEIGHTS_FORMAT, "version": 1, "config": dict(model.config), "state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


def load_model(path: str | os.PathLike = WEIGHTS_FILE) -> LearnedCodecModel:
    """The model of a weights file (eval mode, float32); a missing or corrupt file raises :class:`CodecWeightsError`."""
    path = Path(path)
    if not path.is_file():
        raise CodecWeightsError(f"learned codec weights not found: {path} (make them with `latentface codec train`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
            raise ValueError("not a learned codec weights file")
        model = LearnedCodecModel(**blob["config"])
        model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    except Exception as exc:  # a truncated zip, a foreign pickle, missing keys: all one message naming the file
        raise CodecWeightsError(f"{path}: not valid learned codec weights ({type(exc).__name__}: {exc})") from None
    return model.eval()


_MODELS: dict[Path, LearnedCodecModel] = {}


def get_model(path: str | os.PathLike | None = None) -> LearnedCodecModel:
    """The model of ``path`` (default: the shipped weights), loaded once and cached."""
    key = Path(path or WEIGHTS_FILE).resolve()
    if key not in _MODELS:
        _MODELS[key] = load_model(key)
    return _MODELS[key]


def weights_digest(path: str | os.PathLike | None = None) -> str:
    """sha256 (hex) of the weights file: names the exact codec that made a dataset."""
    path = Path(path or WEIGHTS_FILE)
    if not path.is_file():
        raise CodecWeightsError(f"learned codec weights not found: {path}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hflip_signs() -> None:
    """None: a mirrored learned latent is not the latent of the mirrored image up to channel signs."""
    return None


# -- the codec API -------------------------------------------------------------------------


def _rate_index(quality: int) -> int:
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    return QUALITIES.index(quality)


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]


def code(image: np.ndarray, qualities, model: LearnedCodecModel | None = None) -> dict[int, dict]:
    """Encode at several rates with one analysis and hyperprior: per quality ``{"latent"`` float16
    [1, 256, h, w], ``"mu"`` the predicted mean (float32, same shape), ``"skipped"`` the bool mask of
    skipped residuals, ``"bits"``, ``"bpp"}`` (bits from the entropy model)."""
    check_image(image)
    indices = [_rate_index(q) for q in qualities]
    with torch.no_grad():
        coded = (model or get_model()).compress(_as_tensor(image), indices)
    pixels = image.shape[0] * image.shape[1]
    return {
        q: {
            "latent": c["y_hat"].numpy().astype(np.float16),
            "mu": c["mu"].numpy(),
            "skipped": c["skipped"].numpy(),
            "bits": c["bits_y"] + c["bits_z"],
            "bpp": (c["bits_y"] + c["bits_z"]) / pixels,
        }
        for q, c in zip(qualities, coded)
    }


def estimate(image: np.ndarray, quality: int, model: LearnedCodecModel | None = None) -> dict:
    """Encode and estimate the cost: ``{"latent", "bits", "bpp", "skipped"}`` (the share of skipped residuals)."""
    c = code(image, [quality], model)[quality]
    return {"latent": c["latent"], "bits": c["bits"], "bpp": c["bpp"], "skipped": float(c["skipped"].mean())}


def encode_rates(image: np.ndarray, qualities, model: LearnedCodecModel | None = None) -> dict[int, np.ndarray]:
    """``{quality: encode(image, quality)}`` byte for byte, from one analysis and hyperprior."""
    return {q: c["latent"] for q, c in code(image, qualities, model).items()}


def encode(image: np.ndarray, quality: int, model: LearnedCodecModel | None = None) -> np.ndarray:
    """Encode an RGB uint8 image [H, W, 3] (H, W multiples of 16) -> float16 [1, 256, H/16, W/16]."""
    return encode_rates(image, [quality], model)[quality]


def decode(latent: np.ndarray, model: LearnedCodecModel | None = None) -> np.ndarray:
    """Decode a latent [1, 256, h, w] or [256, h, w] -> RGB uint8 [16h, 16w, 3]."""
    lat = np.asarray(latent)
    if lat.ndim == 3:
        lat = lat[None]
    if lat.ndim != 4 or lat.shape[:2] != (1, CHANNELS):
        raise ValueError(
            f"expected a latent of shape [1, {CHANNELS}, h, w] or [{CHANNELS}, h, w], got {list(np.shape(latent))}"
        )
    with torch.no_grad():
        rgb = ycc_to_rgb((model or get_model()).synthesis(torch.from_numpy(lat.astype(np.float32))))
    return np.clip(np.rint(rgb[0].permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (RGB, peak 255)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
