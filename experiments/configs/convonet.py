"""Convolutional Occupancy Networks from one file (`--config experiments/configs/convonet.py:ARG`).

ARG is a comma-separated list of a variant and a size, both optional:

* variants: `planes` (default: the original shapenet_3plane, three 64^2
  feature planes with a depth-4 U-Net) and `grid` (shapenet_grid32: a 32^3
  grid with a 3-level 3D U-Net), both from 3,000 noisy points;
* sizes: `full` (default: the original sizes, for a GPU or TPU), `cpu` (a
  short run on the built-in data on two CPU cores; with `planes` it is the
  README's quick start) and `tiny` (the tests' smoke-test sizes).

  python -m experiments.main --config experiments/configs/convonet.py:cpu --workdir runs/quickstart
  python -m experiments.main --config experiments/configs/convonet.py:grid,cpu --workdir runs/convonet_grid
"""

from experiments.configs.onet import parse_arg
from implicit_fields.methods.convonet import config as convonet_config

VARIANTS = ("planes", "grid")
SIZES = ("full", "cpu", "tiny")


def get_config(arg=None):
    variant, size = parse_arg(arg, VARIANTS, SIZES)
    config = convonet_config.get_config()
    data, model = config.data, config.model
    if variant == "grid":
        model.plane_type = ("grid",)

    if size == "cpu":
        data.builtin_objects_per_category = 60
        data.points_subsample = 1024
        config.optim.learning_rate = 1e-3
        config.optim.schedule = "cosine"
        config.train.batch_size = 8
        config.train.num_steps = 1500
        config.train.eval_every = 250
        config.train.checkpoint_every = 250
        config.train.val_objects = 24
        config.train.val_points = 20_000
        config.generate.resolution0 = 32
        config.generate.upsampling_steps = 1
    elif size == "tiny":
        data.builtin_objects_per_category = 4
        data.builtin_categories = ("chair", "mug")
        data.builtin_num_points = 4096
        data.builtin_num_surface_points = 4096
        data.points_subsample = 64
        data.pointcloud_n = 128
        model.plane_resolution = 8
        model.grid_resolution = 8
        model.c_dim = 8
        model.encoder_hidden = 8
        model.unet_depth = 2
        model.unet_start_filts = 4
        model.unet3d_levels = 2
        model.unet3d_f_maps = 8
        model.decoder_hidden = 8
        model.encoder_blocks = 2
        model.decoder_blocks = 2
        config.optim.learning_rate = 1e-3
        config.train.batch_size = 8
        config.train.num_steps = 2
        config.train.eval_every = 2
        config.train.checkpoint_every = 2
        config.train.val_points = 512
        config.train.eval_batch_size = 2
        config.logging.log_every = 1
        config.logging.progress = False
        config.generate.resolution0 = 8
        config.generate.upsampling_steps = 1
        config.generate.resolution = 16
        config.generate.batch_points = 4096
        config.generate.num_pictures = 2
        config.eval.n_samples = 2000
    return config
