"""``latentface export``: a checkpoint to ONNX (dynamic batch and latent size) or TorchScript.

The exported graph is the network only: latent ``[B, C, H, W]`` in, the raw head outputs
``logits [B, A, 2]``, ``boxes [B, A, 4]``, ``landmarks [B, A, 10]`` out, with the input
normalisation inside. Anchors depend only on the latent size, so post-processing stays
outside: :func:`latentface.anchors.get_layout` (or the anchor description written to
``<output>.json`` beside the model) gives them, and :func:`latentface.postprocess.postprocess`
turns the outputs into faces.

Two ONNX exporters are offered. ``torchscript`` (default) is ``torch.onnx.export(..., dynamo=False)``
with ``dynamic_axes``: it traces the model once and exports in seconds. ``dynamo`` is the
``torch.export``-based exporter (``dynamo=True`` with ``dynamic_shapes``); it gives the same
outputs but takes tens of times longer on a CPU. Both keep the batch, height and width axes
dynamic; :func:`onnx_parity` checks an exported file against PyTorch at several sizes.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from latentface import LATENT_STRIDE
from latentface.boxes import VARIANCES
from latentface.checkpoint import CheckpointError, model_from_checkpoint

OUTPUT_NAMES = ("logits", "boxes", "landmarks")
INPUT_NAME = "latent"
DEFAULT_OPSET = 18
EXPORTERS = ("torchscript", "dynamo")


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
    return torch.randn(batch, channels, int(latent_size[0]), int(latent_size[1]))


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, latent_size: Sequence[int] = (40, 40),
                opset: int = DEFAULT_OPSET, exporter: str = "torchscript") -> Path:
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
            from torch.export import Dim

            shapes = {"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
            with contextlib.redirect_stdout(io.StringIO()):  # the dynamo exporter prints its progress
                torch.onnx.export(model, (example,), str(path), dynamic_shapes=shapes, dynamo=True,
                                  external_data=False, **common)
    return path


def export_torchscript(model: torch.nn.Module, path: str | os.PathLike, latent_size: Sequence[int] = (40, 40)) -> Path:
    """Write ``model`` traced to TorchScript; it returns the (logits, boxes, landmarks) tuple at any latent size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(model.eval(), _example(model, latent_size), check_trace=False)
        traced.save(str(path))
    return path


def _max_difference(ours: Iterable, reference: Iterable[torch.Tensor]) -> float:
    return max(float(np.abs(np.asarray(a) - b.numpy()).max()) for a, b in zip(ours, reference))


def onnx_parity(model: torch.nn.Module, path: str | os.PathLike, latent_sizes: Sequence[Sequence[int]],
                batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Max absolute difference between onnxruntime and PyTorch outputs, per ``"BxCxHxW"`` input."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    channels = int(model.input_mean.numel())
    result = {}
    for h, w in latent_sizes:
        x = torch.randn(batch, channels, int(h), int(w), generator=generator)
        with torch.no_grad():
            reference = model.eval()(x)
        outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
        result[f"{batch}x{channels}x{h}x{w}"] = _max_difference(outputs, reference)
    return result


def torchscript_parity(model: torch.nn.Module, path: str | os.PathLike, latent_sizes: Sequence[Sequence[int]],
                       batch: int = 2, seed: int = 0) -> dict[str, float]:
    """As :func:`onnx_parity`, for a TorchScript file."""
    with _quiet_tracing():
        loaded = torch.jit.load(str(path), map_location="cpu")
    generator = torch.Generator().manual_seed(seed)
    channels = int(model.input_mean.numel())
    result = {}
    for h, w in latent_sizes:
        x = torch.randn(batch, channels, int(h), int(w), generator=generator)
        with torch.no_grad():
            reference, outputs = model.eval()(x), loaded(x)
        result[f"{batch}x{channels}x{h}x{w}"] = _max_difference([o.numpy() for o in outputs], reference)
    return result


def model_card(model: torch.nn.Module, fmt: str, checkpoint: str | os.PathLike | None = None) -> dict:
    """What a consumer of the exported file needs besides it: input/output names and the anchors."""
    layout = model.anchor_layout
    return {
        "format": fmt,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "config": model.config,
        "input": {"name": INPUT_NAME, "shape": ["batch", int(model.input_mean.numel()), "height", "width"],
                  "pixels_per_cell": model.pixels_per_cell},
        "outputs": {"logits": ["batch", "anchors", 2], "boxes": ["batch", "anchors", 4],
                    "landmarks": ["batch", "anchors", 10]},
        "anchors": {"levels": list(layout.levels), "strides": list(layout.strides),
                    "sizes": [list(s) for s in layout.sizes], "ratios": list(layout.ratios),
                    "order": "level, y, x, anchor; centres at (i + 0.5) * stride; (cx, cy, w, h) in pixels"},
        "variances": list(VARIANCES),
        "postprocess": "softmax(logits)[..., 1] > conf, top-k, decode with the variances, NMS 0.4, keep-top-k",
    }


# ---------------------------------------------------------------------- command line


def configure_parser(parser) -> None:
    from latentface.cli import flag

    parser.add_argument(*flag("--weight"), dest="weight", required=True, metavar="PTH", help="latentface checkpoint")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument(*flag("--output"), dest="output", required=True, metavar="PATH",
                        help="file to write (.onnx / .pt); PATH.json describes inputs, outputs and anchors")
    parser.add_argument(*flag("--latent_size"), dest="latent_size", type=int, nargs=2, default=(40, 40),
                        metavar=("H", "W"), help="example latent size to trace at (default 40 40); any size runs")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 17 (default {DEFAULT_OPSET})")
    parser.add_argument("--exporter", choices=EXPORTERS, default="torchscript",
                        help="ONNX exporter: torchscript (default, fast) or dynamo (torch.export-based)")
    parser.add_argument(*flag("--no_check"), dest="no_check", action="store_true",
                        help="skip the parity check against PyTorch at two latent sizes")


def run(args) -> int:
    try:
        return _run(args)
    except (CheckpointError, OSError, ValueError) as exc:
        raise SystemExit(f"latentface export: {exc}") from None


def _run(args) -> int:
    model, _ = model_from_checkpoint(args.weight)
    model.eval()
    start = time.perf_counter()
    if args.format == "onnx":
        path = export_onnx(model, args.output, args.latent_size, args.opset, args.exporter)
    else:
        path = export_torchscript(model, args.output, args.latent_size)
    seconds = time.perf_counter() - start
    card = model_card(model, args.format, args.weight)
    h, w = args.latent_size
    if not args.no_check:
        sizes = [(h, w), (max(1, h // 2 + 1), max(1, w - w // 4))]
        check = onnx_parity if args.format == "onnx" else torchscript_parity
        card["parity_max_abs_diff"] = check(model, path, sizes)
    Path(str(path) + ".json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {args.format}"
          f"{' via ' + args.exporter if args.format == 'onnx' else ''}, {seconds:.1f} s); "
          f"input {INPUT_NAME} [batch, {card['input']['shape'][1]}, height, width] at {LATENT_STRIDE} px per cell")
    for size, diff in card.get("parity_max_abs_diff", {}).items():
        print(f"  max |{args.format} - pytorch| at {size}: {diff:.2e}")
    return 0
