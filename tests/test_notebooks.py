"""The notebooks: every pair in step, committed outputs present and small, and every notebook
executing headless on the synthetic dataset in its smoke configuration."""

import json
import os
import shutil
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from latentface.data.labels import read_labels
from latentface.data.synth import generate_dataset
from latentface.inference.operating_point import OperatingPoint
from latentface.tools import notebooks
from latentface.training.recipes import RECIPES, Recipe
from latentface.util import env as latentface_env
from latentface.util.io import read_json

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("[0-9]*.py"))
#: Seconds one cell may take (nbclient's per-cell timeout): a hang fails instead of blocking the run.
SMOKE_LIMIT_S = 120
#: The smoke configuration's synthetic data: at most this many images per split, this many pixels a side.
SMOKE_MAX_IMAGES, SMOKE_MAX_SIZE = 8, 128


def code_cells(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def test_the_notebooks_are_there():
    names = {path.stem[:2] for path in NOTEBOOKS}
    assert {"01", "02", "04"} <= names
    assert (FOLDER / "jupytext.toml").is_file()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_has_identical_code_cells(path):
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} is missing: run `make notebooks`"
    assert code_cells(jupytext.read(path)) == code_cells(nbformat.read(ipynb, as_version=4)), (
        f"{path.name} and {ipynb.name} differ: run `make notebooks` (or `jupytext --sync {path}`)"
    )


def test_every_ipynb_has_its_py():
    assert {p.with_suffix(".py") for p in FOLDER.glob("*.ipynb")} <= set(NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_comes_first(path):
    first = next(cell for cell in jupytext.read(path).cells if cell.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), f"{path.name}: the first code cell must be tagged parameters"


def test_committed_outputs_are_complete_and_small():
    total = 0
    for path in NOTEBOOKS:
        ipynb = path.with_suffix(".ipynb")
        nb = nbformat.read(ipynb, as_version=4)
        cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert all(cell.execution_count is not None for cell in cells), f"{ipynb.name}: not every cell was run"
        outputs = [o for cell in cells for o in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"], f"{ipynb.name}: holds an error output"
        if path.stem[:2] in ("01", "02", "04"):
            assert any(k.startswith("image/") for o in outputs for k in o.get("data", {})), f"{ipynb.name}: no figure"
            assert "widgets" not in nb.metadata
        total += ipynb.stat().st_size
    assert total < 5e6, f"committed notebooks hold {total / 1e6:.1f} MB (keep them under 5 MB)"


def synthetic_datasets(folder: Path) -> dict[Path, dict]:
    """Every synthetic dataset under ``folder``: its size and image count per split."""
    found = {}
    for codec_file in folder.rglob("codec.json"):
        info = read_json(codec_file)
        if info.get("generator") == "latentface synth":
            root = codec_file.parent
            labels = {split: root / split / "labels.txt" for split in ("train", "val")}
            found[root] = {
                "size": info["size"],
                **{split: len(read_labels(path)) for split, path in labels.items() if path.is_file()},
            }
    return found


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_in_smoke_mode(path, tmp_path):
    extra = {notebooks.WORK_ENV: str(tmp_path / "work"), "LATENTFACE_KAGGLE_ROOT": str(tmp_path / "kaggle")}
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per kernel: workers already fill the cores
        extra["OMP_NUM_THREADS"] = "1"
    nb = notebooks.execute(path, smoke_run=True, write=False, timeout=SMOKE_LIMIT_S, extra_env=extra)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if path.stem[:2] in ("01", "02", "04"):  # notebooks.show displays the Figure-API figures
        assert any(k.startswith("image/") for o in outputs for k in o.get("data", {})), f"{path.name}: no figure"
    # the smoke configuration is small whatever the machine's load: tiny synthetic data only
    datasets = synthetic_datasets(tmp_path)
    if path.stem[:2] in ("01", "02", "04"):
        assert datasets, f"{path.name} made no synthetic dataset under its work folder"
    for root, info in datasets.items():
        assert info["size"] <= SMOKE_MAX_SIZE and max(info.get("train", 0), info.get("val", 0)) <= SMOKE_MAX_IMAGES, (
            f"{path.name} made {root} ({info}) in its smoke configuration"
        )
    if path.stem.startswith("04"):
        saved = list((tmp_path / "work").rglob("thresholds.json"))
        assert len(saved) == 1
        assert set(read_json(saved[0])) == {"conf", "nms", "topk", "keep"}
        OperatingPoint.load(saved[0])  # valid values, as `latentface detect --thresholds` reads them


@pytest.mark.slow
@pytest.mark.notebook
def test_data_inspection_runs_on_data_without_codec_or_images(tmp_path):
    """retina-modify has no codec.json and no images: 01 must fall back to the latent's own views."""
    root = tmp_path / "retina-like"
    generate_dataset(root, 3, 3, size=64, rates=(12, 75), progress=False)
    (root / "codec.json").unlink()
    for split in ("train", "val"):
        shutil.rmtree(root / split / "images")
    nb = notebooks.execute(
        FOLDER / "01_data_inspection.py",
        smoke_run=True,
        write=False,
        timeout=SMOKE_LIMIT_S,
        extra_env={notebooks.WORK_ENV: str(tmp_path / "work")},
        parameters={"dataset_root": str(root)},
    )
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"]
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "train: 3 images" in text and "val: 3 images" in text
    assert not (tmp_path / "work" / "data").exists()  # nothing synthetic was made


def test_injected_parameters_need_write_false(tmp_path):
    with pytest.raises(ValueError, match="write=False"):
        notebooks.execute(FOLDER / "01_data_inspection.py", parameters={"example": 0})


# ------------------------------------------------------------- latentface.tools.notebooks


@pytest.mark.notebook
def test_runner_writes_the_executed_pair(tmp_path):
    py = tmp_path / "01_tiny.py"
    py.write_text(
        '# %% tags=["parameters"]\nfrom latentface.util.env import smoke\n\nSMOKE = smoke()\n\n'
        "# %%\nimport sys\nprint('smoke' if SMOKE else 'full', 6 * 7, sys.prefix)\n"
    )
    assert notebooks.main([str(py), "--smoke"]) == 0
    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    assert code_cells(nb) == code_cells(jupytext.read(py))
    assert nb.cells[1].outputs[0].text == f"smoke 42 {sys.prefix}\n"  # the kernel is this environment's python
    assert nb.cells[0].metadata["tags"] == ["parameters"]


def test_synthetic_dataset_is_made_once_and_remade_when_the_settings_change(tmp_path):
    root = tmp_path / "synth"
    notebooks.synthetic_dataset(root, 2, 1, 32, rates=[75])
    labels = root / "train" / "labels.txt"
    stamp = labels.stat().st_mtime_ns
    notebooks.synthetic_dataset(root, 2, 1, 32, rates=[75])
    assert labels.stat().st_mtime_ns == stamp  # reused
    notebooks.synthetic_dataset(root, 3, 1, 32, rates=[75])
    assert json.loads((root / "codec.json").read_text())["size"] == 32
    assert len(list((root / "train" / "latent").iterdir())) == 3


def test_synthetic_dataset_never_overwrites_other_data(tmp_path):
    (tmp_path / "real" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        notebooks.synthetic_dataset(tmp_path / "real", 2, 1, 32)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "codec.json").write_text('{"codec": "dct"}')
    with pytest.raises(ValueError, match="no 'generator'"):
        notebooks.synthetic_dataset(tmp_path / "other", 2, 1, 32)


def test_work_dir_and_smoke_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(notebooks.WORK_ENV, str(tmp_path))
    assert notebooks.work_dir("x") == (tmp_path / "x").resolve() and (tmp_path / "x").is_dir()
    monkeypatch.setenv(latentface_env.SMOKE_ENV, "1")
    assert latentface_env.smoke()
    repo = tmp_path / "repo"  # a stand-in repository: the default work folder lies inside it
    (repo / "latentface").mkdir(parents=True)
    (repo / "pyproject.toml").touch()
    monkeypatch.chdir(repo)
    monkeypatch.delenv(notebooks.WORK_ENV)
    assert notebooks.work_dir("y") == Path("runs", "notebooks-smoke", "y")  # the smoke configuration's own
    monkeypatch.setenv(latentface_env.SMOKE_ENV, "0")
    assert not latentface_env.smoke()
    assert notebooks.work_dir("y") == Path("runs", "notebooks", "y") and (repo / "runs" / "notebooks" / "y").is_dir()


def test_detector_notebook_trains_the_notebook_recipes(monkeypatch):
    """Notebook 04's data and training settings are the recipes table's, not its own."""
    cells = jupytext.read(FOLDER / "04_detections_and_tuner.py").cells
    parameters = next(cell.source for cell in cells if cell.cell_type == "code")
    for value, name in (("0", "notebook"), ("1", "notebook-smoke")):
        monkeypatch.setenv(latentface_env.SMOKE_ENV, value)
        namespace = {}
        exec(parameters, namespace)
        assert namespace["recipe"] == name and name in RECIPES
    assert "get_recipe(recipe)" in "".join(code_cells(jupytext.read(FOLDER / "04_detections_and_tuner.py")))


def test_recipe_dataset_is_the_recipes_synthetic_data(tmp_path):
    recipe = Recipe("tiny", 2, 1, 32, rates=(75,), seed=3)
    root = notebooks.recipe_dataset(recipe, tmp_path / "tiny")
    info = read_json(root / "codec.json")
    assert (info["size"], info["seed"], info["rates"]) == (32, 3, [75])
    assert synthetic_datasets(tmp_path) == {root: {"size": 32, "train": 2, "val": 1}}


def test_markdown_table():
    table = notebooks.markdown_table([{"a": 1, "b": 0.123456}, {"a": "x", "b": 2.0}], digits=2)
    assert table == "| a | b |\n|---|---|\n| 1 | 0.12 |\n| x | 2 |"


def test_pair_check_of_make_lint_finds_what_is_out_of_step(tmp_path, capsys):
    for path in NOTEBOOKS[:1]:
        shutil.copy(path, tmp_path / path.name)
        shutil.copy(path.with_suffix(".ipynb"), tmp_path / path.with_suffix(".ipynb").name)
    copy = tmp_path / NOTEBOOKS[0].name
    assert notebooks.unpaired([copy]) == []
    assert notebooks.main(["--check-pairs", str(copy)]) == 0 and "1 notebook pairs in step" in capsys.readouterr().out
    copy.write_text(copy.read_text() + "\n# %%\nprint('a new cell')\n")
    problems = notebooks.unpaired([copy])
    assert len(problems) == 1 and "differ in their code cells" in problems[0]
    assert notebooks.main(["--check-pairs", str(copy)]) == 1
    copy.with_suffix(".ipynb").rename(tmp_path / "99_orphan.ipynb")
    found = notebooks.unpaired([copy])
    assert any("missing" in p for p in found) and any("99_orphan.ipynb: has no paired .py" in p for p in found)


def test_saved_notebooks_drop_dead_widget_views_and_keep_their_figures():
    nb = nbformat.v4.new_notebook()
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb.cells = [nbformat.v4.new_code_cell("tuner.widgets()")]
    nb.cells[0].outputs = [
        nbformat.v4.new_output(
            "execute_result",
            data={notebooks.WIDGET_VIEW: view, "image/png": "iVBOR", "text/plain": "threshold tuner at {...}"},
            execution_count=1,
        )
    ]
    assert notebooks.strip_widget_views(nb) == 1
    assert set(nb.cells[0].outputs[0].data) == {"image/png", "text/plain"}
    assert notebooks.strip_widget_views(nb) == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saving_in_jupyterlab_leaves_the_py_unchanged(path):
    """What JupyterLab's jupytext contents manager writes after a run: the kernel's own kernelspec, its
    language_info, widget state and cell metadata in the notebook, filtered by notebooks/jupytext.toml."""
    from ipykernel.kernelspec import get_kernel_dict
    from jupytext.config import load_jupytext_config
    from jupytext.jupytext import writes

    spec = get_kernel_dict()
    nb = jupytext.read(path)
    assert nb.metadata["kernelspec"]["display_name"] == spec["display_name"] == "Python 3 (ipykernel)"
    nb.metadata["kernelspec"] = {"display_name": spec["display_name"], "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.2", "mimetype": "text/x-python"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for cell in nb.cells:
        cell.metadata.update(execution={"iopub.status.idle": "2026-01-01T00:00:00Z"}, scrolled=True)
    config = load_jupytext_config(str(FOLDER))
    fmt = {"extension": ".py", "format_name": "percent"}
    config.set_default_format_options(fmt)
    assert writes(nb, fmt=fmt, config=config) == path.read_text(encoding="utf-8")


def committed_text(path: Path) -> str:
    """Every text a committed notebook shows: markdown cells and the text of every output."""
    nb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    parts = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", ""))
            parts += [o.get("data", {}).get(k, "") for k in ("text/plain", "text/markdown")]
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def test_committed_outputs_name_the_defaults_the_code_has():
    """A committed notebook that names a default (the default preset's bridge, whether bench results exist)
    must name the code's: re-run it (`make notebooks`) when a default changes."""
    import re

    from latentface.model import LatentRetinaFace

    bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
    text = committed_text(FOLDER / "02_bridge_design.py")
    assert re.findall(r"default preset: (\w+)", text) == [bridge]
    assert re.findall(r"\*\*(\w+)\*\* \(default\)", text) == [bridge]
    assert re.findall(r"Why `(\w+)` is the default", text) == [bridge]
    study = FOLDER.parent / "docs" / "benchmarks.json"
    has_results = bool(json.loads(study.read_text()).get("accuracy")) if study.is_file() else False
    assert ("no bench accuracy results yet" in text) == (not has_results)
    from latentface.inference.operating_point import DISPLAY_CONF

    text = committed_text(FOLDER / "04_detections_and_tuner.py")
    assert re.findall(r"display threshold \((0\.\d+)\)", text) == [f"{DISPLAY_CONF:g}"]
    for path in NOTEBOOKS:
        assert not re.search(r"^wandb: ", committed_text(path), re.M), f"{path.name} commits W&B log lines"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2] in ("01", "02", "04")], ids=lambda p: p.stem)
def test_committed_outputs_have_no_stderr_boxes(path):
    """Messages of training and set-up arrive on stdout (notebooks.stdout_logs), not as Jupyter's red boxes."""
    nb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    stderr = [o.text for cell in nb.cells for o in cell.get("outputs", []) if o.get("name") == "stderr"]
    assert stderr == [], f"{path.name}: {stderr[:2]}"


def test_stdout_logs_moves_stderr_messages_to_stdout(capsys):
    with notebooks.stdout_logs():
        print("epoch 1: train loss 1.0", file=sys.stderr)
    captured = capsys.readouterr()
    assert captured.out == "epoch 1: train loss 1.0\n" and captured.err == ""


def test_notebook_recipe_is_the_demos_for_a_fixed_number_of_steps():
    demo, notebook = RECIPES["demo"], RECIPES["notebook"]
    assert {k: v for k, v in demo.train.items() if k != "time_budget"} == notebook.train
    assert "time_budget" not in notebook.train and "wall_budget" not in notebook.train
    assert (demo.n_train, demo.n_val, demo.size, demo.seed) == (notebook.n_train, notebook.n_val, notebook.size, 0)
    steps = notebook.train["epochs"] * notebook.n_train // notebook.train["batch_size"]
    assert steps == 750


def fake_demo(folder: Path, **changes) -> Path:
    recipe = RECIPES["notebook"]
    summary = {
        "recipe": "demo",
        "training_processes": 2,
        "codec": {"codec": "dct"},
        "dataset": {"synthetic": True, "train_images": 1500, "image_size": 192, "latent_type": "latent_75.npy"},
        "train_config": {**recipe.train, "batch_size": 4, "time_budget": 660.0, "seed": 0},
        "training": {"epochs": 4, "steps": 750},
    }
    for name, value in changes.items():
        section, key = name.split("__")
        summary[section][key] = value
    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "train" / "weight_final.pth").write_bytes(b"weights")
    (folder / "demo.json").write_text(json.dumps(summary))
    return folder


def test_demo_weights_are_reused_only_when_they_match(tmp_path, capsys):
    recipe = RECIPES["notebook"]
    assert notebooks.demo_weights(recipe, "latent_75.npy", tmp_path / "none") is None
    good = fake_demo(tmp_path / "good")
    assert notebooks.demo_weights(recipe, "latent_75.npy", good) == good / "train" / "weight_final.pth"
    assert "reusing" in capsys.readouterr().out
    assert notebooks.demo_weights(recipe, "latent_12.npy", good) is None
    assert "rate: 'latent_75.npy', not 'latent_12.npy'" in capsys.readouterr().out
    stopped = fake_demo(tmp_path / "stopped", training__epochs=3)  # its time budget ended it early
    assert notebooks.demo_weights(recipe, "latent_75.npy", stopped) is None
    assert "epochs run: 3, not 4" in capsys.readouterr().out
    other = fake_demo(tmp_path / "other", train_config__lr=0.01)
    assert notebooks.demo_weights(recipe, "latent_75.npy", other) is None
    assert "--lr: 0.01, not 0.02" in capsys.readouterr().out


def test_committed_notebook_04_shows_a_detector_worth_tuning():
    """The full run's detector reaches AP@0.5 >= 0.75 (WIDER) on its validation images at the rate it trained."""
    import re

    text = committed_text(FOLDER / "04_detections_and_tuner.py")
    rows = re.findall(r"^\| (latent_\d+\.npy) \| ([0-9.]+) \|", text, re.M)
    ap = dict(rows)
    assert "latent_75.npy" in ap, rows
    assert float(ap["latent_75.npy"]) >= 0.75
    assert re.search(r"^\| best F1 \| ", text, re.M)  # the sweep table says which row is the best
