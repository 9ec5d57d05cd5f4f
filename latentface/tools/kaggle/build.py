"""What travels to Kaggle, and the upload: the wheel, the kernel notebook, their metadata, the push.

``kaggle kernels push`` uploads one code file, so the package travels as a Kaggle dataset
holding its wheel; the kernel (notebook 03, converted by jupytext) installs it offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from latentface import __version__
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
from latentface.util.io import read_json, write_json

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
    build_id: str = ""

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
        stamp = read_build_stamp(out / "package")
        if stamp is None:
            raise KaggleSetupError(
                f"{out / 'package' / BUILD_STAMP} is missing (a build from an older latentface); "
                "run `latentface kaggle build` again"
            )
        return cls(out / "kernel", out / "package", wheels[0], kernel["id"], package["id"], data, stamp["build_id"])


#: Written beside the wheel: which build this is (``build_id``: UTC time + the wheel's content hash).
BUILD_STAMP = "build.json"


def make_build_id(wheel: str | os.PathLike, now: datetime | None = None) -> str:
    """``20261201T221530Z-1a2b3c4d``: when (UTC) and the first 8 hex digits of the wheel's SHA-256. Every
    wheel is ``latentface-<version>``; this tells one build (and one dataset version) from another."""
    digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
    return f"{(now or datetime.now(timezone.utc)):%Y%m%dT%H%M%SZ}-{digest[:8]}"


def read_build_stamp(folder: str | os.PathLike) -> dict | None:
    """The build stamp in ``folder`` (the package folder, or the attached dataset in the kernel); None if absent."""
    path = Path(folder) / BUILD_STAMP
    if not path.is_file():
        return None
    stamp = read_json(path, "build stamp")
    if not isinstance(stamp, dict) or not isinstance(stamp.get("build_id"), str):
        raise KaggleSetupError(f"{path}: not a latentface build stamp (no 'build_id')")
    return stamp


#: What a build wrote, relative to its --out folder; a rebuild deletes only these.
MANIFEST = "build-manifest.json"
#: The two folders a build writes into.
BUILD_FOLDERS = ("kernel", "package")


def _files_under(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for folder in BUILD_FOLDERS
        if (out / folder).is_dir()
        for p in (out / folder).rglob("*")
        if not p.is_dir()
    }


def _previous_build_files(out: Path) -> set[str]:
    """The files a previous build wrote: its manifest, else (a build from before manifests) exactly the
    files such a build writes: the two metadata files, the kernel's code_file, the wheel."""
    if (out / MANIFEST).is_file():
        try:
            return set(read_json(out / MANIFEST, "build manifest")["files"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KaggleSetupError(
                f"{out / MANIFEST} is damaged ({exc}); nothing was deleted. Remove {out / 'kernel'} and "
                f"{out / 'package'} yourself (keeping what you put there), or pass another --out"
            ) from None
    known = {f"kernel/{KERNEL_METADATA}", f"package/{DATASET_METADATA}"}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # no readable metadata: no code_file
        known.add(f"kernel/{read_json(out / 'kernel' / KERNEL_METADATA)['code_file']}")
    return known | {f"package/{w.name}" for w in (out / "package").glob("latentface-*.whl")}


def clear_previous_build(out: str | os.PathLike) -> list[str]:
    """Delete what a previous build wrote in ``out/kernel`` and ``out/package``, and only that; refuse
    (deleting nothing) when anything else is there. Returns the files deleted."""
    out = Path(out)
    present = _files_under(out)
    if not present:
        return []
    unknown = sorted(present - _previous_build_files(out))
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        shown = ", ".join(str(out / f) for f in unknown[:5]) + more
        raise KaggleSetupError(
            f"{shown} {'was' if len(unknown) == 1 else 'were'} not written by `latentface kaggle build`, which "
            f"rewrites {out / 'kernel'} and {out / 'package'}; nothing was deleted. Move "
            f"{'it' if len(unknown) == 1 else 'them'} elsewhere, or pass another --out DIR"
        )
    for name in sorted(present):
        (out / name).unlink()
    for folder in BUILD_FOLDERS:  # empty now, except for empty sub-folders
        if (out / folder).is_dir():
            shutil.rmtree(out / folder)
    (out / MANIFEST).unlink(missing_ok=True)
    return sorted(present)


def build_kernel(
    user: str,
    data: str | None = None,
    slug: str = KERNEL_SLUG,
    title: str | None = None,
    package_slug: str = PACKAGE_SLUG,
    resume_from: Sequence[str] = (),
    images: str | None = None,
    internet: bool = True,
    private: bool = True,
    machine_shape: str = MACHINE_SHAPE,
    out: str | os.PathLike | None = None,
    project: str | os.PathLike | None = None,
) -> Build:
    """Write ``<out>/kernel`` (kernel-metadata.json + the notebook) and ``<out>/package`` (the wheel +
    dataset-metadata.json) from the templates in ``kaggle/``; both validated as the CLI would. ``images``: a
    copy of WIDER FACE attached beside the data, for a run that learns from the RGB images."""
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
    if images is not None:
        split_ref(images, "--images")
    inputs = [data, *([images] if images else [])]  # the datasets the kernel reads
    for ref in resume_from:
        split_ref(ref, "--resume_from")
    clear_previous_build(out)
    kernel_dir, package_dir = out / "kernel", out / "package"
    kernel_dir.mkdir(parents=True)
    package_dir.mkdir(parents=True)

    wheel = build_wheel(package_dir, root)
    build_id = make_build_id(wheel)
    write_json(
        package_dir / BUILD_STAMP,
        {"build_id": build_id, "version": __version__, "wheel": wheel.name, "kernel": f"{user}/{slug}"},
        indent=2,
    )
    package = read_metadata(root / "kaggle" / DATASET_METADATA)
    package["id"] = f"{user}/{package_slug}"
    validate_dataset_metadata(package, package_dir, str(root / "kaggle" / DATASET_METADATA))
    write_metadata(package_dir / DATASET_METADATA, package)

    kernel = read_metadata(root / "kaggle" / KERNEL_METADATA)
    code_file = f"{slug}.ipynb"
    flags = ["--data", data]  # what `push` needs to continue this run in a next kernel
    flags += ["--images", images] if images else []
    flags += ["--package_slug", package_slug] if package_slug != PACKAGE_SLUG else []
    flags += ["--machine_shape", machine_shape] if machine_shape != MACHINE_SHAPE else []
    flags += [] if internet else ["--no_internet"]
    flags += [] if private else ["--public"]
    pushed = {"build_id": build_id, "kernel": f"{user}/{slug}", "flags": flags, "internet": internet}
    write_kernel_notebook(kernel_dir / code_file, root, {"RESUME_FROM": list(resume_from), "PUSHED": pushed})
    kernel.update(
        id=f"{user}/{slug}",
        title=title,
        code_file=code_file,
        is_private=private,
        enable_gpu=True,
        enable_internet=internet,
        machine_shape=machine_shape,
        dataset_sources=[*inputs, package["id"]],
        kernel_sources=list(resume_from),
    )
    validate_kernel_metadata(kernel, kernel_dir, str(kernel_dir / KERNEL_METADATA))
    write_metadata(kernel_dir / KERNEL_METADATA, kernel)
    write_json(out / MANIFEST, {"written_by": "latentface kaggle build", "files": sorted(_files_under(out))}, indent=2)
    return Build(
        kernel_dir, package_dir, wheel, kernel["id"], package["id"], [data, *[images] * bool(images)], build_id
    )


def dataset_exists(cli: KaggleCLI, ref: str) -> bool:
    result = cli.run(["datasets", "status", ref], check=False, capture=True)
    return result.returncode == 0 and not re.search(r"\b404\b|not found|error", result.stdout or "", re.I)


#: What the kaggle CLI prints, with exit status 0, when the server refused an upload or part of a push.
SERVER_ERRORS = re.compile(
    r"^.*(?:creation error|push error|\berror:|not valid (?:dataset sources|competition sources|"
    r"kernel sources|model sources)).*$",
    re.I | re.M,
)


def run_checked(cli: KaggleCLI, args: Sequence[str], what: str) -> str:
    """Run a kaggle command that exits 0 on server errors (``datasets create/version``, ``kernels push``):
    its output is shown, and a server error in it fails with the server's message."""
    result = cli.run(args, check=False, capture=True)
    output = (result.stdout or "").strip()
    if output:
        print(output, flush=True)
    errors = [m.group(0).strip() for m in SERVER_ERRORS.finditer(output)]
    if result.returncode != 0 or errors:
        said = "; ".join(errors) or (output.splitlines()[-1] if output else "no output")
        raise KaggleSetupError(f"{what} failed (`kaggle {' '.join(map(str, args))}`): Kaggle said: {said}")
    return output


def dataset_build_id(cli: KaggleCLI, ref: str) -> str | None:
    """The build id in the build stamp of the version of ``ref`` that Kaggle serves now (None: none readable)."""
    with tempfile.TemporaryDirectory(prefix="latentface-stamp-") as tmp:
        result = cli.run(
            ["datasets", "download", ref, "-f", BUILD_STAMP, "-p", tmp, "-o", "-q"], check=False, capture=True
        )
        if result.returncode != 0:
            return None
        for path in Path(tmp).iterdir():  # build.json, or build.json.zip from some CLI versions
            try:
                if zipfile.is_zipfile(path):
                    with zipfile.ZipFile(path) as archive:
                        return json.loads(archive.read(BUILD_STAMP)).get("build_id")
                return json.loads(path.read_text(encoding="utf-8")).get("build_id")
            except (OSError, KeyError, ValueError, AttributeError):
                return None
    return None


def wait_for_dataset(cli: KaggleCLI, ref: str, timeout: float = 600, build_id: str | None = None) -> None:
    """Poll ``kaggle datasets status`` until the new version is ready: a kernel started earlier would run
    without it (or with the previous wheel). With ``build_id``, "ready" counts only once the version
    Kaggle serves holds that build's stamp: right after ``datasets version`` the status can still be
    the previous version's "ready"."""
    deadline = time.monotonic() + timeout
    served = None
    while True:
        status = (cli.run(["datasets", "status", ref], check=False, capture=True).stdout or "").strip()
        print(status, flush=True)
        last = status.splitlines()[-1].strip().lower() if status else ""
        if re.search(r"\bready\b", last):
            if build_id is None:
                return
            served = dataset_build_id(cli, ref)
            if served == build_id:
                print(f"dataset {ref} serves build {build_id}", flush=True)
                return
            print(f"dataset {ref} still serves build {served or 'unknown'}; waiting for {build_id}", flush=True)
        elif last in ("error", "failed"):  # a status, not an HTTP error of a dataset still being created
            raise KaggleSetupError(f"Kaggle could not process dataset {ref}: {status}")
        if time.monotonic() >= deadline:
            serving = f"; it still serves build {served}" if served else ""
            raise KaggleSetupError(
                f"dataset {ref} is not ready{f' with build {build_id}' if build_id else ''} after {timeout:.0f} s "
                f"(last status: {status!r}{serving}); wait, then run `latentface kaggle push --skip_build` again"
            )
        time.sleep(POLL_SECONDS)


def kernel_exists(cli: KaggleCLI, ref: str) -> bool:
    """``kaggle kernels status OWNER/KERNEL`` answers (the kernel exists and can be read)."""
    result = cli.run(["kernels", "status", ref], check=False, capture=True)
    return result.returncode == 0 and not re.search(r"\b40[34]\b|not found|error", result.stdout or "", re.I)


def wandb_secret_steps(kernel_id: str) -> str:
    """How to give a kernel the ``WANDB_API_KEY`` secret (only possible once the kernel exists)."""
    return (
        f"to log to W&B online: open https://www.kaggle.com/code/{kernel_id}/edit, then Add-ons -> Secrets -> "
        "Add Secret, label WANDB_API_KEY with your key from https://wandb.ai/authorize, tick it to attach it "
        "to this notebook, then push again (`latentface kaggle push ...` with the same flags; the secret stays "
        "attached for later pushes)"
    )


def push(result: Build, cli: KaggleCLI, message: str, wait: float = 600) -> None:
    """Check that the data and the kernels to resume from can be read, create or version the package
    dataset, wait until Kaggle serves this build of it, push (and so run) the kernel."""
    cli.require_machine_shape()
    kernel = read_metadata(result.kernel_dir / KERNEL_METADATA)
    for ref in kernel.get("kernel_sources") or []:  # a wrong --resume_from would show only as a failing kernel
        if not kernel_exists(cli, ref):
            raise KaggleSetupError(
                f"--resume_from {ref}: no such kernel that you can read (`kaggle kernels status {ref}` failed); "
                "pass the OWNER/KERNEL of a kernel whose output holds the run (see `latentface kaggle status`)"
            )
    for i, data in enumerate(result.data_ids):  # a wrong --data would only show as a kernel failing on Kaggle
        listed = cli.run(["datasets", "files", data], check=False, capture=True)
        if listed.returncode != 0:
            which = f"--data OWNER/{DATA_SLUG}" if i == 0 else "--images OWNER/SLUG (a copy of WIDER FACE)"
            raise KaggleSetupError(
                f"cannot read dataset {data} ({(listed.stdout or '').strip()}); "
                f"pass {which} with the owner of the dataset on kaggle.com"
            )
    new_kernel = not kernel_exists(cli, result.kernel_id)
    print(f"build {result.build_id}", flush=True)
    if dataset_exists(cli, result.package_id):
        args = ["datasets", "version", "-p", result.package_dir, "-m", f"{message} (build {result.build_id})"]
        run_checked(cli, [*args, "--dir-mode", "zip"], f"uploading a new version of {result.package_id}")
    else:
        run_checked(
            cli, ["datasets", "create", "-p", result.package_dir, "--dir-mode", "zip"], f"creating {result.package_id}"
        )
    if wait > 0:
        wait_for_dataset(cli, result.package_id, wait, result.build_id)
    run_checked(cli, ["kernels", "push", "-p", result.kernel_dir], f"pushing kernel {result.kernel_id}")
    if new_kernel and kernel.get("enable_internet") in (True, "true", "True"):
        print(
            f"note: {result.kernel_id} is a new kernel, so this first run logs W&B offline (into its output): "
            "a Kaggle secret can only be attached to a kernel that exists. " + wandb_secret_steps(result.kernel_id),
            flush=True,
        )
