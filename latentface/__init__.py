"""latentface: RetinaFace face detection on learned-codec latents, without decoding."""

__version__ = "0.1.0"

#: Pixels per latent cell: a 640x640 image gives a 40x40 latent (JPEG AI and the built-in codec).
LATENT_STRIDE = 16
