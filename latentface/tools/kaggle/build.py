"""What travels to Kaggle, and the upload: the wheel, the kernel notebook, their metadata, the push.

``kaggle kernels push`` uploads one code file, so the package travels as a Kaggle dataset
holding its wheel; the kernel (notebook 03, converted by jupytext) installs it offline.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from latentface.tools.kaggle.client import KaggleCLI
from latentface.tools.kaggle.metadata import (
    DATA_SLUG,
    DATASET_METADATA,
    KERNEL_METADATA,
    KERNEL_SLUG,
    MACHINE_SHAPE,
    PACKAGE_SLUG,
    SLUG,
    KaggleSetupError,
    read_metadata,
    slugify,
    split_ref,
    title_for,
    validate_dataset_metadata,
    validate_kernel_metadata,
    write_metadata,
)

#: Seconds between two ``kaggle datasets status`` polls while Kaggle processes the wheel dataset.
POLL_SECONDS = 10
#: The notebook that becomes the kernel, relative to the checkout.
NOTEBOOK = Path("notebooks") / "03_train_on_kaggle.py"


def project_root(project: str | os.PathLike | None = None) -> Path:
    """The source checkout (pyproject.toml, notebooks/03, kaggle/) that a build packs up."""
    root = Path(project) if project else Path(__file__).resolve().parents[3]
    missing = [p for p in ("pyproject.toml", str(NOTEBOOK), "kaggle/" + KERNEL_METADATA) if not (root / p).is_file()]
    if missing:
        raise KaggleSetupError(
            f"{root} is not a latentface source checkout (missing {', '.join(missing)}); "
            "run from a clone of the repository or pass --project DIR"
        )
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
        shutil.copytree(
            root / "latentface", src / "latentface", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        )
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


def kernel_notebook(project: str | os.PathLike | None = None, parameters: dict | None = None):
    """Notebook 03 as the kernel's .ipynb (jupytext conversion of the percent script, no outputs);
    ``parameters`` (``{"RESUME_FROM": [...]}``) replace those assignments in its parameters cell."""
    try:
        import jupytext  # optional dependency (the kaggle and notebooks extras)
    except ImportError:
        raise KaggleSetupError(
            "building the kernel needs jupytext: pip install jupytext (or pip install 'latentface[notebooks]')"
        ) from None
    notebook = jupytext.read(project_root(project) / NOTEBOOK)
    notebook.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    notebook.metadata.setdefault("language_info", {"name": "python"})
    notebook.metadata.pop("jupytext", None)
    for i, cell in enumerate(notebook.cells):  # stable ids: a rebuild of the same notebook is the same file
        cell.id = f"cell-{i}"
        if "parameters" in cell.metadata.get("tags", []):
            for name, value in (parameters or {}).items():
                line = re.compile(rf"^{re.escape(name)} = [^#\n]*?(\s*#.*)?$", re.M)
                if not line.search(cell.source):
                    raise KaggleSetupError(f"{NOTEBOOK}: no `{name} = ...` line in the parameters cell")
                assignment = f"{name} = {value!r}"
                cell.source = line.sub(lambda m, a=assignment: a + (m.group(1) or ""), cell.source, count=1)
    return notebook


def write_kernel_notebook(
    path: str | os.PathLike, project: str | os.PathLike | None = None, parameters: dict | None = None
) -> Path:
    """Write :func:`kernel_notebook` to ``path`` (``latentface kaggle sync-notebook`` writes kaggle/'s copy)."""
    notebook = kernel_notebook(project, parameters)
    import nbformat  # optional dependency, installed with jupytext (checked just above)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


@dataclass
class Build:
    """What :func:`build_kernel` wrote: the kernel folder (push -p) and the package dataset folder."""

    kernel_dir: Path
    package_dir: Path
    wheel: Path
    kernel_id: str
    package_id: str
    data_ids: list[str]

    @classmethod
    def read(cls, out: str | os.PathLike) -> Build:
        """A build folder written earlier, validated again as the kaggle CLI would."""
        out = Path(out)
        kernel = read_metadata(out / "kernel" / KERNEL_METADATA)
        package = read_metadata(out / "package" / DATASET_METADATA)
        wheels = sorted((out / "package").glob("latentface-*.whl"))
        if len(wheels) != 1:
            raise KaggleSetupError(
                f"{out / 'package'}: expected one latentface wheel, found {len(wheels)}; "
                "run `latentface kaggle build` again"
            )
        validate_kernel_metadata(kernel, out / "kernel", str(out / "kernel" / KERNEL_METADATA))
        validate_dataset_metadata(package, out / "package", str(out / "package" / DATASET_METADATA))
        data = [d for d in kernel.get("dataset_sources", []) if d != package["id"]]
        return cls(out / "kernel", out / "package", wheels[0], kernel["id"], package["id"], data)


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def build_kernel(
    user: str,
    data: str | None = None,
    slug: str = KERNEL_SLUG,
    title: str | None = None,
    package_slug: str = PACKAGE_SLUG,
    resume_from: Sequence[str] = (),
    internet: bool = True,
    private: bool = True,
    machine_shape: str = MACHINE_SHAPE,
    out: str | os.PathLike | None = None,
    project: str | os.PathLike | None = None,
) -> Build:
    """Write ``<out>/kernel`` (kernel-metadata.json + the notebook) and ``<out>/package`` (the wheel +
    dataset-metadata.json) from the templates in ``kaggle/``; both validated as the CLI would."""
    root = project_root(project)
    out = Path(out) if out else root / "kaggle" / "build"
    if not SLUG.match(slug):
        raise KaggleSetupError(f"--slug must be lowercase letters, digits and single dashes, got {slug!r}")
    title = title or title_for(slug)
    if slugify(title) != slug:
        raise KaggleSetupError(
            f"--title {title!r} slugifies to {slugify(title)!r}, not to the kernel slug {slug!r}; "
            "Kaggle names a kernel after its title"
        )
    data = data or f"{user}/{DATA_SLUG}"
    split_ref(data, "--data")
    for ref in resume_from:
        split_ref(ref, "--resume_from")
    kernel_dir, package_dir = _fresh(out / "kernel"), _fresh(out / "package")

    wheel = build_wheel(package_dir, root)
    package = read_metadata(root / "kaggle" / DATASET_METADATA)
    package["id"] = f"{user}/{package_slug}"
    validate_dataset_metadata(package, package_dir, str(root / "kaggle" / DATASET_METADATA))
    write_metadata(package_dir / DATASET_METADATA, package)

    kernel = read_metadata(root / "kaggle" / KERNEL_METADATA)
    code_file = f"{slug}.ipynb"
    write_kernel_notebook(kernel_dir / code_file, root, {"RESUME_FROM": list(resume_from)})
    kernel.update(
        id=f"{user}/{slug}",
        title=title,
        code_file=code_file,
        is_private=private,
        enable_gpu=True,
        enable_internet=internet,
        machine_shape=machine_shape,
        dataset_sources=[data, package["id"]],
        kernel_sources=list(resume_from),
    )
    validate_kernel_metadata(kernel, kernel_dir, str(kernel_dir / KERNEL_METADATA))
    write_metadata(kernel_dir / KERNEL_METADATA, kernel)
    return Build(kernel_dir, package_dir, wheel, kernel["id"], package["id"], [data])


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
            raise KaggleSetupError(
                f"dataset {ref} is not ready after {timeout:.0f} s (last status: {status!r}); "
                "wait, then run `latentface kaggle push --skip_build` again"
            )
        time.sleep(POLL_SECONDS)


def kernel_exists(cli: KaggleCLI, ref: str) -> bool:
    """``kaggle kernels status OWNER/KERNEL`` answers (the kernel exists and can be read)."""
    result = cli.run(["kernels", "status", ref], check=False, capture=True)
    return result.returncode == 0 and not re.search(r"\b40[34]\b|not found|error", result.stdout or "", re.I)


def push(result: Build, cli: KaggleCLI, message: str, wait: float = 600) -> None:
    """Check that the data and the kernels to resume from can be read, create or version the package
    dataset, wait until Kaggle has processed it, push (and so run) the kernel."""
    sources = read_metadata(result.kernel_dir / KERNEL_METADATA).get("kernel_sources") or []
    for ref in sources:  # a wrong --resume_from would only show as a kernel failing on Kaggle
        if not kernel_exists(cli, ref):
            raise KaggleSetupError(
                f"--resume_from {ref}: no such kernel that you can read (`kaggle kernels status {ref}` failed); "
                "pass the OWNER/KERNEL of a kernel whose output holds the run (see `latentface kaggle status`)"
            )
    for data in result.data_ids:  # a wrong --data would only show as a kernel failing on Kaggle
        listed = cli.run(["datasets", "files", data], check=False, capture=True)
        if listed.returncode != 0:
            raise KaggleSetupError(
                f"cannot read dataset {data} ({(listed.stdout or '').strip()}); "
                f"pass --data OWNER/{DATA_SLUG} with the owner of the dataset on kaggle.com"
            )
    if dataset_exists(cli, result.package_id):
        cli.run(["datasets", "version", "-p", result.package_dir, "-m", message, "--dir-mode", "zip"])
    else:
        cli.run(["datasets", "create", "-p", result.package_dir, "--dir-mode", "zip"])
    if wait > 0:
        wait_for_dataset(cli, result.package_id, wait)
    cli.run(["kernels", "push", "-p", result.kernel_dir])
