"""The threshold tuner: pick an operating point (score threshold, NMS IoU, top-k, keep) by its
effect on validation images, over detections cached once per image and rate.

:mod:`.logic` holds the caching, NMS re-runs and precision/recall arithmetic;
:mod:`.widgets` the ipywidgets view (imported only by :meth:`ThresholdTuner.widgets`).
"""

from latentface.tools.tuner.logic import MAX_CANDIDATES, ThresholdTuner

__all__ = ["MAX_CANDIDATES", "ThresholdTuner"]
