"""The feature-map explorer's interactive view: ipywidgets controls over a :class:`FeatureExplorer`.

Dropdowns pick the image, the rate and the map, toggle buttons the view (one channel, the strongest
channels, PCA false colour), a slider the channel; a click on the map view or the decoded image
(through ipyevents) or the row and column boxes pick a cell, whose values across the map's channels
are read out and drawn as its channel profile. Every change after the first look at an image and
rate is arithmetic on the explorer's cached maps.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

import cv2
import ipywidgets as w
import numpy as np
from ipyevents import Event
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:  # the view only calls the explorer's public methods; logic imports this module lazily
    from latentface.tools.explorer.logic import FeatureExplorer

VIEW_LABELS = (("one channel", "channel"), ("strongest channels", "strongest"), ("PCA false colour", "pca"))


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def explorer_widgets(explorer: FeatureExplorer):
    """The explorer's controls and pictures as one ipywidgets box.

    ``box.controls`` maps ``image``, ``rate``, ``map``, ``view``, ``channel``, ``row`` and ``column``
    to their widgets (code can drive them: ``box.controls["map"].value = "P3"``); ``box.click(x, y,
    target)`` does what a click at image pixel (x, y) of ``target`` (``"view"`` or ``"decoded"``) does.
    ``box.view_image``, ``box.decoded_image``, ``box.readout`` and ``box.profile_image`` are the outputs.
    """
    style = {"description_width": "60px"}
    keys = explorer.keys[explorer.rate]
    controls = {
        "image": w.Dropdown(
            options=[(str(k), i) for i, k in enumerate(keys)], value=explorer.image, description="image", style=style
        ),
        "rate": w.Dropdown(options=explorer.rates, value=explorer.rate, description="rate", style=style),
        "map": w.Dropdown(options=explorer.map_names(), value=explorer.map, description="map", style=style),
        "view": w.ToggleButtons(options=VIEW_LABELS, value=explorer.view, style={"button_width": "130px"}),
        "channel": w.IntSlider(
            value=explorer.channel,
            min=0,
            max=explorer.feature_map().channels - 1,
            description="channel",
            continuous_update=False,
            style=style,
            layout=w.Layout(width="420px"),
        ),
        "row": w.BoundedIntText(value=0, min=0, max=explorer.feature_map().grid[0] - 1, description="row", style=style),
        "column": w.BoundedIntText(
            value=0, min=0, max=explorer.feature_map().grid[1] - 1, description="column", style=style
        ),
    }
    title, readout = w.HTML(), w.HTML(layout=w.Layout(width="360px"))
    view_image = w.Image(format="png", layout=w.Layout(width="420px"))
    decoded_image = w.Image(format="png", layout=w.Layout(width="420px"))
    profile_image = w.Image(format="png", layout=w.Layout(width="460px"))
    fig = Figure(figsize=(5.6, 2.0), dpi=80)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.24, top=0.86)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    (profile_line,) = ax.plot([], [], lw=1, drawstyle="steps-mid")
    (profile_mark,) = ax.plot([], [], "o", color="crimson", ms=5)
    ax.set_xlabel("channel", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    busy = [False]  # set while the view writes its own controls back (no feedback loop)

    def sync_controls() -> None:
        """Channel and cell bounds follow the map; values follow the explorer."""
        fmap = explorer.feature_map()
        busy[0] = True
        try:
            channel = controls["channel"]
            channel.max = fmap.channels - 1
            channel.value = explorer.channel
            channel.description = f"ch. +{fmap.first_channel}" if fmap.first_channel else "channel"
            h, wd = fmap.grid
            row, col = explorer.cell if explorer.cell is not None else (0, 0)
            controls["row"].max, controls["column"].max = h - 1, wd - 1
            controls["row"].value, controls["column"].value = row, col
            names = explorer.map_names()
            if list(controls["map"].options) != names:
                controls["map"].options = names
            controls["map"].value = explorer.map
            controls["image"].options = [(str(k), i) for i, k in enumerate(explorer.keys[explorer.rate])]
            controls["image"].value = explorer.image
        finally:
            busy[0] = False

    def draw_profile() -> None:
        cell = explorer.read_cell()
        profile_line.set_data(cell["channels"], cell["values"])
        profile_mark.set_data([cell["channel"]], [cell["value"]])
        ax.relim()
        ax.autoscale_view()
        ax.set_title(f"{cell['map']} at row {cell['row']}, column {cell['column']}: channel profile", fontsize=8)
        buffer = io.BytesIO()
        canvas.print_png(buffer)
        profile_image.value = buffer.getvalue()

    def redraw(start: float) -> None:
        view_image.value = _png(explorer.view_image())
        decoded = explorer.decoded_image()
        decoded_image.layout.display = None if decoded is not None else "none"
        if decoded is not None:
            decoded_image.value = _png(decoded)
        if explorer.cell is None:
            readout.value = "<i>click the map or the image (or set row and column) to read a cell</i>"
            profile_image.layout.display = "none"
        else:
            cell = explorer.read_cell()
            values = cell["values"]
            strongest = np.argsort(-np.abs(values), kind="stable")[:5]
            readout.value = (
                f"<b>{cell['map']}</b> cell row {cell['row']}, column {cell['column']} "
                f"(pixels {cell['box'][0]}-{cell['box'][2]} x {cell['box'][1]}-{cell['box'][3]}):<br>"
                f"channel {cell['channel']} = <b>{cell['value']:.4g}</b><br>"
                f"min {values.min():.4g}, max {values.max():.4g}, mean {values.mean():.4g}"
                f" over {len(values)} channels<br>"
                "largest |value|: " + ", ".join(f"{cell['channels'][i]}: {values[i]:.3g}" for i in strongest)
            )
            profile_image.layout.display = None
            draw_profile()
        decoded_what = f" &middot; right: {explorer.decoded_what}" if explorer.decoded_what else " (no decoded image)"
        title.value = (
            f"{explorer.title()}{decoded_what} &middot; {1000 * (time.perf_counter() - start):.0f} ms"
            f" ({explorer.model_runs} model run{'' if explorer.model_runs == 1 else 's'} so far)"
        )

    def on_change(change) -> None:
        if busy[0]:
            return
        start = time.perf_counter()
        settings = {
            "image": controls["image"].value,
            "rate": controls["rate"].value,
            "map": controls["map"].value,
            "view": controls["view"].value,
            "channel": controls["channel"].value,
        }
        if change["owner"] in (controls["row"], controls["column"]):
            settings["cell"] = (controls["row"].value, controls["column"].value)
        if change["owner"] is controls["map"]:
            settings.pop("channel")  # kept where the new map has it, else its last channel
        explorer.set(**settings)
        sync_controls()
        redraw(start)

    def click(x: float, y: float, target: str = "view") -> None:
        """A click at image pixel (x, y) of the map view (``target="view"``) or the decoded image."""
        start = time.perf_counter()
        if target == "view" and explorer.view == "strongest":
            hit = explorer.grid_hit(x, y)
            if hit is None:
                return
            channel, cell = hit
            explorer.set(channel=channel, cell=cell, view="channel")
        else:  # the one-channel and PCA views are drawn at the image's pixel size, as the decoded image
            explorer.set(cell=explorer.cell_at(x, y))
        busy[0] = True
        try:
            controls["view"].value = explorer.view
        finally:
            busy[0] = False
        sync_controls()
        redraw(start)

    for c in controls.values():
        c.observe(on_change, names="value")
    events = []
    for target, image in (("view", view_image), ("decoded", decoded_image)):
        event = Event(source=image, watched_events=["click"])
        event.on_dom_event(lambda e, target=target: click(e["dataX"], e["dataY"], target) if "dataX" in e else None)
        events.append(event)
    sync_controls()
    redraw(time.perf_counter())
    box = ExplorerBox(
        [
            w.HBox([controls["image"], controls["rate"], controls["map"]]),
            w.HBox([controls["view"]]),
            w.HBox([controls["channel"], controls["row"], controls["column"]]),
            title,
            w.HBox([view_image, decoded_image]),
            w.HBox([readout, profile_image]),
        ],
        explorer=explorer,
    )
    box.add_class("latentface-explorer")  # classes for pages and browser tests to find the parts by
    for part, name in ((title, "title"), (readout, "readout"), (view_image, "picture"), (decoded_image, "decoded")):
        part.add_class(f"explorer-{name}")
    for name, control in controls.items():
        control.add_class(f"explorer-{name}")
    profile_image.add_class("explorer-profile")
    box.controls, box.click, box.events = controls, click, events
    box.view_image, box.decoded_image, box.readout, box.profile_image, box.title = (
        view_image,
        decoded_image,
        readout,
        profile_image,
        title,
    )
    return box


def static_picture(explorer: FeatureExplorer) -> np.ndarray:
    """The current view and, when there is one, the decoded image beside it (RGB uint8, 8 px apart)."""
    view, decoded = explorer.view_image(), explorer.decoded_image()
    if decoded is None:
        return view
    height = max(view.shape[0], decoded.shape[0])

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, height - a.shape[0]), (0, 0), (0, 0)), constant_values=255)

    return np.concatenate([pad(view), np.full((height, 8, 3), 255, np.uint8), pad(decoded)], axis=1)


class ExplorerBox(w.VBox):
    """The explorer's box; outside a live kernel (a saved notebook) it shows the view it was left at and the
    decoded image, with a line saying what they are, instead of its repr."""

    def __init__(self, children, explorer: FeatureExplorer):
        super().__init__(children)
        self._explorer = explorer

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        picture = static_picture(self._explorer)
        scale = min(1.0, 800 / max(picture.shape[:2]))  # a photo-like picture: a small JPEG in the saved notebook
        if scale < 1:
            size = (round(picture.shape[1] * scale), round(picture.shape[0] * scale))
            picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
        bundle["image/jpeg"] = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
        bundle["text/plain"] = f"feature-map explorer: {self._explorer.title()} (live controls need a running kernel)"
        return bundle
