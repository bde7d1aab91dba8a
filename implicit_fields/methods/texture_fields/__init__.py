"""Texture Fields (Oechsle et al., ICCV 2019): appearance as a field on a known shape.

The method package the trainer runs for `config.method = 'texture_fields'`:

* `config.py`: the defaults and schema (the original's conditional car model);
* `model.py`: the shape encoders, the image encoder, the texture decoder, the
  VAE posterior, the discriminator, and the losses (pixel, ELBO, GAN with R1);
* `task.py`: the data (built-in textured shapes in the original's layout), the
  batch of a step (depth-lifted views), the three models' losses, validation;
* `generation.py`: renderings of held-out objects beside the truth, and
  `colour_vertices`, which makes textured meshes;
* `evaluation.py`: SSIM, PSNR and L1 as the original computes them (FID and
  Feature-L1 with a user-given Inception-v3 weights file).
"""

from implicit_fields.methods.texture_fields.config import get_config
from implicit_fields.methods.texture_fields.evaluation import evaluate
from implicit_fields.methods.texture_fields.generation import generate
from implicit_fields.methods.texture_fields.task import check_config, create_model, create_task, init_state

# Keys a rerun may change besides the trainer's (`trainer.RESUMABLE_KEYS`): memory and validation size.
RESUMABLE_KEYS = ("data.cache", "train.val_objects")

__all__ = [
    "RESUMABLE_KEYS",
    "get_config",
    "check_config",
    "create_model",
    "init_state",
    "create_task",
    "generate",
    "evaluate",
]
