# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Detections over latents, and the threshold tuner
#
# What a trained detector finds, drawn over the decoded image and over what it actually reads:
# the latent in false colour, single latent channels and the pyramid levels P2–P6 (which level
# responds to which face size). Then the **tuner**: pick the score threshold, NMS IoU, top-k and
# keep by looking at their effect on an image and on precision, recall and F1 over the validation
# set, and save them where `latentface detect --thresholds` reads them.
#
# The tuner's logic is `latentface.tools.tuner.ThresholdTuner`: the model runs once per image and
# rate, candidates above score 0.02 are cached before NMS, and any operating point is then reached
# exactly from the cache: a new score threshold or keep is a cut of the cached NMS result and
# responds at once; a new NMS IoU or top-k re-runs NMS on the cached candidates (once per value).

# %% tags=["parameters"]
from latentface.util.env import smoke

SMOKE = smoke()  # LATENTFACE_SMOKE=1 (tests and CI): a tiny configuration
checkpoint = None  # trained weights (.pth); None: train a small model on the synthetic set here
dataset_root = None  # validation data in the retina-modify layout; None: the recipe's synthetic set
rate = "latent_75.npy"  # the rate the pictures show (the tuner offers every rate)
# the synthetic data and the training when checkpoint is None: the "notebook" recipe of
# latentface.training.recipes.RECIPES (the demo's: the fast preset with the codec bridge for a fixed
# 750 steps; a finished `make demo` run's weights are reused when they match), "notebook-smoke" in the smoke run
recipe = "notebook-smoke" if SMOKE else "notebook"
progress_every = 5.0 if SMOKE else 30.0  # seconds between training progress lines
shown = 4  # validation images in the detection grid
example = None  # the validation image looked at closely; None: the one with most faces >= 24 px
thresholds_file = None  # where the tuner saves; None: thresholds.json beside the weights

# %%
from pathlib import Path

import torch
from IPython.display import Markdown, display

from latentface import viz
from latentface.data.dataset import NestedLatentWiderFaceDataset
from latentface.inference import DISPLAY_CONF, Detector
from latentface.inference.pictures import picture_background
from latentface.tools import inspection, notebooks
from latentface.tools.tuner import ThresholdTuner
from latentface.training import TrainConfig
from latentface.training.recipes import get_recipe

notebooks.setup()
torch.manual_seed(0)
recipe = get_recipe(recipe)
root = notebooks.recipe_dataset(recipe) if dataset_root is None else Path(dataset_root)
if checkpoint is None and dataset_root is None:
    checkpoint = notebooks.demo_weights(recipe, rate)
if checkpoint is None:
    config = TrainConfig(
        dataset_root=str(root),
        latent_type=rate,
        device="cpu",
        workers=1,
        no_wandb=True,
        progress=False,
        progress_every=progress_every,
        out=str(notebooks.work_dir("runs")),
        name=f"detector{recipe.size}",
        val_every=100,
        **recipe.train,
    )
    checkpoint = notebooks.trained_weights(config)  # progress lines as it trains
detector = Detector.from_checkpoint(checkpoint, device="cpu", conf=DISPLAY_CONF)
print(f"{checkpoint}: {detector.model.config}")
val = NestedLatentWiderFaceDataset(root, "val", rate)

# %% [markdown]
# ## Detections over the decoded image
#
# Red: detections above the display threshold (0.6) with their five landmarks (eyes, nose, mouth
# corners); green: the true faces. The background is the image the latent decodes to (built-in
# codec); for JPEG AI latents, whose decoder is not available offline, the stored image or the
# false-colour latent instead.

# %%
background = "decoded" if val.codec else "auto"
example = inspection.busiest_image([val.records[k] for k in val.keys]) if example is None else example
indices = [example] + [i for i in range(len(val)) if i != example][: shown - 1]
latents = torch.stack([val[i][0] for i in indices])
detections = detector(latents)
panels = []
for i, det in zip(indices, detections):
    picture, what = picture_background(val.latent_files(i)[0], val[i][0], background)
    key = val.keys[i]
    panels.append(
        {
            "image": picture,
            "detections": det,
            "truth": val.records[key].boxes,
            "input_size": detector.model.image_size(val[i][0]),
            "title": f"{key}: {what}\n{len(det['scores'])} found, {len(val.records[key])} faces",
        }
    )
notebooks.show(inspection.plot_detections(panels), jpeg=True)

# %% [markdown]
# ## Over what the detector reads
#
# The same detections of one image over the latent itself: in false colour (its first three
# principal components, one 16×16 block per latent cell) and over single channels, the luma DC
# (channel 0, the cell's mean brightness) and a chroma DC (channel 160). Faces smaller than a cell
# are a few coefficients inside one block.

# %%
latent, det = latents[0], detections[0]
size = detector.model.image_size(latent)
truth = val.records[val.keys[example]].boxes
views = {
    "decoded": panels[0]["image"],
    "latent, PCA false colour": viz.latent_pca_image(latent.numpy()),
    "channel 0 (luma DC)": inspection.channel_image(latent, 0),
    "channel 160 (chroma DC)": inspection.channel_image(latent, 160),
}
notebooks.show(
    inspection.plot_detections(
        [
            {"image": image, "detections": det, "truth": truth, "input_size": size, "title": name}
            for name, image in views.items()
        ]
    ),
    jpeg=True,
)

# %% [markdown]
# ## Pyramid levels
#
# The activation energy (L2 norm over channels) of each FPN level for that image, true faces
# outlined: fine levels (P2, stride 4) carry the small faces, coarse ones (P5, P6) the large.
# Below, over the whole validation set: for each face, the highest face score among each level's
# anchors centred inside it; which level wins, by face size.

# %%
with torch.no_grad():
    maps = detector.model.extract(latent[None].to(detector.device))
levels = [f"P{level}" for level in detector.model.anchor_layout.levels]
notebooks.show(inspection.plot_feature_maps(inspection.feature_energy(maps, levels), truth, size))
response = inspection.level_response(detector.model, val)
notebooks.show(inspection.plot_level_response(response))

# %% [markdown]
# ## The feature-map explorer
#
# Every map the detector computes for one image, from one forward pass (cached per image and rate):
# the latent itself (all 256 channels, luma 0–159, chroma 160–255), the bridge output, C2–C4, the
# pyramid levels P2–P6 and each level's face-score map (one channel per anchor). Pick the map, one
# channel, the strongest channels or the PCA false colour; click the map or the decoded image to read
# a cell's values and its profile across the channels. (A saved notebook shows the view it was left at.)

# %%
from latentface.tools.explorer import FeatureExplorer

rates = inspection.available_rates(val)
explorer = FeatureExplorer(detector, {r: NestedLatentWiderFaceDataset(root, "val", r) for r in rates})
explorer.set(rate=rate, image=example, map=levels[1], view="channel", channel=0)
if len(truth):  # the cell under the first true face's centre
    explorer.set(cell=explorer.cell_at((truth[0][0] + truth[0][2]) / 2, (truth[0][1] + truth[0][3]) / 2))
explorer.widgets()

# %% [markdown]
# ## The threshold tuner
#
# Detection runs once per validation image and rate (the first use of a rate); everything after
# is re-thresholding cached candidates. A sweep of the score threshold shows the trade-off; the
# threshold with the best F1 becomes the operating point.

# %%
tuner = ThresholdTuner(detector, {r: NestedLatentWiderFaceDataset(root, "val", r) for r in rates}, conf=DISPLAY_CONF)
tuner.set(rate=rate, image=example)
sweep = tuner.sweep()
best = max(sweep, key=lambda m: (m["f1"], m["conf"]))
columns = ("conf", "precision", "recall", "f1", "true_positives", "false_positives", "detections")
shown = sweep[::10] + ([] if any(m is best for m in sweep[::10]) else [best])  # every 0.1, and the best
print(f"model ran on {len(tuner.keys[rate])} images at {rate} in {tuner.detection_seconds[rate]:.1f} s")
display(
    Markdown(
        notebooks.markdown_table(
            [{"": "best F1" if m is best else "", **{k: m[k] for k in columns}} for m in shown],
            digits=3,
        )
    )
)
tuner.set(conf=best["conf"])
notebooks.show(tuner.plot(), jpeg=True)

# %% [markdown]
# The same operating point at every rate: the model was trained at one rate, and lower rates
# zero out more of the latent.

# %%
rows = []
for r in rates:
    m = tuner.metrics(rate=r)
    rows.append(
        {
            "rate": r,
            "AP (WIDER)": tuner.set(rate=r).wider_ap(),
            "precision": m["precision"],
            "recall": m["recall"],
            "F1": m["f1"],
            "detections": m["detections"],
        }
    )
display(Markdown(notebooks.markdown_table(rows, digits=3)))
tuner.set(rate=rate)
path = tuner.save(thresholds_file or Path(checkpoint).with_name("thresholds.json"))
print(
    f"saved {tuner.thresholds()} to {path}\n"
    f"use it: latentface detect --weight {checkpoint} --thresholds {path} --latent <file or folder>"
)

# %% [markdown]
# ## Interactive
#
# Sliders for the score threshold, NMS IoU, top-k (before NMS) and keep (after NMS), the rate and
# the image; the picture, precision/recall/F1 and the point on the PR curve follow, and the button
# saves the thresholds JSON. (Live widgets need a running kernel; a saved notebook shows the
# figure above instead.)

# %%
tuner.widgets(save_path=path)
