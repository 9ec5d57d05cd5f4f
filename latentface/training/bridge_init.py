"""How a new run's codec bridge starts: which initialisation fits the training data, and the
(latent, image) pairs of the ridge fit.

- ``dct`` latents (``codec.json`` says so): the codec's exact inverse transform ("dct synthesis").
- any other codec (the built-in ``learned`` one, JPEG AI) where the training split has images
  (``train/images/<key>.png``, or ``.jpg``... by key): a ridge fit of the same pixel layout on up
  to :data:`MAX_IMAGES` of them (:mod:`latentface.model.warm_start`).
- otherwise (JPEG AI latents as downloaded): random.

The fit runs on the main process and is broadcast, so every DDP rank starts from the same weights.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from latentface import LATENT_STRIDE
from latentface.data.dataset import BadLatentError, NestedLatentWiderFaceDataset, load_latent
from latentface.data.layout import find_image
from latentface.data.teacher_images import WithTeacherImages
from latentface.model.bridge import CodecBridge
from latentface.model.warm_start import RIDGE, RidgeFit, image_target
from latentface.util.io import read_image

#: Training images the ridge fit reads at most: 128 at 640x640 give 204,800 latent cells for 257 unknowns
#: per output (a fit on 64 images is already within 1% of that on 48 to 64 in held-out error).
MAX_IMAGES = 128
#: An image up to this many pixels short of its latent's extent was padded for encoding (a codec pads to its
#: coarsest stride, 64 for the built-in learned codec's hyperprior); it pairs with the cells it covers.
PADDING = 64
LOG_PREFIX = "codec bridge: "


def pairs(dataset: NestedLatentWiderFaceDataset, max_images: int = MAX_IMAGES, seed: int = 0):
    """Up to ``max_images`` (latent [C, h, w], RGB image [3, 16h, 16w] float) pairs of ``dataset``'s samples
    that have an image, in a seeded random order; rates taken in turn when several are read.

    An image up to :data:`PADDING` pixels short of its latent's extent (encoded with padding) pairs
    with the cells it covers; an image of another size is resized to its latent's (encoded from a
    resized copy).
    """
    order = np.random.default_rng(seed).permutation(len(dataset))
    images_dir = dataset.root / dataset.split / "images"
    found = 0
    for index in order:
        if found >= max_images:
            return
        files = dataset.latent_files(int(index))
        if not files:
            continue
        latent_file = files[found % len(files)]
        key = dataset.keys[int(index)]
        path = find_image(images_dir if images_dir.is_dir() else None, latent_file, key)
        if path is None:
            continue
        try:
            latent = load_latent(latent_file)
        except BadLatentError:
            continue  # the dataset reports unusable latents itself
        image = read_image(path)
        h, w = latent.shape[1:]
        height, width = image.shape[:2]
        if (height, width) != (h * LATENT_STRIDE, w * LATENT_STRIDE):
            if 0 <= h * LATENT_STRIDE - height < PADDING and 0 <= w * LATENT_STRIDE - width < PADDING:
                h, w = height // LATENT_STRIDE, width // LATENT_STRIDE
                if h == 0 or w == 0:
                    continue
                latent, image = latent[:, :h, :w], image[: h * LATENT_STRIDE, : w * LATENT_STRIDE]
            else:
                image = cv2.resize(image, (w * LATENT_STRIDE, h * LATENT_STRIDE), interpolation=cv2.INTER_AREA)
        found += 1
        yield latent.float(), torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()


def fit_bridge(
    dataset: NestedLatentWiderFaceDataset,
    mean: torch.Tensor,
    std: torch.Tensor,
    max_images: int = MAX_IMAGES,
    ridge: float = RIDGE,
    seed: int = 0,
):
    """(weight [768, C], bias [768], images used) of the ridge fit on ``dataset``'s images, the latents
    normalised by ``mean``/``std`` as the model does; weight and bias are None when there is no image."""
    mean, std = mean.double().cpu(), std.double().cpu()
    fit = RidgeFit(len(mean))
    for latent, image in pairs(dataset, max_images, seed):
        x = (latent.double() - mean[:, None, None]) / std[:, None, None]
        fit.add(x[None], image_target(image[None]))
    if fit.images == 0:
        return None, None, 0
    weight, bias = fit.solve(ridge)
    return weight, bias, fit.images


def initialise_bridge(
    model: torch.nn.Module,
    dataset,
    log: Callable[[str], None] = print,
    broadcast: Callable = lambda obj: obj,
    is_main: bool = True,
    max_images: int = MAX_IMAGES,
    ridge: float = RIDGE,
    seed: int = 0,
) -> str | None:
    """Start ``model``'s codec bridge as the training data allows (after its normalisation is set);
    logs and returns what was done ("dct synthesis", "ridge fit on N training images (codec X)",
    "random (no training images)"), None when the model has no codec bridge."""
    bridge = getattr(model, "bridge", None)
    if isinstance(dataset, WithTeacherImages):  # a run with a teacher or --reconstruct: the same latents
        dataset = dataset.dataset
    if not isinstance(bridge, CodecBridge) or not isinstance(dataset, NestedLatentWiderFaceDataset):
        return None
    codec = dataset.codec
    if codec == "dct" and bridge.decode.in_channels == 256:
        bridge.set_dct_synthesis(model.input_mean, model.input_std)
        how = "dct synthesis"
    else:
        result = None
        if is_main:
            weight, bias, used = fit_bridge(dataset, model.input_mean, model.input_std, max_images, ridge, seed)
            result = (weight, bias, used)
        weight, bias, used = broadcast(result)
        if used:
            bridge.set_decode(weight, bias)
            how = f"ridge fit on {used} training images (codec {codec or 'unnamed: no codec.json'})"
        else:
            bridge.reset_decode()  # same on every rank: the run is seeded, and DDP starts from rank 0's weights
            how = "random (no training images)"
    log(LOG_PREFIX + how)
    return how
