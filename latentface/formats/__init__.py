"""File formats of predictions: the official WIDER FACE per-image text files (:mod:`.widerface`)
and the detections JSON (:mod:`.detections`)."""
