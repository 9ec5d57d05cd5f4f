"""Checkpoints: written atomically, read with ``weights_only=True``, carrying the model config."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from latentface.model import build_model


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable or does not fit the model."""


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` via a temporary file and an atomic rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Read a checkpoint saved by :func:`save_checkpoint`; a clear error names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable latentface checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path}: not a latentface checkpoint (expected 'model' weights and a 'config')")
    return payload


def model_from_checkpoint(path: str | os.PathLike, map_location="cpu"):
    """Rebuild the model a checkpoint describes and load its weights (no architecture flags needed)."""
    payload = load_checkpoint(path, map_location)
    try:
        model = build_model(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its model config {payload['config']} is not buildable ({exc})") from exc
    load_weights(model, payload["model"], path)
    return model, payload


def load_weights(model: torch.nn.Module, state: dict, source: str | os.PathLike) -> None:
    """``load_state_dict`` with an error that names the file and the mismatch."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"{source}: weights do not fit the model {getattr(model, 'config', type(model).__name__)}: {' '.join(first)}"
        ) from exc
