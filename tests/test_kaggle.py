"""latentface.tools.kaggle: metadata rules, credentials, build, the CLI calls (fake `kaggle` on PATH), the kernel
end to end."""

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

import latentface
import latentface.tools.kaggle.build as kaggle_build
import latentface.tools.kaggle.session as kaggle_session
from latentface.checkpoint import load_checkpoint
from latentface.cli import main
from latentface.data.synth import generate_dataset
from latentface.tools import kaggle as lk
from latentface.training import clock as training_clock
from latentface.training.recipes import RECIPES
from latentface.util import process

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ metadata rules


def test_slugify_follows_kaggle():
    assert lk.slugify("latentface train") == "latentface-train"
    assert lk.slugify("My Awesome  Kernel!") == "my-awesome-kernel"
    assert lk.slugify("Über 1,000 faces") == "uber-1000-faces"
    assert lk.slugify(lk.title_for("latentface-train-2")) == "latentface-train-2"


def _kernel_meta(**changes):
    meta = {
        "id": "alice/latentface-train",
        "title": "latentface train",
        "code_file": "k.ipynb",
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_internet": False,
        "machine_shape": "NvidiaTeslaT4",
        "dataset_sources": ["alice/retina-modify", "alice/latentface-package"],
        "kernel_sources": [],
    }
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not ...}


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(title="abcd"), "field 'title' must be at least 5 characters"),
        (dict(title=...), "field 'title' is required"),
        (dict(id="latentface-train"), "field 'id': expected 'owner/slug'"),
        (dict(id="alice/"), "field 'id': expected 'owner/slug'"),
        (dict(id="alice/abcd", title="abcd!"), "kernel slug must be at least 5 characters, got 'abcd'"),
        (
            dict(title="Latent Face Training"),
            "slugifies to 'latent-face-training', not to the id's slug 'latentface-train'",
        ),
        (dict(code_file=...), "field 'code_file'"),
        (dict(language="julia"), "field 'language' must be one of python, r, rmarkdown"),
        (dict(kernel_type="app"), "field 'kernel_type'"),
        (dict(enable_gpu="yes"), "field 'enable_gpu' must be true or false, got 'yes'"),
        (dict(is_private=1), "field 'is_private' must be true or false"),
        (
            dict(dataset_sources=["retina-modify"]),
            "field 'dataset_sources': expected 'owner/slug', got 'retina-modify'",
        ),
        (dict(dataset_sources="alice/retina-modify"), "field 'dataset_sources' must be a list"),
        (dict(kernel_sources=["alice/prev"]), "field 'kernel_sources': kernel slug 'prev' is shorter than 5"),
        (
            dict(model_sources=["alice/model"]),
            "field 'model_sources': expected 'owner/slug/framework/variation/version'",
        ),
        (dict(machine_shape="T4x2"), "field 'machine_shape' 'T4x2' is not an accelerator"),
        (dict(machine_shape="NvidiaTeslaT4Highmem"), "'NvidiaTeslaT4Highmem' is an internal Kaggle pool"),
        (dict(machine_shape="NvidiaTeslaP100"), "a P100 (sm_60): Kaggle's PyTorch has no kernels for it"),
        (dict(machine_shape="TpuV38"), "'TpuV38' is TPU v3-8, retired by Kaggle; use NvidiaTeslaT4 (GPU T4 x2)"),
        (dict(machine_shape="TpuV5E8"), "a TPU: latentface trains on CUDA GPUs"),
        (dict(machine_shape="TpuV232"), "'TpuV232' is TPU v2-32, retired by Kaggle (the session would run on the CPU)"),
        (dict(docker_image_pinning_type="pinned"), "field 'docker_image_pinning_type'"),
    ],
)
def test_kernel_metadata_errors_name_the_field(changes, message):
    with pytest.raises(lk.KaggleSetupError, match="kernel-metadata.json: .*") as info:
        lk.validate_kernel_metadata(_kernel_meta(**changes))
    assert message in str(info.value)


def test_machine_shapes_are_the_gpus_kernels_can_ask_for(capsys):
    assert lk.MACHINE_SHAPES[0] == lk.MACHINE_SHAPE == "NvidiaTeslaT4"
    assert not set(lk.MACHINE_SHAPES) & set(lk.UNSUPPORTED_SHAPES)
    retired = {"NvidiaTeslaP100", "TpuV38", "Tpu1VmV38", "TpuV232", "TpuV2256"}  # kaggle 2.2.5's retired list
    assert {"NvidiaTeslaT4Highmem", *retired} <= set(lk.UNSUPPORTED_SHAPES)
    for shape in lk.MACHINE_SHAPES:
        lk.validate_kernel_metadata(_kernel_meta(machine_shape=shape))
    with pytest.raises(SystemExit) as exited:  # argparse's own exit for a bad choice
        main(["kaggle", "build", "--user", "alice", "--machine_shape", "NvidiaTeslaT4Highmem"])
    assert exited.value.code == 2
    assert "invalid choice: 'NvidiaTeslaT4Highmem'" in capsys.readouterr().err


def test_next_slug_numbers_the_kernels_that_continue_a_run():
    assert lk.next_slug("latentface-train") == "latentface-train-2"
    assert lk.next_slug("latentface-train-2") == "latentface-train-3"
    assert lk.next_slug("run-9") == "run-10"


def test_kernel_metadata_accepts_the_clis_boolean_strings_and_checks_the_code_file(tmp_path):
    lk.validate_kernel_metadata(_kernel_meta(enable_gpu="TRUE", is_private="false"))
    with pytest.raises(lk.KaggleSetupError, match=r"field 'code_file': source file not found: .*k\.ipynb"):
        lk.validate_kernel_metadata(_kernel_meta(), tmp_path)
    (tmp_path / "k.ipynb").write_text("print('a script, not a notebook')")
    with pytest.raises(lk.KaggleSetupError, match=r"k\.ipynb: a notebook kernel's code_file must be an \.ipynb JSON"):
        lk.validate_kernel_metadata(_kernel_meta(), tmp_path)
    (tmp_path / "k.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    lk.validate_kernel_metadata(_kernel_meta(), tmp_path)


def _dataset_meta(**changes):
    meta = {"title": "latentface package", "id": "alice/latentface-package", "licenses": [{"name": "other"}]}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not ...}


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(id="alice/short"), "the dataset slug must be 6 to 50 characters, got 'short'"),
        (dict(id="alice/" + "x" * 51), "the dataset slug must be 6 to 50 characters"),
        (dict(id="alice/Latent_Face"), "lowercase letters, digits and single dashes"),
        (dict(id="alice/INSERT_SLUG_HERE"), "field 'id' still holds the template's INSERT_SLUG_HERE"),
        (dict(id=...), "field 'id' is required"),
        (dict(title="pkg"), "field 'title' must be 6 to 50 characters, got 'pkg'"),
        (dict(title="INSERT_TITLE_HERE"), "field 'title' still holds the template's INSERT_TITLE_HERE"),
        (dict(licenses=[]), "field 'licenses' must hold exactly one licence"),
        (dict(licenses=[{"name": "MIT"}]), "field 'licenses': unknown licence 'MIT'"),
        (dict(licenses=[{"title": "CC0"}]), "field 'licenses': the licence needs a 'name'"),
        (dict(subtitle="too short"), "field 'subtitle' must be 20 to 80 characters, got 9"),
        (dict(resources=[{"path": "a.whl"}, {"path": "a.whl"}]), "field 'resources' lists a path twice"),
    ],
)
def test_dataset_metadata_errors_name_the_field(changes, message):
    with pytest.raises(lk.KaggleSetupError) as info:
        lk.validate_dataset_metadata(_dataset_meta(**changes))
    assert str(info.value).startswith("dataset-metadata.json: ")
    assert message in str(info.value)


def test_templates_in_the_kaggle_folder_pass_the_cli_checks():
    kernel = lk.read_metadata(REPO / "kaggle" / "kernel-metadata.json")
    lk.validate_kernel_metadata(kernel, REPO / "kaggle")  # the committed kernel notebook is there
    assert (kernel["language"], kernel["kernel_type"], kernel["enable_gpu"]) == ("python", "notebook", True)
    assert kernel["machine_shape"] == "NvidiaTeslaT4"
    assert isinstance(kernel["enable_internet"], bool) and isinstance(kernel["is_private"], bool)
    assert [s.split("/")[1] for s in kernel["dataset_sources"]] == ["retina-modify", "latentface-package"]
    package = lk.read_metadata(REPO / "kaggle" / "dataset-metadata.json")
    lk.validate_dataset_metadata(package)
    assert package["id"].split("/")[1] == lk.PACKAGE_SLUG


def test_committed_kernel_notebook_matches_notebook_03():
    notebook = jupytext.read(REPO / "notebooks" / "03_train_on_kaggle.py")
    source = [c.source for c in notebook.cells if c.cell_type == "code"]
    code_file = lk.read_metadata(REPO / "kaggle" / "kernel-metadata.json")["code_file"]
    kernel = json.loads((REPO / "kaggle" / code_file).read_text())
    committed = ["".join(c["source"]) for c in kernel["cells"] if c["cell_type"] == "code"]
    assert committed == source, "kaggle/ is out of date: run `latentface kaggle sync-notebook`"


# ------------------------------------------------------------------------------ credentials


def _env(tmp_path, **values):
    env = {"HOME": str(tmp_path / "home"), "PATH": os.environ["PATH"]}
    env.update(values)
    return env


def test_credentials_are_found_where_the_cli_looks(tmp_path):
    assert lk.find_credentials(_env(tmp_path, KAGGLE_API_TOKEN="KGAT_x")) == "KAGGLE_API_TOKEN"
    assert lk.find_credentials(_env(tmp_path, KAGGLE_USERNAME="a", KAGGLE_KEY="k")) == "KAGGLE_USERNAME + KAGGLE_KEY"
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "alice", "key": "k"}))
    env = _env(tmp_path, KAGGLE_CONFIG_DIR=str(config))
    assert lk.find_credentials(env) == str(config / "kaggle.json")
    assert lk.kaggle_username(None, env) == "alice"
    assert lk.kaggle_username("bob", env) == "bob"
    home = tmp_path / "home" / ".kaggle"
    home.mkdir(parents=True)
    (home / "access_token").write_text("KGAT_y\n")
    assert lk.find_credentials(_env(tmp_path)) == str(home / "access_token")


def test_missing_credentials_say_exactly_what_to_set(tmp_path):
    with pytest.raises(lk.KaggleSetupError) as info:
        lk.find_credentials(_env(tmp_path))
    message = str(info.value)
    for needed in (
        "export KAGGLE_API_TOKEN=<token>",
        "export KAGGLE_USERNAME=<user> KAGGLE_KEY=<key>",
        str(tmp_path / "home" / ".kaggle" / "kaggle.json"),
        "https://www.kaggle.com/settings/api",
    ):
        assert needed in message
    with pytest.raises(lk.KaggleSetupError, match="KAGGLE_USERNAME is set but KAGGLE_KEY is not: export KAGGLE_KEY"):
        lk.find_credentials(_env(tmp_path, KAGGLE_USERNAME="alice"))
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "alice"}))
    with pytest.raises(lk.KaggleSetupError, match=r"kaggle\.json has no 'key'"):
        lk.find_credentials(_env(tmp_path, KAGGLE_CONFIG_DIR=str(config)))
    with pytest.raises(lk.KaggleSetupError, match="pass --user YOUR_KAGGLE_USERNAME or export KAGGLE_USERNAME"):
        lk.kaggle_username(None, _env(tmp_path))


def test_a_malformed_kaggle_json_is_reported_as_malformed_not_missing(tmp_path, capsys, monkeypatch):
    config = tmp_path / "home" / ".kaggle"
    config.mkdir(parents=True)
    (config / "kaggle.json").write_text('{"username": "alice",\n "key": "k3y",\n}\n')  # a trailing comma
    with pytest.raises(lk.KaggleSetupError) as info:
        lk.find_credentials(_env(tmp_path))
    message = str(info.value)
    assert message.startswith(f"{config / 'kaggle.json'} is malformed: not valid JSON (line 3, column 1): ")
    assert "not found" not in message and "https://www.kaggle.com/settings/api" in message
    (config / "kaggle.json").write_text('["alice", "k3y"]')
    with pytest.raises(lk.KaggleSetupError, match=r"kaggle\.json is malformed: expected a JSON object, got list"):
        lk.kaggle_username(None, _env(tmp_path))
    (config / "kaggle.json").write_bytes(b'{"username": "\xff"}')
    with pytest.raises(lk.KaggleSetupError, match=r"kaggle\.json is malformed: not UTF-8 text"):
        lk.find_credentials(_env(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    (config / "kaggle.json").write_text("{")
    assert main(["kaggle", "build"]) == 2  # the username is looked up in it
    err = capsys.readouterr().err
    assert f"latentface kaggle build: error: {config / 'kaggle.json'} is malformed: not valid JSON (line 1" in err


def test_missing_kaggle_command_says_what_to_install(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_x")
    assert main(["kaggle", "status", "--user", "alice"]) == 2
    err = capsys.readouterr().err
    assert "latentface kaggle status: error: the `kaggle` command is not on PATH" in err
    assert "pip install kaggle" in err


# ------------------------------------------------------------------------------ build


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real build (the wheel takes a few seconds), shared by the tests below."""
    before = sorted(p.name for p in REPO.iterdir())
    result = lk.build_kernel("alice", out=tmp_path_factory.mktemp("build"))
    assert sorted(p.name for p in REPO.iterdir()) == before, "build left files in the checkout"
    return result


def test_build_writes_valid_metadata_filled_from_the_user(built):
    again = lk.Build.read(built.kernel_dir.parent)  # re-validates both folders like the CLI
    assert (again.kernel_id, again.package_id) == ("alice/latentface-train", "alice/latentface-package")
    kernel = json.loads((built.kernel_dir / "kernel-metadata.json").read_text())
    assert kernel["dataset_sources"] == ["alice/retina-modify", "alice/latentface-package"]
    assert (kernel["machine_shape"], kernel["enable_gpu"], kernel["enable_internet"], kernel["is_private"]) == (
        "NvidiaTeslaT4",
        True,
        True,
        True,
    )
    assert kernel["code_file"] == "latentface-train.ipynb" and kernel["kernel_sources"] == []
    assert sorted(p.name for p in built.package_dir.iterdir()) == [
        "build.json",
        "dataset-metadata.json",
        built.wheel.name,
    ]
    stamp = json.loads((built.package_dir / "build.json").read_text())
    assert stamp == {
        "build_id": built.build_id,
        "version": latentface.__version__,
        "wheel": built.wheel.name,
        "kernel": "alice/latentface-train",
    }
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", built.build_id)
    assert built.build_id.endswith(hashlib.sha256(built.wheel.read_bytes()).hexdigest()[:8])


def test_built_kernel_is_notebook_03_without_outputs(built):
    notebook = jupytext.read(REPO / "notebooks" / "03_train_on_kaggle.py")
    kernel = json.loads((built.kernel_dir / "latentface-train.ipynb").read_text())
    code = [c for c in kernel["cells"] if c["cell_type"] == "code"]
    expected = [c.source for c in notebook.cells if c.cell_type == "code"]
    built_code = ["".join(c["source"]) for c in code]
    assert built_code[1:] == expected[1:]
    pushed = {
        "build_id": built.build_id,
        "kernel": "alice/latentface-train",
        "flags": ["--data", "alice/retina-modify"],
        "internet": True,
    }
    assert built_code[0] == expected[0].replace("PUSHED = {}  #", f"PUSHED = {pushed!r}  #")  # only that line
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert code[0]["metadata"]["tags"] == ["parameters"]
    assert kernel["metadata"]["kernelspec"]["name"] == "python3"


def test_built_wheel_holds_the_package(built):
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {
        "latentface/__init__.py",
        "latentface/tools/kaggle/kernel.py",
        "latentface/cli/__init__.py",
        "latentface/train.py",
    } <= names
    assert "Name: latentface" in metadata and not any(n.startswith(("tests/", "notebooks/")) for n in names)


def _fake_wheel(out_dir, project=None):
    path = Path(out_dir) / "latentface-0.1.0-py3-none-any.whl"
    path.write_bytes(b"")
    return path


def test_build_options_reach_the_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    assert (
        main(
            [
                "kaggle",
                "build",
                "--user",
                "alice",
                "--out",
                str(tmp_path),
                "--slug",
                "latentface-train-2",
                "--data",
                "bob/retina-modify",
                "--package-slug",
                "alice-latentface",
                "--resume-from",
                "alice/latentface-train",
                "--no-internet",
                "--public",
                "--images",
                "carol/wider-face",
            ]
        )
        == 0
    )
    kernel = json.loads((tmp_path / "kernel" / "kernel-metadata.json").read_text())
    assert lk.Build.read(tmp_path).data_ids == ["bob/retina-modify", "carol/wider-face"]  # push checks both
    assert (kernel["id"], kernel["title"], kernel["code_file"]) == (
        "alice/latentface-train-2",
        "latentface train 2",
        "latentface-train-2.ipynb",
    )
    assert kernel["dataset_sources"] == ["bob/retina-modify", "carol/wider-face", "alice/alice-latentface"]
    assert kernel["kernel_sources"] == ["alice/latentface-train"]
    assert (kernel["enable_internet"], kernel["is_private"]) == (False, False)
    assert main(["kaggle", "build", "--user", "alice", "--out", str(tmp_path), "--title", "My Run"]) == 2


def _jpg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"jpg")
    return path


def test_the_kernel_finds_the_attached_wider_face_images_wherever_the_copy_keeps_them(tmp_path):
    inputs = tmp_path / "input"
    data = inputs / "retina-modify"
    _jpg(data / "train" / "0--Parade" / "x.jpg")  # an event folder inside the dataset is not the images
    (data / "train" / "labels.txt").write_text("# 0_Parade_Parade_0_1\n")
    copy = inputs / "datasets" / "carol" / "wider-face"
    _jpg(copy / "WIDER_val" / "images" / "0--Parade" / "0_Parade_Parade_0_2.jpg")
    train = copy / "WIDER_train" / "WIDER_train" / "images"
    _jpg(train / "0--Parade" / "0_Parade_Parade_0_1.jpg")
    assert lk.find_wider_images(inputs, exclude=[data]) == train  # the training split's, three levels down
    _jpg(inputs / "deep" / "a" / "b" / "c" / "d" / "e" / "0--Parade" / "0_Parade_Parade_0_1.jpg")  # 5 levels down
    assert lk.find_wider_images(inputs, exclude=[data, copy]) is None

    settings = {"preset": "default", "reconstruct": 0.5}
    assert lk.image_settings({"preset": "default"}, data, inputs) == {"preset": "default"}  # no images needed
    assert lk.image_settings(settings, data, inputs) == {**settings, "teacher_images": str(train)}
    rgb = _jpg(inputs / "rgb-run" / "runs" / "rgb" / "weight_final.pth")
    taught = lk.image_settings({"teacher": "runs/rgb/weight_final.pth"}, data, inputs)
    assert taught == {"teacher": str(rgb), "teacher_images": str(train)}  # found under the attached output
    with pytest.raises(lk.KaggleSetupError, match=r"TRAIN\['teacher'\] = 'rgb.pth': no such file, nor under"):
        lk.image_settings({"teacher": "rgb.pth"}, data, inputs)
    shutil.rmtree(copy)
    with pytest.raises(lk.KaggleSetupError, match=r"no WIDER FACE image folder .* attach a copy of WIDER FACE"):
        lk.image_settings(settings, data, inputs)
    _jpg(data / "train" / "images" / "0_Parade_Parade_0_1.png")  # a layout with its own images needs none
    assert lk.image_settings(settings, data, inputs) == settings


def test_a_rebuild_deletes_only_what_a_build_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    out = tmp_path / "out"
    first = lk.build_kernel("alice", out=out)
    manifest = json.loads((out / "build-manifest.json").read_text())
    assert manifest["files"] == sorted(
        [
            "kernel/kernel-metadata.json",
            "kernel/latentface-train.ipynb",
            "package/build.json",
            "package/dataset-metadata.json",
            f"package/{first.wheel.name}",
        ]
    )
    (out / "notes.txt").write_text("mine")  # beside the build folders: never touched
    lk.build_kernel("alice", out=out)  # a previous build only: replaced
    assert (out / "notes.txt").read_text() == "mine"
    (out / "kernel" / "my-notes.md").write_text("mine too")  # inside a build folder: the build refuses
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert main(["kaggle", "build", "--user", "alice", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        f"latentface kaggle build: error: {out / 'kernel' / 'my-notes.md'} was not written by `latentface kaggle build`"
    ) in err
    assert "nothing was deleted. Move it elsewhere, or pass another --out DIR" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert (out / "kernel" / "my-notes.md").read_text() == "mine too"
    user = tmp_path / "user-folder"  # a folder of the user's that is no build at all
    (user / "package").mkdir(parents=True)
    (user / "package" / "data.csv").write_text("1,2\n")
    with pytest.raises(lk.KaggleSetupError, match=r"package/data\.csv was not written by"):
        lk.build_kernel("alice", out=user)
    assert (user / "package" / "data.csv").read_text() == "1,2\n"
    legacy = tmp_path / "legacy"  # a build from before the manifest: its own files are recognised
    shutil.copytree(out, legacy)
    (legacy / "kernel" / "my-notes.md").unlink()
    (legacy / "build-manifest.json").unlink()
    (legacy / "package" / "build.json").unlink()
    with pytest.raises(lk.KaggleSetupError, match=r"package/build\.json is missing \(a build from an older"):
        lk.Build.read(legacy)  # push --skip_build of such a build: rebuild first
    lk.build_kernel("alice", out=legacy)
    assert (legacy / "build-manifest.json").is_file() and (legacy / "notes.txt").is_file()
    assert lk.Build.read(legacy).build_id == json.loads((legacy / "package" / "build.json").read_text())["build_id"]


# ------------------------------------------------------------------------------ the kaggle CLI calls (fake)

FAKE_KAGGLE = textwrap.dedent("""\
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    state = Path(os.environ["FAKE_KAGGLE_STATE"])
    if args == ["--version"]:  # KaggleCLI checks that the command starts; not recorded
        print(os.environ.get("FAKE_KAGGLE_VERSION", "Kaggle CLI 2.2.5")); sys.exit(0)
    with open(state / "calls.jsonl", "a") as f:
        f.write(json.dumps(args) + "\\n")
    def load(name, default):
        return json.loads((state / name).read_text()) if (state / name).exists() else default
    datasets, kernels = load("datasets.json", {}), load("kernels.json", [])
    def save():
        (state / "datasets.json").write_text(json.dumps(datasets))
        (state / "kernels.json").write_text(json.dumps(kernels))
    def option(name):
        return args[args.index(name) + 1]
    def server_error(command):  # the CLI prints the server's refusal and exits 0
        said = os.environ.get("FAKE_KAGGLE_ERROR_" + command)
        if said:
            print(said); sys.exit(0)
    if args[:2] == ["datasets", "status"]:
        if args[2] not in datasets:
            print("404 Client Error: Not Found for url"); sys.exit(1)
        latest = datasets[args[2]][-1]
        if latest["stale"]:  # right after `datasets version`: still the previous version's status
            latest["stale"] -= 1; print("ready")
        elif latest["pending"]:
            latest["pending"] -= 1; print("pending")
        else:
            print("ready")
        save()
    elif args[:2] in (["datasets", "create"], ["datasets", "version"]):
        server_error(args[1].upper())
        folder = Path(option("-p"))
        ref = json.loads((folder / "dataset-metadata.json").read_text())["id"]
        stamp = folder / "build.json"
        stamp = json.loads(stamp.read_text())["build_id"] if stamp.exists() else None
        stale = int(os.environ.get("FAKE_KAGGLE_STALE", "1")) if args[1] == "version" else 0
        version = {"files": sorted(p.name for p in folder.iterdir()), "build": stamp, "stale": stale, "pending": 1}
        datasets.setdefault(ref, []).append(version); save()
        print("Dataset version is being created. Please check progress at https://www.kaggle.com/" + ref)
    elif args[:2] == ["datasets", "download"] and "-f" in args:
        versions = [v for v in datasets.get(args[2], []) if not v["stale"] and not v["pending"]]
        versions = versions or datasets.get(args[2], [])[:-1]
        if not versions:
            print("404 Client Error: Not Found"); sys.exit(1)
        (Path(option("-p")) / option("-f")).write_text(json.dumps({"build_id": versions[-1]["build"]}))
    elif args[:2] == ["datasets", "files"]:
        if args[2] != "alice/retina-modify":
            print("404 Client Error: Not Found"); sys.exit(1)
        print("name  size  creationDate")
    elif args[:2] == ["kernels", "push"]:
        server_error("PUSH")
        meta = json.loads((Path(option("-p")) / "kernel-metadata.json").read_text())
        assert (Path(option("-p")) / meta["code_file"]).is_file()
        kernels.append(meta["id"]); save()
        print(os.environ.get("FAKE_KAGGLE_PUSH_WARNING", ""))
        print("Kernel version 1 successfully pushed.  Please check progress at "
              "https://www.kaggle.com/code/" + meta["id"])
    elif args[:2] == ["kernels", "status"]:
        known = kernels + os.environ.get("FAKE_KAGGLE_KERNELS", "alice/latentface-train").split(",")
        if args[2].startswith("nobody/") or args[2] not in known:
            print("404 Client Error: Not Found for url"); sys.exit(1)
        print(args[2] + ' has status "KernelWorkerStatus.COMPLETE"')
    elif args[:2] == ["kernels", "output"]:
        dest = Path(option("-p")) / "runs" / "kaggle"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "metrics.csv").write_text("epoch,step\\n1,10\\n")
    elif args[:2] == ["datasets", "download"]:
        for split in ("train", "val"):
            (Path(option("-p")) / split).mkdir(parents=True, exist_ok=True)
            (Path(option("-p")) / split / "labels.txt").write_text("")
    else:
        print("unexpected call", args); sys.exit(3)
""")


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch):
    """A `kaggle` executable first on PATH that records its arguments; returns a reader of the calls."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    script = bin_dir / "kaggle"
    script.write_text(f"#!{sys.executable}\n" + FAKE_KAGGLE)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KAGGLE_STATE", str(state))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    monkeypatch.setattr(kaggle_build, "POLL_SECONDS", 0)

    def calls():
        path = state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    calls.state = state
    return calls


def _stamp_download(calls):
    """The ``datasets download ... -f build.json`` calls, with their temporary folder left out."""
    return [c[:5] + c[7:] if c[:2] == ["datasets", "download"] else c for c in calls]


def test_push_creates_the_package_dataset_then_versions_it(built, fake_kaggle, tmp_path, capsys):
    out = tmp_path / "build"
    shutil.copytree(built.kernel_dir.parent, out)
    kernel_dir, package_dir = str(out / "kernel"), str(out / "package")
    assert main(["kaggle", "push", "--skip-build", "--out", str(out)]) == 0
    download = ["datasets", "download", "alice/latentface-package", "-f", "build.json", "-o", "-q"]
    assert _stamp_download(fake_kaggle()) == [
        ["datasets", "files", "alice/retina-modify"],
        ["kernels", "status", "alice/latentface-train"],  # exists already: no W&B note
        ["datasets", "status", "alice/latentface-package"],
        ["datasets", "create", "-p", package_dir, "--dir-mode", "zip"],
        ["datasets", "status", "alice/latentface-package"],  # pending
        ["datasets", "status", "alice/latentface-package"],  # ready
        download,  # ... with this build's stamp
        ["kernels", "push", "-p", kernel_dir],
    ]
    versions = json.loads((fake_kaggle.state / "datasets.json").read_text())["alice/latentface-package"]
    assert versions[-1]["files"] == ["build.json", "dataset-metadata.json", built.wheel.name]
    assert versions[-1]["build"] == built.build_id
    out_text = capsys.readouterr().out
    assert f"build {built.build_id}\n" in out_text and f"serves build {built.build_id}" in out_text
    assert "logs W&B offline" not in out_text
    assert main(["kaggle", "push", "--skip-build", "--out", str(out), "--message", "second"]) == 0
    message = f"second (build {built.build_id})"
    assert _stamp_download(fake_kaggle())[8:] == [
        ["datasets", "files", "alice/retina-modify"],
        ["kernels", "status", "alice/latentface-train"],
        ["datasets", "status", "alice/latentface-package"],
        ["datasets", "version", "-p", package_dir, "-m", message, "--dir-mode", "zip"],
        ["datasets", "status", "alice/latentface-package"],  # "ready": the previous version, same build
        download,
        ["kernels", "push", "-p", kernel_dir],
    ]


def test_push_waits_for_the_dataset_version_of_its_own_build(fake_kaggle, tmp_path, monkeypatch, capsys):
    """Right after `datasets version` Kaggle still answers "ready" for the previous version: push waits
    until the version it serves holds this build's stamp, and the pushed kernel checks the same id."""
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    out = str(tmp_path / "build")
    assert main(["kaggle", "push", "--out", out]) == 0
    first = lk.Build.read(out).build_id
    (tmp_path / "change").write_text("x")  # a later build: another time stamp
    monkeypatch.setattr(kaggle_build, "make_build_id", lambda wheel: "20990101T000000Z-0badc0de")
    capsys.readouterr()
    assert main(["kaggle", "push", "--out", out]) == 0
    second = lk.Build.read(out)
    assert second.build_id == "20990101T000000Z-0badc0de" != first
    calls = [c[:3] for c in fake_kaggle()]
    after = calls[calls.index(["datasets", "version", "-p"]) + 1 :]
    assert after == [
        ["datasets", "status", "alice/latentface-package"],  # "ready", but the previous version
        ["datasets", "download", "alice/latentface-package"],  # -> the first build: not yet
        ["datasets", "status", "alice/latentface-package"],  # pending
        ["datasets", "status", "alice/latentface-package"],  # ready
        ["datasets", "download", "alice/latentface-package"],  # -> this build
        ["kernels", "push", "-p"],
    ]
    text = capsys.readouterr().out
    assert f"still serves build {first}; waiting for 20990101T000000Z-0badc0de" in text
    notebook = nbformat.read(second.kernel_dir / "latentface-train.ipynb", as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert "'build_id': '20990101T000000Z-0badc0de'" in cell.source
    assert "'kernel': 'alice/latentface-train'" in cell.source


def test_push_fails_with_the_servers_message_when_the_cli_exits_0(fake_kaggle, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    out = str(tmp_path / "build")
    monkeypatch.setenv("FAKE_KAGGLE_ERROR_CREATE", "Dataset creation error: Title already in use")
    assert main(["kaggle", "push", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "latentface kaggle push: error: creating alice/latentface-package failed" in err
    assert "Kaggle said: Dataset creation error: Title already in use" in err
    assert not any(c[:2] == ["kernels", "push"] for c in fake_kaggle())  # stopped before the kernel
    monkeypatch.delenv("FAKE_KAGGLE_ERROR_CREATE")
    assert main(["kaggle", "push", "--out", out, "--wait", "0"]) == 0
    monkeypatch.setenv("FAKE_KAGGLE_ERROR_VERSION", "Dataset version creation error: 403 - Forbidden")
    assert main(["kaggle", "push", "--out", out]) == 2
    assert "Kaggle said: Dataset version creation error: 403 - Forbidden" in capsys.readouterr().err
    monkeypatch.delenv("FAKE_KAGGLE_ERROR_VERSION")
    monkeypatch.setenv("FAKE_KAGGLE_ERROR_PUSH", "Kernel push error: Notebook not found")
    assert main(["kaggle", "push", "--out", out, "--wait", "0"]) == 2
    assert "pushing kernel alice/latentface-train failed" in capsys.readouterr().err
    monkeypatch.delenv("FAKE_KAGGLE_ERROR_PUSH")
    monkeypatch.setenv(
        "FAKE_KAGGLE_PUSH_WARNING",
        "The following are not valid kernel sources and could not be added to the kernel: ['alice/gone-kernel']",
    )
    assert main(["kaggle", "push", "--out", out, "--wait", "0"]) == 2
    err = capsys.readouterr().err
    assert "Kaggle said: The following are not valid kernel sources and could not be added" in err


def test_a_first_push_says_the_wandb_secret_comes_after_it(fake_kaggle, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    out = str(tmp_path / "build")
    assert main(["kaggle", "push", "--out", out, "--slug", "latentface-train-2", "--wait", "0"]) == 0
    text = capsys.readouterr().out
    assert "note: alice/latentface-train-2 is a new kernel, so this first run logs W&B offline" in text
    assert "https://www.kaggle.com/code/alice/latentface-train-2/edit" in text
    assert "Add-ons -> Secrets" in text and "WANDB_API_KEY" in text and "then push again" in text
    assert main(["kaggle", "push", "--out", out, "--slug", "latentface-train-2", "--wait", "0"]) == 0
    assert "logs W&B offline" not in capsys.readouterr().out  # it exists now
    assert main(["kaggle", "push", "--out", out, "--slug", "latentface-train-3", "--no-internet", "--wait", "0"]) == 0
    assert "logs W&B offline" not in capsys.readouterr().out  # no internet: offline anyway, nothing to attach


def test_push_needs_a_kaggle_cli_that_sends_machine_shape(fake_kaggle, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    monkeypatch.setenv("FAKE_KAGGLE_VERSION", "Kaggle API 1.7.4.5")
    assert main(["kaggle", "push", "--out", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err
    assert "error: kaggle 1.7.4.5 (" in err and "does not send machine_shape with `kernels push`" in err
    assert "needs kaggle >= 1.8.4 (which needs Python >= 3.11): pip install -U 'kaggle>=1.8.4'" in err
    assert fake_kaggle() == []  # nothing uploaded
    assert main(["kaggle", "status"]) == 0  # the other commands work with it
    monkeypatch.setenv("FAKE_KAGGLE_VERSION", "Kaggle API 1.8.4")
    assert main(["kaggle", "push", "--out", str(tmp_path / "build"), "--wait", "0"]) == 0
    assert lk.cli_version("Kaggle CLI 2.2.5") == (2, 2, 5) and lk.cli_version("kaggle") is None


def test_push_refuses_data_it_cannot_read(fake_kaggle, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    assert main(["kaggle", "push", "--data", "nobody/retina-modify", "--out", str(tmp_path / "build")]) == 2
    assert (
        "cannot read dataset nobody/retina-modify (404 Client Error: Not Found); pass --data OWNER/retina-modify"
    ) in capsys.readouterr().err
    assert fake_kaggle() == [["datasets", "files", "nobody/retina-modify"]]  # nothing uploaded


def test_push_refuses_a_resume_source_that_does_not_exist(fake_kaggle, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    out = str(tmp_path / "build")
    assert main(["kaggle", "push", "--resume_from", "nobody/latentface-train", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "latentface kaggle push: error: --resume_from nobody/latentface-train: no such kernel" in err
    assert "`kaggle kernels status nobody/latentface-train` failed" in err
    assert fake_kaggle() == [["kernels", "status", "nobody/latentface-train"]]  # checked first, nothing uploaded
    assert main(["kaggle", "push", "--resume_from", "alice/latentface-train", "--out", out, "--wait", "0"]) == 0
    assert fake_kaggle()[1] == ["kernels", "status", "alice/latentface-train"]
    assert fake_kaggle()[-1][:2] == ["kernels", "push"]


def test_resume_from_reaches_the_built_notebooks_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(kaggle_build, "build_wheel", _fake_wheel)
    result = lk.build_kernel("alice", resume_from=["alice/latentface-train"], out=tmp_path)
    notebook = nbformat.read(result.kernel_dir / "latentface-train.ipynb", as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert "RESUME_FROM = ['alice/latentface-train']  # " in cell.source
    assert "RESUME_FROM = []  # " in lk.kernel_notebook(REPO).cells[1].source  # the committed default


def test_a_kaggle_cli_that_cannot_start_names_the_missing_module(fake_kaggle, tmp_path, capsys):
    broken = tmp_path / "bin" / "kaggle"  # kaggle 2.2.5 without six: the first command is a traceback
    broken.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "sys.stderr.write('Traceback (most recent call last):\\n  File \"kaggle/cli.py\", line 1\\n'\n"
        "                 \"ModuleNotFoundError: No module named 'six'\\n\")\n"
        "sys.exit(1)\n"
    )
    with pytest.raises(lk.KaggleSetupError, match=r"needs the Python module 'six'.*Fix: pip install six \(or pip"):
        lk.KaggleCLI()
    assert main(["kaggle", "status", "--user", "alice"]) == 2
    err = capsys.readouterr().err
    assert "latentface kaggle status: error: the kaggle CLI" in err and "pip install 'latentface[kaggle]'" in err
    assert "Traceback" not in err
    assert fake_kaggle() == []  # stopped before any real call
    broken.write_text(f"#!{sys.executable}\nimport sys\nprint('boom'); sys.exit(2)\n")
    with pytest.raises(lk.KaggleSetupError, match=r"`kaggle --version` failed with exit status 2 \(boom\)"):
        lk.KaggleCLI()
    with pytest.raises(lk.KaggleSetupError, match="Kaggle credentials not found"):  # checked before --version
        lk.KaggleCLI(env={"PATH": str(broken.parent), "HOME": str(tmp_path / "nohome")})


def test_pyproject_kaggle_extra_installs_six():
    line = next(x for x in (REPO / "pyproject.toml").read_text().splitlines() if x.startswith("kaggle = ["))
    assert '"six"' in line and "\"kaggle>=1.8.4; python_version >= '3.11'\"" in line  # 1.8.4 sends machine_shape
    assert lk.MIN_KAGGLE_FOR_PUSH == (1, 8, 4)


def test_status_output_and_download_data_wrap_the_cli(fake_kaggle, tmp_path, capfd):
    assert main(["kaggle", "status"]) == 0
    assert 'alice/latentface-train has status "KernelWorkerStatus.COMPLETE"' in capfd.readouterr().out
    dest = tmp_path / "out"
    assert main(["kaggle", "output", "--slug", "latentface-train-2", "--dest", str(dest), "--force"]) == 0
    assert (dest / "runs" / "kaggle" / "metrics.csv").is_file()
    data = tmp_path / "data" / "retina-modify"
    assert main(["kaggle", "download-data", "--data", "bob/retina-modify", "--dest", str(data)]) == 0
    assert f"train with --dataset_root {data}" in capfd.readouterr().out
    assert fake_kaggle() == [
        ["kernels", "status", "alice/latentface-train"],
        ["kernels", "output", "alice/latentface-train-2", "-p", str(dest), "-o"],
        ["datasets", "download", "-d", "bob/retina-modify", "-p", str(data), "--unzip"],
    ]


def test_missing_credentials_stop_before_any_kaggle_call(fake_kaggle, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert main(["kaggle", "status", "--user", "alice"]) == 2
    assert "Kaggle credentials not found" in capsys.readouterr().err
    assert fake_kaggle() == []


def test_a_failing_kaggle_call_reports_its_exit_status(fake_kaggle):
    with pytest.raises(lk.KaggleSetupError, match=r"`kaggle kernels nonsense` failed with exit status 3"):
        lk.KaggleCLI().run(["kernels", "nonsense"])


class _StatusCLI:
    """Answers ``datasets status`` with the given lines, one per call."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def run(self, args, check=True, capture=False):
        return types.SimpleNamespace(returncode=0, stdout=self.answers.pop(0))


def test_waiting_for_the_package_dataset_stops_on_errors_and_timeouts(monkeypatch):
    monkeypatch.setattr(kaggle_build, "POLL_SECONDS", 0)
    lk.wait_for_dataset(_StatusCLI("404 Client Error: Not Found", "pending", "ready"), "alice/latentface-package")
    with pytest.raises(lk.KaggleSetupError, match="Kaggle could not process dataset alice/latentface-package: error"):
        lk.wait_for_dataset(_StatusCLI("error"), "alice/latentface-package")
    with pytest.raises(lk.KaggleSetupError, match=r"not ready after 0 s \(last status: 'pending'\).*--skip_build"):
        lk.wait_for_dataset(_StatusCLI("pending"), "alice/latentface-package", timeout=0)


# ------------------------------------------------------------------------------ kernel helpers


def _dataset(folder: Path) -> Path:
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "labels.txt").write_text("")
    return folder


def test_inputs_are_found_in_both_mount_layouts(tmp_path):
    classic = _dataset(tmp_path / "a" / "input" / "retina-modify")
    assert lk.find_dataset(tmp_path / "a" / "input") == classic
    nested = _dataset(tmp_path / "b" / "input" / "datasets" / "bob" / "retina-modify" / "retina-modify")
    (tmp_path / "b" / "input" / "latentface-package").mkdir()
    assert lk.find_dataset(tmp_path / "b" / "input") == nested
    assert lk.input_mounts(tmp_path / "b" / "input") == [
        tmp_path / "b" / "input" / "datasets" / "bob" / "retina-modify",
        tmp_path / "b" / "input" / "latentface-package",
    ]
    renamed = _dataset(tmp_path / "c" / "input" / "datasets" / "bob" / "wider-latents")
    assert lk.find_dataset(tmp_path / "c" / "input") == renamed
    (tmp_path / "d" / "input" / "latentface-package").mkdir(parents=True)
    with pytest.raises(
        lk.KaggleSetupError, match="no dataset with train/labels.txt under .*attached: latentface-package"
    ):
        lk.find_dataset(tmp_path / "d" / "input")


def test_newest_wheel_is_found(tmp_path):
    old = tmp_path / "input" / "datasets" / "alice" / "latentface-package" / "latentface-0.9.0-py3-none-any.whl"
    new = tmp_path / "input" / "older-copy" / "wheels" / "latentface-0.10.0-py3-none-any.whl"
    for wheel in (old, new):
        wheel.parent.mkdir(parents=True)
        wheel.write_bytes(b"")
    assert lk.find_wheels(tmp_path / "input") == [old, new]


def test_missing_modules_are_named_by_pip_name():
    assert lk.missing_modules({"json": "json", "no_such_module_xyz": "no-such-pkg"}) == ["no-such-pkg"]


@pytest.fixture
def secrets(monkeypatch):
    """A stand-in for Kaggle's kaggle_secrets module; ``secrets["WANDB_API_KEY"]`` attaches a secret."""
    attached = {}

    class UserSecretsClient:
        def get_secret(self, name):
            if name not in attached:
                raise RuntimeError("secret not attached to this notebook")
            return attached[name]

    monkeypatch.setitem(sys.modules, "kaggle_secrets", types.SimpleNamespace(UserSecretsClient=UserSecretsClient))
    return attached


def test_wandb_uses_the_kaggle_secret_online_and_is_offline_otherwise(secrets, tmp_path):
    assert lk.kaggle_secret("WANDB_API_KEY") is None
    env = {}
    assert lk.configure_wandb(tmp_path, env, internet=True) == "offline"
    assert env == {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    secrets["WANDB_API_KEY"] = "k3y"
    env = {}
    assert lk.configure_wandb(tmp_path, env, internet=True) == "online"
    assert env == {"WANDB_API_KEY": "k3y", "WANDB_MODE": "online", "WANDB_DIR": str(tmp_path)}
    assert lk.configure_wandb(tmp_path, {}, internet=False) == "offline"  # a key but no internet
    assert lk.configure_wandb(tmp_path, {"WANDB_MODE": "disabled"}, internet=True) == "disabled"


def test_kaggle_secrets_absent_off_kaggle(monkeypatch):
    monkeypatch.setitem(sys.modules, "kaggle_secrets", None)  # import fails, as off Kaggle
    assert lk.kaggle_secret("WANDB_API_KEY") is None


def test_train_command_uses_torchrun_on_two_gpus_only():
    args = ["--epochs", "1"]
    assert lk.train_command(2, args, python="py") == [
        "py",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "latentface.cli",
        "train",
        "--epochs",
        "1",
    ]
    assert lk.train_command(1, args, python="py") == ["py", "-m", "latentface.cli", "train", "--epochs", "1"]
    assert lk.train_command(0, args, python="py") == lk.train_command(1, args, python="py")


def test_run_logged_echoes_logs_and_reports_failures(tmp_path, capfd):
    log = tmp_path / "logs" / "train.log"
    lk.run_logged([sys.executable, "-c", "print('step 1'); print('step 2')"], log)
    assert log.read_text() == "step 1\nstep 2\n"
    assert "step 1\nstep 2\n" in capfd.readouterr().out
    with pytest.raises(lk.KaggleSetupError, match=r"failed with exit status 3 \(full log: .*train\.log\):\nboom"):
        lk.run_logged([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], log)


def test_best_weights_prefers_best_then_final_then_last(tmp_path):
    with pytest.raises(lk.KaggleSetupError, match="no best.pth, weight_final.pth or last.pth"):
        lk.best_weights(tmp_path)
    for name, expected in (
        ("last.pth", "last.pth"),
        ("weight_final.pth", "weight_final.pth"),
        ("best.pth", "best.pth"),
    ):
        (tmp_path / name).write_bytes(b"")
        assert lk.best_weights(tmp_path).name == expected


def _run_dir(folder: Path, epoch: float, elapsed: float) -> Path:
    folder.mkdir(parents=True)
    for name in ("last.pth", "best.pth", "epoch_001.pth", "config.json"):
        (folder / name).write_bytes(b"x")
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "elapsed_s"])
        writer.writeheader()
        writer.writerows([{"epoch": e, "elapsed_s": elapsed * e / epoch} for e in range(1, int(epoch) + 1)])
    return folder


def test_smoke_and_local_settings_replace_the_notebooks_off_kaggle(tmp_path):
    assert lk.train_settings({"epochs": 100, "lr": 0.01}, "/kaggle", env={}) == {"epochs": 100, "lr": 0.01}
    assert lk.train_settings({"epochs": 100, "lr": 0.01}, "/kaggle", env={"LATENTFACE_SMOKE": "1"}) == {
        "lr": 0.01,
        **RECIPES["kaggle-smoke"].train,
    }
    assert (
        lk.train_settings({"epochs": 100}, lk.LOCAL_ROOT, env={})["epochs"]
        == RECIPES["kaggle-local"].train["epochs"]
        == 3
    )
    made = lk.prepare_local_input(tmp_path, env={"LATENTFACE_SMOKE": "1"})
    assert made == tmp_path / "input" / "retina-modify"
    assert [len(list((made / s / "latent").iterdir())) for s in ("train", "val")] == [8, 4]
    assert lk.prepare_local_input(tmp_path, env={}) is None  # already there: left alone
    assert lk.prepare_local_input("/kaggle", env={}) is None  # never on Kaggle


def test_train_arguments_are_checked_and_the_budget_counts_the_whole_run(tmp_path):
    settings = lk.train_settings(
        {"epochs": 100, "batch_size": 8, "no_progress": True, "stats": None}, "/kaggle", env={}
    )
    args = lk.train_arguments(settings, "data", "runs", "kaggle", time_budget=3600)
    assert args == [
        "--dataset_root",
        "data",
        "--out",
        "runs",
        "--name",
        "kaggle",
        "--epochs",
        "100",
        "--batch_size",
        "8",
        "--no_progress",
        "--time_budget",
        "3600",
    ]
    run = _run_dir(tmp_path / "run", epoch=3, elapsed=1500.5)
    args = lk.train_arguments(settings, "data", "runs", "kaggle", resume=run, time_budget=3600)
    assert args[-4:] == ["--resume", str(run), "--time_budget", "5100.5"]
    with pytest.raises(lk.KaggleSetupError, match="training settings: unrecognized arguments: --epoch 3"):
        lk.train_arguments({"epoch": 3}, "data", "runs", "kaggle")
    with pytest.raises(lk.KaggleSetupError, match="training settings: argument --batch_size.*invalid int value"):
        lk.train_arguments({"batch_size": "eight"}, "data", "runs", "kaggle")


class _Cuda:
    def __init__(self, capabilities, arches=("sm_70", "sm_75", "sm_80", "sm_90")):
        self.capabilities, self.arches = capabilities, list(arches)

    def is_available(self):
        return bool(self.capabilities)

    def device_count(self):
        return len(self.capabilities)

    def get_device_capability(self, i):
        return self.capabilities[i]

    def get_device_name(self, i):
        return {(6, 0): "Tesla P100-PCIE-16GB", (7, 5): "Tesla T4"}[self.capabilities[i]]

    def get_arch_list(self):
        return self.arches


def test_gpus_too_old_for_this_pytorch_are_refused():
    assert lk.cuda_devices(_Cuda([(7, 5), (7, 5)])) == ["Tesla T4", "Tesla T4"]
    assert lk.cuda_devices(_Cuda([])) == []
    with pytest.raises(
        lk.KaggleSetupError,
        match=r"Tesla P100-PCIE-16GB \(sm_60\) but this PyTorch runs on sm_70.*"
        r"\"machine_shape\": \"NvidiaTeslaT4\"",
    ):
        lk.cuda_devices(_Cuda([(6, 0)]))


def test_no_gpu_stops_a_kaggle_run_unless_the_cpu_is_asked_for(tmp_path, monkeypatch):
    root = tmp_path / "kaggle"  # a fake /kaggle: not the local stand-in, not smoke
    (root / "input").mkdir(parents=True)
    monkeypatch.setenv("LATENTFACE_KAGGLE_ROOT", str(root))
    monkeypatch.delenv("LATENTFACE_SMOKE", raising=False)
    assert lk.kernel_root() == root
    gpus = lk.cuda_devices(_Cuda([]))
    with pytest.raises(lk.KaggleSetupError) as error:
        lk.require_gpu(gpus, {"epochs": 100}, root)
    message = str(error.value)
    assert "no CUDA GPU" in message and "Notebook settings -> Accelerator -> GPU T4 x2" in message
    assert "phone-verified" in message and "P100 and TPU sessions are not supported" in message
    assert 'TRAIN["device"] = "cpu"' in message
    lk.require_gpu(gpus, {"device": "cpu"}, root)  # asked for explicitly
    lk.require_gpu(lk.cuda_devices(_Cuda([(7, 5), (7, 5)])), {}, root)
    lk.require_gpu(gpus, {}, lk.LOCAL_ROOT)  # the local stand-in (make notebooks) trains on the CPU
    monkeypatch.setenv("LATENTFACE_SMOKE", "1")
    lk.require_gpu(gpus, {}, root)  # the smoke run of the tests too


def test_a_resume_that_finds_nothing_stops(tmp_path):
    inputs = tmp_path / "input"
    dataset = _dataset(inputs / "retina-modify")
    (inputs / "notebooks" / "alice" / "latentface-train" / "runs").mkdir(parents=True)  # attached, but no run
    working = tmp_path / "working" / "runs" / "kaggle"
    assert lk.resume_point(inputs, working, exclude=[dataset]) is None  # not asked for: a fresh start
    with pytest.raises(lk.KaggleSetupError) as error:
        lk.resume_point(inputs, working, exclude=[dataset], required=["alice/latentface-train"])
    message = str(error.value)
    assert "resuming from alice/latentface-train was asked for" in message and "last.pth" in message
    assert f"searched under {inputs}: notebooks/alice/latentface-train." in message  # the dataset is not searched
    assert f"{inputs}/notebooks/alice/latentface-train" in message
    run = _run_dir(inputs / "notebooks" / "alice" / "latentface-train" / "runs" / "kaggle", epoch=2, elapsed=5)
    assert lk.resume_point(inputs, working, exclude=[dataset], required=["alice/latentface-train"]) == working
    assert lk.run_progress(working) == lk.run_progress(run)


def test_resume_continues_the_furthest_run_from_the_inputs(tmp_path):
    inputs = tmp_path / "input"
    dataset = _dataset(inputs / "retina-modify")
    _run_dir(dataset / "runs" / "decoy", epoch=50, elapsed=1)  # inside the dataset: never searched
    _run_dir(inputs / "notebooks" / "alice" / "latentface-train" / "runs" / "kaggle", epoch=3, elapsed=100)
    best = _run_dir(inputs / "latentface-train-2" / "runs" / "kaggle", epoch=7, elapsed=200)
    assert lk.find_resume_run(inputs, exclude=[dataset]) == best
    working = tmp_path / "working" / "runs" / "kaggle"
    assert lk.resume_point(inputs, working, exclude=[dataset]) == working
    assert sorted(p.name for p in working.iterdir()) == ["best.pth", "config.json", "last.pth", "metrics.csv"]
    assert lk.run_progress(working) == {"epoch": 7.0, "elapsed_s": 200.0}
    shutil.rmtree(working)
    _run_dir(working, epoch=9, elapsed=300)  # this session already went further: keep it
    assert lk.resume_point(inputs, working, exclude=[dataset]) == working
    assert lk.run_progress(working)["epoch"] == 9.0
    assert lk.resume_point(tmp_path / "empty", tmp_path / "fresh") is None


# ------------------------------------------------------------------------------ the kernel's session


def test_the_kernel_prints_the_build_it_installed_and_stops_on_another(tmp_path, capsys):
    package = tmp_path / "input" / "datasets" / "alice" / "latentface-package"
    package.mkdir(parents=True)
    wheel = package / "latentface-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert lk.check_build(wheel) is None
    assert "build: unknown (no build.json beside the wheel)" in capsys.readouterr().out
    (package / "build.json").write_text(json.dumps({"build_id": "20261201T000000Z-0123abcd"}))
    assert lk.check_build(wheel, "20261201T000000Z-0123abcd") == "20261201T000000Z-0123abcd"
    assert capsys.readouterr().out == f"build: 20261201T000000Z-0123abcd ({wheel.name})\n"
    with pytest.raises(lk.KaggleSetupError) as error:
        lk.check_build(wheel, "20261202T000000Z-ffffffff")
    assert "pushed with build 20261202T000000Z-ffffffff, but the attached package" in str(error.value)
    assert "is build 20261201T000000Z-0123abcd: Kaggle attached another version" in str(error.value)


def test_the_session_clock_gives_training_what_set_up_leaves(capsys):
    now = [1000.0 + 300]  # the process started at 1000, set-up took 5 minutes
    clock = lk.SessionClock(12 * 3600, 1800, start=1000.0, now=lambda: now[0])
    assert clock.training_budget() == (12 * 3600 - 300, 1800)
    assert capsys.readouterr().out == (
        "session clock: set-up took 300 s; training gets --wall_budget 42900 s (the 12 h session minus set-up), "
        "of which --final_margin 1800 s is kept for the evaluation and saving the output\n"
    )
    now[0] += 11 * 3600
    clock.mark("training")
    now[0] += 600
    clock.mark("evaluation")
    assert clock.lines() == [
        "session: 11.25 h of 12 h used (set-up 5.0 min, training 660.0 min, evaluation 10.0 min); 45 min left"
    ]
    late = lk.SessionClock(12 * 3600, 1800, start=0.0, now=lambda: 12 * 3600 - 1000.0)
    with pytest.raises(lk.KaggleSetupError, match="1000 s are left of the 12 h session, not more than the 1800 s"):
        late.training_budget()


def test_the_clocks_count_from_the_start_of_the_process(monkeypatch):
    """A process that slept 1.5 s before asking: its start is 1.5 s (and its interpreter's start-up) ago."""
    child = (
        "import time; time.sleep(1.5); from latentface.util.process import process_start as s; print(time.time() - s())"
    )
    ago = float(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
    assert 1.5 <= ago < 15
    monkeypatch.setattr(kaggle_session, "process_start", lambda: 1234.5)
    assert lk.SessionClock().start == 1234.5
    assert training_clock.process_start is process.process_start  # the kernel's clock and training's: one function


def test_the_wall_budget_reaches_the_training_arguments(tmp_path):
    args = lk.train_arguments({"epochs": 2}, "data", "runs", "kaggle", wall_budget=42900, final_margin=1800)
    assert args[-6:] == ["--epochs", "2", "--wall_budget", "42900", "--final_margin", "1800"]
    run = _run_dir(tmp_path / "run", epoch=3, elapsed=1500)  # a resumed run: still this session's clock
    args = lk.train_arguments({}, "data", "runs", "kaggle", resume=run, wall_budget=40000, final_margin=1800)
    assert args[-6:] == ["--resume", str(run), "--wall_budget", "40000", "--final_margin", "1800"]

    with pytest.raises(
        lk.KaggleSetupError,
        match="training settings: argument --wall_budget/--wall-budget: invalid float value: .soon.",
    ):
        lk.train_arguments({"wall_budget": "soon"}, "data", "runs", "kaggle")


def test_the_backbone_starts_from_imagenet_when_the_kernel_can_download_it(tmp_path, capsys):
    real = tmp_path / "kaggle"  # a real Kaggle root (not the local stand-in, not smoke)
    asked = []

    def download(backbone):
        asked.append(backbone)
        return tmp_path / "hub" / "resnet50-11ad3fa6.pth"

    settings = lk.imagenet_start({"preset": "default", "epochs": 9}, real, download=download, env={})
    assert settings == {"preset": "default", "epochs": 9, "pretrained": str(tmp_path / "hub" / "resnet50-11ad3fa6.pth")}
    assert asked == ["resnet50"]
    assert capsys.readouterr().out == (
        f"backbone start: torchvision's resnet50 ImageNet weights ({tmp_path / 'hub' / 'resnet50-11ad3fa6.pth'})\n"
    )
    assert lk.imagenet_start({"model": "resnet18"}, real, download=download, env={})["pretrained"]
    assert asked[-1] == "resnet18"
    capsys.readouterr()

    def offline(backbone):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    assert lk.imagenet_start({"preset": "fast"}, real, download=offline, env={}) == {"preset": "fast"}
    assert capsys.readouterr().out == (
        "backbone start: could not download torchvision's resnet18 (OSError: <urlopen error [Errno -3] Temporary "
        "failure in name resolution>); the backbone starts from random weights (push with internet on, or set "
        "TRAIN['pretrained'] to a weights file)\n"
    )
    never = lambda backbone: pytest.fail("no download expected")  # noqa: E731
    assert "pretrained" not in lk.imagenet_start({}, real, resume=tmp_path / "run", download=never, env={})
    assert "backbone start: not needed: the run resumes from its last.pth" in capsys.readouterr().out
    assert lk.imagenet_start({"pretrained": None}, real, download=never, env={}) == {"pretrained": None}
    assert "backbone start: as set (none)" in capsys.readouterr().out
    assert "pretrained" not in lk.imagenet_start({}, real, download=never, env={}, internet=False)
    assert "backbone start: random weights: the kernel was pushed with --no_internet" in capsys.readouterr().out
    assert "pretrained" not in lk.imagenet_start({}, lk.LOCAL_ROOT, download=never, env={})
    assert "not used off Kaggle" in capsys.readouterr().out


def _stopped_run(folder: Path, stopped, reached: float, planned: int = 100) -> Path:
    """A run directory with the summary.json training writes."""
    folder.mkdir(parents=True)
    summary = {
        "state": "stopped" if stopped else "finished",
        "stopped": stopped,
        "stop_reason": "the next epoch (about 1.1 h) would not fit" if stopped == "budget" else None,
        "epochs_planned": planned,
        "epochs_reached": reached,
        "best": {"val_ap": 0.52, "epoch": 2, "step": 200},
        "hours_trained": 3.0,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_the_end_summary_gives_the_command_that_continues_a_stopped_run(tmp_path):
    pushed = {"kernel": "alice/latentface-train", "flags": ["--data", "bob/retina-modify", "--no_internet"]}
    run = _stopped_run(tmp_path / "a", "budget", 3)
    assert lk.run_summary(run) == dict(
        epochs=3,
        planned=100,
        best_ap=0.52,
        best_epoch=2,
        hours=3,
        stopped="budget",
        reason="the next epoch (about 1.1 h) would not fit",
    )
    lines = lk.summary_lines(run, pushed=pushed, working=tmp_path / "a")
    assert lines[:3] == [
        "session summary: epoch 3 of 100, best val AP 0.5200 (epoch 2), 3.00 h of training steps",
        "stopped early by the session's wall-clock budget (the next epoch (about 1.1 h) would not fit): "
        "weight_final.pth holds the weights of an unfinished run",
        "to continue it: latentface kaggle push --user alice --data bob/retina-modify --no_internet "
        "--slug latentface-train-2 --resume_from alice/latentface-train",
    ]
    assert lines[3].startswith("output: 0.00 GB in ") and lines[3].endswith("(Kaggle keeps up to 20 GB)")
    done = _stopped_run(tmp_path / "b", None, 100)
    assert lk.summary_lines(done) == [
        "session summary: epoch 100 of 100, best val AP 0.5200 (epoch 2), 3.00 h of training steps",
        "stopped: no, every planned epoch ran",
    ]
    signal = lk.summary_lines(_stopped_run(tmp_path / "c", "signal", 1.5))
    assert "stopped early by a stop signal: " in signal[1] and signal[2].startswith("to continue it: ")
    capped = lk.summary_lines(_stopped_run(tmp_path / "d", "max_steps", 0.5))
    assert capped[1].startswith("stopped early by max_steps") and len(capped) == 2  # asked for: no continuation
    older = tmp_path / "e"  # a run from before summary.json: from metrics.csv and config.json
    older.mkdir()
    (older / "metrics.csv").write_text("epoch,val_ap,elapsed_s\n1,0.31,3600\n2,0.48,7200\n")
    (older / "config.json").write_text(json.dumps({"epochs": 4}))
    assert lk.run_summary(older) == dict(
        epochs=2, planned=4, best_ap=0.48, best_epoch=2, hours=2, stopped="unknown", reason=None
    )
    assert lk.continue_command({"kernel": "alice/latentface-train-2", "flags": ["--data", "alice/retina-modify"]}) == (
        "latentface kaggle push --user alice --data alice/retina-modify --slug latentface-train-3 "
        "--resume_from alice/latentface-train-2"
    )


def test_the_training_log_comes_line_by_line_in_order(tmp_path, capfd):
    child = (
        "import sys, time\n"
        "print('statistics pass: 12880 latents')\n"  # no flush: block-buffered into a pipe without -u
        "sys.stderr.write('a warning\\n')\n"
        "print('epoch 1/2')\n"
    )
    seconds = lk.run_logged([sys.executable, "-c", child], tmp_path / "train.log")
    assert (tmp_path / "train.log").read_text() == "statistics pass: 12880 latents\na warning\nepoch 1/2\n"
    out = capfd.readouterr().out  # the command line echoed, then the lines as they came
    assert out.endswith("statistics pass: 12880 latents\na warning\nepoch 1/2\n")
    assert 0 < seconds < 60


def test_an_offline_wandb_says_how_to_attach_the_secret(secrets, tmp_path, capsys):
    assert lk.configure_wandb(tmp_path, {}, internet=True, kernel="alice/latentface-train") == "offline"
    text = capsys.readouterr().out
    assert text.startswith("W&B offline: no WANDB_API_KEY secret is attached to this notebook; to log to W&B online")
    assert "https://www.kaggle.com/code/alice/latentface-train/edit" in text
    secrets["WANDB_API_KEY"] = "k3y"
    assert lk.configure_wandb(tmp_path, {}, internet=False) == "offline"
    assert "api.wandb.ai cannot be reached" in capsys.readouterr().out


def test_the_epoch_estimate_follows_from_the_measured_macs_and_the_stated_throughput(tmp_path, capsys):
    from latentface.tools.kaggle.estimate import epoch_estimate

    per_second = 65e12 * 0.12 * 2 * 0.9  # T4 fp16 peak x 12 % x 2 GPUs x DDP scaling
    e = epoch_estimate(10.0)
    assert e.train_s == pytest.approx(12880 * 3 * 2 * 10e9 * 0.8**2 / per_second)  # 35.2 s
    assert e.val_s == pytest.approx(3226 * 2 * 10e9 / per_second)
    assert epoch_estimate(10.0, gpus=1).epoch_s == pytest.approx(e.epoch_s * 2 * 0.9)
    benchmarks = tmp_path / "benchmarks.json"
    rows = {"latent_r50_default": {"macs": 71.1e9}, "fast": {"macs": 9.4e9}}
    benchmarks.write_text(json.dumps({"cost": {"rows": rows}}))
    assert main(["kaggle", "estimate", "--benchmarks", str(benchmarks)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ESTIMATE (not measured): T4 x2, 65 TFLOPS fp16 peak x 12% sustained per GPU")
    assert lines[1] == (
        "default    71.1 GMACs  train   4.2 min + validation  0.5 min =   4.7 min/epoch; 139.9 epochs in 11 h"
    )
    assert lines[2].startswith("fast        9.4 GMACs  train   0.6 min")
    assert main(["kaggle", "estimate"]) == 0  # the committed docs/benchmarks.json
    assert "default    71.1 GMACs" in capsys.readouterr().out


def test_the_readme_time_per_epoch_table_is_the_estimate_of_the_committed_macs():
    from latentface.tools.kaggle.estimate import preset_estimates

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    estimates = preset_estimates(REPO / "docs" / "benchmarks.json")
    assert [e.preset for e in estimates] == ["default", "fast"]
    for e in estimates:
        row = re.search(
            rf"^\| {e.preset} \(.*?\) \| ([\d.]+) \| ([\d.]+) min \| ([\d.]+) min \| ([\d.]+) min \|", readme, re.M
        )
        assert row, f"README: no time-per-epoch row for {e.preset}"
        assert row.groups() == tuple(f"{v:.1f}" for v in (e.gmacs, e.train_s / 60, e.val_s / 60, e.epoch_s / 60))
    assert re.search(rf"^\| default \(.*\| ~{3600 * 11 / estimates[0].epoch_s:.0f} \|$", readme, re.M)


# ------------------------------------------------------------------------------ the kernel, end to end


@pytest.mark.slow
def test_built_kernel_runs_end_to_end_against_a_fake_kaggle_root(built, tmp_path, monkeypatch):
    """The pushed notebook, executed as Kaggle would, with /kaggle replaced by a folder holding the
    synthetic dataset (classic mount) and the wheel dataset (datasets/<owner>/<slug> mount)."""
    root = tmp_path / "kaggle"
    generate_dataset(root / "input" / "retina-modify", 4, 2, size=128, rates=(75,), seed=0, progress=False)
    shutil.copytree(built.package_dir, root / "input" / "datasets" / "alice" / "latentface-package")
    (root / "working").mkdir()
    inputs_before = sorted(str(p) for p in (root / "input").rglob("*"))
    for name in ("tmp", "ipython", "jupyter", "mpl"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("LATENTFACE_KAGGLE_ROOT", str(root))
    monkeypatch.setenv("LATENTFACE_SMOKE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two small processes on a busy CPU: no thread oversubscription

    notebook = nbformat.read(built.kernel_dir / "latentface-train.ipynb", as_version=4)
    # the timeout only stops a hung cell: the checks below are on what the run wrote, not on how long it took
    NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(root / "working")}}
    ).execute()
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    site = tmp_path / "tmp" / "latentface-site"
    assert f"installed {built.wheel.name} into {site}" in text  # pip install --no-index --no-deps, offline
    assert (site / "latentface" / "tools" / "kaggle" / "kernel.py").is_file() and not (site / "torch").exists()
    assert "runtime dependencies: all importable" in text
    (printed,) = re.findall(r"^build: (\S+) \(", text, re.M)
    assert printed == built.build_id  # the kernel installed the build that was built
    assert "backbone start: not used off Kaggle" in text
    assert re.search(r"^session clock: set-up took \d+ s; training gets --wall_budget \d+ s", text, re.M)
    assert re.search(
        r"^epoch 1/1, step 1/2: [\d.]+ img/s, elapsed \d:\d\d:\d\d, epoch ETA \d:\d\d:\d\d, "
        r"wall budget [01]% used of 11:\d\d:\d\d$",
        text,
        re.M,
    )
    assert "session summary: epoch 1 of 1, best val AP " in text and "stopped: no, every planned epoch ran" in text
    assert re.search(r"^session: \d+\.\d\d h of 12 h used \(set-up .* training .* evaluation .*\)", text, re.M)
    assert re.search(r"^output: \d+\.\d\d GB in .*working \(Kaggle keeps up to 20 GB\)", text, re.M)
    in_order = [  # the kernel's lines and training's, as they came (unbuffered, one stream)
        "build: ",
        "backbone start: ",
        "session clock: set-up",
        "$ python",
        "data: train 4 samples",
        "computing latent statistics",
        "training: epoch 1 of 1",
        "epoch 1/1, step 1/2: ",  # a progress line (TRAIN's progress_every: the first step, then every 300 s)
        "epoch 1: train loss",
        "summary: 1 of 1 epochs, all epochs done",
        "session summary: epoch 1 of 1",
        "output: ",
    ]
    at = [text.find(line) for line in in_order]
    assert -1 not in at and at == sorted(at), dict(zip(in_order, at))
    assert f"dataset: {root / 'input' / 'retina-modify'}" in text and "run: " in text and "(new)" in text

    run = root / "working" / "runs" / "kaggle"
    for name in (
        "weight_final.pth",
        "best.pth",
        "last.pth",
        "metrics.csv",
        "curves.png",
        "config.json",
        "eval/report.json",
        "eval/pr_curve.png",
    ):
        assert (run / name).is_file(), name
    assert (root / "working" / "train.log").is_file()
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["epoch"]) for r in rows] == [1.0]  # one tiny epoch: 4 images, batch 2
    assert load_checkpoint(run / "weight_final.pth")["config"]["backbone"] == "resnet18"
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["images"] == 2 and 0.0 <= report["ap"] <= 1.0
    assert sorted(str(p) for p in (root / "input").rglob("*")) == inputs_before  # inputs stay read-only
