"""The processes of a run: PyTorch's own DDP under ``torchrun`` (a plain process otherwise), the
stop signals, the RNG state a resume restores, and the digest that checks every rank's weights.

Process-group timeout (``--dist_timeout``, minutes, default 60): every collective waits at most this
long for the other ranks. The long waits of a run are the other ranks waiting for rank 0 while it
alone computes the latent statistics and checks the data (the broadcast after them), validates,
writes checkpoints, metrics and plots (the barrier at each epoch's end) and writes the final weights
(the barrier at the end). PyTorch's default (10 minutes for NCCL) is shorter than a validation of
WIDER FACE's split plus a checkpoint write on a slow disk, so a healthy run would be killed; a
rank that really hangs still ends the run within the timeout.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from latentface.util.device import DeviceError, resolve_device

#: The signals that ask a run to stop cleanly (the main process decides; loader workers ignore them).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Processes:
    """This process's place among the training processes (rank 0 alone logs and writes)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device_flag: str, timeout_minutes: float = 60.0) -> Processes:
        """Join the process group that ``torchrun`` describes (gloo on CPU, NCCL on GPUs), if any, with
        collectives that wait ``timeout_minutes`` (see the module docstring)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world_size > 1 else 0
        device = resolve_device(device_flag, local_rank)
        if device.type not in ("cpu", "cuda"):
            raise DeviceError(f"--device {device_flag}: training runs on auto, cpu, cuda or cuda:N, not {device.type}")
        if world_size == 1:
            return cls(0, 1, 0, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group(
                "nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=timeout_minutes)
            )
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def max(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum over ranks (flags any rank raised)."""
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def parameters_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's name and bytes: equal digests mean identical weights."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def rng_state() -> dict:
    """Every RNG a step draws from (python, numpy, torch, CUDA), as a checkpoint stores it."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`: a resumed run draws what the uninterrupted one would have."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (e.g. a Kaggle session ending) ask for a clean stop after the current step.

    A second Ctrl-C acts as usual (interrupts at once). A repeated SIGTERM does not cut the save short: under
    ``torchrun`` a SIGTERM to the process group reaches each rank twice, directly and forwarded by the launcher
    (which then waits ``--shutdown_timeout``, 30 s by default, before SIGKILL).
    """

    def __init__(self, log):
        self.received: str | None = None
        self._previous: dict = {}
        self._log = log

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    @property
    def signum(self) -> int | None:
        """The number of the signal received (None: none)."""
        return None if self.received is None else int(signal.Signals[self.received])

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum != signal.SIGINT:
            return  # already stopping
        self.received = signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signum, self._previous[signum])
        again = "press Ctrl-C again to stop at once" if signum == signal.SIGINT else "SIGKILL stops at once"
        self._log(f"{self.received} received: finishing this step and saving a resumable checkpoint ({again})")

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """A DataLoader worker's start (``worker_init_fn``): SIGINT and SIGTERM are the main process's to handle.

    A signal sent to the whole process group (Ctrl-C in a terminal, a scheduler's SIGTERM) then no longer
    kills the workers under the main process, which finishes its step and saves. Signals that arrive
    while a worker starts stay blocked (:func:`stop_signals_blocked`) and are discarded here.
    """
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while loader workers start: they inherit the block and ignore the signals
    before unblocking (:func:`ignore_stop_signals`); this process receives them when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
