"""The operating point of post-processing: score threshold, NMS IoU, top-k before and after NMS.

One frozen value used by post-processing, the :class:`~latentface.inference.Detector`, the
tuner, the command line and export, so the defaults (RetinaFace's 0.4 / 5000 / 750) live here
only. Evaluation keeps low-score boxes (conf 0.02); display does not (0.6).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentface.errors import LatentfaceError
from latentface.util.io import read_json, write_json

EVAL_CONF = 0.02
DISPLAY_CONF = 0.6


class OperatingPointError(LatentfaceError, ValueError):
    """A threshold out of range or a malformed thresholds file."""


@dataclass(frozen=True)
class OperatingPoint:
    """``conf``: score threshold; ``nms``: NMS IoU; ``topk``: candidates per image before NMS; ``keep``: after."""

    conf: float = DISPLAY_CONF
    nms: float = 0.4
    topk: int = 5000
    keep: int = 750

    def __post_init__(self) -> None:
        for name in ("conf", "nms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise OperatingPointError(f"threshold {name!r} must be a number, got {value!r}")
            if not 0 <= value <= 1:
                raise OperatingPointError(f"threshold {name!r} must lie in [0, 1], got {value}")
            object.__setattr__(self, name, float(value))
        for name in ("topk", "keep"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
                raise OperatingPointError(f"threshold {name!r} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))

    @classmethod
    def evaluation(cls, **changes: Any) -> OperatingPoint:
        """The point WIDER FACE evaluation uses (conf 0.02: the PR curve needs the low-score boxes)."""
        return cls(**{"conf": EVAL_CONF, **changes})

    def replace(self, **changes: Any) -> OperatingPoint:
        """A copy with some fields changed (None values are ignored: unset flags change nothing)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(
        cls,
        values: Any,
        source: str = "thresholds",
        base: OperatingPoint | None = None,
    ) -> OperatingPoint:
        """``base`` (default: the display point) with the fields in ``values`` (any subset) replaced."""
        fields = [f.name for f in dataclasses.fields(cls)]
        example = json.dumps(cls().to_dict())
        if not isinstance(values, Mapping):
            raise OperatingPointError(f"{source}: thresholds must be a JSON object like {example}")
        unknown = [k for k in values if k not in fields]
        if unknown:
            raise OperatingPointError(f"{source}: unknown threshold {unknown[0]!r}; expected some of {fields}")
        try:
            return (base or cls()).replace(**dict(values))
        except OperatingPointError as exc:
            raise OperatingPointError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike, base: OperatingPoint | None = None) -> OperatingPoint:
        """Read a thresholds JSON (any subset of conf, nms, topk, keep), as the tuner saves it."""
        try:
            values = read_json(path, "thresholds file")
        except ValueError as exc:
            raise OperatingPointError(str(exc)) from None
        return cls.from_mapping(values, str(path), base)

    def save(self, path: str | os.PathLike) -> Path:
        """Write this point as the JSON that :meth:`load` and ``--thresholds`` read."""
        return write_json(path, self.to_dict())
