"""Look at what the detector computes from a latent, map by map, channel by channel.

:class:`FeatureExplorer` runs the model once per (image, rate), with forward hooks that keep
every named map of that one pass, and caches them: the latent itself (all 256 channels, its
luma part 0-159 and its chroma part 160-255), the bridge output (C1, stride 4), the backbone's
C2..C4, the pyramid levels P2..P6 and each level's face-score map (the softmax face probability
of each anchor at each cell, one channel per anchor). The detections come from the same pass
(:func:`latentface.inference.postprocessing.postprocess` at the detector's operating point).

Every view is then arithmetic on cached arrays, no model: one channel in colour, a grid of the
strongest channels (by root mean square over the cells), a PCA false-colour view (the map's first
three principal components, :func:`latentface.viz.latent_pca_image`), each at the image's pixel
size so boxes (true: green, detected: orange-red) and the chosen cell are drawn where they are;
the decoded image (or the stored one) beside it when there is one (a retina-modify folder has
neither: then there is no decoded view); and one cell's values across the map's channels.

The interactive view is :mod:`latentface.tools.explorer.widgets` (:meth:`FeatureExplorer.widgets`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from matplotlib import colormaps

from latentface import LATENT_STRIDE, viz
from latentface.codec.dct import LUMA_CHANNELS
from latentface.data.layout import rate_file
from latentface.inference.detector import Detector
from latentface.inference.pictures import picture_background
from latentface.inference.postprocessing import postprocess

#: The views of one map.
VIEWS = ("channel", "strongest", "pca")
#: The latent's maps: (name, first channel, last channel + 1 or None for all).
LATENT_MAPS = (
    ("latent", 0, None),
    (f"latent luma 0-{LUMA_CHANNELS - 1}", 0, LUMA_CHANNELS),
    (f"latent chroma {LUMA_CHANNELS}-255", LUMA_CHANNELS, None),
)


_NO_DETECTIONS = {"boxes": (4,), "scores": (), "landmarks": (5, 2)}


@dataclass
class FeatureMap:
    """One map of one image: ``values`` [C, h, w] float32, its stride in image pixels, and the number
    of its first channel (160 for the latent's chroma part, else 0)."""

    name: str
    values: np.ndarray
    stride: int
    first_channel: int = 0

    @property
    def channels(self) -> int:
        return int(self.values.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.values.shape[1]), int(self.values.shape[2])


@dataclass
class _Pass:
    """Everything one model pass over one image gave: its maps, detections, true boxes and picture."""

    maps: OrderedDict[str, FeatureMap]
    detections: dict[str, np.ndarray]
    truth: np.ndarray
    image_size: tuple[int, int]  # (height, width) of the input image
    decoded: np.ndarray | None
    decoded_what: str | None


def run_with_maps(model: torch.nn.Module, latent: torch.Tensor) -> tuple[OrderedDict[str, torch.Tensor], object]:
    """One forward pass of ``model`` over ``latent`` [1, C, H, W] (normalised inside the model), keeping
    the bridge output (C1), C2..C4, P2..P6 and each level's face-score map [anchors, h, w] by forward hooks.

    Returns (the maps by name, the heads' outputs). The hooks are removed afterwards.
    """
    maps: OrderedDict[str, torch.Tensor] = OrderedDict()
    levels = list(model.anchor_layout.levels)
    per_location = model.anchor_layout.per_location

    def keep(name):
        return lambda _module, _inputs, output: maps.__setitem__(name, output.detach())

    def keep_pyramid(_module, _inputs, output):
        maps.update((f"P{level}", output[f"P{level}"].detach()) for level in levels)

    def keep_scores(level):
        def hook(_module, _inputs, output):
            b, _, h, w = output.shape  # channels per anchor: (background, face), as Heads flattens them
            logits = output.detach().float().reshape(b, per_location, 2, h, w)
            maps[f"face score P{level}"] = logits.softmax(2)[:, :, 1]

        return hook

    handles = [
        model.layer2.register_forward_pre_hook(lambda _m, inputs: maps.__setitem__("bridge", inputs[0].detach())),
        model.layer2.register_forward_hook(keep("C2")),
        model.layer3.register_forward_hook(keep("C3")),
        model.layer4.register_forward_hook(keep("C4")),
        model.fpn.register_forward_hook(keep_pyramid),
        *(conv.register_forward_hook(keep_scores(level)) for conv, level in zip(model.heads.cls, levels)),
    ]
    try:
        with torch.no_grad():
            outputs = model(latent)
    finally:
        for handle in handles:
            handle.remove()
    order = ["bridge", "C2", "C3", "C4", *(f"P{lv}" for lv in levels), *(f"face score P{lv}" for lv in levels)]
    return OrderedDict((name, maps[name]) for name in order), outputs


def colour_channel(values: np.ndarray, size: tuple[int, int], cmap: str = "viridis") -> np.ndarray:
    """A 2-D map [h, w] as RGB uint8 at ``size`` (height, width), nearest-neighbour: min..max of the map
    over the colour map (a constant map is the colour map's bottom)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    rgb = (colormaps[cmap](unit)[..., :3] * 255).round().astype(np.uint8)
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def strongest_channels(values: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` channels of ``values`` [C, h, w] of largest root mean square over the cells, strongest
    first (ties: lower channel first)."""
    rms = np.sqrt(np.mean(np.square(values.astype(np.float64)), axis=(1, 2)))
    return np.argsort(-rms, kind="stable")[: min(count, len(rms))]


class FeatureExplorer:
    """The maps of a detector over validation images, computed once per (image, rate) and cached
    (see the module docstring).

    ``datasets``: ``{rate name: dataset}`` or one dataset (``NestedLatentWiderFaceDataset``: its
    ``keys``, ``records`` and ``latent_files`` give the true boxes and the decoded picture). The state
    (:meth:`set`): ``rate``, ``image`` (index or key), ``map`` (a name of :meth:`map_names`),
    ``channel`` (within the map), ``view`` (:data:`VIEWS`), ``cell`` ((row, column) or None) and
    ``grid_size`` (channels in the strongest-channels view). ``detector`` None: the latent's maps only (no
    model, no detections), to look at data before any training. ``background``: as ``latentface detect``
    picks it (:func:`~latentface.inference.pictures.picture_background`), ``auto`` preferring the
    decoded latent where the dataset's codec is known.
    """

    def __init__(self, detector: Detector, datasets, *, background: str = "auto", grid_size: int = 16):
        if not isinstance(datasets, Mapping):
            datasets = {(getattr(datasets, "latent_types", None) or ["latent"])[0]: datasets}
        if not datasets:
            raise ValueError("FeatureExplorer needs at least one dataset")
        self.detector, self.datasets, self.background = detector, dict(datasets), background
        self.rates = list(self.datasets)
        self.keys = {rate: list(getattr(ds, "keys", range(len(ds)))) for rate, ds in self.datasets.items()}
        self.model_runs = 0  # forward passes so far: one per (image, rate) looked at
        self.compute_seconds: dict[tuple[str, int], float] = {}
        self._passes: dict[tuple[str, int], _Pass] = {}
        self.rate, self.image, self.map, self.channel, self.view = self.rates[0], 0, "latent", 0, "channel"
        self.cell: tuple[int, int] | None = None
        self.grid_size = grid_size

    # ----------------------------------------------------------------- state
    def map_names(self) -> list[str]:
        """Every map of an image: the latent (all, luma, chroma), bridge, C2..C4, P2..P6, face score P2..P6."""
        return list(self._pass().maps)

    def set(self, **values) -> FeatureExplorer:
        """Change the state (``rate``, ``image``, ``map``, ``channel``, ``view``, ``cell``, ``grid_size``);
        a new map keeps the channel and cell where they still exist, else the nearest. Returns self."""
        unknown = set(values) - {"rate", "image", "map", "channel", "view", "cell", "grid_size"}
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}")
        rate = self._rate_name(values.get("rate", self.rate))
        image = self._image_index(values.get("image", self.image), rate)
        view = values.get("view", self.view)
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        grid_size = int(values.get("grid_size", self.grid_size))
        if grid_size < 1:
            raise ValueError(f"grid_size must be at least 1, got {grid_size}")
        maps = self._pass(rate, image).maps
        name = values.get("map", self.map)
        if name not in maps:
            raise ValueError(f"unknown map {name!r}; choose one of {list(maps)}")
        fmap = maps[name]
        channel = int(values.get("channel", self.channel))
        if "channel" in values and not 0 <= channel < fmap.channels:
            raise ValueError(f"channel must be in [0, {fmap.channels - 1}] for {name}, got {channel}")
        cell = values.get("cell", self.cell)
        if cell is not None:
            row, col = (int(v) for v in cell)
            h, w = fmap.grid
            if "cell" in values and not (0 <= row < h and 0 <= col < w):
                raise ValueError(f"cell must be within the {h}x{w} grid of {name}, got ({row}, {col})")
            cell = (min(row, h - 1), min(col, w - 1))
        self.rate, self.image, self.map, self.view, self.grid_size = rate, image, name, view, grid_size
        self.channel, self.cell = min(channel, fmap.channels - 1), cell
        return self

    def _rate_name(self, rate) -> str:
        name = rate if rate in self.datasets else rate_file(rate) if isinstance(rate, int) else rate
        if name not in self.datasets:
            raise ValueError(f"unknown rate {rate!r}; choose one of {self.rates}")
        return name

    def _image_index(self, image, rate: str) -> int:
        keys = self.keys[rate]
        if isinstance(image, str):
            if image not in keys:
                raise ValueError(f"unknown image {image!r} at {rate}")
            return keys.index(image)
        if not 0 <= int(image) < len(keys):
            raise ValueError(f"image must be in [0, {len(keys) - 1}], got {image}")
        return int(image)

    @property
    def key(self) -> str:
        return str(self.keys[self.rate][self.image])

    # ----------------------------------------------------------------- cache
    def _pass(self, rate: str | None = None, image: int | None = None) -> _Pass:
        rate = self.rate if rate is None else rate
        image = self.image if image is None else image
        if (rate, image) not in self._passes:
            self._passes[rate, image] = self._compute(rate, image)
        return self._passes[rate, image]

    def _compute(self, rate: str, image: int) -> _Pass:
        dataset = self.datasets[rate]
        latent, target = dataset[image]
        start = time.perf_counter()
        x = torch.as_tensor(latent, dtype=torch.float32)[None]
        if self.detector is None:  # the latent's own maps only
            inner, detections = OrderedDict(), {k: torch.zeros((0, *s)) for k, s in _NO_DETECTIONS.items()}
            height, width = x.shape[-2] * LATENT_STRIDE, x.shape[-1] * LATENT_STRIDE
        else:
            model = self.detector.model
            x = x.to(self.detector.device)
            inner, outputs = run_with_maps(model, x)
            detections = postprocess(outputs, model.anchors(x), self.detector.point)[0]
            self.model_runs += 1
            height, width = model.image_size(x)
        raw = x[0].cpu().numpy()
        maps: OrderedDict[str, FeatureMap] = OrderedDict()
        for name, first, last in LATENT_MAPS:
            if first < raw.shape[0] and (last is None or last <= raw.shape[0]):
                maps[name] = FeatureMap(name, raw[first:last], height // raw.shape[1], first)
        for name, value in inner.items():
            value = value[0].float().cpu().numpy()
            maps[name] = FeatureMap(name, value, height // value.shape[1])
        records = getattr(dataset, "records", None)
        key = self.keys[rate][image]
        truth = records[key].boxes if records is not None else np.asarray(target["boxes"]).reshape(-1, 4)
        decoded, what = None, None
        files = getattr(dataset, "latent_files", None)
        if files is not None:
            background = self.background
            if background == "auto" and getattr(dataset, "codec", None):  # what the latent itself decodes to
                background = "decoded"
            picture, what = picture_background(files(image)[0], latent, background)
            if what.startswith("latent"):  # neither an image nor a known codec: no decoded view
                picture, what = None, None
            decoded = picture
        self.compute_seconds[rate, image] = time.perf_counter() - start
        return _Pass(
            maps,
            {k: v.cpu().numpy() for k, v in detections.items()},
            np.asarray(truth, dtype=np.float32).reshape(-1, 4),
            (height, width),
            decoded,
            what,
        )

    # ----------------------------------------------------------------- numbers
    def feature_map(self, name: str | None = None) -> FeatureMap:
        """The current image's map ``name`` (default: the current one)."""
        return self._pass().maps[self.map if name is None else name]

    def detections(self) -> dict[str, np.ndarray]:
        """The current image's detections at the detector's operating point (from the same pass)."""
        return self._pass().detections

    def truth(self) -> np.ndarray:
        return self._pass().truth

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels of the current image."""
        return self._pass().image_size

    def cell_at(self, x: float, y: float) -> tuple[int, int]:
        """The current map's (row, column) under image pixel (x, y), clipped to the grid."""
        fmap = self.feature_map()
        h, w = fmap.grid
        return min(max(int(y // fmap.stride), 0), h - 1), min(max(int(x // fmap.stride), 0), w - 1)

    def read_cell(self, cell: tuple[int, int] | None = None) -> dict:
        """One cell of the current map: ``values`` [C] (its channel profile, the tensor's own numbers),
        ``value`` (the current channel's), ``row``, ``column``, the pixel ``box`` it covers (xyxy), the
        ``stride``, ``map`` and absolute ``channel`` numbers (``first_channel`` + index)."""
        fmap = self.feature_map()
        row, col = cell if cell is not None else self.cell if self.cell is not None else (0, 0)
        values = fmap.values[:, row, col].copy()
        s = fmap.stride
        return {
            "map": fmap.name,
            "row": int(row),
            "column": int(col),
            "stride": s,
            "box": (col * s, row * s, (col + 1) * s, (row + 1) * s),
            "values": values,
            "channel": fmap.first_channel + self.channel,
            "value": float(values[self.channel]),
            "channels": np.arange(fmap.first_channel, fmap.first_channel + fmap.channels),
        }

    # ----------------------------------------------------------------- pictures
    def grid_layout(self) -> dict:
        """The strongest-channels view's layout: ``channels`` (strongest first), ``columns``, ``rows`` and
        the ``tile`` (height, width) in pixels each channel is drawn at (a whole number of pixels per cell)."""
        fmap = self.feature_map()
        channels = strongest_channels(fmap.values, self.grid_size)
        columns = math.ceil(math.sqrt(len(channels)))
        rows = math.ceil(len(channels) / columns)
        height, width = self.image_size
        h, w = fmap.grid
        per_cell = max(1, min(height // (rows * h), width // (columns * w)))
        return {"channels": channels, "columns": columns, "rows": rows, "tile": (h * per_cell, w * per_cell)}

    def grid_hit(self, x: float, y: float) -> tuple[int, tuple[int, int]] | None:
        """(channel index, (row, column)) under pixel (x, y) of the strongest-channels view, or None
        between tiles."""
        layout = self.grid_layout()
        th, tw = layout["tile"]
        gap = 2
        col_tile, row_tile = int(x // (tw + gap)), int(y // (th + gap))
        index = row_tile * layout["columns"] + col_tile
        if not (0 <= col_tile < layout["columns"] and 0 <= index < len(layout["channels"])):
            return None
        in_x, in_y = x - col_tile * (tw + gap), y - row_tile * (th + gap)
        if in_x >= tw or in_y >= th or in_x < 0 or in_y < 0:
            return None
        h, w = self.feature_map().grid
        return int(layout["channels"][index]), (int(in_y * h // th), int(in_x * w // tw))

    def view_image(self) -> np.ndarray:
        """The current view (RGB uint8): in ``channel`` and ``pca`` at the image's pixel size with the true
        (green) and detected (orange-red) boxes and the chosen cell (white); in ``strongest`` the grid of
        the strongest channels (each channel's own colour range, 2-pixel gaps)."""
        fmap = self.feature_map()
        if self.view == "strongest":
            layout = self.grid_layout()
            th, tw = layout["tile"]
            gap = 2
            out = np.full((layout["rows"] * (th + gap) - gap, layout["columns"] * (tw + gap) - gap, 3), 255, np.uint8)
            for i, channel in enumerate(layout["channels"]):
                r, c = divmod(i, layout["columns"])
                tile = colour_channel(fmap.values[channel], (th, tw))
                out[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
            return out
        size = self.image_size
        if self.view == "pca":
            picture = viz.latent_pca_image(fmap.values, size=size)
        else:
            picture = colour_channel(fmap.values[self.channel], size)
        return self._annotate(picture)

    def decoded_image(self) -> np.ndarray | None:
        """The decoded (or stored) image with the boxes and the chosen cell, or None when the dataset has
        neither images nor a known codec."""
        decoded = self._pass().decoded
        if decoded is None:
            return None
        return self._annotate(decoded)

    @property
    def decoded_what(self) -> str | None:
        """What :meth:`decoded_image` shows (e.g. ``decoded (dct codec)``), or None."""
        return self._pass().decoded_what

    def _annotate(self, picture: np.ndarray) -> np.ndarray:
        out = viz.draw_detections(picture, self.detections(), input_size=self.image_size, truth=self.truth())
        if self.cell is not None:
            x1, y1, x2, y2 = self.read_cell()["box"]
            sy, sx = out.shape[0] / self.image_size[0], out.shape[1] / self.image_size[1]
            p1 = (round(x1 * sx), round(y1 * sy))
            p2 = (max(p1[0], round(x2 * sx) - 1), max(p1[1], round(y2 * sy) - 1))
            cv2.rectangle(out, p1, p2, (255, 255, 255), 1, cv2.LINE_8)
        return out

    def title(self) -> str:
        """One line saying what the view shows."""
        fmap = self.feature_map()
        h, w = fmap.grid
        what = {
            "channel": f"channel {fmap.first_channel + self.channel}",
            "strongest": f"the {len(self.grid_layout()['channels'])} strongest channels (RMS)",
            "pca": "PCA false colour (first 3 components)",
        }[self.view]
        return (
            f"{self.key} at {self.rate}: {fmap.name}, {fmap.channels} channels, {h}x{w}, stride {fmap.stride}: {what}"
        )

    def widgets(self):
        """The interactive view (ipywidgets): see :func:`latentface.tools.explorer.widgets.explorer_widgets`."""
        # imported here: ipywidgets is optional (the notebooks extra)
        from latentface.tools.explorer.widgets import explorer_widgets

        return explorer_widgets(self)
