"""Convolutional Occupancy Networks from one file (`--config experiments/configs/convonet.py:ARG`).

ARG is a comma-separated list of a variant and a size, both optional:

* variants: `planes` (default: the original shapenet_3plane, three 64^2
  feature planes with a depth-4 U-Net) and `grid` (shapenet_grid32: a 32^3
  grid with a 3-level 3D U-Net), both from 3,000 noisy points; on the
  built-in synthetic rooms (10,000 noisy points, meshes cropped to the
  ground-truth box for evaluation): `rooms` (room_3plane: 3 x 128^2 planes,
  depth-5 U-Net), `rooms_grid` (room_grid64: a 64^3 grid, 4-level 3D U-Net)
  and `rooms_sliding` (the grid on the voxel lattice, `model.local_coord`, so
  that scenes larger than a room are meshed by the sliding window:
  `python -m experiments.sliding_window`);
* sizes: `full` (default: the original sizes, for a GPU or TPU), `cpu` (a
  short run on the built-in data on two CPU cores; with `planes` it is the
  README's quick start) and `tiny` (the tests' smoke-test sizes).

  python -m experiments.main --config experiments/configs/convonet.py:cpu --workdir runs/quickstart
  python -m experiments.main --config experiments/configs/convonet.py:grid,cpu --workdir runs/convonet_grid
"""

from implicit_fields.methods.convonet import config as convonet_config

VARIANTS = ("planes", "grid", "rooms", "rooms_grid", "rooms_sliding")
SIZES = ("full", "cpu", "tiny")


def parse_arg(arg, variants, sizes):
    """(variant, size) of an argument such as 'grid,cpu' (each optional, defaults first in the lists)."""
    variant, size = variants[0], sizes[0]
    for token in (t.strip() for t in (arg or "").split(",")):
        if token in variants:
            variant = token
        elif token in sizes:
            size = token
        elif token:
            raise ValueError(f"unknown config argument {token!r}; variants {variants}, sizes {sizes}")
    return variant, size


def get_config(arg=None):
    variant, size = parse_arg(arg, VARIANTS, SIZES)
    config = convonet_config.get_config()
    data, model = config.data, config.model
    if variant == "grid":
        model.plane_type = ("grid",)
    rooms = variant.startswith("rooms")
    if rooms:  # The original's configs/pointcloud/room_*.yaml.
        data.path = "data/builtin_rooms"
        data.builtin_kind = "rooms"
        data.pointcloud_n = 10_000
        config.eval.crop_to_gt_bbox = True
        config.generate.num_pictures = 4
        if variant == "rooms":
            model.plane_resolution = 128
            model.unet_depth = 5
        else:
            model.plane_type = ("grid",)
            model.grid_resolution = 64
            model.unet3d_levels = 4
            config.train.batch_size = 6
            model.local_coord = variant == "rooms_sliding"

    if size == "cpu" and rooms:  # 100 small rooms, 64^2 planes / 32^3 grid, about 10 minutes.
        data.rooms_per_class = 20
        data.rooms_num_files = 2
        data.rooms_num_points = 20_000
        data.rooms_num_surface_points = 20_000
        data.pointcloud_n = 3000
        data.points_subsample = 1024
        model.plane_resolution = 64
        model.unet_depth = 4
        model.grid_resolution = 32
        model.unet3d_levels = 2 if variant == "rooms_sliding" else 3
        model.unet3d_f_maps = 8  # The 3D U-Net's 32^3 gradients are slow on two CPU cores.
        config.optim.learning_rate = 1e-3
        config.optim.schedule = "cosine"
        config.train.batch_size = 4 if variant == "rooms_sliding" else 8
        config.train.num_steps = 250 if variant == "rooms_sliding" else 500
        config.train.eval_every = 100
        config.train.checkpoint_every = 100
        config.train.val_points = 20_000
        config.generate.resolution0 = 32
        config.generate.upsampling_steps = 1
        config.eval.n_samples = 20_000
    elif size == "cpu":  # planes: the README's quick start, about 13 minutes in all.
        data.builtin_objects_per_category = 60
        data.points_subsample = 1024
        model.unet3d_f_maps = 8  # The 3D U-Net's 32^3 gradients are slow on two CPU cores.
        config.optim.learning_rate = 1e-3
        config.optim.schedule = "cosine"
        config.train.batch_size = 8
        config.train.num_steps = 500
        config.train.eval_every = 100
        config.train.checkpoint_every = 100
        config.train.val_objects = 24
        config.train.val_points = 20_000
        config.generate.resolution0 = 32
        config.generate.upsampling_steps = 1
        if variant == "grid":  # 4.5 s/step: 110 steps take the planes' 500 steps' time on two CPU cores.
            config.train.num_steps = 110
            config.train.eval_every = 55
            config.train.checkpoint_every = 55
    elif size == "tiny":
        data.builtin_objects_per_category = 4
        data.rooms_object_counts = (4,)
        data.rooms_per_class = 4
        data.rooms_num_files = 2
        data.rooms_num_points = 2048
        data.rooms_num_surface_points = 2048
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
