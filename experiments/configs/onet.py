"""Occupancy Networks: every input type and size from one file (`--config experiments/configs/onet.py:ARG`).

ARG is a comma-separated list of a variant and a size, both optional:

* variants: `pointcloud` (default: the original onet_pointcloud, 300 noisy
  points in), `voxels` (32^3 voxel super-resolution, configs/voxels/onet.yaml),
  `img` (single-image reconstruction, configs/img/onet.yaml: ResNet-18 from
  scratch), `img_pixel` (single-image reconstruction from pixel-aligned
  features, PIFu's idea: ResNet-18's layer1-3 as one feature map, sampled at
  each query point's projection into the view, with the point's camera depth;
  same renders as `img`), `img_textured` (the `img` model on the condition
  views of the built-in textured dataset of Texture Fields, `input_image/`:
  the shape half of a textured mesh from one image, `python -m
  experiments.textured_mesh`; make that dataset first with a Texture Fields
  run of the same size) and `unconditional` (the generative model: a latent
  of size 128, no input, chairs);
* sizes: `full` (default: the original sizes, for a GPU or TPU), `cpu` (a
  short run on the built-in data, 10-20 minutes on two CPU cores; with
  `pointcloud` it is the README's quick start) and `tiny` (the tests'
  smoke-test sizes).

  python -m experiments.main --config experiments/configs/onet.py:cpu --workdir runs/quickstart
  python -m experiments.main --config experiments/configs/onet.py:img,cpu --workdir runs/img_cpu
  python -m experiments.main --config experiments/configs/onet.py:img_pixel,cpu --workdir runs/img_pixel_cpu
  python -m experiments.main --config experiments/configs/onet.py:voxels --workdir runs/voxels
"""

from implicit_fields.methods.onet import config as onet_config

VARIANTS = ("pointcloud", "voxels", "img", "img_pixel", "img_textured", "unconditional")
IMAGE_VARIANTS = ("img", "img_pixel", "img_textured")
SIZES = ("full", "cpu", "tiny")


def parse_arg(arg, variants, sizes):
    """(variant, size) of an argument such as 'img,cpu' (each optional, defaults first in the lists)."""
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
    config = onet_config.get_config()
    data, model = config.data, config.model
    if variant == "voxels":
        data.input_type = "voxels"
        data.points_subsample = 1024  # Original voxel config: 1024.
        model.encoder = "voxel_simple"
        model.encoder_hidden = 32  # Channels of conv_in (then 64, 128, 256, 512).
        model.c_dim = 256
    elif variant in ("img", "img_textured"):
        data.input_type = "img"  # One view of img_choy2016/ (a random one in training, view 0 to evaluate).
        model.encoder = "resnet18"
        model.encoder_hidden = 64  # torchvision's ResNet-18 widths 64, 128, 256, 512.
        model.c_dim = 256
    elif variant == "img_pixel":
        data.input_type = "img"  # The same views as `img`, with each view's camera.
        data.img_with_camera = True  # The query points are projected with the view's world_mat / camera_mat.
        model.encoder = "resnet18_pixel"  # layer1-3 (64, 128, 256 channels) on a 56^2 grid -> 256 channels.
        model.encoder_hidden = 64
        model.c_dim = 256  # Feature channels per pixel (PIFu: 256).
        model.decoder = "pixel_aligned"
    elif variant == "unconditional":
        data.input_type = ""
        data.builtin_categories = ("chair",)
        data.categories = ("03001627",)  # One model per category, as the original (chairs).
        model.encoder = ""
        model.c_dim = 0
        model.decoder = "simple"
        model.decoder_hidden = 128
        model.z_dim = 128

    if variant == "img_textured":  # Texture Fields' dataset (experiments/configs/texture_fields.py).
        data.builtin = False  # It is made by the Texture Fields run of the same size.
        data.img_folder = "input_image"
        paths = {"full": "data/textured_builtin", "cpu": "data/textured_cpu", "tiny": "data/textured_tiny"}
        data.path = paths[size]

    if size == "cpu":
        data.builtin_objects_per_category = 60
        data.points_subsample = 1024
        config.optim.learning_rate = 1e-3
        config.optim.schedule = "cosine"
        config.train.batch_size = 8
        config.train.num_steps = 2000
        config.train.eval_every = 500
        config.train.checkpoint_every = 500
        config.train.val_objects = 24
        config.train.val_points = 20_000
        config.generate.resolution0 = 32
        config.generate.upsampling_steps = 1
        if variant != "unconditional":
            model.decoder_hidden = 128
        if variant == "pointcloud":  # The README's quick start: about 12 minutes.
            model.c_dim = 128
            model.encoder_hidden = 128
            config.train.num_steps = 2500
            config.train.eval_every = 250
            config.train.checkpoint_every = 250
        elif variant in IMAGE_VARIANTS:  # 64 x 64 renders used at their size.
            data.img_size = 64
            data.builtin_img_resolution = 64
            if variant == "img_textured":  # 56 training objects (texture_fields.py:cpu's dataset).
                config.train.num_steps = 1500
            if variant == "img_pixel":
                model.c_dim = 128  # A 16^2 map of 128 channels; 256 costs ~20% more per step.
        elif variant == "unconditional":  # 200 chairs (140 for training), 16 per step, 1000 steps.
            data.path = "data/builtin_chairs"
            data.builtin_objects_per_category = 200
            config.train.batch_size = 16
            config.train.num_steps = 1000
            config.train.eval_every = 250
            config.train.checkpoint_every = 250
            config.train.val_objects = 20
    elif size == "tiny":
        data.builtin_objects_per_category = 4
        data.builtin_categories = ("chair", "mug")
        data.categories = ()
        data.builtin_num_points = 4096
        data.builtin_num_surface_points = 4096
        data.points_subsample = 64
        data.pointcloud_n = 32
        model.c_dim = 0 if variant == "unconditional" else 16
        model.encoder_hidden = 4 if variant in ("voxels",) + IMAGE_VARIANTS else 16
        model.decoder_hidden = 16
        model.decoder_blocks = 2
        if variant == "unconditional":
            model.z_dim = 8
            model.encoder_latent_hidden = 16
        if variant == "voxels":
            data.voxel_resolution = 16
        if variant in IMAGE_VARIANTS:
            data.img_size = 16
            data.img_n_views = 4
            data.builtin_img_resolution = 16
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
