"""Measuring one model: multiply-adds, parameters, activation memory, memory saved for backward,
latency in interleaved repeats, the effective receptive field of a bridge, and the machine itself."""

from __future__ import annotations

import copy
import os
import platform
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from latentface import LATENT_STRIDE
from latentface.model import LatentRetinaFace


def macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass (``torch.utils.flop_counter``: FLOPs / 2)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(x)
    return counter.get_total_flops() // 2


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _LiveTensors(TorchDispatchMode):
    """Tracks the bytes of every tensor storage that ops create while they are referenced."""

    def __init__(self, external: Sequence[torch.Tensor] = ()):
        super().__init__()
        self.external = {t.untyped_storage().data_ptr() for t in external}
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self.external:
            return
        if key not in self.refs:
            self.refs[key], self.sizes[key] = 0, storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self.refs[key] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if not self.refs[key]:
            del self.refs[key]
            self.live -= self.sizes.pop(key)


def activation_peak(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of activations alive at once during one inference forward (weights and input excluded).

    Measured by following every tensor the forward's ops create until Python drops it: the
    memory an allocator must provide for activations, independent of allocator caching.
    """
    external = [x, *model.parameters(), *model.buffers()]
    with torch.inference_mode(), _LiveTensors(external) as tracker:
        out = model(x)
        del out
    return tracker.peak


def saved_for_backward(model: nn.Module, x: torch.Tensor, loss_fn: Callable[[Any], torch.Tensor]) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one training step."""
    seen: dict[int, int] = {}
    external = {t.untyped_storage().data_ptr() for t in (x, *model.parameters(), *model.buffers())}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in external:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model(x))
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency(
    cases: Mapping[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1, device: str | torch.device = "cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument callable, measured in turns.

    Every repeat runs every case once, starting one case later each time, so slow drifts in
    the machine's load reach all cases alike; report the median of the returned lists.
    """
    device = torch.device(device)
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            cases[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def inference_call(model: nn.Module, x: torch.Tensor, amp: bool = False) -> Callable[[], Any]:
    """A zero-argument callable that runs one inference forward of ``model`` on ``x`` (for :func:`latency`)."""

    def call():
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
            return model(x)

    return call


def model_input(model: nn.Module, image: int, batch: int, device: torch.device) -> torch.Tensor:
    """A random input of ``model`` for an ``image``-pixel square: a latent, or RGB values in 0..255."""
    if isinstance(model, LatentRetinaFace):
        cells = image // LATENT_STRIDE
        return torch.randn(batch, model.input_mean.numel(), cells, cells, device=device)
    return torch.rand(batch, 3, image, image, device=device) * 255


def model_cost(model: nn.Module, x: torch.Tensor, measure_activations: bool = True) -> dict[str, float]:
    """Parameters, multiply-adds (whole model, and the input stage: bridge or RGB stem+layer1), peak activations.

    Multiply-adds are counted on a copy on the ``meta`` device (shapes only, no arithmetic).
    """
    model = model.eval()
    shadow = copy.deepcopy(model).to("meta")
    stage = shadow.bridge if hasattr(shadow, "bridge") else shadow.stem
    return {
        "params": parameters(model),
        "macs": macs(shadow, torch.empty(x.shape, device="meta")),
        "input_stage_macs": macs(stage, torch.empty(x.shape, device="meta")),
        "input_stage_params": parameters(stage),
        "activation_bytes": activation_peak(model, x) if measure_activations else None,
    }


def effective_receptive_field(bridge: nn.Module, in_channels: int = 256, cells: int = 9) -> np.ndarray:
    """|d C1 centre / d latent| summed over channels: which latent cells the centre stride-4 pixel depends on.

    A per-cell bridge (PixelShuffle) reads exactly one cell; spatial context widens it.
    Returns [cells, cells] normalised to sum 1 (BatchNorm in eval mode, random weights).
    """
    bridge = bridge.eval()
    x = torch.randn(1, in_channels, cells, cells, requires_grad=True)
    y = bridge(x)
    c = y.shape[-1] // 2
    y[0, :, c, c].sum().backward()
    g = x.grad.abs().sum(1)[0].numpy()
    return g / g.sum()


def machine() -> dict[str, Any]:
    """The CPU, core and thread counts, GPU, Python, torch and OS of this machine (named in every report)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
