"""Data: label formats, the latent dataset, latent augmentations, synthetic and real-image writers."""
