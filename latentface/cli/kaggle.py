"""``latentface kaggle``: train on Kaggle's GPUs from a laptop, every Kaggle call through the ``kaggle`` command::

latentface kaggle build --user ME          # kaggle/build/kernel + kaggle/build/package (the wheel)
latentface kaggle push --user ME           # build, create/version the package dataset, push the kernel
latentface kaggle status --user ME         # the kernel's run status
latentface kaggle output --user ME         # its /kaggle/working -> runs/kaggle/<slug>/
latentface kaggle download-data --data OWNER/retina-modify   # -> data/retina-modify/
latentface kaggle sync-notebook            # kaggle/latentface-train.ipynb from notebooks/03
latentface kaggle estimate                 # time per epoch on T4 x2, estimated from docs/benchmarks.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from latentface import __version__
from latentface.cli.args import flag
from latentface.tools.kaggle import (
    DATA_SLUG,
    KERNEL_METADATA,
    KERNEL_SLUG,
    MACHINE_SHAPE,
    MACHINE_SHAPES,
    PACKAGE_SLUG,
    Build,
    KaggleCLI,
    KaggleSetupError,
    build_kernel,
    find_dataset_root,
    kaggle_username,
    project_root,
    push,
    read_metadata,
    split_ref,
    write_kernel_notebook,
)
from latentface.tools.kaggle.estimate import UTILISATION, estimate_lines


def _add_identity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(*flag("--user"), help="Kaggle username (default: $KAGGLE_USERNAME or the CLI's kaggle.json)")
    parser.add_argument(*flag("--slug"), default=KERNEL_SLUG, help=f"kernel slug (default: {KERNEL_SLUG})")


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        *flag("--data"), metavar="OWNER/SLUG", help=f"the retina-modify dataset to attach (default: USER/{DATA_SLUG})"
    )
    parser.add_argument(
        *flag("--images"),
        metavar="OWNER/SLUG",
        help="a copy of WIDER FACE to attach too, for a run that learns from the RGB images (TRAIN teacher or "
        "reconstruct): the kernel finds its <index>--<event>/ image folders wherever the copy keeps them",
    )
    parser.add_argument(
        *flag("--package_slug"),
        default=PACKAGE_SLUG,
        help=f"slug of the dataset that carries the wheel (default: {PACKAGE_SLUG})",
    )
    parser.add_argument(*flag("--title"), help="kernel title (default: the slug with spaces; must slugify to it)")
    parser.add_argument(
        *flag("--resume_from"),
        action="append",
        default=[],
        metavar="OWNER/KERNEL",
        help="attach a previous kernel's output; the kernel continues its furthest run (repeatable)",
    )
    parser.add_argument(
        *flag("--no_internet"),
        action="store_true",
        help="enable_internet false (W&B then logs offline into /kaggle/working)",
    )
    parser.add_argument(*flag("--public"), action="store_true", help="a public kernel (default: private)")
    parser.add_argument(
        *flag("--machine_shape"),
        default=MACHINE_SHAPE,
        choices=MACHINE_SHAPES,
        metavar="SHAPE",
        help=f"accelerator, one of {', '.join(MACHINE_SHAPES)} (default: {MACHINE_SHAPE}, i.e. T4 x2)",
    )
    parser.add_argument(*flag("--out"), help="build folder (default: kaggle/build in the checkout)")
    parser.add_argument(*flag("--project"), help="source checkout to pack (default: the one this package runs from)")


def _action(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(command_name=f"kaggle {name}")  # errors read `latentface kaggle <action>: error: ...`
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kaggle_command", metavar="ACTION", required=True)
    p = _action(sub, "build", "write kaggle/build: the kernel (notebook 03) and the wheel dataset")
    _add_identity(p)
    _add_build_options(p)
    p = _action(sub, "push", "build, create or version the wheel dataset, push and run the kernel")
    _add_identity(p)
    _add_build_options(p)
    p.add_argument(*flag("--skip_build"), action="store_true", help="push kaggle/build as it is")
    p.add_argument(*flag("--message"), help="dataset version notes (default: latentface <version>)")
    p.add_argument(
        *flag("--wait"),
        type=float,
        default=600,
        help="seconds to wait for Kaggle to process the wheel dataset (0: do not wait; default 600)",
    )
    p = _action(sub, "status", "the kernel's run status (kaggle kernels status)")
    _add_identity(p)
    p = _action(sub, "output", "download the kernel's /kaggle/working (kaggle kernels output)")
    _add_identity(p)
    p.add_argument(*flag("--dest"), help="folder (default: runs/kaggle/<slug>)")
    p.add_argument(*flag("--force"), action="store_true", help="overwrite files already there")
    p = _action(sub, "download-data", f"download {DATA_SLUG} into data/ (kaggle datasets download)")
    p.add_argument(*flag("--user"), help="Kaggle username, the default dataset owner")
    p.add_argument(*flag("--data"), metavar="OWNER/SLUG", help=f"dataset (default: USER/{DATA_SLUG})")
    p.add_argument(*flag("--dest"), help="folder (default: data/<slug>)")
    p = _action(sub, "sync-notebook", "regenerate kaggle/<slug>.ipynb from notebooks/03 (no Kaggle call)")
    p.add_argument(*flag("--project"), help="source checkout (default: the one this package runs from)")
    p = _action(sub, "estimate", "time per epoch on T4 x2 of the default and fast presets, estimated from their MACs")
    p.add_argument(*flag("--benchmarks"), help="benchmarks JSON with cost.rows (default: docs/benchmarks.json)")
    p.add_argument(
        *flag("--utilisation"),
        type=float,
        default=UTILISATION,
        help=f"assumed sustained share of the T4's fp16 peak (default: {UTILISATION:g})",
    )
    p.add_argument(*flag("--gpus"), type=int, default=2, help="GPUs (default: 2)")
    p.add_argument(*flag("--project"), help="source checkout (default: the one this package runs from)")


def _build(args: argparse.Namespace, user: str) -> Build:
    result = build_kernel(
        user,
        data=args.data,
        slug=args.slug,
        title=args.title,
        package_slug=args.package_slug,
        resume_from=args.resume_from,
        images=args.images,
        internet=not args.no_internet,
        private=not args.public,
        machine_shape=args.machine_shape,
        out=args.out,
        project=args.project,
    )
    print(f"kernel  {result.kernel_id}: {result.kernel_dir}")
    print(f"package {result.package_id}: {result.wheel}")
    return result


def _push(args: argparse.Namespace, cli: KaggleCLI, user: str) -> None:
    if args.skip_build:
        result = Build.read(Path(args.out) if args.out else project_root(args.project) / "kaggle" / "build")
    else:
        result = _build(args, user)
    push(result, cli, args.message or f"latentface {__version__}", wait=args.wait)
    print(
        f"pushed: https://www.kaggle.com/code/{result.kernel_id}\n"
        f"follow it with `latentface kaggle status --user {user} --slug {args.slug}`, then fetch the results "
        f"with `latentface kaggle output --user {user} --slug {args.slug}`"
    )


def _download_data(args: argparse.Namespace, cli: KaggleCLI, user: str) -> None:
    data = args.data or f"{user}/{DATA_SLUG}"
    split_ref(data, "--data")
    dest = Path(args.dest or Path("data") / data.split("/")[1])
    dest.mkdir(parents=True, exist_ok=True)
    cli.run(["datasets", "download", "-d", data, "-p", dest, "--unzip"])
    found = find_dataset_root(dest)
    if found is None:
        raise KaggleSetupError(f"{data} was downloaded to {dest}, but no train/labels.txt is there")
    print(f"dataset ready: train with --dataset_root {found}")


def run(args: argparse.Namespace) -> int:
    action = args.kaggle_command
    if action == "sync-notebook":
        root = project_root(args.project)
        code_file = read_metadata(root / "kaggle" / KERNEL_METADATA)["code_file"]
        print(write_kernel_notebook(root / "kaggle" / code_file, root))
        return 0
    if action == "estimate":
        benchmarks = args.benchmarks or project_root(args.project) / "docs" / "benchmarks.json"
        print("\n".join(estimate_lines(benchmarks, utilisation=args.utilisation, gpus=args.gpus)))
        return 0
    if action == "build":
        _build(args, kaggle_username(args.user))
        return 0
    cli = KaggleCLI()
    user = kaggle_username(args.user)
    if action == "push":
        _push(args, cli, user)
    elif action == "status":
        cli.run(["kernels", "status", f"{user}/{args.slug}"])
    elif action == "output":
        dest = Path(args.dest or Path("runs") / "kaggle" / args.slug)
        dest.mkdir(parents=True, exist_ok=True)
        cli.run(["kernels", "output", f"{user}/{args.slug}", "-p", dest, *(["-o"] if args.force else [])])
        print(f"kernel output in {dest}")
    elif action == "download-data":
        _download_data(args, cli, user)
    return 0
