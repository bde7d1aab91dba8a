"""A short CPU run of the point-cloud Occupancy Network on the built-in data.

The README's first command. A narrower network than the original, a larger
learning rate and fewer, smaller steps, so that training, meshing and
evaluation finish in minutes on two CPU cores.

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
    config.train.batch_size = 32
    config.train.num_steps = 1500
    config.train.log_every = 25
    config.train.eval_every = 250
    config.train.checkpoint_every = 250
    config.train.val_objects = 24
    config.train.val_points = 20_000
    config.generate.resolution = 64
    config.generate.max_objects = 0
    return config
