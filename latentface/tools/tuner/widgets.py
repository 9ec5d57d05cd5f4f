"""The threshold tuner's interactive view: ipywidgets sliders over a :class:`ThresholdTuner`.

A change re-thresholds the tuner's cached candidates and redraws the image and the operating
point at once; a PR curve not computed yet (a new NMS IoU, top-k, keep or rate) is computed in
a background thread and drawn when ready, so the sliders never wait for it.
"""

from __future__ import annotations

import io
import os
import threading
import time
from typing import TYPE_CHECKING

import cv2
import ipywidgets as w
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:  # the view only calls the tuner's public methods; logic imports this module lazily
    from latentface.tools.tuner.logic import ThresholdTuner


def tuner_widgets(tuner: ThresholdTuner, save_path: str | os.PathLike = "thresholds.json", background: str = "auto"):
    """Sliders (score threshold, NMS IoU, top-k, keep), a rate dropdown, an image selector, a save button.

    Returns the ipywidgets box; ``box.controls`` maps names to the control widgets, so code
    can drive them (``box.controls["conf"].value = 0.7``), and ``box.save_button.click()``
    saves. A change re-thresholds the cached candidates, redraws the image (OpenCV) and
    moves the point on the PR curve; a curve not yet computed (a new NMS IoU, top-k, keep
    or rate) is computed in a background thread and drawn when ready (``box.wait()``
    blocks until then).
    """
    style = {"description_width": "70px"}
    slider = dict(continuous_update=False, style=style, layout=w.Layout(width="340px"))
    controls = {
        "conf": w.FloatSlider(
            value=tuner.conf, min=tuner.floor, max=1.0, step=0.01, description="score >", readout_format=".2f", **slider
        ),
        "nms": w.FloatSlider(
            value=tuner.nms, min=0.05, max=1.0, step=0.05, description="NMS IoU", readout_format=".2f", **slider
        ),
        "topk": w.IntSlider(value=tuner.topk, min=1, max=tuner.max_candidates, description="top-k", **slider),
        "keep": w.IntSlider(value=tuner.keep, min=1, max=max(tuner.keep, 1000), description="keep", **slider),
        "rate": w.Dropdown(options=tuner.rates, value=tuner.rate, description="rate", style=style),
        "image": w.Dropdown(
            options=[(k, i) for i, k in enumerate(tuner.keys[tuner.rate])],
            value=tuner.image,
            description="image",
            style=style,
        ),
    }
    save = w.Button(description="save thresholds", icon="save")
    status, point_line, saved = w.HTML(), w.HTML(), w.HTML()
    picture = w.Image(format="png", layout=w.Layout(width="480px"))
    pr_image = w.Image(format="png", layout=w.Layout(width="400px"))
    fig = Figure(figsize=(4.6, 4.4), dpi=80)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.2, top=0.93)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curve_line, point, faceless = tuner.pr_artists(ax)
    point.set_animated(True)  # drawn over the cached background only (blitting)
    faceless.set_animated(True)

    lock = threading.Lock()  # the PR figure is drawn by the widget thread or a curve thread
    pending: list[threading.Thread] = []
    drawn = {"settings": None, "background": None, "full_draws": 0, "point_draws": 0}

    def settings_now() -> tuple:
        return (tuner.rate, tuner.nms, tuner.topk, tuner.keep)

    def status_text(m: dict, waiting: bool, ms: float) -> str:
        return (
            f"<b>{tuner.rate}</b>, {tuner.key}: {len(tuner.detections()['scores'])} detections. "
            f"Validation: precision <b>{m['precision']:.3f}</b>, recall <b>{m['recall']:.3f}</b>, "
            f"F1 <b>{m['f1']:.3f}</b> ({m['true_positives']} TP, {m['false_positives']} FP, "
            f"{m['faces']} faces; {m['false_positives_faceless']} of the FP on face-less images) &middot; {ms:.0f} ms"
            + (" (PR curve being computed)" if waiting else "")
        )

    def move_point(m: dict) -> None:
        """The point over the cached curve picture: no redraw of the axes, the curve or the legend."""
        canvas.restore_region(drawn["background"])
        tuner.update_point(point, faceless, m)
        ax.draw_artist(faceless)
        ax.draw_artist(point)
        rgba = np.asarray(canvas.buffer_rgba())
        pr_image.value = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR))[1].tobytes()
        drawn["point_draws"] += 1

    def draw_curve(settings: tuple) -> None:
        """Redraw the curve (and the point on it), unless the settings moved on meanwhile."""
        with lock:
            if settings != settings_now():
                return
            m = tuner.metrics()
            if drawn["settings"] != settings:
                tuner.update_curve(ax, curve_line, m)
                canvas.draw()
                drawn["background"] = canvas.copy_from_bbox(fig.bbox)
                drawn["settings"] = settings
                drawn["full_draws"] += 1
            move_point(m)
            if status.value.endswith(" (PR curve being computed)"):
                status.value = status.value[: -len(" (PR curve being computed)")]

    def compute_curve(settings: tuple) -> None:
        tuner.curve_at(*settings)
        draw_curve(settings)

    def refresh(_=None):
        start = time.perf_counter()
        values = {name: c.value for name, c in controls.items()}
        values["conf"], values["nms"] = round(values["conf"], 2), round(values["nms"], 2)  # the sliders' steps
        tuner.set(**values)
        saved.value = ""  # a message about an earlier point
        rgb = tuner.drawing(background)
        picture.value = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        m = tuner.metrics(curve=False)
        point_line.value = tuner.point_text(m)
        settings = settings_now()
        waiting = not tuner.has_curve(*settings)
        if waiting:  # NMS over every candidate: off the widget thread, which drops the note when done
            status.value = status_text(m, True, 1000 * (time.perf_counter() - start))
            pending.append(threading.Thread(target=compute_curve, args=(settings,)))
            pending[-1].start()
        else:
            draw_curve(settings)
            status.value = status_text(m, False, 1000 * (time.perf_counter() - start))

    def wait() -> None:
        """Block until every curve computation started so far has finished (tests, scripts)."""
        while pending:
            pending.pop(0).join()

    def on_save(_):
        path = tuner.save(save_path)
        saved.value = f"saved {tuner.thresholds()} to {path}"

    for c in controls.values():
        c.observe(refresh, names="value")
    save.on_click(on_save)
    refresh()
    box = TunerBox(
        [
            w.HBox(
                [
                    w.VBox([controls["conf"], controls["nms"], controls["topk"]]),
                    w.VBox([controls["keep"], controls["rate"], controls["image"]]),
                ]
            ),
            status,
            w.HBox([picture, w.VBox([pr_image, point_line])]),
            w.HBox([save, saved]),
        ],
        tuner=tuner,
        background=background,
    )
    box.add_class("latentface-tuner")  # classes for pages and browser tests to find the parts by
    for part, name in ((status, "status"), (point_line, "point"), (saved, "saved"), (picture, "picture")):
        part.add_class(f"tuner-{name}")
    pr_image.add_class("tuner-pr")
    box.controls, box.save_button, box.status, box.saved = controls, save, status, saved
    box.pr_image, box.point_line, box.wait, box.draws = pr_image, point_line, wait, drawn
    return box


class TunerBox(w.VBox):
    """The tuner's box; outside a live kernel (a saved notebook, a page without the widget manager) it
    shows the static figure of the point it was left at (:meth:`ThresholdTuner.plot`) instead of its repr."""

    def __init__(self, children, tuner: ThresholdTuner, background: str = "auto"):
        super().__init__(children)
        self._tuner, self._background = tuner, background

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        buffer = io.BytesIO()
        self._tuner.plot(self._background).savefig(buffer, format="png", dpi=72, bbox_inches="tight")
        bundle["image/png"] = buffer.getvalue()
        bundle["text/plain"] = f"threshold tuner at {self._tuner.thresholds()} (live controls need a running kernel)"
        return bundle
