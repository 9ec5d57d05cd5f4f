"""The feature-map explorer: the latent, the bridge output, C2..C4, P2..P6 and the face-score maps of
one image, computed once per image and rate and looked at channel by channel and cell by cell.

:mod:`.logic` holds the forward hooks, the cache and every view's arithmetic; :mod:`.widgets` the
ipywidgets view (imported only by :meth:`FeatureExplorer.widgets`).
"""

from latentface.tools.explorer.logic import VIEWS, FeatureExplorer, FeatureMap, run_with_maps

__all__ = ["VIEWS", "FeatureExplorer", "FeatureMap", "run_with_maps"]
