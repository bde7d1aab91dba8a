"""A short CPU run (about 15 minutes) of the voxel super-resolution model on the built-in data.

As `voxels.py` (the original voxel encoder, c_dim 256) with decoder width 128, 8 objects
x 1,024 points per step, a cosine-decayed learning rate from 1e-3, and the quickstart's
dataset (60 objects per category, voxelised on first use).

  python -m experiments.main --config experiments/configs/voxels_cpu.py --workdir runs/voxels_cpu
"""

from experiments.configs import voxels


def get_config():
    config = voxels.get_config()
    config.data.path = "data/builtin"
    config.data.builtin_objects_per_category = 60
    config.model.decoder_hidden = 128
    config.optim.learning_rate = 1e-3
    config.optim.schedule = "cosine"
    config.train.batch_size = 8
    config.train.num_steps = 2000
    config.train.log_every = 50
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.val_objects = 24
    config.train.val_points = 20_000
    config.generate.resolution0 = 32
    config.generate.upsampling_steps = 1
    return config
