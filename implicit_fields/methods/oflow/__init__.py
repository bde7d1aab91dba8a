"""Occupancy Flow (Niemeyer et al., ICCV 2019): shapes in motion as a velocity field.

The method package the trainer runs for `config.method = 'oflow'`:

* `config.py`: the defaults and schema (the original's point-cloud model);
* `model.py`: the network (the ONet decoder at t = 0 on a code of frame 0, the
  velocity field on a temporal code, the generative model's posteriors), the
  transports through the ODE (`implicit_fields.flow`) and the losses
  (L_t0, L_t, L_corr, KL);
* `task.py`: the data (the built-in shapes in motion in the D-FAUST layout, or
  D-FAUST itself), the batch of a step, validation IoU per frame;
* `generation.py`: MISE once at t = 0, the vertices flowed to every frame with
  fixed faces, the ONet-4D-style baseline (MISE at every frame), PLYs, the
  filmstrip and the animations;
* `evaluation.py`: IoU and Chamfer-L1 per frame, and the correspondence error.
"""

from implicit_fields.methods.oflow.config import get_config
from implicit_fields.methods.oflow.evaluation import evaluate
from implicit_fields.methods.oflow.generation import generate
from implicit_fields.methods.oflow.task import check_config, create_model, create_task, init_state

# Keys a rerun may change besides the trainer's (`trainer.RESUMABLE_KEYS`): validation size.
RESUMABLE_KEYS = ("train.val_windows", "train.val_points")

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
