"""Training: the configuration (:class:`TrainConfig`), the loop (:func:`train`) and its parts."""
from latentface.training.config import TrainConfig, TrainingError, build_model_from_config
from latentface.training.loop import parameters_digest, train

__all__ = ["TrainConfig", "TrainingError", "build_model_from_config", "parameters_digest", "train"]
