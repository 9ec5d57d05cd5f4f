# Two commands do all the set-up themselves: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# Exact versions for this project's own environment; the package itself states ranges.
TORCH  := torch==2.14.1 torchvision==0.29.1
DATASET_ROOT ?=
CODEC ?=

.PHONY: demo test test-fast lint notebooks lab bench bench-report clean

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.ready
	$(PY) -m latentface.cli demo $(if $(CODEC),--codec $(CODEC)) $(if $(DATASET_ROOT),--dataset_root $(DATASET_ROOT))

test: $(VENV)/.ready
	MPLBACKEND=Agg WANDB_MODE=disabled $(PY) -m pytest -q -n 2

# Everything but the tests marked slow (notebook execution, the demo, DDP, the whole kernel, the quick bench run).
test-fast: $(VENV)/.ready
	MPLBACKEND=Agg WANDB_MODE=disabled $(PY) -m pytest -q -n 2 -m "not slow"

# The pre-commit checks, run from .venv: ruff lint and format, and the notebook pairs.
lint: $(VENV)/.ready
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m latentface.tools.notebooks --check-pairs

# Re-executes every notebook on the synthetic dataset and writes its .ipynb, outputs included
# (03, the Kaggle kernel, runs its small local stand-in off Kaggle).
notebooks: $(VENV)/.ready
	MPLBACKEND=Agg WANDB_MODE=disabled $(PY) -m latentface.tools.notebooks

# JupyterLab on notebooks/ with this environment's kernel: latentface importable, the widgets rendered
# (jupyterlab_widgets, ipyevents), .py/.ipynb pairs kept in step by jupytext. LAB_ARGS=--no-browser etc.
lab: $(VENV)/.ready
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

bench: $(VENV)/.ready
	MPLBACKEND=Agg WANDB_MODE=disabled $(PY) -m latentface.cli bench

# docs/BENCHMARKS.md and its figures again from docs/benchmarks.json, measuring nothing.
bench-report: $(VENV)/.ready
	MPLBACKEND=Agg $(PY) -m latentface.cli bench --report_only

clean:
	rm -rf $(VENV) runs .pytest_cache
