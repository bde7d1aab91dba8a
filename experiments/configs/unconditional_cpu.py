"""A few-minute CPU run of the unconditional Occupancy Network on built-in chairs.

As `unconditional.py` on a chairs-only built-in dataset of 200 objects (140 for
training), 16 objects x 1,024 points per step and a cosine-decayed learning
rate from 1e-3. A run this short (about 7 minutes) ends with the posterior nearly
collapsed onto the prior (KL about 0.4 nats): prior samples all decode to much the
same mean chair, and the validation objects auto-encode to IoU 0.30.

  python -m experiments.main --config experiments/configs/unconditional_cpu.py \
      --workdir runs/unconditional_cpu
  python -m experiments.sample --workdir runs/unconditional_cpu --num 8 --interpolate
"""

from experiments.configs import unconditional


def get_config():
    config = unconditional.get_config()
    config.data.path = "data/builtin_chairs"
    config.data.builtin_objects_per_category = 200
    config.data.points_subsample = 1024
    config.optim.learning_rate = 1e-3
    config.optim.schedule = "cosine"
    config.train.batch_size = 16
    config.train.num_steps = 1000
    config.train.log_every = 50
    config.train.eval_every = 250
    config.train.checkpoint_every = 250
    config.train.val_objects = 20
    config.train.val_points = 20_000
    config.generate.resolution0 = 32
    config.generate.upsampling_steps = 1
    return config
