"""NeRF (Mildenhall et al., ECCV 2020): a radiance field of one scene from posed images.

The method package the trainer runs for `config.method = 'nerf'`, mirroring
jaxnerf's algorithm with the library's `volume` functions:

* `config.py`: the defaults (the original's network, sampling and schedule) and schema;
* `model.py`: the MLP, coarse-to-fine rendering of rays, the loss, a view renderer;
* `task.py`: the scene (DVR's multi-view layout or the Blender layout, the built-in
  scene rendered when missing), the rays of a step, validation on held-out views;
* `generation.py`: held-out renderings and the mesh of the density (MISE);
* `evaluation.py`: held-out PSNR / SSIM / mask IoU, and the mesh against the exact shape.
"""

from implicit_fields.methods.nerf.config import get_config
from implicit_fields.methods.nerf.evaluation import evaluate
from implicit_fields.methods.nerf.generation import generate
from implicit_fields.methods.nerf.task import check_config, create_model, create_task, init_state

# Keys a rerun may change besides the trainer's: what validation renders.
RESUMABLE_KEYS = ("train.val_images", "rays.chunk")

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
