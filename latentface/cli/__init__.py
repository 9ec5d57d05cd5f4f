"""The `latentface` command: one subcommand per job.

Each subcommand lives in its own module ``latentface.cli.<name>``, which defines
``configure_parser(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``latentface --help`` stays fast and optional dependencies stay optional.
Every subcommand shares one error boundary: bad input ends with one line
``latentface <command>: error: <message>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from latentface.cli.args import flag  # noqa: F401 - the flag spelling helper, re-exported
from latentface.errors import LatentfaceError

SUBCOMMANDS = {
    "synth": "write the synthetic face dataset in the retina-modify layout",
    "encode": "encode images + WIDER labels into the retina-modify layout",
    "stats": "per-channel latent mean/std of a training split",
    "codec": "train and report the built-in learned codec",
    "train": "train a detector",
    "detect": "detect faces in latent files",
    "evaluate": "WIDER FACE and COCO evaluation of a checkpoint",
    "export": "export a checkpoint to ONNX / TorchScript",
    "bench": "latent vs RGB cost and accuracy benchmarks",
    "demo": "the whole pipeline on the synthetic dataset",
    "kaggle": "build, push and follow the Kaggle kernel",
}

#: Exit status of every subcommand when the input is bad (argparse uses 2 for bad flags too).
USAGE_ERROR = 2
#: What the error boundary reports in one line: the project's errors and the OS's file errors.
USER_ERRORS = (LatentfaceError, OSError, ValueError)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentface", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in argv:  # only the subcommand being run imports its module
            importlib.import_module(f"latentface.cli.{name}").configure_parser(p)
    return parser


def run_command(name: str, args: argparse.Namespace) -> int:
    """Run one subcommand inside the error boundary (``args.command_name``, when a subcommand's action
    sets it, names the action too: ``latentface kaggle push: error: ...``)."""
    module = importlib.import_module(f"latentface.cli.{name}")
    try:
        return int(module.run(args) or 0)
    except USER_ERRORS as exc:
        print(f"latentface {getattr(args, 'command_name', name)}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    return run_command(args.command, args)


if __name__ == "__main__":
    sys.exit(main())
