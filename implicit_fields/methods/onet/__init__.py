"""Occupancy Networks (Mescheder et al., CVPR 2019): point-cloud, voxel, image and unconditional models.

The method package the trainer runs for `config.method = 'onet'`:

* `config.py`: the defaults and schema (the original point-cloud ONet);
* `model.py`: `OccupancyNetwork` (encode / infer_z / decode / compute_elbo),
  prior samples, interpolation, `make_logit_fn`;
* `task.py`: state, the original loss (BCE summed over points + KL),
  the batch of a step, validation IoU;
* `generation.py`: MISE or dense meshes of a split, the comparison picture,
  prior samples and interpolations;
* `evaluation.py`: IoU, Chamfer-L1, normal consistency and F-score over a
  split, as the original `eval_meshes.py`;
* `convert.py`: the original PyTorch checkpoints to and from our variables.
"""

from implicit_fields.methods.onet.config import get_config
from implicit_fields.methods.onet.evaluation import evaluate
from implicit_fields.methods.onet.generation import generate
from implicit_fields.methods.onet.task import check_config, create_model, create_task, init_state

# Keys a rerun may change besides the trainer's (`trainer.RESUMABLE_KEYS`): memory and speed only.
RESUMABLE_KEYS = ("data.cache", "train.eval_batch_size")

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
