"""Differentiable Volumetric Rendering (Niemeyer et al., CVPR 2020): shape and colour from images.

The method package the trainer runs for `config.method = 'dvr'` (per-scene
multi-view reconstruction from RGB images and masks):

* `config.py`: the defaults and schema;
* `model.py`: the decoder (occupancy and colour; with `model.view_dependent` IDR's
  rendering network of position, normal, view direction and feature), DVR's losses,
  the losses of the field rendered as a volume (`rays.mode='volume'`), the ray-step
  schedule and a ray renderer;
* `task.py`: the scene (rendered from a built-in object when missing), the
  rays of a step, the loss, validation on held-out views;
* `generation.py`: the coloured mesh and the held-out renderings;
* `evaluation.py`: field and mesh metrics against the exact shape.
"""

from implicit_fields.methods.dvr.config import get_config
from implicit_fields.methods.dvr.evaluation import evaluate
from implicit_fields.methods.dvr.generation import generate
from implicit_fields.methods.dvr.task import check_config, create_model, create_task, init_state

# Keys a rerun may change besides the trainer's (`trainer.RESUMABLE_KEYS`): the marching steps of
# rendered views (validation and pictures), not of training.
RESUMABLE_KEYS = ("rays.render_steps",)

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
