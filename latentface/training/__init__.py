"""Training: the configuration (:class:`TrainConfig`), the loop (:func:`train`) and its parts."""

from latentface.training.config import TrainConfig, TrainingError
from latentface.training.loop import parameters_digest, train

__all__ = ["TrainConfig", "TrainingError", "parameters_digest", "train"]
