# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
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
SESSION_H = 12.0  # Kaggle stops a session after 12 h: training gets what set-up leaves of it
END_MARGIN_MIN = 30  # minutes of that kept at the end for the evaluation and saving /kaggle/working
RESUME_FROM = []  # OWNER/KERNEL outputs to continue (push --resume_from sets it); then finding no run is an error
PUSHED = {}  # filled by `latentface kaggle push`: the build id, this kernel and its flags
TRAIN = dict(  # `latentface train` flags; batch_size is per GPU process
    preset="default",
    latent_type="latent_75.npy",
    epochs=100,
    batch_size=8,
    lr=1e-3,
    workers=2,
    keep_epochs=1,  # only the newest epoch_NNN.pth is kept (Kaggle keeps 20 GB of output)
    val_images=4,  # validation images with boxes sent to W&B per validation
    progress_every=300,  # a progress line in the log every 5 minutes
    no_progress=True,
    # device="cpu",  # on Kaggle, no GPU stops the kernel unless the CPU is asked for
    # Learning from the RGB images (push with --images OWNER/SLUG, a copy of WIDER FACE; found wherever it lies):
    # teacher="rgb-run/weight_final.pth",  # an RGB RetinaFace, by path or relative to an attached input
    # reconstruct=0.5,  # rebuild each image from the bridge output (a training-only loss)
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

CLOCK = lk.SessionClock(SESSION_H * 3600, END_MARGIN_MIN * 60)  # counts from this process's start
if WHEELS:
    wheel = lk.find_wheels(f"{KAGGLE}/input")[-1]
    print(f"installed {wheel.name} into {lk.install_package(wheel)}")
    lk.check_build(wheel, PUSHED.get("build_id"))  # prints the build id; another one than pushed stops here
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
WANDB = lk.configure_wandb(WORKING, kernel=PUSHED.get("kernel"))  # offline: says how to attach the secret
RESUME = lk.resume_point(ROOT / "input", RUN_DIR, exclude=[DATASET], required=RESUME_FROM)
print(f"dataset: {DATASET}\nGPUs: {len(GPUS)} {GPUS}\nW&B: {WANDB}\nrun: {RUN_DIR} ({'resuming' if RESUME else 'new'})")

# %% [markdown]
# ## Train
#
# One process per GPU through `torchrun` when there are two (T4 x2), one process otherwise. The backbone
# starts from torchvision's ImageNet weights when the kernel can download them. Training gets the wall
# clock left of the session (`--wall_budget`), keeps `--final_margin` of it for what follows, and stops
# cleanly before an epoch that would not fit, with a resumable `last.pth`.

# %%
SETTINGS = lk.train_settings(TRAIN, ROOT)  # off Kaggle: the small (or smoke) settings over TRAIN
SETTINGS = lk.image_settings(SETTINGS, DATASET, ROOT / "input")  # with a teacher: finds it and the images
SETTINGS = lk.imagenet_start(SETTINGS, ROOT, resume=RESUME, internet=PUSHED.get("internet"))  # says which
WALL_BUDGET, FINAL_MARGIN = CLOCK.training_budget()  # prints the set-up overhead
ARGS = lk.train_arguments(
    SETTINGS, DATASET, RUN_DIR.parent, RUN_NAME, resume=RESUME, wall_budget=WALL_BUDGET, final_margin=FINAL_MARGIN
)
lk.run_logged(lk.train_command(len(GPUS), ARGS), WORKING / "train.log")
_ = CLOCK.mark("training")  # seconds, kept for the session summary

# %% [markdown]
# ## Evaluate
#
# The WIDER FACE protocol on the validation split with the best checkpoint.

# %%
import json  # noqa: E402

WEIGHT = lk.best_weights(RUN_DIR)
REPORT = lk.final_evaluation(WEIGHT, DATASET, RUN_DIR / "eval", latent_type=SETTINGS["latent_type"])
print(WEIGHT.name, json.dumps(REPORT, indent=1))
_ = CLOCK.mark("evaluation")

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
# (`latentface kaggle push --resume_from USER/KERNEL`) to continue the run. The summary says how far
# the run got and, when the session's budget stopped it, the exact command that continues it.

# %%
for path in sorted(p for p in WORKING.rglob("*") if p.is_file() and "wandb" not in p.parts):
    print(f"{path.stat().st_size:>12,d}  {path.relative_to(WORKING)}")
lk.session_summary(RUN_DIR, CLOCK, PUSHED, WORKING)
