"""Checkpoint files and run directories: the one place that reads and writes ``.pth`` files.

A checkpoint is a dict saved by :func:`save_checkpoint` (atomically) and read by
:func:`load_checkpoint` (``weights_only=True``). Every checkpoint holds ``model`` (a state
dict), ``config`` (``model.config``: enough to rebuild the model, see
:func:`latentface.model.model_from_checkpoint`) and ``format_version``:

- format 2 (:data:`FORMAT_VERSION`): ``config["anchors"]`` is the anchor layout written out
  (levels, strides, sizes, ratios, variances), so a checkpoint decodes the same whatever the
  anchor presets of a later version are;
- format 1 (no ``format_version``): ``config["anchors"]`` is a preset name; reading resolves
  the name with today's presets and returns the payload in format 2.

:class:`RunDir` names the files of a training run directory.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from latentface.anchors import get_layout
from latentface.errors import LatentfaceError

#: The checkpoint format :func:`save_checkpoint` writes (see the module docstring).
FORMAT_VERSION = 2


class CheckpointError(LatentfaceError, RuntimeError):
    """A checkpoint file that is missing, unreadable or does not fit the model."""


@dataclass(frozen=True)
class RunDir:
    """The files of one training run directory, named in one place.

    ``RunDir(path).last`` is the resumable checkpoint, ``.best`` the best validation epoch,
    ``.final`` the weights at the end, ``.epoch(n)`` the weights after epoch ``n``;
    ``.metrics`` (one CSV row per epoch), ``.config`` (the resolved training settings, a valid
    ``--config`` file), ``.stats`` (the input normalisation), ``.curves``, ``.ranks`` (DDP) and ``.summary``
    (how the run stands or ended: finished, stopped early and why, failed).
    """

    path: Path

    LAST: ClassVar[str] = "last.pth"
    BEST: ClassVar[str] = "best.pth"
    FINAL: ClassVar[str] = "weight_final.pth"
    METRICS: ClassVar[str] = "metrics.csv"
    CONFIG: ClassVar[str] = "config.json"
    STATS: ClassVar[str] = "stats.json"
    CURVES: ClassVar[str] = "curves.png"
    RANKS: ClassVar[str] = "ranks.json"
    SUMMARY: ClassVar[str] = "summary.json"
    EPOCH_PATTERN: ClassVar[str] = "epoch_*.pth"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def final(self) -> Path:
        return self.path / self.FINAL

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def stats(self) -> Path:
        return self.path / self.STATS

    @property
    def curves(self) -> Path:
        return self.path / self.CURVES

    @property
    def ranks(self) -> Path:
        return self.path / self.RANKS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    def epoch(self, number: int) -> Path:
        """The weights after epoch ``number`` (1-based): ``epoch_001.pth``."""
        return self.path / f"epoch_{number:03d}.pth"

    def epochs(self) -> list[Path]:
        """The per-epoch checkpoints present, oldest first."""
        return sorted(self.path.glob(self.EPOCH_PATTERN))

    def holds_run(self) -> bool:
        """True when a run was started here (its resumable checkpoint exists)."""
        return self.last.exists()

    @staticmethod
    def resume_checkpoint(path: str | os.PathLike) -> Path:
        """What ``--resume PATH`` reads: a run directory means its ``last.pth``, a file itself."""
        path = Path(path)
        return RunDir(path).last if path.is_dir() else path


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` (plus ``format_version``) to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; a checkpoint is readable like any output
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read(path: Path, map_location, what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # one line: torch's weights_only message runs over several and suggests weights_only=False,
        # which would run whatever code the file holds
        if isinstance(exc, pickle.UnpicklingError):
            reason = "not a torch.save file of tensors and plain values; other pickled content is refused, never run"
        else:
            text = str(exc).strip()
            reason = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable {what} ({reason})") from exc


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Read a checkpoint saved by :func:`save_checkpoint`, in the current format; a clear error names a bad file."""
    path = Path(path)
    payload = _read(path, map_location, "latentface checkpoint")
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path}: not a latentface checkpoint (expected 'model' weights and a 'config')")
    return upgrade_payload(payload, path)


def upgrade_payload(payload: dict[str, Any], source: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint payload of any known format in the current one (see the module docstring)."""
    version = payload.get("format_version", 1)
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format {version!r}; this version of latentface reads formats "
            f"1 to {FORMAT_VERSION} (a newer latentface wrote it?)"
        )
    config = payload["config"]
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: its model config is {type(config).__name__}, not a dict")
    if version == 1:  # anchors by preset name (or absent: the default layout)
        config = dict(config)
        try:
            config["anchors"] = get_layout(config.get("anchors", "default")).to_dict()
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: its anchor layout {config.get('anchors')!r} is unknown ({exc})") from None
        payload = {**payload, "config": config, "format_version": FORMAT_VERSION}
    return payload


def read_state_dict(path: str | os.PathLike, what: str = "state dict") -> dict[str, torch.Tensor]:
    """A bare state dict file (e.g. torchvision's ImageNet weights), read with ``weights_only=True``."""
    state = _read(Path(path), "cpu", what)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a {what} (a {type(state).__name__})")
    return state


def load_weights(model: torch.nn.Module, state: dict, source: str | os.PathLike) -> None:
    """``load_state_dict`` with an error that names the file and the mismatch."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"{source}: weights do not fit the model {getattr(model, 'config', type(model).__name__)}: "
            f"{' '.join(first)}"
        ) from exc
