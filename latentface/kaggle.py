"""``latentface kaggle``: train on Kaggle's GPUs from a laptop, and the helpers the Kaggle kernel runs.

Laptop side, every call to Kaggle through the official ``kaggle`` command in a subprocess
(importing the ``kaggle`` package logs in, so it is never imported here)::

    latentface kaggle build --user ME          # kaggle/build/kernel + kaggle/build/package (the wheel)
    latentface kaggle push --user ME           # build, create/version the package dataset, push the kernel
    latentface kaggle status --user ME         # the kernel's run status
    latentface kaggle output --user ME         # its /kaggle/working -> runs/kaggle/<slug>/
    latentface kaggle download-data --data OWNER/retina-modify   # -> data/retina-modify/

``kaggle kernels push`` uploads one code file, so the package travels as a Kaggle dataset
holding its wheel; the kernel installs it with ``pip install --no-index --no-deps`` (no
internet, Kaggle's own torch untouched).

Kernel side (``notebooks/03_train_on_kaggle``, which becomes the kernel): find the attached
inputs wherever Kaggle mounts them, install the wheel, pick up ``WANDB_API_KEY`` from Kaggle
secrets, build the ``torchrun`` command for the GPUs present, resume from a previous run
attached as input. ``LATENTFACE_KAGGLE_ROOT`` replaces ``/kaggle`` (local runs and tests).
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT_ENV = "LATENTFACE_KAGGLE_ROOT"
SMOKE_ENV = "LATENTFACE_SMOKE"
KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"
DATA_SLUG = "retina-modify"
PACKAGE_SLUG = "latentface-package"
KERNEL_SLUG = "latentface-train"
#: T4 x2. Kaggle's default GPU (P100, sm_60) no longer runs current PyTorch.
MACHINE_SHAPE = "NvidiaTeslaT4"
#: The accelerator names the kaggle CLI documents; the server silently turns any other value into a P100.
MACHINE_SHAPES = ("NvidiaTeslaP100", "NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaTeslaA100", "NvidiaL4",
                  "NvidiaL4X1", "NvidiaH100", "NvidiaRtxPro6000", "TpuV38", "Tpu1VmV38", "TpuV5E8", "TpuV6E8")
#: Dataset licences the kaggle CLI documents for dataset-metadata.json.
LICENSES = ("CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
            "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0",
            "CC-BY-3.0-IGO", "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0",
            "CDLA-Sharing-1.0", "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0",
            "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0", "GPL-3.0")
#: Import name -> pip name of what training needs besides latentface itself (Kaggle's image has them all).
RUNTIME_MODULES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy",
                   "cv2": "opencv-python-headless", "tqdm": "tqdm", "matplotlib": "matplotlib",
                   "scipy": "scipy", "pycocotools": "pycocotools"}
#: LATENTFACE_SMOKE=1: one epoch of a tiny model on a tiny synthetic set (tests; about a minute on a CPU).
SMOKE_TRAIN = dict(model="resnet18", bridge="pixelshuffle", out_channels=16, epochs=1, batch_size=2,
                   workers=0, val_images=0)
SMOKE_DATA = dict(n_train=8, n_val=4, size=128, rates=(75,))
#: Off Kaggle (the local stand-in root): a small model for a few epochs on a small synthetic set (minutes on a CPU).
LOCAL_ROOT = Path("runs/kaggle-local")
LOCAL_TRAIN = dict(model="resnet18", bridge="pixelshuffle", out_channels=32, epochs=3, batch_size=4,
                   workers=0, val_images=0)
LOCAL_DATA = dict(n_train=48, n_val=16, size=320, rates=(75,))
#: Seconds between two ``kaggle datasets status`` polls while Kaggle processes the wheel dataset.
POLL_SECONDS = 10
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_NOTEBOOK = Path("notebooks") / "03_train_on_kaggle.py"


class KaggleSetupError(RuntimeError):
    """Something to install, set or fix before Kaggle can be used; the message says exactly what."""


# ============================================================================ metadata rules


def slugify(title: str) -> str:
    """The URL slug Kaggle derives from a title (as python-slugify does it for ASCII text)."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"(?<=\d),(?=\d)", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def title_for(slug: str) -> str:
    """A title whose slug is ``slug``: ``latentface-train`` -> ``latentface train``."""
    return slug.replace("-", " ")


def _ref(value: Any, field: str, parts: int = 2) -> list[str]:
    """``owner/slug`` (or longer, for models) split into non-empty parts, else a message naming the field."""
    if not isinstance(value, str) or value.count("/") != parts - 1 or not all(value.split("/")):
        shape = "/".join(["owner", "slug", "framework", "variation", "version"][:parts])
        raise KaggleSetupError(f"{field}: expected '{shape}', got {value!r}")
    return value.split("/")


def _boolean(meta: Mapping, field: str, where: str) -> None:
    """What the CLI's get_bool accepts: true/false, or the strings "true"/"false" in any case."""
    if field in meta:
        value = meta[field]
        if not (isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false"))):
            raise KaggleSetupError(f"{where}: field '{field}' must be true or false, got {value!r}")


def _string_list(meta: Mapping, field: str, where: str) -> list:
    value = meta.get(field, [])
    if not isinstance(value, list):
        raise KaggleSetupError(f"{where}: field '{field}' must be a list, got {type(value).__name__}")
    return value


def validate_kernel_metadata(meta: Mapping, folder: str | os.PathLike | None = None,
                             where: str = KERNEL_METADATA) -> None:
    """The checks ``kaggle kernels push`` makes before uploading (plus the title/slug match it only warns
    about, and the accelerator name the server would silently replace). Raises naming the field."""
    if not isinstance(meta, Mapping):
        raise KaggleSetupError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    if not meta.get("id") and not meta.get("id_no"):
        raise KaggleSetupError(f"{where}: field 'id' (owner/kernel-slug) is required")
    title = meta.get("title")
    if title is None:
        raise KaggleSetupError(f"{where}: field 'title' is required for a new kernel")
    if not isinstance(title, str) or len(title) < 5:
        raise KaggleSetupError(f"{where}: field 'title' must be at least 5 characters, got {title!r}")
    if meta.get("id"):
        _, slug = _ref(meta["id"], f"{where}: field 'id'")
        if len(slug) < 5:
            raise KaggleSetupError(f"{where}: field 'id': the kernel slug must be at least 5 characters, got {slug!r}")
        if slugify(title) != slug.lower():
            raise KaggleSetupError(f"{where}: field 'title' {title!r} slugifies to {slugify(title)!r}, "
                                   f"not to the id's slug {slug!r}; Kaggle names the kernel after its title")
    code_file = meta.get("code_file")
    if not code_file or not isinstance(code_file, str):
        raise KaggleSetupError(f"{where}: field 'code_file' (the notebook or script to upload) is required")
    language = meta.get("language")
    if language not in ("python", "r", "rmarkdown"):
        raise KaggleSetupError(f"{where}: field 'language' must be one of python, r, rmarkdown; got {language!r}")
    kernel_type = meta.get("kernel_type")
    if kernel_type not in ("script", "notebook"):
        raise KaggleSetupError(f"{where}: field 'kernel_type' must be 'script' or 'notebook', got {kernel_type!r}")
    for field in ("is_private", "enable_gpu", "enable_tpu", "enable_internet"):
        _boolean(meta, field, where)
    for source in _string_list(meta, "dataset_sources", where):
        _ref(source, f"{where}: field 'dataset_sources'")
    for source in _string_list(meta, "kernel_sources", where):
        _, slug = _ref(source, f"{where}: field 'kernel_sources'")
        if len(slug) < 5:
            raise KaggleSetupError(f"{where}: field 'kernel_sources': kernel slug {slug!r} is shorter than 5 characters")
    for source in _string_list(meta, "model_sources", where):
        _ref(source, f"{where}: field 'model_sources'", parts=5)
    for source in _string_list(meta, "competition_sources", where):
        if not isinstance(source, str) or not source:
            raise KaggleSetupError(f"{where}: field 'competition_sources' holds competition slugs, got {source!r}")
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in ("original", "latest"):
        raise KaggleSetupError(f"{where}: field 'docker_image_pinning_type' must be 'original' or 'latest', got {pinning!r}")
    shape = meta.get("machine_shape")
    if shape is not None and shape not in MACHINE_SHAPES:
        raise KaggleSetupError(f"{where}: field 'machine_shape' {shape!r} is not an accelerator Kaggle knows "
                               f"(it would silently run on a P100); use one of {', '.join(MACHINE_SHAPES)}")
    if folder is not None:
        path = Path(folder) / code_file
        if not path.is_file():
            raise KaggleSetupError(f"{where}: field 'code_file': source file not found: {path}")
        if kernel_type == "notebook":
            try:
                notebook = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise KaggleSetupError(f"{path}: a notebook kernel's code_file must be an .ipynb JSON file ({exc})") from None
            if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
                raise KaggleSetupError(f"{path}: not a Jupyter notebook (no 'cells' list)")


def validate_dataset_metadata(meta: Mapping, folder: str | os.PathLike | None = None,
                              where: str = DATASET_METADATA) -> None:
    """The checks ``kaggle datasets create`` makes before uploading; raises naming the field."""
    if not isinstance(meta, Mapping):
        raise KaggleSetupError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    for field in ("id", "title", "licenses"):
        if field not in meta:
            raise KaggleSetupError(f"{where}: field '{field}' is required")
    _, slug = _ref(meta["id"], f"{where}: field 'id'")
    if slug == "INSERT_SLUG_HERE":
        raise KaggleSetupError(f"{where}: field 'id' still holds the template's INSERT_SLUG_HERE")
    if not 6 <= len(slug) <= 50:
        raise KaggleSetupError(f"{where}: field 'id': the dataset slug must be 6 to 50 characters, got {slug!r}")
    if not _SLUG.match(slug):
        raise KaggleSetupError(f"{where}: field 'id': the dataset slug must be lowercase letters, digits and "
                               f"single dashes, got {slug!r}")
    title = meta["title"]
    if title == "INSERT_TITLE_HERE":
        raise KaggleSetupError(f"{where}: field 'title' still holds the template's INSERT_TITLE_HERE")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        raise KaggleSetupError(f"{where}: field 'title' must be 6 to 50 characters, got {title!r}")
    licenses = meta["licenses"]
    if not isinstance(licenses, list) or len(licenses) != 1:
        raise KaggleSetupError(f"{where}: field 'licenses' must hold exactly one licence, got {licenses!r}")
    if not isinstance(licenses[0], Mapping) or "name" not in licenses[0]:
        raise KaggleSetupError(f"{where}: field 'licenses': the licence needs a 'name', got {licenses[0]!r}")
    if licenses[0]["name"] not in LICENSES:
        raise KaggleSetupError(f"{where}: field 'licenses': unknown licence {licenses[0]['name']!r}; "
                               f"use one of {', '.join(LICENSES)}")
    subtitle = meta.get("subtitle")
    if subtitle and not 20 <= len(subtitle) <= 80:
        raise KaggleSetupError(f"{where}: field 'subtitle' must be 20 to 80 characters, got {len(subtitle)}")
    resources = meta.get("resources") or []
    paths = [r.get("path") if isinstance(r, Mapping) else None for r in resources]
    if None in paths:
        raise KaggleSetupError(f"{where}: field 'resources': every resource needs a 'path'")
    if len(set(paths)) != len(paths):
        raise KaggleSetupError(f"{where}: field 'resources' lists a path twice: {paths}")
    if folder is not None:
        for name in paths:
            if not (Path(folder) / name).is_file():
                raise KaggleSetupError(f"{where}: field 'resources': {Path(folder) / name} does not exist")


def read_metadata(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KaggleSetupError(f"metadata file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise KaggleSetupError(f"{path}: not a JSON metadata file ({exc})") from None


def _write_json(data: Mapping, path: Path) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


# ============================================================================ credentials and the CLI


def kaggle_config_dirs(env: Mapping[str, str] = os.environ) -> list[Path]:
    """Where the kaggle CLI looks for its files: $KAGGLE_CONFIG_DIR, else ~/.kaggle (and the XDG one on Linux)."""
    if env.get("KAGGLE_CONFIG_DIR"):
        return [Path(env["KAGGLE_CONFIG_DIR"])]
    home = Path(env.get("HOME") or Path.home())
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    return [home / ".kaggle", xdg]


def _json_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def credentials_help(env: Mapping[str, str] = os.environ) -> str:
    config = kaggle_config_dirs(env)[0]
    return (
        "Kaggle credentials not found. Create an API token at https://www.kaggle.com/settings/api, then either\n"
        "  export KAGGLE_API_TOKEN=<token>                     (kaggle >= 1.8; or save the token in "
        f"{config / 'access_token'})\n"
        "or, with a legacy key (the two fields of kaggle.json),\n"
        "  export KAGGLE_USERNAME=<user> KAGGLE_KEY=<key>      (or save kaggle.json as "
        f"{config / 'kaggle.json'}, chmod 600)\n"
        "or run `kaggle auth login` (newest kaggle CLI)."
    )


def find_credentials(env: Mapping[str, str] = os.environ) -> str:
    """Where the kaggle CLI will find credentials; raises with exactly what to set when it will not."""
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME + KAGGLE_KEY"
    for folder in kaggle_config_dirs(env):
        for name in ("access_token", "access_token.txt"):
            if (folder / name).is_file() and (folder / name).read_text(encoding="utf-8").strip():
                return str(folder / name)
        if _json_file(folder / "credentials.json").get("refresh_token"):
            return str(folder / "credentials.json")
        config = _json_file(folder / "kaggle.json")
        if config.get("username") and config.get("key"):
            return str(folder / "kaggle.json")
        if (folder / "kaggle.json").is_file() and (config.get("username") or config.get("key")):
            missing = "key" if config.get("username") else "username"
            raise KaggleSetupError(f"{folder / 'kaggle.json'} has no '{missing}'; it needs both "
                                   f'{{"username": ..., "key": ...}}.\n' + credentials_help(env))
    if env.get("KAGGLE_USERNAME") or env.get("KAGGLE_KEY"):
        have, missing = ("KAGGLE_USERNAME", "KAGGLE_KEY") if env.get("KAGGLE_USERNAME") else ("KAGGLE_KEY", "KAGGLE_USERNAME")
        raise KaggleSetupError(f"{have} is set but {missing} is not: export {missing}=<...> too.\n" + credentials_help(env))
    raise KaggleSetupError(credentials_help(env))


def kaggle_username(user: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """``--user``, else $KAGGLE_USERNAME, else the username in the CLI's kaggle.json / credentials.json."""
    if user:
        return user
    if env.get("KAGGLE_USERNAME"):
        return env["KAGGLE_USERNAME"]
    for folder in kaggle_config_dirs(env):
        for name in ("kaggle.json", "credentials.json"):
            found = _json_file(folder / name).get("username")
            if found:
                return found
    raise KaggleSetupError("Kaggle username unknown: pass --user YOUR_KAGGLE_USERNAME or export KAGGLE_USERNAME=...")


def kaggle_executable(env: Mapping[str, str] = os.environ) -> str:
    found = shutil.which("kaggle", path=env.get("PATH"))
    if not found:
        raise KaggleSetupError("the `kaggle` command is not on PATH. Install it with `pip install kaggle` "
                               "(or `pip install 'latentface[kaggle]'`) and check with `kaggle --version`.")
    return found


class KaggleCLI:
    """The official ``kaggle`` command, run in a subprocess (credentials checked first, so the message is ours)."""

    def __init__(self, env: Mapping[str, str] | None = None, check_credentials: bool = True):
        self.env = dict(os.environ if env is None else env)
        self.executable = kaggle_executable(self.env)
        if check_credentials:
            find_credentials(self.env)

    def run(self, args: Sequence[str], check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        command = [self.executable, *map(str, args)]
        print("$ kaggle " + " ".join(map(str, args)), flush=True)
        result = subprocess.run(command, env=self.env, text=True,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.STDOUT if capture else None)
        if check and result.returncode != 0:
            tail = f":\n{result.stdout.strip()}" if capture and result.stdout else ""
            raise KaggleSetupError(f"`kaggle {' '.join(map(str, args))}` failed with exit status "
                                   f"{result.returncode}{tail}")
        return result


# ============================================================================ build: wheel, kernel, metadata


def project_root(project: str | os.PathLike | None = None) -> Path:
    """The source checkout (pyproject.toml, notebooks/03, kaggle/) that build packs up."""
    root = Path(project) if project else Path(__file__).resolve().parent.parent
    missing = [p for p in ("pyproject.toml", str(_NOTEBOOK), "kaggle/" + KERNEL_METADATA) if not (root / p).is_file()]
    if missing:
        raise KaggleSetupError(f"{root} is not a latentface source checkout (missing {', '.join(missing)}); "
                               "run from a clone of the repository or pass --project DIR")
    return root


def build_wheel(out_dir: str | os.PathLike, project: str | os.PathLike | None = None) -> Path:
    """``pip wheel --no-deps`` of a clean copy of the sources (no build files left in the checkout).

    ``--no-build-isolation`` when setuptools is importable, so it works offline.
    """
    root = project_root(project)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latentface-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root / "latentface", src / "latentface",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "-q", "-w", tmp, str(src)]
        if importlib.util.find_spec("setuptools") is not None:
            command.insert(4, "--no-build-isolation")
        else:
            command.remove("--no-index")  # pip fetches setuptools for the isolated build
        result = subprocess.run(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wheels = sorted(Path(tmp).glob("latentface-*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise KaggleSetupError(f"building the latentface wheel failed ({' '.join(command)}):\n{result.stdout}")
        target = out_dir / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


def kernel_notebook(project: str | os.PathLike | None = None):
    """Notebook 03 as the kernel's .ipynb (jupytext conversion of the percent script, no outputs)."""
    try:
        import jupytext
    except ImportError:
        raise KaggleSetupError("building the kernel needs jupytext: pip install jupytext "
                               "(or pip install 'latentface[notebooks]')") from None
    notebook = jupytext.read(project_root(project) / _NOTEBOOK)
    notebook.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    notebook.metadata.setdefault("language_info", {"name": "python"})
    notebook.metadata.pop("jupytext", None)
    for i, cell in enumerate(notebook.cells):  # stable ids: a rebuild of the same notebook is the same file
        cell.id = f"cell-{i}"
    return notebook


def write_kernel_notebook(path: str | os.PathLike, project: str | os.PathLike | None = None) -> Path:
    import nbformat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(kernel_notebook(project), str(path))
    return path


@dataclass
class Build:
    """What ``build`` wrote: the kernel folder (push -p) and the package dataset folder."""

    kernel_dir: Path
    package_dir: Path
    wheel: Path
    kernel_id: str
    package_id: str
    data_ids: list[str]

    @classmethod
    def read(cls, out: str | os.PathLike) -> "Build":
        out = Path(out)
        kernel = read_metadata(out / "kernel" / KERNEL_METADATA)
        package = read_metadata(out / "package" / DATASET_METADATA)
        wheels = sorted((out / "package").glob("latentface-*.whl"))
        if len(wheels) != 1:
            raise KaggleSetupError(f"{out / 'package'}: expected one latentface wheel, found {len(wheels)}; "
                                   "run `latentface kaggle build` again")
        validate_kernel_metadata(kernel, out / "kernel", str(out / "kernel" / KERNEL_METADATA))
        validate_dataset_metadata(package, out / "package", str(out / "package" / DATASET_METADATA))
        data = [d for d in kernel.get("dataset_sources", []) if d != package["id"]]
        return cls(out / "kernel", out / "package", wheels[0], kernel["id"], package["id"], data)


def build(user: str, data: str | None = None, slug: str = KERNEL_SLUG, title: str | None = None,
          package_slug: str = PACKAGE_SLUG, resume_from: Sequence[str] = (), internet: bool = True,
          private: bool = True, machine_shape: str = MACHINE_SHAPE, out: str | os.PathLike | None = None,
          project: str | os.PathLike | None = None) -> Build:
    """Write ``<out>/kernel`` (kernel-metadata.json + the notebook) and ``<out>/package`` (the wheel +
    dataset-metadata.json) from the templates in ``kaggle/``; both validated as the CLI would."""
    root = project_root(project)
    out = Path(out) if out else root / "kaggle" / "build"
    if not _SLUG.match(slug):
        raise KaggleSetupError(f"--slug must be lowercase letters, digits and single dashes, got {slug!r}")
    title = title or title_for(slug)
    if slugify(title) != slug:
        raise KaggleSetupError(f"--title {title!r} slugifies to {slugify(title)!r}, not to the kernel slug {slug!r}; "
                               "Kaggle names a kernel after its title")
    data = data or f"{user}/{DATA_SLUG}"
    _ref(data, "--data")
    for ref in resume_from:
        _ref(ref, "--resume_from")
    kernel_dir, package_dir = out / "kernel", out / "package"
    for folder in (kernel_dir, package_dir):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)

    wheel = build_wheel(package_dir, root)
    package = read_metadata(root / "kaggle" / DATASET_METADATA)
    package["id"] = f"{user}/{package_slug}"
    validate_dataset_metadata(package, package_dir, str(root / "kaggle" / DATASET_METADATA))
    _write_json(package, package_dir / DATASET_METADATA)

    kernel = read_metadata(root / "kaggle" / KERNEL_METADATA)
    code_file = f"{slug}.ipynb"
    write_kernel_notebook(kernel_dir / code_file, root)
    kernel.update(
        id=f"{user}/{slug}", title=title, code_file=code_file, is_private=private,
        enable_gpu=True, enable_internet=internet, machine_shape=machine_shape,
        dataset_sources=[data, package["id"]], kernel_sources=list(resume_from),
    )
    validate_kernel_metadata(kernel, kernel_dir, str(kernel_dir / KERNEL_METADATA))
    _write_json(kernel, kernel_dir / KERNEL_METADATA)
    return Build(kernel_dir, package_dir, wheel, kernel["id"], package["id"], [data])


# ============================================================================ push, status, output, data


def dataset_exists(cli: KaggleCLI, ref: str) -> bool:
    result = cli.run(["datasets", "status", ref], check=False, capture=True)
    return result.returncode == 0 and not re.search(r"\b404\b|not found|error", result.stdout or "", re.I)


def wait_for_dataset(cli: KaggleCLI, ref: str, timeout: float = 600) -> None:
    """Poll ``kaggle datasets status`` until the new version is ready: a kernel started earlier would run
    without it (or with the previous wheel)."""
    deadline = time.monotonic() + timeout
    while True:
        status = (cli.run(["datasets", "status", ref], check=False, capture=True).stdout or "").strip()
        print(status, flush=True)
        last = status.splitlines()[-1].strip().lower() if status else ""
        if re.search(r"\bready\b", last):
            return
        if last in ("error", "failed"):  # a status, not an HTTP error of a dataset still being created
            raise KaggleSetupError(f"Kaggle could not process dataset {ref}: {status}")
        if time.monotonic() >= deadline:
            raise KaggleSetupError(f"dataset {ref} is not ready after {timeout:.0f} s (last status: {status!r}); "
                                   "wait, then run `latentface kaggle push --skip_build` again")
        time.sleep(POLL_SECONDS)


def push(result: Build, cli: KaggleCLI, message: str, wait: float = 600) -> None:
    """Check that the data can be read, create or version the package dataset, wait until Kaggle has
    processed it, push (and so run) the kernel."""
    for data in result.data_ids:  # a wrong --data would only show as a kernel failing on Kaggle
        listed = cli.run(["datasets", "files", data], check=False, capture=True)
        if listed.returncode != 0:
            raise KaggleSetupError(f"cannot read dataset {data} ({(listed.stdout or '').strip()}); "
                                   f"pass --data OWNER/{DATA_SLUG} with the owner of the dataset on kaggle.com")
    if dataset_exists(cli, result.package_id):
        cli.run(["datasets", "version", "-p", result.package_dir, "-m", message, "--dir-mode", "zip"])
    else:
        cli.run(["datasets", "create", "-p", result.package_dir, "--dir-mode", "zip"])
    if wait > 0:
        wait_for_dataset(cli, result.package_id, wait)
    cli.run(["kernels", "push", "-p", result.kernel_dir])


def find_dataset_root(folder: str | os.PathLike, depth: int = 2) -> Path | None:
    """``folder`` or a sub-folder (up to ``depth`` levels) laid out as retina-modify (``train/labels.txt``)."""
    level = [Path(folder)]
    for _ in range(depth + 1):
        for candidate in level:
            if (candidate / "train" / "labels.txt").is_file():
                return candidate
        level = sorted(p for c in level if c.is_dir() for p in c.iterdir() if p.is_dir() and p.name not in ("train", "val"))
    return None


# ============================================================================ inside the kernel


def smoke_mode(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(SMOKE_ENV, "") not in ("", "0")


def kernel_root(env: Mapping[str, str] = os.environ) -> Path:
    """Where the kernel's ``input/`` and ``working/`` live: $LATENTFACE_KAGGLE_ROOT, else ``/kaggle`` on
    Kaggle, else the local stand-in :data:`LOCAL_ROOT` that :func:`prepare_local_input` fills."""
    if env.get(ROOT_ENV):
        return Path(env[ROOT_ENV])
    if Path("/kaggle/input").is_dir():
        return Path("/kaggle")
    return LOCAL_ROOT


_MOUNT_KINDS = ("datasets", "notebooks", "kernels", "models", "competitions")


def input_mounts(input_root: str | os.PathLike, slug: str | None = None) -> list[Path]:
    """Attached inputs, however Kaggle mounts them: ``<input>/<slug>`` or ``<input>/<kind>/<owner>/<slug>``
    (``datasets/``, ``notebooks/``...). Only those named ``slug`` when given."""
    root = Path(input_root)
    if not root.is_dir():
        return []
    mounts = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            mounts += sorted(p for p in entry.glob("*/*") if p.is_dir()) if entry.name in _MOUNT_KINDS else [entry]
    return [m for m in mounts if slug is None or m.name == slug]


def _listing(input_root: Path) -> str:
    mounts = input_mounts(input_root)
    return ", ".join(str(m.relative_to(input_root)) for m in mounts) or "nothing"


def find_dataset(input_root: str | os.PathLike, slug: str = DATA_SLUG) -> Path:
    """The retina-modify root among the inputs: the mount named ``slug`` first, else any mount laid out
    like it (so a copy under another name works too)."""
    input_root = Path(input_root)
    named = input_mounts(input_root, slug)
    for mount in named + [m for m in input_mounts(input_root) if m not in named]:
        found = find_dataset_root(mount)
        if found is not None:
            return found
    raise KaggleSetupError(f"no dataset with train/labels.txt under {input_root} (attached: {_listing(input_root)}); "
                           f"attach the {slug} dataset (kernel-metadata.json dataset_sources, or Add Input in the editor)")


def _version_key(wheel: Path) -> tuple:
    version = wheel.name.split("-")[1]
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+]", version)), wheel.name


def find_wheels(input_root: str | os.PathLike) -> list[Path]:
    """``latentface-*.whl`` at the top (or one folder down) of every input, oldest version first."""
    wheels = []
    for mount in input_mounts(input_root):
        wheels += list(mount.glob("latentface-*.whl")) + list(mount.glob("*/latentface-*.whl"))
    return sorted(set(wheels), key=_version_key)


def install_package(wheel: str | os.PathLike, target: str | os.PathLike | None = None,
                    env: dict | None = None) -> Path:
    """``pip install --no-index --no-deps --target`` the wheel: offline, and nothing of the image (torch!)
    is replaced. The target goes first on sys.path and on PYTHONPATH (for the training processes)."""
    env = os.environ if env is None else env
    target = Path(target) if target else Path(tempfile.gettempdir()) / "latentface-site"
    if target.exists():
        shutil.rmtree(target)
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "-q", "--target", str(target), str(wheel)]
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
        from kaggle_secrets import UserSecretsClient
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


def configure_wandb(working: str | os.PathLike, env: dict | None = None, internet: bool | None = None) -> str:
    """W&B mode for the training processes: ``online`` with a WANDB_API_KEY (environment or Kaggle secret)
    and a reachable server, ``offline`` otherwise (logs kept in ``working`` for ``wandb sync``);
    ``disabled`` stays disabled. Sets WANDB_MODE / WANDB_DIR (and the key) in ``env``."""
    env = os.environ if env is None else env
    if env.get("WANDB_MODE") == "disabled":
        return "disabled"
    key = env.get("WANDB_API_KEY") or kaggle_secret("WANDB_API_KEY")
    online = bool(key) and (internet_available() if internet is None else internet)
    if online:
        env["WANDB_API_KEY"] = key
    env["WANDB_MODE"] = "online" if online else "offline"
    env["WANDB_DIR"] = str(working)
    return env["WANDB_MODE"]


# ---------------------------------------------------------------------------- GPUs and the training command


def cuda_devices(cuda=None) -> list[str]:
    """Names of the GPUs; raises when one is too old for this PyTorch (a P100 under current PyTorch)."""
    if cuda is None:
        import torch

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
                f"Push with \"machine_shape\": \"{MACHINE_SHAPE}\" (T4 x2; `latentface kaggle push` sets it) "
                "using a kaggle CLI that sends it (pip install -U kaggle), or pick GPU T4 x2 in the editor.")
        names.append(name)
    return names


def train_settings(settings: Mapping[str, Any], root: str | os.PathLike | None = None,
                   env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The notebook's training settings; with LATENTFACE_SMOKE=1 the tiny :data:`SMOKE_TRAIN` ones over
    them, on the local stand-in root the small :data:`LOCAL_TRAIN` ones."""
    if smoke_mode(env):
        return {**settings, **SMOKE_TRAIN}
    if root is not None and Path(root) == LOCAL_ROOT:
        return {**settings, **LOCAL_TRAIN}
    return dict(settings)


class _SettingsParser(argparse.ArgumentParser):
    """argparse that raises (with the whole message) instead of exiting; no abbreviations, so typos fail."""

    def error(self, message: str):
        raise KaggleSetupError(f"training settings: {message}")


def train_arguments(settings: Mapping[str, Any], dataset: str | os.PathLike, out: str | os.PathLike,
                    name: str, resume: str | os.PathLike | None = None,
                    time_budget: float | None = None) -> list[str]:
    """``latentface train`` flags from ``{flag: value}`` (True: a switch, None/False: left out), checked
    against the train command's own parser before any process starts.

    ``time_budget`` is this session's seconds; on resume the run's earlier training time is added,
    because the budget counts the whole run.
    """
    from latentface.training.config import configure_parser

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
    parser.parse_args(args)
    return args


def train_command(n_gpus: int, args: Sequence[str], python: str = sys.executable) -> list[str]:
    """One process per GPU through torchrun when there are two or more, else a plain process."""
    if n_gpus >= 2:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_gpus}",
                "-m", "latentface.cli", "train", *map(str, args)]
    return [python, "-m", "latentface.cli", "train", *map(str, args)]


def run_logged(command: Sequence[str], log: str | os.PathLike, env: Mapping[str, str] | None = None) -> None:
    """Run ``command``, echoing its output here (so it lands in the notebook) and into ``log``."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join([Path(command[0]).name, *map(str, command[1:])]), flush=True)
    tail: list[str] = []
    with open(log, "a", encoding="utf-8") as out, subprocess.Popen(
            list(map(str, command)), env=dict(os.environ if env is None else env), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            out.write(line)
            out.flush()  # a session killed mid-run still leaves its log
            tail = (tail + [line])[-20:]
    if process.returncode != 0:
        raise KaggleSetupError(f"{Path(command[0]).name} {' '.join(map(str, command[1:4]))} ... failed with exit "
                               f"status {process.returncode} (full log: {log}):\n{''.join(tail)}")


# ---------------------------------------------------------------------------- resume


def run_progress(run_dir: str | os.PathLike | None) -> dict[str, float]:
    """``{"epoch": .., "elapsed_s": ..}`` reached by a run, from its metrics.csv (zeros when unreadable)."""
    progress = {"epoch": 0.0, "elapsed_s": 0.0}
    path = Path(run_dir) / "metrics.csv" if run_dir is not None else None
    if path is None or not path.is_file():
        return progress
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for key in progress:
                try:
                    progress[key] = max(progress[key], float(row.get(key) or 0))
                except ValueError:
                    pass
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
    skip = {Path(p).resolve() for p in exclude}
    runs = [last.parent for mount in input_mounts(input_root)
            if not any(mount.resolve() == s or mount.resolve() in s.parents for s in skip)
            for last in _find_files(mount, "last.pth", depth=4)]
    return max(runs, key=lambda d: (run_progress(d)["epoch"], str(d)), default=None)


def resume_point(input_root: str | os.PathLike, run_dir: str | os.PathLike,
                 exclude: Iterable[str | os.PathLike] = ()) -> Path | None:
    """The run to continue, as a writable directory: ``run_dir`` itself when it already holds a run at
    least as far along (same session, run again), else a copy of the furthest run among the inputs
    (inputs are read-only; epoch_NNN.pth snapshots are not copied); None for a fresh start."""
    run_dir = Path(run_dir)
    here = run_dir if (run_dir / "last.pth").is_file() else None
    found = find_resume_run(input_root, exclude)
    if found is None or (here is not None and run_progress(here)["epoch"] >= run_progress(found)["epoch"]):
        return here
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(found, run_dir, ignore=shutil.ignore_patterns("epoch_*.pth", "wandb", "*.tmp"))
    print(f"resuming from {found} (epoch {run_progress(found)['epoch']:g}), copied to {run_dir}")
    return run_dir


# ---------------------------------------------------------------------------- local stand-in and evaluation


def prepare_local_input(root: str | os.PathLike, slug: str = DATA_SLUG,
                        env: Mapping[str, str] = os.environ) -> Path | None:
    """Off Kaggle, the synthetic dataset as ``<root>/input/<slug>`` (made once), so the kernel's cells
    run unchanged on a laptop; on Kaggle (``/kaggle``) or when it is already there, nothing."""
    root = Path(root)
    if root == Path("/kaggle") or input_mounts(root / "input", slug):
        return None
    from latentface.data.synth import generate_dataset

    target = root / "input" / slug
    sizes = SMOKE_DATA if smoke_mode(env) else LOCAL_DATA
    print(f"not on Kaggle: writing the synthetic dataset to {target} ({sizes['n_train']} + {sizes['n_val']} images)")
    generate_dataset(target, sizes["n_train"], sizes["n_val"], size=sizes["size"], rates=sizes["rates"],
                     seed=0, progress=False)
    return target


def best_weights(run_dir: str | os.PathLike) -> Path:
    """best.pth (best validation AP), else weight_final.pth, else last.pth (a run stopped early)."""
    for name in ("best.pth", "weight_final.pth", "last.pth"):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    raise KaggleSetupError(f"{run_dir}: no best.pth, weight_final.pth or last.pth; did training start?")


def evaluate_checkpoint(weight: str | os.PathLike, dataset: str | os.PathLike, out_dir: str | os.PathLike,
                        latent_type: str = "latent_75.npy", batch_size: int = 8, device: str | None = None) -> dict:
    """The validation split's evaluation report for a checkpoint: ``report.json`` and ``pr_curve.png``
    in ``out_dir``; returns the report without its curves."""
    from latentface.data.dataset import NestedLatentWiderFaceDataset
    from latentface.data.labels import read_labels
    from latentface.detect import Detector, predict_dataset
    from latentface.evaluate import evaluation_report, plot_pr_curve

    detector = Detector.from_checkpoint(weight, device=device)
    data = NestedLatentWiderFaceDataset(dataset, "val", latent_type)
    predictions, _ = predict_dataset(detector, data, batch_size=batch_size, progress=False)
    truth = read_labels(Path(dataset) / "val" / "labels.txt")
    report = evaluation_report(predictions, {key: truth[key] for key in predictions})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(report, out_dir / "report.json")
    plot_pr_curve(report, out_dir / "pr_curve.png")
    return {k: v for k, v in report.items() if k != "curves"}


# ============================================================================ command line


def _add_identity(parser: argparse.ArgumentParser) -> None:
    from latentface.cli import flag

    parser.add_argument(*flag("--user"), help="Kaggle username (default: $KAGGLE_USERNAME or the CLI's kaggle.json)")
    parser.add_argument(*flag("--slug"), default=KERNEL_SLUG, help=f"kernel slug (default: {KERNEL_SLUG})")


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    from latentface.cli import flag

    parser.add_argument(*flag("--data"), metavar="OWNER/SLUG",
                        help=f"the retina-modify dataset to attach (default: USER/{DATA_SLUG})")
    parser.add_argument(*flag("--package_slug"), default=PACKAGE_SLUG,
                        help=f"slug of the dataset that carries the wheel (default: {PACKAGE_SLUG})")
    parser.add_argument(*flag("--title"), help="kernel title (default: the slug with spaces; must slugify to it)")
    parser.add_argument(*flag("--resume_from"), action="append", default=[], metavar="OWNER/KERNEL",
                        help="attach a previous kernel's output; the kernel continues its furthest run (repeatable)")
    parser.add_argument(*flag("--no_internet"), action="store_true",
                        help="enable_internet false (W&B then logs offline into /kaggle/working)")
    parser.add_argument(*flag("--public"), action="store_true", help="a public kernel (default: private)")
    parser.add_argument(*flag("--machine_shape"), default=MACHINE_SHAPE, choices=MACHINE_SHAPES, metavar="SHAPE",
                        help=f"accelerator, one of {', '.join(MACHINE_SHAPES)} (default: {MACHINE_SHAPE}, i.e. T4 x2)")
    parser.add_argument(*flag("--out"), help="build folder (default: kaggle/build in the checkout)")
    parser.add_argument(*flag("--project"), help="source checkout to pack (default: the one this package runs from)")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from latentface.cli import flag

    sub = parser.add_subparsers(dest="kaggle_command", metavar="ACTION", required=True)
    p = sub.add_parser("build", help="write kaggle/build: the kernel (notebook 03) and the wheel dataset")
    _add_identity(p)
    _add_build_options(p)
    p = sub.add_parser("push", help="build, create or version the wheel dataset, push and run the kernel")
    _add_identity(p)
    _add_build_options(p)
    p.add_argument(*flag("--skip_build"), action="store_true", help="push kaggle/build as it is")
    p.add_argument(*flag("--message"), help="dataset version notes (default: latentface <version>)")
    p.add_argument(*flag("--wait"), type=float, default=600,
                   help="seconds to wait for Kaggle to process the wheel dataset (0: do not wait; default 600)")
    p = sub.add_parser("status", help="the kernel's run status (kaggle kernels status)")
    _add_identity(p)
    p = sub.add_parser("output", help="download the kernel's /kaggle/working (kaggle kernels output)")
    _add_identity(p)
    p.add_argument(*flag("--dest"), help="folder (default: runs/kaggle/<slug>)")
    p.add_argument(*flag("--force"), action="store_true", help="overwrite files already there")
    p = sub.add_parser("download-data", help=f"download {DATA_SLUG} into data/ (kaggle datasets download)")
    p.add_argument(*flag("--user"), help="Kaggle username, the default dataset owner")
    p.add_argument(*flag("--data"), metavar="OWNER/SLUG", help=f"dataset (default: USER/{DATA_SLUG})")
    p.add_argument(*flag("--dest"), help="folder (default: data/<slug>)")
    p = sub.add_parser("sync-notebook", help="regenerate kaggle/<slug>.ipynb from notebooks/03 (no Kaggle call)")
    p.add_argument(*flag("--project"), help="source checkout (default: the one this package runs from)")


def _build_from_args(args: argparse.Namespace, user: str) -> Build:
    result = build(user, data=args.data, slug=args.slug, title=args.title, package_slug=args.package_slug,
                   resume_from=args.resume_from, internet=not args.no_internet, private=not args.public,
                   machine_shape=args.machine_shape, out=args.out, project=args.project)
    print(f"kernel  {result.kernel_id}: {result.kernel_dir}")
    print(f"package {result.package_id}: {result.wheel}")
    return result


def _run(args: argparse.Namespace) -> int:
    action = args.kaggle_command
    if action == "sync-notebook":
        root = project_root(args.project)
        code_file = read_metadata(root / "kaggle" / KERNEL_METADATA)["code_file"]
        print(write_kernel_notebook(root / "kaggle" / code_file, root))
        return 0
    if action == "build":
        _build_from_args(args, kaggle_username(args.user))
        return 0
    cli = KaggleCLI()
    user = kaggle_username(args.user)
    if action == "push":
        if args.skip_build:
            out = Path(args.out) if args.out else project_root(args.project) / "kaggle" / "build"
            result = Build.read(out)
        else:
            result = _build_from_args(args, user)
        from latentface import __version__

        push(result, cli, args.message or f"latentface {__version__}", wait=args.wait)
        print(f"pushed: https://www.kaggle.com/code/{result.kernel_id}\n"
              f"follow it with `latentface kaggle status --user {user} --slug {args.slug}`, then fetch the results "
              f"with `latentface kaggle output --user {user} --slug {args.slug}`")
    elif action == "status":
        cli.run(["kernels", "status", f"{user}/{args.slug}"])
    elif action == "output":
        dest = Path(args.dest or Path("runs") / "kaggle" / args.slug)
        dest.mkdir(parents=True, exist_ok=True)
        cli.run(["kernels", "output", f"{user}/{args.slug}", "-p", dest, *(["-o"] if args.force else [])])
        print(f"kernel output in {dest}")
    elif action == "download-data":
        data = args.data or f"{user}/{DATA_SLUG}"
        _ref(data, "--data")
        dest = Path(args.dest or Path("data") / data.split("/")[1])
        dest.mkdir(parents=True, exist_ok=True)
        cli.run(["datasets", "download", "-d", data, "-p", dest, "--unzip"])
        found = find_dataset_root(dest)
        if found is None:
            raise KaggleSetupError(f"{data} was downloaded to {dest}, but no train/labels.txt is there")
        print(f"dataset ready: train with --dataset_root {found}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KaggleSetupError as exc:
        print(f"latentface kaggle {args.kaggle_command}: error: {exc}", file=sys.stderr)
        return 2
