"""Convolutional Occupancy Networks (Peng et al., ECCV 2020): local features for objects and scenes.

The method package the trainer runs for `config.method = 'convonet'`:

* `config.py`: the defaults and schema (the original ShapeNet 3-plane model);
* `model.py`: `ConvolutionalOccupancyNetwork` (encode to feature planes / a
  grid with their U-Nets, decode at query points);
* `task.py`: state, the original loss (BCE summed over points), the batch of a
  step, validation IoU;
* `generation.py`: MISE meshes of a split, each object encoded once; the
  evaluation of those meshes, exactly as ONet's; the sliding-window mesh of
  built-in rooms tiled into a larger scene;
* `sliding_window.py`: a lattice model's field decoded crop by crop and
  stitched (scenes larger than a training cube, memory bounded by the crop);
* `convert.py`: the original PyTorch checkpoints to and from our variables.
"""

from implicit_fields.methods.convonet.config import get_config
from implicit_fields.methods.convonet.generation import evaluate, generate
from implicit_fields.methods.convonet.task import check_config, create_model, create_task, init_state

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
