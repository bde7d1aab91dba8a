"""A short CPU run of the point-cloud Occupancy Network on the built-in data.

The README's first command. A narrower network than the original (widths 128
instead of 256/512), a larger, cosine-decayed learning rate (1e-3 instead of a
constant 1e-4), 8 objects x 1024 query points per step instead of 64 x 2048,
and 2,500 steps instead of hundreds of thousands, so that data generation,
training, meshing and evaluation finish in about 12 minutes on two CPU cores.
The metrics it reaches are those of a very short run, far from converged.

  python -m experiments.main --config experiments/configs/quickstart.py --workdir runs/quickstart
"""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.data.path = "data/builtin"
    config.data.builtin_objects_per_category = 60
    config.data.points_subsample = 1024
    config.model.c_dim = 128
    config.model.encoder_hidden = 128
    config.model.decoder_hidden = 128
    config.optim.learning_rate = 1e-3
    config.optim.schedule = "cosine"
    config.train.batch_size = 8
    config.train.num_steps = 2500
    config.train.log_every = 50
    config.train.eval_every = 250
    config.train.checkpoint_every = 250
    config.train.val_objects = 24
    config.train.val_points = 20_000
    config.generate.resolution0 = 32
    config.generate.upsampling_steps = 1
    config.generate.max_objects = 0
    return config
