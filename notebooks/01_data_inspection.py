# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data inspection
#
# What the detector is given: faces (how many, how large, which have landmarks) and latents
# (256 channels at stride 16: a luma part, channels 0–159, and a chroma part, 160–255, at five
# rates). Every number here is computed by `latentface.tools.inspection` and tested there; the
# cells only call it.
#
# It runs on **retina-modify** (set `dataset_root`) and on the built-in **synthetic** dataset
# alike (the default: generated on first use).

# %% tags=["parameters"]
from latentface.util.env import smoke

SMOKE = smoke()  # LATENTFACE_SMOKE=1 (tests and CI): a tiny configuration
dataset_root = None  # a retina-modify folder; None: the synthetic dataset below
n_train, n_val = (8, 4) if SMOKE else (300, 60)  # synthetic images per split
image_size = 128 if SMOKE else 640  # synthetic image side (retina-modify: 640)
stats_images = 4 if SMOKE else 60  # validation latents per rate for the channel statistics
example = None  # validation image shown with its latent; None: the one with most faces >= 24 px

# %%
from pathlib import Path

from IPython.display import Markdown, display

from latentface.data.dataset import NestedLatentWiderFaceDataset, load_latent
from latentface.inference.pictures import picture_background
from latentface.tools import inspection, notebooks

notebooks.setup()
if dataset_root is None:
    root = notebooks.synthetic_dataset(
        notebooks.work_dir("data") / f"synth{image_size}-{n_train}-{n_val}", n_train, n_val, image_size
    )
else:
    root = Path(dataset_root)
splits = {split: NestedLatentWiderFaceDataset(root, split) for split in ("train", "val")}
for split, ds in splits.items():
    s = ds.summary()
    print(
        f"{split}: {s['samples']} images, {s['faces']} faces, {s['images_without_faces']} images without faces; "
        f"label/latent mismatches: {inspection.dataset_problems(s) or 'none'}"
    )

# %% [markdown]
# ## Faces
#
# Faces per image, face heights on a log scale with the evaluation's size buckets (tiny < 16 px,
# small 16–32, medium 32–96, large > 96), aspect ratios and how many faces carry five landmarks.
# WIDER FACE is dominated by small faces; the synthetic generator follows that on purpose.

# %%
summaries = {split: inspection.label_summary(ds.records) for split, ds in splits.items()}
for split, summary in summaries.items():
    notebooks.show(inspection.plot_label_summary(summary, title=f"{root.name} / {split}"))

# %%
display(
    Markdown(
        notebooks.markdown_table(
            [
                {
                    "split": split,
                    "images": s["images"],
                    "faces": int(s["faces_per_image"].sum()),
                    "ignored": int(s["ignore"].sum()),
                    **s["bucket_counts"],
                    "with landmarks": f"{s['has_landmarks'].mean():.0%}" if len(s["has_landmarks"]) else "-",
                }
                for split, s in summaries.items()
            ]
        )
    )
)

# %% [markdown]
# ## Latent channels, per rate
#
# Per-channel spread and the share of exact zeros over validation latents at every rate. The
# codec quantises: low rates zero out most high-frequency channels, and the chroma part (right of
# the dashed line) loses more than luma. A model normalised with one rate's statistics sees other
# rates with different spreads (`std ratio`: median per-channel std relative to `latent_75.npy`),
# which is why training on mixed rates matters.

# %%
rates = inspection.available_rates(splits["val"])  # the rates present (the real data has all five)
stats = inspection.latent_channel_stats(inspection.dataset_latents(root, "val", stats_images), rates)
notebooks.show(inspection.plot_channel_stats(stats))
display(Markdown(notebooks.markdown_table(inspection.luma_chroma_table(stats, reference="latent_75.npy"), digits=3)))

# %% [markdown]
# ## One latent next to its image
#
# Top: the image each rate decodes to (with the built-in codec; for JPEG AI latents, whose decoder
# is not available offline, the stored image if there is one), true boxes in green. Bottom: what the
# detector reads, in false colour (the latent's first three principal components, one 16×16 block
# per cell) and single channels: the luma and chroma DC channels are small images of the scene.

# %%
val = splits["val"]
example = inspection.busiest_image([val.records[k] for k in val.keys]) if example is None else example
key = val.keys[example]
files = {rate: val.latent_files(example)[0].parent / rate for rate in rates}
background = "decoded" if val.codec else "auto"
pictures = {rate: picture_background(path, load_latent(path), background)[0] for rate, path in files.items()}
notebooks.show(inspection.plot_latent_views(load_latent(files[rates[-1]]), pictures, val.records[key].boxes), jpeg=True)

# %% [markdown]
# ## The feature-map explorer on the latent
#
# The same latent, interactively: the whole latent, its luma part (channels 0–159) or its chroma part
# (160–255), one channel at a time, the strongest channels or the PCA false colour, with the decoded
# image beside it (when the codec is known or the images are stored). Click a cell to read its values
# across the channels. With no detector here, only the latent's own maps; notebook 04 adds the
# detector's (bridge, C2–C4, P2–P6, face scores). (A saved notebook shows the view it was left at.)

# %%
from latentface.tools.explorer import FeatureExplorer

explorer = FeatureExplorer(None, {rate: NestedLatentWiderFaceDataset(root, "val", rate) for rate in rates})
explorer.set(rate=rates[-1], image=example, map="latent luma 0-159", view="strongest")
explorer.widgets()
