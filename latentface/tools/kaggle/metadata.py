"""What Kaggle accepts: slugs, and the checks the kaggle CLI makes on kernel and dataset metadata.

``kaggle kernels push`` and ``kaggle datasets create`` check their metadata file before they
upload; the same checks run here, so a bad field fails on the laptop with a message naming
it (plus two that the CLI only warns about or gets wrong silently: a title that does not
slugify to the kernel slug, an accelerator name the server would silently replace).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latentface.errors import LatentfaceError
from latentface.util.io import read_json, write_json

KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"
DATA_SLUG = "retina-modify"
PACKAGE_SLUG = "latentface-package"
KERNEL_SLUG = "latentface-train"
#: GPU T4 x2 (Kaggle's GPU for everyone; one T4 alone is not offered). P100s no longer run Kaggle's PyTorch.
MACHINE_SHAPE = "NvidiaTeslaT4"
#: The GPU accelerators kernels can ask for (the kaggle CLI's documented list, minus the shapes below);
#: all but the T4 x2 are limited to some competitions or accounts. The server silently turns an
#: unknown value into its default.
MACHINE_SHAPES = ("NvidiaTeslaT4", "NvidiaL4", "NvidiaL4X1", "NvidiaTeslaA100", "NvidiaH100", "NvidiaRtxPro6000")
#: Shapes the kaggle CLI listed that this project does not push to, and why (kaggle 2.2.5 lists the retired ones).
UNSUPPORTED_SHAPES = {
    "NvidiaTeslaT4Highmem": "an internal Kaggle pool, not open to users",
    "NvidiaTeslaP100": "a P100 (sm_60): Kaggle's PyTorch has no kernels for it any more",
    "TpuV38": "TPU v3-8, retired by Kaggle",
    "Tpu1VmV38": "TPU v3-8, retired by Kaggle",
    "TpuV232": "TPU v2-32, retired by Kaggle (the session would run on the CPU)",
    "TpuV2256": "TPU v2-256, retired by Kaggle (the session would run on the CPU)",
    "TpuV5E8": "a TPU: latentface trains on CUDA GPUs",
    "TpuV6E8": "a TPU: latentface trains on CUDA GPUs",
}
#: The first kaggle CLI that sends kernel-metadata.json's machine_shape with `kernels push` (1.8.4, which
#: needs Python >= 3.11); older ones drop it without a word and the kernel gets the default accelerator.
MIN_KAGGLE_FOR_PUSH = (1, 8, 4)
#: Dataset licences the kaggle CLI documents for dataset-metadata.json.
LICENSES = (
    "CC0-1.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC-BY-NC-SA-4.0",
    "GPL-2.0",
    "ODbL-1.0",
    "DbCL-1.0",
    "copyright-authors",
    "other",
    "unknown",
    "CC-BY-4.0",
    "CC-BY-NC-4.0",
    "PDDL",
    "CC-BY-3.0",
    "CC-BY-3.0-IGO",
    "US-Government-Works",
    "CC-BY-NC-SA-3.0-IGO",
    "CDLA-Permissive-1.0",
    "CDLA-Sharing-1.0",
    "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0",
    "ODC-BY-1.0",
    "LGPL-3.0",
    "AGPL-3.0",
    "FDL-1.3",
    "EU-ODP-Legal-Notice",
    "apache-2.0",
    "GPL-3.0",
)
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class KaggleSetupError(LatentfaceError, RuntimeError):
    """Something to install, set or fix before Kaggle can be used; the message says exactly what."""


def slugify(title: str) -> str:
    """The URL slug Kaggle derives from a title (as python-slugify does it for ASCII text)."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"(?<=\d),(?=\d)", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def title_for(slug: str) -> str:
    """A title whose slug is ``slug``: ``latentface-train`` -> ``latentface train``."""
    return slug.replace("-", " ")


def next_slug(slug: str) -> str:
    """The slug of the kernel that continues ``slug``'s run: ``latentface-train`` -> ``latentface-train-2``,
    ``latentface-train-2`` -> ``latentface-train-3``."""
    match = re.fullmatch(r"(.*)-(\d+)", slug)
    return f"{match.group(1)}-{int(match.group(2)) + 1}" if match and int(match.group(2)) < 1000 else f"{slug}-2"


def split_ref(value: Any, field: str, parts: int = 2) -> list[str]:
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


def _check_kernel_sources(meta: Mapping, where: str) -> None:
    for source in _string_list(meta, "dataset_sources", where):
        split_ref(source, f"{where}: field 'dataset_sources'")
    for source in _string_list(meta, "kernel_sources", where):
        _, slug = split_ref(source, f"{where}: field 'kernel_sources'")
        if len(slug) < 5:
            raise KaggleSetupError(
                f"{where}: field 'kernel_sources': kernel slug {slug!r} is shorter than 5 characters"
            )
    for source in _string_list(meta, "model_sources", where):
        split_ref(source, f"{where}: field 'model_sources'", parts=5)
    for source in _string_list(meta, "competition_sources", where):
        if not isinstance(source, str) or not source:
            raise KaggleSetupError(f"{where}: field 'competition_sources' holds competition slugs, got {source!r}")


def _check_code_file(folder: str | os.PathLike, code_file: str, kernel_type: str, where: str) -> None:
    path = Path(folder) / code_file
    if not path.is_file():
        raise KaggleSetupError(f"{where}: field 'code_file': source file not found: {path}")
    if kernel_type == "notebook":
        try:
            notebook = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KaggleSetupError(
                f"{path}: a notebook kernel's code_file must be an .ipynb JSON file ({exc})"
            ) from None
        if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
            raise KaggleSetupError(f"{path}: not a Jupyter notebook (no 'cells' list)")


def validate_kernel_metadata(
    meta: Mapping, folder: str | os.PathLike | None = None, where: str = KERNEL_METADATA
) -> None:
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
        _, slug = split_ref(meta["id"], f"{where}: field 'id'")
        if len(slug) < 5:
            raise KaggleSetupError(f"{where}: field 'id': the kernel slug must be at least 5 characters, got {slug!r}")
        if slugify(title) != slug.lower():
            raise KaggleSetupError(
                f"{where}: field 'title' {title!r} slugifies to {slugify(title)!r}, "
                f"not to the id's slug {slug!r}; Kaggle names the kernel after its title"
            )
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
    _check_kernel_sources(meta, where)
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in ("original", "latest"):
        raise KaggleSetupError(
            f"{where}: field 'docker_image_pinning_type' must be 'original' or 'latest', got {pinning!r}"
        )
    shape = meta.get("machine_shape")
    if shape in UNSUPPORTED_SHAPES:
        raise KaggleSetupError(
            f"{where}: field 'machine_shape' {shape!r} is {UNSUPPORTED_SHAPES[shape]}; use "
            f"{MACHINE_SHAPE} (GPU T4 x2) or one of {', '.join(MACHINE_SHAPES[1:])}"
        )
    if shape is not None and shape not in MACHINE_SHAPES:
        raise KaggleSetupError(
            f"{where}: field 'machine_shape' {shape!r} is not an accelerator Kaggle knows "
            f"(the server would silently replace it by its default); use one of {', '.join(MACHINE_SHAPES)}"
        )
    if folder is not None:
        _check_code_file(folder, code_file, kernel_type, where)


def _check_dataset_identity(meta: Mapping, where: str) -> None:
    _, slug = split_ref(meta["id"], f"{where}: field 'id'")
    if slug == "INSERT_SLUG_HERE":
        raise KaggleSetupError(f"{where}: field 'id' still holds the template's INSERT_SLUG_HERE")
    if not 6 <= len(slug) <= 50:
        raise KaggleSetupError(f"{where}: field 'id': the dataset slug must be 6 to 50 characters, got {slug!r}")
    if not SLUG.match(slug):
        raise KaggleSetupError(
            f"{where}: field 'id': the dataset slug must be lowercase letters, digits and single dashes, got {slug!r}"
        )
    title = meta["title"]
    if title == "INSERT_TITLE_HERE":
        raise KaggleSetupError(f"{where}: field 'title' still holds the template's INSERT_TITLE_HERE")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        raise KaggleSetupError(f"{where}: field 'title' must be 6 to 50 characters, got {title!r}")


def validate_dataset_metadata(
    meta: Mapping, folder: str | os.PathLike | None = None, where: str = DATASET_METADATA
) -> None:
    """The checks ``kaggle datasets create`` makes before uploading; raises naming the field."""
    if not isinstance(meta, Mapping):
        raise KaggleSetupError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    for field in ("id", "title", "licenses"):
        if field not in meta:
            raise KaggleSetupError(f"{where}: field '{field}' is required")
    _check_dataset_identity(meta, where)
    licenses = meta["licenses"]
    if not isinstance(licenses, list) or len(licenses) != 1:
        raise KaggleSetupError(f"{where}: field 'licenses' must hold exactly one licence, got {licenses!r}")
    if not isinstance(licenses[0], Mapping) or "name" not in licenses[0]:
        raise KaggleSetupError(f"{where}: field 'licenses': the licence needs a 'name', got {licenses[0]!r}")
    if licenses[0]["name"] not in LICENSES:
        raise KaggleSetupError(
            f"{where}: field 'licenses': unknown licence {licenses[0]['name']!r}; use one of {', '.join(LICENSES)}"
        )
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
    """A metadata file's JSON; a missing or malformed file is a :class:`KaggleSetupError` naming it."""
    try:
        return read_json(path, "metadata file")
    except (OSError, ValueError) as exc:
        raise KaggleSetupError(str(exc)) from None


def write_metadata(path: str | os.PathLike, meta: Mapping) -> Path:
    """Write a metadata file (two-space JSON, as the kaggle CLI's templates)."""
    return write_json(path, dict(meta), indent=2)
