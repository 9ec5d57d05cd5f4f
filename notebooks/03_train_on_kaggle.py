# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Train on Kaggle
#
# This notebook **is** the Kaggle kernel: `latentface kaggle push` converts it with jupytext and
# runs it on Kaggle's T4 x2. There it finds **retina-modify** under `/kaggle/input`, installs
# latentface from the attached wheel dataset (no internet needed), tracks with W&B when a
# `WANDB_API_KEY` secret is attached (offline logs otherwise), trains on both GPUs with
# `torchrun`, evaluates the best checkpoint and leaves everything in `/kaggle/working`.
# A previous session's output attached as input is continued, so the 12-hour limit loses nothing.
#
# Off Kaggle the same cells run on the synthetic dataset with a small model for a few epochs
# (`LATENTFACE_SMOKE=1`: a tiny one for one epoch). The logic lives in `latentface.tools.kaggle`, where
# it is tested; the cells only call it.

# %% tags=["parameters"]
DATA_SLUG = "retina-modify"  # the dataset to find under /kaggle/input
RUN_NAME = "kaggle"  # the run directory: /kaggle/working/runs/<RUN_NAME>
TIME_BUDGET_H = 11.0  # hours of training this session; Kaggle stops a session at 12
RESUME_FROM = []  # OWNER/KERNEL outputs to continue (push --resume_from sets it); then finding no run is an error
TRAIN = dict(  # `latentface train` flags; batch_size is per GPU process
    preset="default",
    latent_type="latent_75.npy",
    epochs=100,
    batch_size=8,
    lr=1e-3,
    workers=2,
    keep_epochs=2,  # newest epoch_NNN.pth snapshots kept; older ones are deleted
    no_progress=True,
    # device="cpu",  # on Kaggle, no GPU stops the kernel unless the CPU is asked for
)

# %% [markdown]
# ## Install latentface from the attached wheel
#
# `kaggle kernels push` uploads this notebook only; the package arrives as a dataset holding its
# wheel. Python imports straight from a wheel (a zip), which makes latentface's own installer
# available: `pip install --no-index --no-deps`, so Kaggle's torch stays as it is.

# %%
import glob
import os
import sys

KAGGLE = os.environ.get("LATENTFACE_KAGGLE_ROOT", "/kaggle")
WHEELS = sorted(w for depth in (1, 2, 3) for w in glob.glob(f"{KAGGLE}/input/{'*/' * depth}latentface-*.whl"))
if WHEELS:
    sys.path.insert(0, WHEELS[-1])
from latentface.tools import kaggle as lk  # noqa: E402

if WHEELS:
    wheel = lk.find_wheels(f"{KAGGLE}/input")[-1]
    print(f"installed {wheel.name} into {lk.install_package(wheel)}")
else:
    print("no wheel attached (not on Kaggle): using the installed latentface")
missing = lk.missing_modules()
print("runtime dependencies:", f"MISSING {missing}: pip install {' '.join(missing)}" if missing else "all importable")

# %% [markdown]
# ## Data, GPUs, tracking, resume

# %%
ROOT = lk.kernel_root()
lk.prepare_local_input(ROOT, DATA_SLUG)  # off Kaggle only: the synthetic set
DATASET = lk.find_dataset(ROOT / "input", DATA_SLUG)
WORKING = ROOT / "working"
RUN_DIR = WORKING / "runs" / RUN_NAME
GPUS = lk.cuda_devices()
lk.require_gpu(GPUS, TRAIN, ROOT)  # on Kaggle: no GPU stops here (says how to turn it on)
WANDB = lk.configure_wandb(WORKING)
RESUME = lk.resume_point(ROOT / "input", RUN_DIR, exclude=[DATASET], required=RESUME_FROM)
print(f"dataset: {DATASET}\nGPUs: {len(GPUS)} {GPUS}\nW&B: {WANDB}\nrun: {RUN_DIR} ({'resuming' if RESUME else 'new'})")

# %% [markdown]
# ## Train
#
# One process per GPU through `torchrun` when there are two (T4 x2), one process otherwise.
# Training stops cleanly at the time budget with a resumable `last.pth`.

# %%
SETTINGS = lk.train_settings(TRAIN, ROOT)  # off Kaggle: the small (or smoke) settings over TRAIN
ARGS = lk.train_arguments(SETTINGS, DATASET, RUN_DIR.parent, RUN_NAME, resume=RESUME, time_budget=TIME_BUDGET_H * 3600)
lk.run_logged(lk.train_command(len(GPUS), ARGS), WORKING / "train.log")

# %% [markdown]
# ## Evaluate
#
# The WIDER FACE protocol on the validation split with the best checkpoint.

# %%
import json  # noqa: E402

WEIGHT = lk.best_weights(RUN_DIR)
REPORT = lk.final_evaluation(WEIGHT, DATASET, RUN_DIR / "eval", latent_type=SETTINGS["latent_type"])
print(WEIGHT.name, json.dumps(REPORT, indent=1))

# %% [markdown]
# ## Curves

# %%
from IPython.display import Image, display  # noqa: E402

display(Image(filename=str(RUN_DIR / "curves.png")))
display(Image(filename=str(RUN_DIR / "eval" / "pr_curve.png")))

# %% [markdown]
# ## What this session leaves in `/kaggle/working`
#
# `latentface kaggle output` downloads it; attach this kernel's output to the next session
# (`latentface kaggle push --resume_from USER/KERNEL`) to continue the run.

# %%
for path in sorted(p for p in WORKING.rglob("*") if p.is_file() and "wandb" not in p.parts):
    print(f"{path.stat().st_size:>12,d}  {path.relative_to(WORKING)}")
