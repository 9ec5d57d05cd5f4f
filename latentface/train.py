"""``python -m latentface.train``: the train subcommand as a module, for ``torchrun -m latentface.train``.

The command itself is :mod:`latentface.cli.train`; the Python API is :class:`TrainConfig`
and :func:`train`, re-exported here.
"""

from __future__ import annotations

import argparse
import sys

from latentface.cli import run_command
from latentface.cli.train import configure_parser
from latentface.training import TrainConfig, TrainingError, train

__all__ = ["TrainConfig", "TrainingError", "main", "train"]


def main(argv: list[str] | None = None) -> int:
    """``latentface train`` with its error boundary (one line and exit status 2 on bad input)."""
    parser = argparse.ArgumentParser(prog="latentface train", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run_command("train", parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
