"""Texture Fields from one file (`--config experiments/configs/texture_fields.py:ARG`).

ARG is a comma-separated list of a model and a size, both optional:

* models: `conditional` (default: the original's single-view model,
  `configs/singleview/texfields/car.yaml`: ResnetPointnetConv shape code,
  ResNet-18 image code, each_layer_c_larger decoder, pixel L1, batch 18),
  `vae` (`configs/VAE/000.yaml`: SimplePointnet, an image-based posterior,
  each_layer_c, ELBO weighted 10, batch 3) and `gan` (`configs/GAN/000.yaml`:
  SimplePointnet, z 64 from the prior, a conditional discriminator on RGB and
  depth, non-saturating loss with R1 10, batch 32); all RMSprop 1e-4, training
  at 128^2, condition images at 224^2, evaluation at 256^2;
* sizes: `full` (default: the original's sizes, for a GPU or TPU), `cpu` (a
  run of minutes on the built-in textured shapes on two CPU cores: 64^2
  renders, training at 32^2, evaluation at 64^2) and `tiny` (the tests'
  smoke-test sizes).

  python -m experiments.main --config experiments/configs/texture_fields.py:cpu --workdir runs/texture_fields
  python -m experiments.main --config experiments/configs/texture_fields.py:gan,cpu --workdir runs/tf_gan
"""

from implicit_fields.methods.texture_fields import config as tf_config

MODELS = ("conditional", "vae", "gan")
SIZES = ("full", "cpu", "tiny")


def parse_arg(arg):
    """(model, size) of an argument such as 'vae,cpu' (each optional, defaults first in the lists)."""
    model, size = MODELS[0], SIZES[0]
    for token in (t.strip() for t in (arg or "").split(",")):
        if token in MODELS:
            model = token
        elif token in SIZES:
            size = token
        elif token:
            raise ValueError(f"unknown config argument {token!r}; models {MODELS}, sizes {SIZES}")
    return model, size


def get_config(arg=None):
    kind, size = parse_arg(arg)
    config = tf_config.get_config()
    data, model, train = config.data, config.model, config.train
    model.kind = kind
    if kind != "conditional":  # VAE / GAN: SimplePointnet (leaky), no image encoder, each_layer_c.
        model.geometry_encoder = "simple"
        model.geometry_leaky = True
        model.encoder = ""
        model.decoder_blocks = 5
        model.decoder_resnet_leaky = True
        config.generate.checkpoint = "latest"  # The original selects no model for these (model.pt).
    if kind == "vae":
        train.batch_size = 3
    elif kind == "gan":
        model.z_dim = 64
        train.batch_size = 32

    if size == "cpu":
        data.path = "data/textured_cpu"
        data.builtin_categories = ("car", "chair", "sofa", "table")
        data.builtin_objects_per_category = 20
        data.builtin_num_points = 20_000
        data.builtin_num_surface_points = 20_000
        data.builtin_image_resolution = 64
        data.builtin_input_resolution = 64
        data.img_size = 32
        data.input_size = 64
        data.pointcloud_n = 1024
        config.eval.img_size = 64
        model.vae_nfilter = model.disc_nfilter = 16
        model.vae_nfilter_max = model.disc_nfilter_max = 128
        # The original's RMSprop 1e-4: its first steps are ~10x the rate (the squared-gradient
        # average starts at 0), and at 1e-3 the sigmoid output saturates within 25 steps.
        train.batch_size = 8
        train.num_steps = 1000
        train.eval_every = 200
        train.checkpoint_every = 200
        train.val_objects = 8
        config.generate.picture_objects = 6
    elif size == "tiny":
        data.path = "data/textured_tiny"
        data.builtin_categories = ("car", "chair")
        data.builtin_objects_per_category = 3
        data.builtin_num_points = 2048
        data.builtin_num_surface_points = 2048
        data.builtin_image_resolution = 16
        data.builtin_input_resolution = 16
        data.builtin_n_views = 3
        data.builtin_input_views = 2
        data.builtin_visualize_views = 2
        data.img_size = 8
        data.input_size = 16
        data.pointcloud_n = 64
        config.eval.img_size = 16
        model.c_dim = model.z_dim = 8
        model.geometry_hidden = model.decoder_hidden = 8
        model.vae_nfilter = model.disc_nfilter = 4
        model.vae_nfilter_max = model.disc_nfilter_max = 8
        train.batch_size = 2
        train.num_steps = 2
        train.eval_every = 2
        train.checkpoint_every = 2
        train.val_objects = 1
        config.logging.log_every = 1
        config.logging.progress = False
        config.generate.picture_objects = 1
        config.generate.num_objects = 1
    return config
