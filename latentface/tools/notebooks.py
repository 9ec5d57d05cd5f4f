"""Support for the notebooks in ``notebooks/``: their working folder, the synthetic dataset
they read, figure display, and headless execution of a jupytext pair.

``python -m latentface.tools.notebooks [NOTEBOOK.py ...]`` executes each notebook (all of
``notebooks/[0-9]*.py`` by default) from the repository folder and writes the paired ``.ipynb``
with the outputs, so the committed notebooks show what the code produces. ``--smoke`` runs the small
configuration instead (what the tests run). A notebook's parameters cell picks its small
configuration with :func:`latentface.util.env.smoke` (``LATENTFACE_SMOKE=1``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import time
from pathlib import Path

import matplotlib

from latentface.codec import dct
from latentface.data.encode import one_thread
from latentface.data.labels import read_labels
from latentface.data.layout import CODEC_FILE, LABELS_FILE
from latentface.data.synth import generate_dataset
from latentface.training import TrainConfig, train
from latentface.training.recipes import Recipe
from latentface.util import env
from latentface.util.io import read_json, write_json

#: Where notebooks write datasets, runs and thresholds (default ``runs/notebooks`` in the repository).
WORK_ENV = "LATENTFACE_NOTEBOOK_DIR"
KERNEL = "python3"


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository folder: the first parent of ``start`` (default: here) holding ``pyproject.toml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "latentface").is_dir():
            return folder
    return here


def work_dir(name: str) -> Path:
    """``$LATENTFACE_NOTEBOOK_DIR/<name>`` or ``<repo>/runs/notebooks[-smoke]/<name>``, created;
    relative to the current folder when inside the repository (so outputs name no machine paths)."""
    base = os.environ.get(WORK_ENV)
    root = repo_root()
    folder = Path(base) if base else root / "runs" / ("notebooks-smoke" if env.smoke() else "notebooks")
    folder = (folder / name).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return Path(os.path.relpath(folder)) if folder.is_relative_to(root) else folder


def synthetic_dataset(
    root: str | os.PathLike, n_train: int, n_val: int, size: int, seed: int = 0, rates=None, workers: int = 1
) -> Path:
    """The synthetic dataset at ``root`` with these settings, generated unless already there.

    A folder written by ``latentface synth`` with other settings is regenerated; any other
    non-empty folder (e.g. real data) is an error rather than overwritten.
    """
    root = Path(root)
    rates = list(rates or dct.QUALITIES)
    codec_file = root / CODEC_FILE
    if codec_file.is_file():
        info = read_json(codec_file, "synthetic dataset description")
        if info.get("generator") != "latentface synth":
            raise ValueError(f"{root}: not a synthetic dataset ({codec_file} has no 'generator': 'latentface synth')")
        counts = {
            split: len(read_labels(root / split / LABELS_FILE)) if (root / split / LABELS_FILE).is_file() else 0
            for split in ("train", "val")
        }
        if (info.get("size"), info.get("seed"), info.get("rates"), counts) == (
            size,
            seed,
            rates,
            {"train": n_train, "val": n_val},
        ):
            return root
    elif root.exists() and any(root.iterdir()):
        raise ValueError(f"{root}: exists and is not a synthetic dataset (no {CODEC_FILE}); pick another folder")
    generate_dataset(
        root, n_train, n_val, size=size, rates=rates, seed=seed, progress=False, overwrite=True, workers=workers
    )
    return root


def recipe_dataset(recipe: Recipe, folder: str | os.PathLike | None = None) -> Path:
    """The synthetic dataset of a training recipe (:data:`latentface.training.recipes.RECIPES`), made
    unless already there, in ``folder`` (default: ``synth<size>-<n_train>-<n_val>`` of the work folder)."""
    if folder is None:
        folder = work_dir("data") / f"synth{recipe.size}-{recipe.n_train}-{recipe.n_val}"
    return synthetic_dataset(folder, recipe.n_train, recipe.n_val, recipe.size, seed=recipe.seed, rates=recipe.rates)


@contextlib.contextmanager
def stdout_logs():
    """Training and set-up messages (written to stderr) to stdout inside: in Jupyter they read as output,
    not as pink error boxes; real errors still arrive as the cell's error."""
    with contextlib.redirect_stderr(sys.stdout):
        yield


def trained_weights(config: TrainConfig) -> Path:
    """``weight_final.pth`` of the run ``config`` (a :class:`~latentface.training.TrainConfig` with ``out``
    and ``name``) describes: reused when that folder holds a finished run of the same config,
    otherwise trained afresh there, on one thread (its messages on stdout, :func:`stdout_logs`)."""
    run_dir = Path(config.out) / config.name
    marker = run_dir / "notebook_config.json"
    weights = run_dir / "weight_final.pth"
    if weights.is_file() and marker.is_file() and read_json(marker, "notebook training config") == config.to_dict():
        print(f"reusing {weights} (same training config)")
        return weights
    shutil.rmtree(run_dir, ignore_errors=True)
    # one thread: intra-op threads meet hundreds of times a step and stall under any other load on the machine
    # (measured: a 2-thread kernel on a busy 2-core machine made no epoch in 36 min; one thread, 1.5 s a step)
    with stdout_logs(), one_thread():
        train(config)
    write_json(marker, config.to_dict())
    return weights


def demo_weights(recipe: Recipe, latent_type: str, demo_dir: str | os.PathLike | None = None) -> Path | None:
    """The weights of a finished ``latentface demo`` run in ``demo_dir`` (default ``<repo>/runs/demo``) when
    they are what ``recipe`` would train: the same synthetic data (images, size, seed, dct codec), rate, and
    training settings (the batch counted over its processes; its time budget aside, as long as every epoch
    ran), else None (say why, when there is a demo run)."""
    from latentface.tools import demo  # the demo's file names; imported here, only this function needs them

    folder = Path(demo_dir) if demo_dir is not None else repo_root() / "runs" / "demo"
    weights = folder / demo.TRAIN_RUN / "weight_final.pth"
    if not (weights.is_file() and (folder / demo.SUMMARY_FILE).is_file()):
        return None
    summary = demo.read_summary(folder)
    data, config, training = summary.get("dataset", {}), summary.get("train_config", {}), summary.get("training", {})
    processes = int(summary.get("training_processes", 1))
    wanted = {k: v for k, v in recipe.train.items() if k != "time_budget"}
    found = {k: config.get(k) for k in wanted}
    if "batch_size" in found and found["batch_size"] is not None:
        found["batch_size"] *= processes
    problems = [
        f"{name}: {got!r}, not {want!r}"
        for name, got, want in (
            ("synthetic", data.get("synthetic"), True),
            ("train images", data.get("train_images"), recipe.n_train),
            ("image size", data.get("image_size"), recipe.size),
            ("rate", data.get("latent_type"), latent_type),
            ("codec", (summary.get("codec") or {}).get("codec"), "dct"),
            ("seed", config.get("seed"), recipe.seed),
            ("epochs run", training.get("epochs"), recipe.train.get("epochs")),
            *((f"--{k}", found[k], v) for k, v in wanted.items()),
        )
        if got != want
    ]
    if problems:
        print(f"not reusing {weights}: " + "; ".join(problems))
        return None
    print(f"reusing {weights}: the demo trained this recipe on the same data")
    return weights


def setup(dpi: int = 72) -> None:
    """Notebook defaults: figures at ``dpi`` (small committed notebooks), quiet progress bars."""
    matplotlib.rcParams["figure.dpi"] = dpi
    os.environ.setdefault("TQDM_DISABLE", "1")


def show(fig, jpeg: bool = False, quality: int = 80) -> None:
    """Display a matplotlib :class:`~matplotlib.figure.Figure` (no pyplot needed) as a PNG, or a JPEG
    for photo-like figures (a fraction of a PNG's size)."""
    from IPython.display import Image, display  # optional: the notebooks extra (IPython comes with ipykernel)

    buffer = io.BytesIO()
    fig.savefig(
        buffer,
        format="jpeg" if jpeg else "png",
        bbox_inches="tight",
        **({"pil_kwargs": {"quality": quality}} if jpeg else {}),
    )
    display(Image(buffer.getvalue(), format="jpeg" if jpeg else "png"))


def markdown_table(rows: list[dict], digits: int = 3) -> str:
    """A Markdown table of dict rows (columns from the first row); floats to ``digits`` significant digits."""
    if not rows:
        return ""
    columns = list(rows[0])

    def cell(value) -> str:
        return f"{value:.{digits}g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def inject_parameters(nb, parameters: dict) -> None:
    """Add a cell setting ``parameters`` right after the cell tagged ``parameters`` (as papermill does)."""
    import nbformat  # optional: the notebooks extra

    index = next((i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])), None)
    if index is None:
        raise ValueError("the notebook has no cell tagged 'parameters' to override")
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))


def execute(
    path: str | os.PathLike,
    smoke_run: bool = False,
    timeout: int = 1200,
    write: bool = True,
    extra_env: dict[str, str] | None = None,
    parameters: dict | None = None,
):
    """Execute the notebook ``path`` (the ``.py`` or the ``.ipynb`` of a pair) headless.

    Runs in the repository folder (the notebook's, when it is not in one) with the ``python3``
    kernel of this interpreter, the Agg backend and W&B disabled; ``smoke_run`` sets ``LATENTFACE_SMOKE=1``
    (otherwise ``0``). With ``write`` the
    executed notebook (outputs included) is saved as the ``.ipynb`` of the pair, whose code
    cells are then the ``.py``'s. ``parameters`` ({name: value}) are set in a cell injected after
    the parameters cell (only with ``write=False``). Returns the executed notebook.
    """
    import jupytext  # optional: the notebooks extra
    from nbclient import NotebookClient  # optional: the notebooks extra

    path = Path(path)
    source = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path
    nb = jupytext.read(source)
    if parameters:
        if write:
            raise ValueError("injected parameters would put a cell in the .ipynb that the .py lacks: pass write=False")
        inject_parameters(nb, parameters)
    environment = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "WANDB_MODE": "disabled",
        env.SMOKE_ENV: "1" if smoke_run else "0",
        **(extra_env or {}),
    }
    # jupyter_client starts a kernel spec whose command is "python" with this interpreter
    cwd = repo_root(source.parent)  # relative paths in outputs read as from the repository root
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}})
    client.execute(env=environment)
    nb.metadata.pop("widgets", None)  # widget state would only show stale, dead controls
    strip_widget_views(nb)
    if write:
        jupytext.write(nb, source.with_suffix(".ipynb"))
    return nb


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def strip_widget_views(nb) -> int:
    """Drop the widget views from ``nb``'s outputs (their state is not saved, so they would show as dead
    controls or raw ``VBox(...)`` text), keeping what else each output carries (the tuner's and the
    explorer's static figure). Returns how many were dropped."""
    dropped = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                dropped += 1
    return dropped


def unpaired(paths: list[Path]) -> list[str]:
    """What is out of step among the jupytext pairs of ``paths`` (.py files): a missing .ipynb, code cells that
    differ, an .ipynb without its .py. Empty when every pair is in step (``make lint`` runs this)."""
    import jupytext  # the notebooks extra
    import nbformat

    def code(nb) -> list[str]:
        return [cell.source for cell in nb.cells if cell.cell_type == "code"]

    problems = []
    for path in paths:
        ipynb = path.with_suffix(".ipynb")
        if not ipynb.is_file():
            problems.append(f"{ipynb}: missing (run `jupytext --sync {path}`)")
        elif code(jupytext.read(path)) != code(nbformat.read(ipynb, as_version=4)):
            problems.append(f"{path} and {ipynb.name} differ in their code cells (run `jupytext --sync {path}`)")
    folders = {path.parent for path in paths}
    problems += [
        f"{nb}: has no paired .py"
        for folder in sorted(folders)
        for nb in sorted(folder.glob("*.ipynb"))
        if nb.with_suffix(".py") not in paths and nb.stem[:1].isdigit()
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentface.tools.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook .py files (default: notebooks/*.py)")
    parser.add_argument("--smoke", action="store_true", help="the small configuration (as the tests run it)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell (default 1200)")
    parser.add_argument(
        "--check-pairs",
        "--check_pairs",
        dest="check_pairs",
        action="store_true",
        help="execute nothing: check that every .py/.ipynb pair has the same code cells",
    )
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or sorted((repo_root() / "notebooks").glob("[0-9]*.py"))
    if args.check_pairs:
        problems = unpaired(paths)
        print("\n".join(problems) or f"{len(paths)} notebook pairs in step")
        return 1 if problems else 0
    for path in paths:
        start = time.perf_counter()
        execute(path, smoke_run=args.smoke, timeout=args.timeout)
        size = path.with_suffix(".ipynb").stat().st_size
        print(
            f"{path}: executed in {time.perf_counter() - start:.0f} s"
            f" -> {path.with_suffix('.ipynb')} ({size / 1e3:.0f} kB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
