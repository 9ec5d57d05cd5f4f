"""The wall clock of a training run: the ``--wall_budget`` and its predictions, the time each kind of
overhead takes, and the progress lines a person reads in a log.

The wall budget counts from the start of the process (set-up, data checks, statistics, validation
and checkpoint writes included); a later run in the same process counts from its own start. Before
going on after an epoch the loop asks :meth:`Clock.next_epoch_fits`:
the next epoch's training, one validation and the checkpoint writes, each as measured so far, must
end before ``budget - final_margin``; the margin is left for what follows the run (a final
evaluation, copying the outputs). Inside an epoch :meth:`Clock.must_stop` stops the steps when the next
step and one validation with its checkpoints would not fit any more. The validation that ends a run covers
the whole split even under ``--val_subset``, so it is predicted from the time per image of the last one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from latentface.util.process import process_start

#: Overhead kinds, in the order the end summary lists them.
OVERHEADS = ("set-up", "pre-flight check", "statistics", "validation", "checkpoints", "records")


_first_run = True


def run_start() -> float:
    """When a training run started: the process's start for the first run of a process (its imports and
    set-up count), the call itself for a later one (a benchmark that trains many models in one process)."""
    global _first_run
    first, _first_run = _first_run, False
    return process_start() if first else time.time()


def hms(seconds: float | None) -> str:
    """``3725`` -> ``1:02:05``; None -> ``?``."""
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def duration(seconds: float | None) -> str:
    """``9.46`` -> ``9.5 s``; a minute or more as :func:`hms`."""
    return hms(seconds) if seconds is None or seconds >= 60 else f"{seconds:.1f} s"


class Clock:
    """Wall time since the process started, overheads by kind, and the ``--wall_budget`` (None: no budget)."""

    def __init__(self, budget: float | None = None, margin: float = 0.0, start: float | None = None):
        self.start = process_start() if start is None else start
        self.budget, self.margin = budget, margin
        self.spent = dict.fromkeys(OVERHEADS, 0.0)
        self.last: dict[str, float] = {}  # the latest duration of each kind
        self.step_s = 0.0  # mean time of a training step in this epoch so far
        self.epoch_s: float | None = None  # training time of one whole epoch, as last measured
        self.val_guess: float | None = None  # a whole validation's time before one was measured
        self.val_share = 1.0  # the share of the validation split that the last validation covered

    def now(self) -> float:
        """Seconds since the process started."""
        return time.time() - self.start

    @contextlib.contextmanager
    def measure(self, kind: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - t
            self.spent[kind] += took
            self.last[kind] = took

    @property
    def deadline(self) -> float | None:
        """Seconds after the start by which training must be done (None without a budget)."""
        return None if self.budget is None else self.budget - self.margin

    def validated(self, images: int, split: int) -> None:
        """The validation just measured covered ``images`` of the split's ``split`` images."""
        self.val_share = images / split if images and split else 1.0

    def validation_s(self, whole: bool = True) -> float:
        """One validation and its checkpoint writes, as measured (or guessed before the first): of the whole
        split (the last validation of a run), or ``whole=False`` of as many images as the last one."""
        if "validation" not in self.last:
            took = self.val_guess or 0.0
        else:
            took = self.last["validation"] / (self.val_share if whole else 1.0)
        return took + self.last.get("checkpoints", 0.0)

    def must_stop(self) -> bool:
        """Inside an epoch: another step, then the last (whole) validation and its checkpoints, would end past
        the deadline."""
        return self.deadline is not None and self.now() + self.step_s + self.validation_s() >= self.deadline

    def next_epoch_fits(self, validate_now: bool) -> tuple[bool, float, float]:
        """(fits, seconds needed, seconds left): this epoch's validation when ``validate_now`` (as large as the
        last one), its checkpoints, then one more epoch of training and the last, whole, validation with its
        checkpoints, all before the deadline."""
        need = self.validation_s(whole=False) if validate_now else self.last.get("checkpoints", 0.0)
        need += (self.epoch_s or 0.0) + self.validation_s()
        left = (self.deadline - self.now()) if self.deadline is not None else float("inf")
        return need <= left, need, left

    def share_used(self) -> float | None:
        return None if self.budget is None else self.now() / self.budget

    def overheads(self) -> str:
        """``set-up 3.1 s, validation 16.0 s, ...`` (kinds that took time)."""
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.spent.items() if v >= 0.05) or "none"

    def timing(self, trained_s: float) -> dict:
        """The run's times for summary.json: wall, training steps, each overhead, the budget."""
        wall = self.now()
        return {
            "wall_s": round(wall, 1),
            "training_steps_s": round(trained_s, 1),
            "overhead_s": {k: round(v, 1) for k, v in self.spent.items()},
            "epoch_training_s": None if self.epoch_s is None else round(self.epoch_s, 1),
            "last_validation_s": None if "validation" not in self.last else round(self.last["validation"], 1),
            "wall_budget_s": self.budget,
            "final_margin_s": self.margin if self.budget is not None else None,
        }


class Progress:
    """One line every ``every`` seconds (0: none) while training, readable in a log without a terminal:
    ``epoch 2/10, step 37/120: 45.2 img/s, elapsed 0:12:03, epoch ETA 0:03:10, wall budget 23% used``.
    The first step of a session is always reported."""

    def __init__(self, every: float, clock: Clock, log: Callable[[str], None]):
        self.every, self.clock, self.log = every, clock, log
        self._next: float | None = None

    def step(self, epoch: int, epochs: int, step: int, steps: int, images_per_s: float, steps_per_s: float) -> None:
        if not self.every:
            return
        now = time.monotonic()
        if self._next is not None and now < self._next:
            return
        self._next = now + self.every
        eta = (steps - step) / steps_per_s if steps_per_s > 0 else None
        share = self.clock.share_used()
        budget = "" if share is None else f", wall budget {100 * share:.0f}% used of {hms(self.clock.budget)}"
        self.log(
            f"epoch {epoch}/{epochs}, step {step}/{steps}: {images_per_s:.1f} img/s, elapsed "
            f"{hms(self.clock.now())}, epoch ETA {hms(eta)}{budget}"
        )
