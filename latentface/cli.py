"""The `latentface` command: one subcommand per job.

Each subcommand lives in its own module, which defines ``configure_parser(parser)``
and ``run(args) -> int``. Modules are imported only when their subcommand runs, so
``latentface --help`` stays fast and optional dependencies stay optional.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "synth": ("latentface.data.synth", "write the synthetic face dataset in the retina-modify layout"),
    "encode": ("latentface.data.encode", "encode images + WIDER labels into the retina-modify layout"),
    "stats": ("latentface.data.stats", "per-channel latent mean/std of a training split"),
    "train": ("latentface.train", "train a detector"),
    "detect": ("latentface.detect", "detect faces in latent files"),
    "evaluate": ("latentface.evaluate", "WIDER FACE and COCO evaluation of a checkpoint"),
    "export": ("latentface.export", "export a checkpoint to ONNX / TorchScript"),
    "bench": ("latentface.bench", "latent vs RGB cost and accuracy benchmarks"),
    "demo": ("latentface.demo", "the whole pipeline on the synthetic dataset"),
    "kaggle": ("latentface.kaggle", "build, push and follow the Kaggle kernel"),
}


def flag(name: str) -> list[str]:
    """Both spellings of a long flag, as the seeds used them: ``--dataset_root`` and ``--dataset-root``."""
    body = name[2:]
    return list(dict.fromkeys([name, "--" + body.replace("_", "-"), "--" + body.replace("-", "_")]))


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentface", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name in argv:  # only the subcommand being run imports its module
            importlib.import_module(module).configure_parser(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
