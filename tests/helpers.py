"""Small builders that several test modules share."""

from latentface.train import TrainConfig


def tiny_train_config(dataset, out, **overrides) -> TrainConfig:
    """A seconds-long training run on a tiny synthetic dataset: the fast preset at a 16-wide neck, batch 2,
    no workers, no tracking, deterministic; ``overrides`` replace any setting."""
    base = dict(
        dataset_root=str(dataset),
        preset="fast",
        out_channels=16,
        batch_size=2,
        epochs=2,
        lr=0.01,
        workers=0,
        out=str(out),
        name="run",
        no_wandb=True,
        progress=False,
        deterministic=True,
    )
    return TrainConfig(**{**base, **overrides})
