"""Environment variables the project reads, each parsed in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Small configuration for notebooks and the Kaggle kernel (a fast check, not a real run).
SMOKE_ENV = "LATENTFACE_SMOKE"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def smoke(env: Mapping[str, str] = os.environ) -> bool:
    """True for ``LATENTFACE_SMOKE=1|true|yes|on``, False when unset or ``0|false|no|off``; else an error."""
    value = env.get(SMOKE_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{SMOKE_ENV}={env.get(SMOKE_ENV)!r}: expected 1/true/yes/on or 0/false/no/off")
