"""When this process started: wall-clock budgets (training's ``--wall_budget``, the Kaggle session's 12 hours)
count the interpreter's start-up and imports too, which no timer started by our code would see."""

from __future__ import annotations

import os
import time


def process_start() -> float:
    """When this process started (``time.time()`` seconds): from ``/proc/self/stat`` on Linux, else now."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()
