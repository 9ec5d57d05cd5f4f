"""latentface.tools.kaggle: metadata rules, credentials, build, the CLI calls (fake `kaggle` on PATH), the kernel
end to end."""

import csv
import json
import os
import shutil
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

import latentface.tools.kaggle.build as kaggle_build
from latentface.checkpoint import load_checkpoint
from latentface.cli import main
from latentface.data.synth import generate_dataset
from latentface.tools import kaggle as lk
from latentface.training.recipes import RECIPES

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
        (dict(docker_image_pinning_type="pinned"), "field 'docker_image_pinning_type'"),
    ],
)
def test_kernel_metadata_errors_name_the_field(changes, message):
    with pytest.raises(lk.KaggleSetupError, match="kernel-metadata.json: .*") as info:
        lk.validate_kernel_metadata(_kernel_meta(**changes))
    assert message in str(info.value)


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
    assert sorted(p.name for p in built.package_dir.iterdir()) == ["dataset-metadata.json", built.wheel.name]


def test_built_kernel_is_notebook_03_without_outputs(built):
    notebook = jupytext.read(REPO / "notebooks" / "03_train_on_kaggle.py")
    kernel = json.loads((built.kernel_dir / "latentface-train.ipynb").read_text())
    code = [c for c in kernel["cells"] if c["cell_type"] == "code"]
    assert ["".join(c["source"]) for c in code] == [c.source for c in notebook.cells if c.cell_type == "code"]
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
            ]
        )
        == 0
    )
    kernel = json.loads((tmp_path / "kernel" / "kernel-metadata.json").read_text())
    assert (kernel["id"], kernel["title"], kernel["code_file"]) == (
        "alice/latentface-train-2",
        "latentface train 2",
        "latentface-train-2.ipynb",
    )
    assert kernel["dataset_sources"] == ["bob/retina-modify", "alice/alice-latentface"]
    assert kernel["kernel_sources"] == ["alice/latentface-train"]
    assert (kernel["enable_internet"], kernel["is_private"]) == (False, False)
    assert main(["kaggle", "build", "--user", "alice", "--out", str(tmp_path), "--title", "My Run"]) == 2


# ------------------------------------------------------------------------------ the kaggle CLI calls (fake)

FAKE_KAGGLE = textwrap.dedent("""\
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    state = Path(os.environ["FAKE_KAGGLE_STATE"])
    if args == ["--version"]:  # KaggleCLI checks that the command starts; not recorded
        print("Kaggle API 1.7.4.5"); sys.exit(0)
    with open(state / "calls.jsonl", "a") as f:
        f.write(json.dumps(args) + "\\n")
    datasets = json.loads((state / "datasets.json").read_text()) if (state / "datasets.json").exists() else {}
    def save():
        (state / "datasets.json").write_text(json.dumps(datasets))
    def option(name):
        return args[args.index(name) + 1]
    if args[:2] == ["datasets", "status"]:
        if args[2] not in datasets:
            print("404 Client Error: Not Found for url"); sys.exit(1)
        print("pending" if datasets[args[2]]["pending"] else "ready")
        datasets[args[2]]["pending"] = max(0, datasets[args[2]]["pending"] - 1); save()
    elif args[:2] in (["datasets", "create"], ["datasets", "version"]):
        folder = Path(option("-p"))
        ref = json.loads((folder / "dataset-metadata.json").read_text())["id"]
        datasets[ref] = {"pending": 1, "files": sorted(p.name for p in folder.iterdir())}; save()
        print("Dataset upload successful")
    elif args[:2] == ["datasets", "files"]:
        if args[2] != "alice/retina-modify":
            print("404 Client Error: Not Found"); sys.exit(1)
        print("name  size  creationDate")
    elif args[:2] == ["kernels", "push"]:
        meta = json.loads((Path(option("-p")) / "kernel-metadata.json").read_text())
        assert (Path(option("-p")) / meta["code_file"]).is_file()
        print("Kernel version 1 successfully pushed.  Please check progress at "
              "https://www.kaggle.com/code/" + meta["id"])
    elif args[:2] == ["kernels", "status"]:
        if args[2].startswith("nobody/"):
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


def test_push_creates_the_package_dataset_then_versions_it(built, fake_kaggle, tmp_path):
    out = tmp_path / "build"
    shutil.copytree(built.kernel_dir.parent, out)
    kernel_dir, package_dir = str(out / "kernel"), str(out / "package")
    assert main(["kaggle", "push", "--skip-build", "--out", str(out)]) == 0
    assert fake_kaggle() == [
        ["datasets", "files", "alice/retina-modify"],
        ["datasets", "status", "alice/latentface-package"],
        ["datasets", "create", "-p", package_dir, "--dir-mode", "zip"],
        ["datasets", "status", "alice/latentface-package"],  # pending
        ["datasets", "status", "alice/latentface-package"],  # ready
        ["kernels", "push", "-p", kernel_dir],
    ]
    uploaded = json.loads((fake_kaggle.state / "datasets.json").read_text())["alice/latentface-package"]["files"]
    assert uploaded == ["dataset-metadata.json", built.wheel.name]
    assert main(["kaggle", "push", "--skip-build", "--out", str(out), "--message", "second"]) == 0
    assert fake_kaggle()[6:] == [
        ["datasets", "files", "alice/retina-modify"],
        ["datasets", "status", "alice/latentface-package"],
        ["datasets", "version", "-p", package_dir, "-m", "second", "--dir-mode", "zip"],
        ["datasets", "status", "alice/latentface-package"],
        ["datasets", "status", "alice/latentface-package"],
        ["kernels", "push", "-p", kernel_dir],
    ]


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
    assert '"six"' in line and '"kaggle>=1.6"' in line


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
