# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Bridge design
#
# The bridge turns the stride-16 latent `[256, H, W]` into what ResNet's layer1 would have
# produced from pixels, `[c1, 4H, 4W]` (c1 = 256 for ResNet-50), so the backbone can continue
# from layer2. It replaces the RGB stem and layer1, which cost about 6.4 GMACs at 640×640: a
# bridge that costs more than that gives away the point of skipping the decoder.
#
# The variants side by side: output shapes, parameters, multiply-adds and CPU latency, which
# latent cells each output pixel reads (effective receptive field), and a short training
# comparison on the synthetic set. The measurements come from `latentface.tools.bench` and
# `latentface.tools.inspection`; `latentface bench` runs the larger study behind `docs/BENCHMARKS.md`.

# %% tags=["parameters"]
from latentface.util.env import smoke

SMOKE = smoke()  # LATENTFACE_SMOKE=1 (tests and CI): a tiny configuration
backbone = "resnet18" if SMOKE else "resnet50"  # sets the bridge's output width c1
cost_image = 64 if SMOKE else 640  # image side for shapes, MACs and latency
latency_repeats = 2 if SMOKE else 7  # CPU timing repeats (median reported)
erf_cells = 7 if SMOKE else 9  # latent grid for the receptive fields
train_profile = "quick" if SMOKE else "notebook"  # the short training comparison (below)
train_overrides = {} if SMOKE else dict(data_size=128, n_train=96, n_val=32, epochs=3, batch_size=8, lr=5e-3)

# %%
import dataclasses
import json

import torch
from IPython.display import Markdown, display

from latentface.model import LatentRetinaFace
from latentface.model.bridge import BRIDGES, build_bridge
from latentface.tools import bench, inspection, notebooks

notebooks.setup()
torch.manual_seed(0)
default_bridge = LatentRetinaFace.PRESETS["default"]["bridge"]
print(
    "bridges:",
    ", ".join(BRIDGES),
    f"| default preset: {default_bridge} |",
    "the original design (preset 'seed'):",
    LatentRetinaFace.PRESETS["seed"]["bridge"],
)

# %% [markdown]
# ## Cost: shapes, parameters, multiply-adds, CPU latency
#
# Every bridge reads the same latent and writes layer1's shape; the first row is what they all
# replace. Latency is batch 1 on this machine's CPU, the rows measured in turns so that a load
# change hits all of them alike.

# %%
costs = inspection.bridge_costs(list(BRIDGES), backbone=backbone, image=cost_image, repeats=latency_repeats)
stem = costs[0]
display(
    Markdown(
        notebooks.markdown_table(
            [
                {
                    "": r["name"],
                    "input": "x".join(map(str, r["input"])),
                    "output": "x".join(map(str, r["output"])),
                    "params (M)": r["params"] / 1e6,
                    "GMACs": r["macs"] / 1e9,
                    "x stem+layer1 MACs": r["macs"] / stem["macs"],
                    "CPU ms": r["cpu_ms"],
                }
                for r in costs
            ],
            digits=3,
        )
    )
)
print(f"{cost_image}x{cost_image} image, {backbone} widths, CPU latency with {torch.get_num_threads()} thread(s)")

# %% [markdown]
# ## Effective receptive field
#
# Which latent cells one output pixel at the centre depends on: the gradient of that pixel with
# respect to the latent, summed over channels (random weights, eval mode). A per-cell bridge
# (PixelShuffle) reads exactly one cell, so a face cut by a cell border is seen in two halves that
# never meet before layer2; a 3×3 convolution at latent resolution lets each pixel see its
# neighbouring cells for little cost, because it runs on the small 40×40 grid.

# %%
erfs = {
    name: bench.effective_receptive_field(build_bridge(name, 256, costs[1]["output"][0]), cells=erf_cells)
    for name in BRIDGES
}
notebooks.show(inspection.plot_erfs(erfs))
extents = {name: (inspection.erf_extent(erf, 0.5), inspection.erf_extent(erf, 0.9)) for name, erf in erfs.items()}

# %% [markdown]
# ## A short training comparison
#
# Every bridge trained with the same schedule, data order and random seed (ResNet-18 body, a narrow
# neck, small synthetic images: what a CPU affords), then evaluated at rate 75 with the WIDER
# protocol. Short runs rank bridges by how quickly they learn, not by where they end up; the
# GPU-sized study is `latentface bench --full`.

# %%
base = bench.PROFILES["quick" if train_profile == "quick" else "cpu"]
profile = dataclasses.replace(
    base, name=train_profile, **train_overrides, bridges=tuple(BRIDGES) if train_profile != "quick" else base.bridges
)
work = notebooks.work_dir("bridges") / profile.name
data_root = bench.prepare_data(work / "data", profile, log=print)
variants = [v for v in bench.accuracy_variants(profile) if v.name in {f"latent_{b}" for b in profile.bridges}]
with notebooks.stdout_logs():  # the training's messages as output, not as error boxes
    trained = bench.bridge_comparison(profile, data_root, work, torch.device("cpu"), variants=variants, log=print)

# %%
display(
    Markdown(
        notebooks.markdown_table(
            [
                {
                    "bridge": name.removeprefix("latent_"),
                    "AP@0.5": r["ap"],
                    "AP tiny": r["ap_by_size"]["tiny"]["ap"],
                    "AP small": r["ap_by_size"]["small"]["ap"],
                    "AP medium": r["ap_by_size"]["medium"]["ap"],
                    "final train loss": r["train_loss"],
                    "steps": r["steps"],
                    "train s": r["wall_s"],
                }
                for name, r in trained.items()
            ],
            digits=3,
        )
    )
)
print(
    f"{profile.n_train} training / {profile.n_val} validation images at {profile.data_size} px, "
    f"{profile.epochs} epochs of batch {profile.batch_size}, {profile.backbone} with a "
    f"{profile.out_channels}-wide neck"
)

# %% [markdown]
# The longer study, when `latentface bench` has been run (its CPU profile trains every variant on
# more data for more epochs; `docs/BENCHMARKS.md` discusses it):

# %%
study = notebooks.repo_root() / "docs" / "benchmarks.json"
accuracy = json.loads(study.read_text()).get("accuracy", {}) if study.is_file() else {}
if accuracy:
    display(
        Markdown(
            notebooks.markdown_table(
                [
                    {
                        "variant": name,
                        "AP@0.5": r["ap"],
                        "COCO mAP": r["coco_map"],
                        "GMACs at 640": r["macs_640"] / 1e9,
                        "steps": r["steps"],
                    }
                    for name, r in accuracy.items()
                ],
                digits=3,
            )
        )
    )
else:
    print("no bench accuracy results yet (docs/benchmarks.json): run `latentface bench`")

# %% [markdown]
# The same file's codec study (`latentface bench --sections codecs`) trains every bridge on the `dct` and the
# learned codec's latents of the same images, several seeds where a decision rests on a row. The learned
# codec is the closer stand-in for JPEG AI, so the choice is read from its rows:

# %%
summary = json.loads(study.read_text()).get("codecs", {}).get("summary", {}) if study.is_file() else {}
rows = [
    {
        "codec": codec,
        "model": name,
        "seeds": len(r["seeds"]),
        "AP@0.5": r["ap"]["mean"],
        "± std": r["ap"]["std"] or 0.0,
        "AP < 16 px": r["ap_by_size"].get("tiny", {}).get("mean", float("nan")),
        "GMACs at 640": r["macs_640"] / 1e9,
    }
    for codec in sorted(summary, key=lambda c: c != "learned")
    for name, r in sorted(summary[codec].items(), key=lambda kv: -kv[1]["ap"]["mean"])
    if name == "rgb" or name.removeprefix("latent_") in BRIDGES
]
display(Markdown(notebooks.markdown_table(rows, digits=3)) if rows else "no codec study yet: run `latentface bench`")

# %% [markdown]
# ## The choice
#
# The default preset's bridge, in numbers from this notebook:

# %%
rows = {r["name"]: r for r in costs[1:]}
ap = {name.removeprefix("latent_"): r["ap"] for name, r in trained.items()}
lines = []
for name in BRIDGES:
    r = rows[name]
    lines.append(
        f"- **{name}**{' (default)' if name == default_bridge else ''}: {r['macs'] / 1e9:.2f} GMACs "
        f"= {r['macs'] / stem['macs']:.2f}x the stem+layer1 it replaces, {r['params'] / 1e6:.2f} M params, "
        f"{r['cpu_ms']:.1f} ms on CPU; reads {extents[name][1]}x{extents[name][1]} latent cells (90 % of "
        f"its gradient)" + (f"; AP@0.5 after the short training {ap[name]:.3f}" if name in ap else "")
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# Why `codec` is the default (of the `default` and `fast` presets): the original design's `bilinear`
# bridge runs its 3×3 convolution at stride 4, on 16× as many positions as the latent has, and costs
# more than twice the ResNet-50 stem and layer1 it replaces. `codec` starts from the built-in
# codec's inverse transform (a 1×1 + PixelShuffle initialised to the decoded image in
# space-to-depth form at stride 4), then a stem-like 3×3 conv and a 1×1 to layer1's width: a
# fraction of the `bilinear` cost, and the most accurate bridge of the longer study
# (`docs/BENCHMARKS.md`, accuracy at equal budget), because it need not learn the per-cell layout
# from scratch. `context` moves the spatial convolution to the latent grid and upsamples with a
# learned 1×1 + PixelShuffle, cheaper still and below even the plain `pixelshuffle` bridge (its 3×3
# conv narrows 256 channels to 128 before the wide 1×1), with a 3×3-cell receptive field that
# `pixelshuffle` lacks; `context_dw` adds a cheap depthwise conv across cell borders at stride 4.
# Other codecs' latents (JPEG AI) do not share the built-in codec's transform: training then fits
# the same pixel layout to them by ridge least squares when the training images are at hand
# (`latentface.model.warm_start`) and starts `codec` at random when they are not (JPEG AI latents
# as downloaded). On the learned codec that warm start is what puts `codec` ahead: in the codec study
# above it leads every bridge learned from scratch by a wide margin, on both codecs' latents, so the
# `default` and `fast` presets keep it; without images (retina-modify as downloaded) add the WIDER FACE
# images by key (README) to get the warm start. The short CPU training above is
# too short to separate the accuracy of the bridges reliably; where it disagrees with the longer
# study, trust `docs/BENCHMARKS.md` (`latentface bench`).
