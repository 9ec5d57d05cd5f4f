"""What runs inside the Kaggle kernel (notebook 03): inputs, install, tracking, GPUs, training, resume.

Find the attached inputs wherever Kaggle mounts them, install the wheel, pick up
``WANDB_API_KEY`` from Kaggle secrets, build the ``torchrun`` command for the GPUs present,
resume from a previous run attached as input, evaluate the best weights at the end.
``LATENTFACE_KAGGLE_ROOT`` replaces ``/kaggle`` (local runs and tests); off Kaggle the
synthetic dataset and a small recipe stand in (``kaggle-local``; ``kaggle-smoke`` under
``LATENTFACE_SMOKE=1``).

Nothing here imports torch (nor the package modules that do) at import time: the notebook imports
this module first and then checks with :func:`missing_modules` that the runtime dependencies are
there, and the laptop-side ``latentface kaggle`` commands start quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentface.tools.kaggle.build import wandb_secret_steps
from latentface.tools.kaggle.metadata import DATA_SLUG, MACHINE_SHAPE, KaggleSetupError
from latentface.util.env import smoke

if TYPE_CHECKING:  # annotations only: the training package imports torch
    from latentface.checkpoint import RunDir
    from latentface.training.recipes import Recipe

ROOT_ENV = "LATENTFACE_KAGGLE_ROOT"
#: Off Kaggle (the local stand-in root): the ``kaggle-local`` recipe on the synthetic set.
LOCAL_ROOT = Path("runs/kaggle-local")
LOCAL_RECIPE = "kaggle-local"
#: Under LATENTFACE_SMOKE=1: one epoch of a tiny model on a tiny synthetic set (tests).
SMOKE_RECIPE = "kaggle-smoke"
#: Import name -> pip name of what training needs besides latentface itself (Kaggle's image has them all).
RUNTIME_MODULES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "cv2": "opencv-python-headless",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
    "scipy": "scipy",
    "pycocotools": "pycocotools",
}
#: The folders Kaggle mounts inputs under as ``<input>/<kind>/<owner>/<slug>``.
MOUNT_KINDS = ("datasets", "notebooks", "kernels", "models", "competitions")


def _run_dir(path: str | os.PathLike) -> RunDir:
    """The :class:`~latentface.checkpoint.RunDir` of ``path`` (file names of a training run directory)."""
    from latentface.checkpoint import RunDir  # imports torch (see the module docstring)

    return RunDir(path)


def _recipe(name: str) -> Recipe:
    """The :class:`~latentface.training.recipes.Recipe` called ``name``."""
    from latentface.training.recipes import RECIPES  # the training package imports torch (see the module docstring)

    return RECIPES[name]


# ---------------------------------------------------------------------------- inputs


def kernel_root(env: Mapping[str, str] = os.environ) -> Path:
    """Where the kernel's ``input/`` and ``working/`` live: $LATENTFACE_KAGGLE_ROOT, else ``/kaggle`` on
    Kaggle, else the local stand-in :data:`LOCAL_ROOT` that :func:`prepare_local_input` fills."""
    if env.get(ROOT_ENV):
        return Path(env[ROOT_ENV])
    if Path("/kaggle/input").is_dir():
        return Path("/kaggle")
    return LOCAL_ROOT


def input_mounts(
    input_root: str | os.PathLike, slug: str | None = None, exclude: Iterable[str | os.PathLike] = ()
) -> list[Path]:
    """Attached inputs, however Kaggle mounts them: ``<input>/<slug>`` or ``<input>/<kind>/<owner>/<slug>``
    (``datasets/``, ``notebooks/``...). Only those named ``slug`` when given; none that is, or holds, a
    path of ``exclude`` (the dataset, when searching the others)."""
    root = Path(input_root)
    if not root.is_dir():
        return []
    mounts = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            mounts += sorted(p for p in entry.glob("*/*") if p.is_dir()) if entry.name in MOUNT_KINDS else [entry]
    skip = {Path(p).resolve() for p in exclude}
    return [
        m
        for m in mounts
        if (slug is None or m.name == slug) and not any(m.resolve() == s or m.resolve() in s.parents for s in skip)
    ]


def _listing(input_root: Path) -> str:
    mounts = input_mounts(input_root)
    return ", ".join(str(m.relative_to(input_root)) for m in mounts) or "nothing"


def find_dataset_root(folder: str | os.PathLike, depth: int = 2) -> Path | None:
    """``folder`` or a sub-folder (up to ``depth`` levels) laid out as retina-modify (``train/labels.txt``)."""
    level = [Path(folder)]
    for _ in range(depth + 1):
        for candidate in level:
            if (candidate / "train" / "labels.txt").is_file():
                return candidate
        level = sorted(
            p for c in level if c.is_dir() for p in c.iterdir() if p.is_dir() and p.name not in ("train", "val")
        )
    return None


def find_dataset(input_root: str | os.PathLike, slug: str = DATA_SLUG) -> Path:
    """The retina-modify root among the inputs: the mount named ``slug`` first, else any mount laid out
    like it (so a copy under another name works too)."""
    input_root = Path(input_root)
    named = input_mounts(input_root, slug)
    for mount in named + [m for m in input_mounts(input_root) if m not in named]:
        found = find_dataset_root(mount)
        if found is not None:
            return found
    raise KaggleSetupError(
        f"no dataset with train/labels.txt under {input_root} (attached: {_listing(input_root)}); "
        f"attach the {slug} dataset (kernel-metadata.json dataset_sources, "
        "or Add Input in the editor)"
    )


def _version_key(wheel: Path) -> tuple:
    version = wheel.name.split("-")[1]
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+]", version)), wheel.name


def find_wheels(input_root: str | os.PathLike) -> list[Path]:
    """``latentface-*.whl`` at the top (or one folder down) of every input, oldest version first."""
    wheels = []
    for mount in input_mounts(input_root):
        wheels += list(mount.glob("latentface-*.whl")) + list(mount.glob("*/latentface-*.whl"))
    return sorted(set(wheels), key=_version_key)


def install_package(wheel: str | os.PathLike, target: str | os.PathLike | None = None, env: dict | None = None) -> Path:
    """``pip install --no-index --no-deps --target`` the wheel: offline, and nothing of the image (torch!)
    is replaced. The target goes first on sys.path and on PYTHONPATH (for the training processes)."""
    env = os.environ if env is None else env
    target = Path(target) if target else Path(tempfile.gettempdir()) / "latentface-site"
    if target.exists():
        shutil.rmtree(target)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--disable-pip-version-check",
        "-q",
        "--target",
        str(target),
        str(wheel),
    ]
    result = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise KaggleSetupError(f"installing {wheel} failed ({' '.join(command)}):\n{result.stdout}")
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    return target


def missing_modules(modules: Mapping[str, str] = RUNTIME_MODULES) -> list[str]:
    """pip names of the runtime dependencies that cannot be imported here (looked up, not imported)."""
    return [pip for name, pip in modules.items() if importlib.util.find_spec(name) is None]


# ---------------------------------------------------------------------------- W&B


def kaggle_secret(name: str) -> str | None:
    """A Kaggle secret attached to this notebook, or None (not on Kaggle, or not attached)."""
    try:
        from kaggle_secrets import UserSecretsClient  # exists on Kaggle only
    except ImportError:
        return None
    try:
        return UserSecretsClient().get_secret(name) or None
    except Exception:  # the client raises its own errors when the secret is not attached
        return None


def internet_available(host: str = "api.wandb.ai", port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def configure_wandb(
    working: str | os.PathLike, env: dict | None = None, internet: bool | None = None, kernel: str | None = None
) -> str:
    """W&B mode for the training processes: ``online`` with a WANDB_API_KEY (environment or Kaggle secret)
    and a reachable server, ``offline`` otherwise (logs kept in ``working`` for ``wandb sync``, and the
    reason printed with how to attach the secret to ``kernel``); ``disabled`` stays disabled. Sets
    WANDB_MODE / WANDB_DIR (and the key) in ``env``."""
    env = os.environ if env is None else env
    if env.get("WANDB_MODE") == "disabled":
        return "disabled"
    key = env.get("WANDB_API_KEY") or kaggle_secret("WANDB_API_KEY")
    online = bool(key) and (internet_available() if internet is None else internet)
    if online:
        env["WANDB_API_KEY"] = key
    elif not key:
        print(
            "W&B offline: no WANDB_API_KEY secret is attached to this notebook; "
            + wandb_secret_steps(kernel or "ME/KERNEL")
        )
    else:
        print("W&B offline: api.wandb.ai cannot be reached (internet off?); upload the logs later with `wandb sync`")
    env["WANDB_MODE"] = "online" if online else "offline"
    env["WANDB_DIR"] = str(working)
    return env["WANDB_MODE"]


# ---------------------------------------------------------------------------- GPUs and the training command


def cuda_devices(cuda=None) -> list[str]:
    """Names of the GPUs; raises when one is too old for this PyTorch (a P100 under current PyTorch)."""
    if cuda is None:
        import torch  # after the dependency check (see the module docstring)

        cuda = torch.cuda
    if not cuda.is_available():
        return []
    arches = [int(m.group(1)) for a in cuda.get_arch_list() if (m := re.match(r"sm_(\d+)", a))]
    names = []
    for i in range(cuda.device_count()):
        major, minor = cuda.get_device_capability(i)
        name = cuda.get_device_name(i)
        if arches and major * 10 + minor < min(arches):
            raise KaggleSetupError(
                f"GPU {i} is a {name} (sm_{major}{minor}) but this PyTorch runs on sm_{min(arches)} and newer. "
                f'Push with "machine_shape": "{MACHINE_SHAPE}" (T4 x2; `latentface kaggle push` sets it) '
                "using a kaggle CLI that sends it (pip install -U kaggle), or pick GPU T4 x2 in the editor."
            )
        names.append(name)
    return names


def require_gpu(
    gpus: Sequence[str],
    settings: Mapping[str, Any],
    root: str | os.PathLike | None = None,
    env: Mapping[str, str] = os.environ,
) -> None:
    """On Kaggle (a real run: not the local stand-in, not LATENTFACE_SMOKE), no GPU is an error unless the
    settings ask for the CPU (``device="cpu"``): a session would otherwise train on the CPU for 12 hours."""
    if gpus or str(settings.get("device", "")).lower() == "cpu" or local_recipe(root, env) is not None:
        return
    raise KaggleSetupError(
        "no CUDA GPU in this Kaggle session. Turn it on: Notebook settings -> Accelerator -> GPU T4 x2 "
        "(GPUs need a phone-verified Kaggle account), or push with `latentface kaggle push`, which asks "
        f'for "machine_shape": "{MACHINE_SHAPE}"; P100 and TPU sessions are not supported. '
        'To train on the CPU anyway, set TRAIN["device"] = "cpu".'
    )


def local_recipe(root: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> Recipe | None:
    """The recipe that replaces the notebook's settings: ``kaggle-smoke`` under LATENTFACE_SMOKE=1,
    ``kaggle-local`` on the local stand-in root, else None (a real run)."""
    if smoke(env):
        return _recipe(SMOKE_RECIPE)
    if root is not None and Path(root) == LOCAL_ROOT:
        return _recipe(LOCAL_RECIPE)
    return None


def train_settings(
    settings: Mapping[str, Any], root: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """The notebook's training settings, with those of :func:`local_recipe` over them off Kaggle."""
    recipe = local_recipe(root, env)
    return {**settings, **(recipe.train if recipe is not None else {})}


class _SettingsParser(argparse.ArgumentParser):
    """argparse that raises (with the whole message) instead of exiting; no abbreviations, so typos fail."""

    def error(self, message: str):
        raise KaggleSetupError(f"training settings: {message}")


def train_arguments(
    settings: Mapping[str, Any],
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    name: str,
    resume: str | os.PathLike | None = None,
    time_budget: float | None = None,
    wall_budget: float | None = None,
    final_margin: float | None = None,
) -> list[str]:
    """``latentface train`` flags from ``{flag: value}`` (True: a switch, None/False: left out), checked
    against the train command's own parser before any process starts.

    ``time_budget`` is this session's seconds of training steps; on resume the run's earlier training
    time is added, because that budget counts the whole run. ``wall_budget`` (with ``final_margin``)
    is this session's wall clock for the training process (:meth:`SessionClock.training_budget`).
    """
    # The train command's own flags, so a typo fails here and not in the kernel's training process. Imported
    # here: it imports torch (see the module docstring), and it is the one use of the command line layer.
    from latentface.cli.train import configure_parser

    args = ["--dataset_root", str(dataset), "--out", str(out), "--name", name]
    for key, value in settings.items():
        if value is None or value is False:
            continue
        args += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    if resume is not None:
        args += ["--resume", str(resume)]
    if time_budget is not None:
        earlier = run_progress(resume)["elapsed_s"] if resume is not None else 0.0
        args += ["--time_budget", f"{earlier + time_budget:g}"]
    parser = _SettingsParser(prog="latentface train", allow_abbrev=False)
    configure_parser(parser)
    if wall_budget is not None:
        args += ["--wall_budget", f"{wall_budget:g}"]
    if final_margin is not None:
        args += ["--final_margin", f"{final_margin:g}"]
    parser.parse_args(args)
    return args


def train_command(n_gpus: int, args: Sequence[str], python: str = sys.executable) -> list[str]:
    """One process per GPU through torchrun when there are two or more, else a plain process."""
    if n_gpus >= 2:
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n_gpus}",
            "-m",
            "latentface.cli",
            "train",
            *map(str, args),
        ]
    return [python, "-m", "latentface.cli", "train", *map(str, args)]


def run_logged(command: Sequence[str], log: str | os.PathLike, env: Mapping[str, str] | None = None) -> float:
    """Run ``command``, echoing its output here (so it lands in the notebook) and into ``log``, line by
    line as it comes (PYTHONUNBUFFERED: the training processes' prints and warnings stay in order);
    returns the seconds it ran."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join([Path(command[0]).name, *map(str, command[1:])]), flush=True)
    tail: list[str] = []
    started = time.monotonic()
    with (
        open(log, "a", encoding="utf-8") as out,
        subprocess.Popen(
            list(map(str, command)),
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=1,
        ) as process,
    ):
        for line in process.stdout:
            print(line, end="", flush=True)
            out.write(line)
            out.flush()  # a session killed mid-run still leaves its log
            tail = (tail + [line])[-20:]
    if process.returncode != 0:
        raise KaggleSetupError(
            f"{Path(command[0]).name} {' '.join(map(str, command[1:4]))} ... failed with exit "
            f"status {process.returncode} (full log: {log}):\n{''.join(tail)}"
        )
    return time.monotonic() - started


# ---------------------------------------------------------------------------- resume


def run_progress(run_dir: str | os.PathLike | None) -> dict[str, float]:
    """``{"epoch": .., "elapsed_s": ..}`` reached by a run, from its metrics.csv (zeros when unreadable)."""
    progress = {"epoch": 0.0, "elapsed_s": 0.0}
    path = _run_dir(run_dir).metrics if run_dir is not None else None
    if path is None or not path.is_file():
        return progress
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for key in progress:
                with contextlib.suppress(ValueError):  # a malformed cell counts as nothing
                    progress[key] = max(progress[key], float(row.get(key) or 0))
    return progress


def _find_files(folder: Path, name: str, depth: int) -> list[Path]:
    found = []
    for current, dirs, files in os.walk(folder):
        if name in files:
            found.append(Path(current) / name)
        if len(Path(current).relative_to(folder).parts) >= depth:
            dirs.clear()
    return found


def find_resume_run(input_root: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> Path | None:
    """The furthest-trained run directory (one holding last.pth) among the inputs, e.g. a previous
    session's output attached as input; mounts in ``exclude`` (the dataset) are not searched."""
    last_name = _run_dir(input_root).LAST
    runs = [
        found.parent
        for mount in input_mounts(input_root, exclude=exclude)
        for found in _find_files(mount, last_name, depth=4)
    ]
    return max(runs, key=lambda d: (run_progress(d)["epoch"], str(d)), default=None)


def _no_resume_run(input_root: Path, exclude: Iterable[str | os.PathLike], expected: Sequence[str], last: str):
    searched = [str(m.relative_to(input_root)) for m in input_mounts(input_root, exclude=exclude)]
    places = ", ".join(f"{input_root}/notebooks/{ref} (or {input_root}/{ref.split('/')[-1]})" for ref in expected)
    return KaggleSetupError(
        f"resuming from {', '.join(expected)} was asked for, but no run directory holding {last} "
        f"(up to 4 folders deep) is in the inputs searched under {input_root}: "
        f"{', '.join(searched) or 'none'}. Expected the output of {places}; "
        "check that that kernel's last version finished and saved runs/<name>/last.pth in /kaggle/working, "
        "or push without --resume_from to start afresh"
    )


def resume_point(
    input_root: str | os.PathLike,
    run_dir: str | os.PathLike,
    exclude: Iterable[str | os.PathLike] = (),
    required: Sequence[str] = (),
) -> Path | None:
    """The run to continue, as a writable directory: ``run_dir`` itself when it already holds a run at
    least as far along (same session, run again), else a copy of the furthest run among the inputs
    (inputs are read-only; epoch_NNN.pth snapshots are not copied); None for a fresh start.

    ``required``: the kernels whose output was attached to resume from (``push --resume_from``, the
    notebook's RESUME_FROM); then finding no run is an error instead of a fresh start."""
    run = _run_dir(run_dir)
    here = run.path if run.last.is_file() else None
    exclude = list(exclude)
    found = find_resume_run(input_root, exclude)
    if found is None and here is None and required:
        raise _no_resume_run(Path(input_root), exclude, list(required), run.LAST)
    if found is None or (here is not None and run_progress(here)["epoch"] >= run_progress(found)["epoch"]):
        return here
    if run.path.exists():
        shutil.rmtree(run.path)
    shutil.copytree(found, run.path, ignore=shutil.ignore_patterns(run.EPOCH_PATTERN, "wandb", "*.tmp"))
    print(f"resuming from {found} (epoch {run_progress(found)['epoch']:g}), copied to {run.path}")
    return run.path


# ---------------------------------------------------------------------------- the local stand-in


def prepare_local_input(
    root: str | os.PathLike, slug: str = DATA_SLUG, env: Mapping[str, str] = os.environ
) -> Path | None:
    """Off Kaggle, the synthetic dataset as ``<root>/input/<slug>`` (made once, ``kaggle-local``'s data or
    ``kaggle-smoke``'s), so the kernel's cells run unchanged on a laptop; on Kaggle (``/kaggle``) or when
    it is already there, nothing."""
    root = Path(root)
    if root == Path("/kaggle") or input_mounts(root / "input", slug):
        return None
    from latentface.data.synth import generate_dataset  # imports torch (see the module docstring)

    target = root / "input" / slug
    recipe = _recipe(SMOKE_RECIPE if smoke(env) else LOCAL_RECIPE)
    print(f"not on Kaggle: writing the synthetic dataset to {target} ({recipe.n_train} + {recipe.n_val} images)")
    generate_dataset(target, **recipe.data(), progress=False)
    return target
