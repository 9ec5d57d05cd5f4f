"""Export: a checkpoint to ONNX (dynamic batch and latent size) or TorchScript.

The exported graph is the network only: latent ``[B, C, H, W]`` in, the raw head outputs
``logits [B, A, 2]``, ``boxes [B, A, 4]``, ``landmarks [B, A, 10]`` out, with the input
normalisation inside. Anchors depend only on the latent size, so post-processing stays
outside: :func:`latentface.anchors.get_layout` (or the anchor description written to
``<output>.json`` beside the model) gives them, and :func:`latentface.inference.postprocessing.postprocess`
turns the outputs into faces at the operating point the card records.

Two ONNX exporters are offered. ``torchscript`` (default) is ``torch.onnx.export(..., dynamo=False)``
with ``dynamic_axes``: it traces the model once and exports in seconds. ``dynamo`` is the
``torch.export``-based exporter (``dynamo=True`` with ``dynamic_shapes``); it gives the same
outputs but takes tens of times longer on a CPU. Both keep the batch, height and width axes
dynamic; :func:`onnx_parity` checks an exported file against PyTorch at several sizes.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentface.boxes import VARIANCES
from latentface.inference.operating_point import OperatingPoint
from latentface.model.builder import model_from_checkpoint
from latentface.util.io import write_json

OUTPUT_NAMES = ("logits", "boxes", "landmarks")
INPUT_NAME = "latent"
DEFAULT_OPSET = 18
EXPORTERS = ("torchscript", "dynamo")
FORMATS = ("onnx", "torchscript")


@contextlib.contextmanager
def _quiet_tracing():
    """Silence what tracing says about code it handles correctly here: the input-shape check in
    ``normalize`` (a Python bool, fine for any traced shape) and the deprecation notices."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _example(model: torch.nn.Module, latent_size: Sequence[int], batch: int = 2) -> torch.Tensor:
    channels = int(model.input_mean.numel())
    check_latent_size(latent_size)
    return torch.randn(batch, channels, int(latent_size[0]), int(latent_size[1]))


def export_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    latent_size: Sequence[int] = (40, 40),
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> Path:
    """Write ``model`` as ONNX with dynamic batch, height and width axes.

    ``latent_size`` (h, w) is the example the graph is traced at; other sizes work too.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if opset < 17:
        raise ValueError(f"opset must be at least 17, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = _example(model, latent_size)
    common = dict(input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), opset_version=opset)
    with _quiet_tracing(), torch.no_grad():
        if exporter == "torchscript":
            axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
            axes.update({name: {0: "batch", 1: "anchors"} for name in OUTPUT_NAMES})
            torch.onnx.export(model, (example,), str(path), dynamic_axes=axes, dynamo=False, **common)
        else:
            from torch.export import Dim  # start-up time: torch.export loads only for the dynamo exporter

            shapes = {"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
            with contextlib.redirect_stdout(io.StringIO()):  # the dynamo exporter prints its progress
                torch.onnx.export(
                    model, (example,), str(path), dynamic_shapes=shapes, dynamo=True, external_data=False, **common
                )
    return path


def export_torchscript(model: torch.nn.Module, path: str | os.PathLike, latent_size: Sequence[int] = (40, 40)) -> Path:
    """Write ``model`` traced to TorchScript; it returns the (logits, boxes, landmarks) tuple at any latent size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(model.eval(), _example(model, latent_size), check_trace=False)
    _saved(path, "TorchScript", lambda: traced.save(str(path)))
    return path


def _max_difference(ours: Iterable, reference: Iterable[torch.Tensor]) -> float:
    return max(float(np.abs(np.asarray(a) - b.numpy()).max()) for a, b in zip(ours, reference))


def _parity(
    model: torch.nn.Module,
    run,
    latent_sizes: Sequence[Sequence[int]],
    batch: int,
    seed: int,
) -> dict[str, float]:
    """Max absolute difference between ``run(x)`` (the exported model's outputs) and PyTorch's, per input size."""
    generator = torch.Generator().manual_seed(seed)
    channels = int(model.input_mean.numel())
    result = {}
    for h, w in latent_sizes:
        x = torch.randn(batch, channels, int(h), int(w), generator=generator)
        with torch.no_grad():
            reference = model.eval()(x)
        result[f"{batch}x{channels}x{h}x{w}"] = _max_difference(run(x), reference)
    return result


def onnx_parity(
    model: torch.nn.Module,
    path: str | os.PathLike,
    latent_sizes: Sequence[Sequence[int]],
    batch: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Max absolute difference between onnxruntime and PyTorch outputs, per ``"BxCxHxW"`` input."""
    import onnxruntime as ort  # optional dependency (the export extra)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _parity(model, lambda x: session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()}), latent_sizes, batch, seed)


def torchscript_parity(
    model: torch.nn.Module,
    path: str | os.PathLike,
    latent_sizes: Sequence[Sequence[int]],
    batch: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """As :func:`onnx_parity`, for a TorchScript file."""
    with _quiet_tracing():
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(x):
        with torch.no_grad():
            return [o.numpy() for o in loaded(x)]

    return _parity(model, run, latent_sizes, batch, seed)


def model_card(
    model: torch.nn.Module, fmt: str, checkpoint: str | os.PathLike | None = None, point: OperatingPoint | None = None
) -> dict:
    """What a consumer of the exported file needs besides it: input/output names, the anchors and
    the operating point to post-process at (default: the display point)."""
    layout = model.anchor_layout
    point = point or OperatingPoint()
    return {
        "format": fmt,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "config": model.config,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", int(model.input_mean.numel()), "height", "width"],
            "pixels_per_cell": model.pixels_per_cell,
        },
        "outputs": {
            "logits": ["batch", "anchors", 2],
            "boxes": ["batch", "anchors", 4],
            "landmarks": ["batch", "anchors", 10],
        },
        "anchors": {
            "levels": list(layout.levels),
            "strides": list(layout.strides),
            "sizes": [list(s) for s in layout.sizes],
            "ratios": list(layout.ratios),
            "order": "level, y, x, anchor; centres at (i + 0.5) * stride; (cx, cy, w, h) in pixels",
        },
        "variances": list(VARIANCES),
        "postprocess": "softmax(logits)[..., 1] > conf, top-k, decode with the variances, NMS at IoU nms, "
        "keep-top-k (the operating_point's conf, topk, nms, keep)",
        "operating_point": point.to_dict(),
    }


@dataclass
class Exported:
    """What :func:`export_checkpoint` wrote: the model file, its card (also at ``<path>.json``), seconds taken."""

    path: Path
    card: dict
    seconds: float


def check_latent_size(latent_size: Sequence[int]) -> None:
    """ValueError naming ``--latent_size`` unless it is two sizes of at least 1 (h, w)."""
    if len(latent_size) != 2 or any(int(n) < 1 for n in latent_size):
        raise ValueError(
            f"--latent_size must be two sizes of at least 1 (H W), got {' '.join(str(n) for n in latent_size)}"
        )


def check_writable(path: str | os.PathLike) -> Path:
    """OSError naming ``path`` (``--output``) unless a file can be written there: not a folder, its
    folder made or there, and a file creatable in it. Checked before any model is loaded or traced."""
    path = Path(path)
    if path.is_dir():
        raise OSError(f"{path}: is a folder; --output takes the file to write (e.g. {path / 'detector.onnx'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise OSError(f"{path}: cannot write the export there ({exc.strerror or exc})") from None
    return path


def _saved(path: Path, what: str, save) -> None:
    """Run ``save()`` (writing only: no tracing), turning a failure to write (torch raises RuntimeError
    for it) into an OSError naming ``path``."""
    try:
        save()
    except (OSError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OSError(f"{path}: cannot write the {what} file ({reason})") from None


def export_checkpoint(
    weight: str | os.PathLike,
    output: str | os.PathLike,
    fmt: str = "onnx",
    latent_size: Sequence[int] = (40, 40),
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    check: bool = True,
    point: OperatingPoint | None = None,
) -> Exported:
    """Export the model of a checkpoint and write its card beside it (``<output>.json``).

    ``check``: compare the file with PyTorch at ``latent_size`` and a second, odd size (the
    card's ``parity_max_abs_diff``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    check_latent_size(latent_size)
    check_writable(output)
    model, _ = model_from_checkpoint(weight)
    model.eval()
    start = time.perf_counter()
    if fmt == "onnx":
        path = export_onnx(model, output, latent_size, opset, exporter)
    else:
        path = export_torchscript(model, output, latent_size)
    seconds = time.perf_counter() - start
    card = model_card(model, fmt, weight, point)
    h, w = latent_size
    if check:
        sizes = [(h, w), (max(1, h // 2 + 1), max(1, w - w // 4))]
        parity = onnx_parity if fmt == "onnx" else torchscript_parity
        card["parity_max_abs_diff"] = parity(model, path, sizes)
    write_json(Path(str(path) + ".json"), card)
    return Exported(path, card, seconds)
