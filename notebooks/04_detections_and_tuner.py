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
# latentface.training.recipes.RECIPES (the fast preset with the codec bridge, which learns quickly
# on a CPU, under a time budget of a few minutes), "notebook-smoke" in the smoke run
recipe = "notebook-smoke" if SMOKE else "notebook"
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
from latentface.metrics import voc_ap
from latentface.tools import inspection, notebooks
from latentface.tools.tuner import ThresholdTuner
from latentface.training import TrainConfig
from latentface.training.recipes import get_recipe

notebooks.setup()
torch.manual_seed(0)
recipe = get_recipe(recipe)
root = notebooks.recipe_dataset(recipe) if dataset_root is None else Path(dataset_root)
if checkpoint is None:
    config = TrainConfig(
        dataset_root=str(root),
        latent_type=rate,
        device="cpu",
        workers=1,
        no_wandb=True,
        progress=False,
        out=str(notebooks.work_dir("runs")),
        name=f"detector{recipe.size}",
        val_every=100,
        **recipe.train,
    )
    checkpoint = notebooks.trained_weights(config)
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
            "title": f"{key}\n{len(det['scores'])} found, {len(val.records[key])} faces ({what})",
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
# ## The threshold tuner
#
# Detection runs once per validation image and rate (the first use of a rate); everything after
# is re-thresholding cached candidates. A sweep of the score threshold shows the trade-off; the
# threshold with the best F1 becomes the operating point.

# %%
rates = inspection.available_rates(val)
tuner = ThresholdTuner(detector, {r: NestedLatentWiderFaceDataset(root, "val", r) for r in rates}, conf=DISPLAY_CONF)
tuner.set(rate=rate, image=example)
sweep = tuner.sweep()
best = max(sweep, key=lambda m: (m["f1"], m["conf"]))
print(f"model ran on {len(tuner.keys[rate])} images at {rate} in {tuner.detection_seconds[rate]:.1f} s")
display(
    Markdown(
        notebooks.markdown_table(
            [
                {
                    k: m[k]
                    for k in ("conf", "precision", "recall", "f1", "true_positives", "false_positives", "detections")
                }
                for m in sweep[::10] + [best]
            ],
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
            "AP (WIDER)": voc_ap(m["recall_curve"], m["precision_curve"]),
            "precision": m["precision"],
            "recall": m["recall"],
            "F1": m["f1"],
            "detections": m["detections"],
        }
    )
display(Markdown(notebooks.markdown_table(rows, digits=3)))
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
