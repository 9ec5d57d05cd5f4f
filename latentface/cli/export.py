"""``latentface export``: a checkpoint to ONNX (dynamic batch and latent size) or TorchScript,
with a card (``<output>.json``) describing inputs, outputs, anchors and the operating point."""

from __future__ import annotations

import argparse

from latentface import LATENT_STRIDE
from latentface.cli.args import add_operating_point, flag, operating_point
from latentface.inference.export import DEFAULT_OPSET, EXPORTERS, FORMATS, INPUT_NAME, export_checkpoint


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(*flag("--weight"), dest="weight", required=True, metavar="PTH", help="latentface checkpoint")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument(
        *flag("--output"),
        dest="output",
        required=True,
        metavar="PATH",
        help="file to write (.onnx / .pt); PATH.json describes inputs, outputs and anchors",
    )
    parser.add_argument(
        *flag("--latent_size"),
        dest="latent_size",
        type=int,
        nargs=2,
        default=(40, 40),
        metavar=("H", "W"),
        help="example latent size to trace at (default 40 40); any size runs",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 17 (default {DEFAULT_OPSET})")
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="torchscript",
        help="ONNX exporter: torchscript (default, fast) or dynamo (torch.export-based)",
    )
    parser.add_argument(
        *flag("--no_check"),
        dest="no_check",
        action="store_true",
        help="skip the parity check against PyTorch at two latent sizes",
    )
    add_operating_point(parser)  # recorded in PATH.json for whoever post-processes the outputs


def run(args: argparse.Namespace) -> int:
    done = export_checkpoint(
        args.weight,
        args.output,
        args.format,
        args.latent_size,
        args.opset,
        args.exporter,
        check=not args.no_check,
        point=operating_point(args),
    )
    path, card = done.path, done.card
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {args.format}"
        f"{' via ' + args.exporter if args.format == 'onnx' else ''}, {done.seconds:.1f} s); "
        f"input {INPUT_NAME} [batch, {card['input']['shape'][1]}, height, width] at {LATENT_STRIDE} px per cell"
    )
    for size, diff in card.get("parity_max_abs_diff", {}).items():
        print(f"  max |{args.format} - pytorch| at {size}: {diff:.2e}")
    return 0
