"""Argument groups that several subcommands share, so each flag is spelled and documented once."""

from __future__ import annotations

import argparse

from latentface.inference.operating_point import EVAL_CONF, OperatingPoint


def flag(name: str) -> list[str]:
    """Both spellings of a long flag: ``--dataset_root`` and ``--dataset-root``."""
    body = name[2:]
    return list(dict.fromkeys([name, "--" + body.replace("_", "-"), "--" + body.replace("-", "_")]))


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument("--device", default=default, help="auto (a GPU when there is one), cpu, cuda or cuda:N")


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        *flag("--no_progress"), dest="no_progress", action="store_true", help="no progress bars (logs stay)"
    )


def add_dataset(parser: argparse.ArgumentParser, required: bool = True, split: str | None = None) -> None:
    """``--dataset_root`` and ``--latent_type`` (the rate file, ``mixed`` or a list), optionally ``--split``."""
    parser.add_argument(
        *flag("--dataset_root"),
        dest="dataset_root",
        required=required,
        metavar="DIR",
        help="dataset in the retina-modify layout",
    )
    parser.add_argument(
        *flag("--latent_type"),
        dest="latent_type",
        default="latent_75.npy",
        help="latent file of each image (default latent_75.npy)",
    )
    if split is not None:
        parser.add_argument("--split", default=split, help=f"split (default {split})")


def add_operating_point(parser: argparse.ArgumentParser, default_conf: str = f"{OperatingPoint().conf}") -> None:
    """``--thresholds JSON`` and the flags that override it: ``--conf --nms --topk --keep``."""
    d = OperatingPoint()
    parser.add_argument(
        *flag("--thresholds"),
        dest="thresholds",
        default=None,
        metavar="JSON",
        help='operating point {"conf", "nms", "topk", "keep"} (the tuner saves one); flags override it',
    )
    parser.add_argument("--conf", type=float, default=None, help=f"score threshold (default {default_conf})")
    parser.add_argument("--nms", type=float, default=None, help=f"NMS IoU (default {d.nms})")
    parser.add_argument("--topk", type=int, default=None, help=f"boxes kept before NMS (default {d.topk})")
    parser.add_argument("--keep", type=int, default=None, help=f"boxes kept after NMS (default {d.keep})")


def operating_point(args: argparse.Namespace, evaluation: bool = False) -> OperatingPoint:
    """Defaults < ``--thresholds`` file < the flags given. ``evaluation`` starts from conf 0.02."""
    point = OperatingPoint(conf=EVAL_CONF) if evaluation else OperatingPoint()
    if getattr(args, "thresholds", None):
        point = OperatingPoint.load(args.thresholds, base=point)
    given = {k: getattr(args, k, None) for k in ("conf", "nms", "topk", "keep")}
    return OperatingPoint.from_mapping({k: v for k, v in given.items() if v is not None}, "command line", point)
