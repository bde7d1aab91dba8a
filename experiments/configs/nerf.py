"""NeRF: a radiance field of one scene from posed images (`--config .../nerf.py:SIZE[,OPTION...]`).

SIZE is one of

* `cpu` (default): the built-in sofa that DVR fits (24 views of 64 x 64, 4 held
  out), a 4 x 64 network with 6 / 4 octaves, 24 + 48 samples, 1,024 rays from
  all training images a step, 5e-4 to 5e-6 over the run; about 15 minutes on two
  CPU cores, DVR's `cpu` budget;
* `full`: the original (jaxnerf's `blender.yaml`): 8 x 256, 64 + 128 samples,
  4,096 rays of one image a step, 5e-4 to 5e-6 over 1M steps; for a GPU;
* `tiny`: the tests' smoke-test sizes.

OPTIONs:

* `blender`: the built-in scene written in NeRF's Blender layout
  (transforms_{train,val,test}.json, RGBA PNGs) at data/nerf_builtin_blender;
* `specular`: the built-in scene with a view-dependent (specular) material, the
  one `dvr.py:SIZE,specular` fits (data/dvr_builtin_specular);
* `synthetic`: a NeRF-synthetic scene (e.g. lego) in its own layout: set
  `--config.data.path`; near 2, far 6, scale 3 (the scene in [-1.5, 1.5]^3).

  python -m experiments.main --config experiments/configs/nerf.py --workdir runs/nerf

Writes WORKDIR/renderings.png (held-out views), mesh.ply (MISE on the density),
metrics.json (held-out PSNR / SSIM / mask IoU; mesh IoU and Chamfer-L1 against
the exact shape of a built-in scene).
"""

from implicit_fields.methods.nerf import config as nerf_config

SIZES = ("cpu", "full", "tiny")
OPTIONS = ("blender", "specular", "synthetic")


def parse_arg(arg):
    """(size, options) of `SIZE[,OPTION...]`."""
    parts = [p.strip() for p in (arg or "cpu").split(",") if p.strip()]
    size = parts[0] if parts and parts[0] in SIZES else "cpu"
    options = parts[1:] if parts and parts[0] in SIZES else parts
    for p in options:
        if p not in OPTIONS:
            raise ValueError(f"unknown config argument {p!r}; sizes {SIZES}, options {OPTIONS}")
    if "synthetic" in options and len(options) > 1:
        raise ValueError("config argument 'synthetic' reads a scene from disk; it takes no other option")
    return size, options


def get_config(arg=None):
    size, options = parse_arg(arg)
    config = nerf_config.get_config()
    data, model, rays, train, gen = config.data, config.model, config.rays, config.train, config.generate
    if size == "cpu":
        model.net_depth = 4
        model.net_width = 64
        model.skip_layer = 2
        model.net_width_condition = 32
        # 6 octaves, not 10: the original's 10 suit 800-pixel views of a scene three times the
        # size of our cube; at 64 pixels the top octaves are finer than a pixel (noise to fit).
        model.deg_point = 6
        rays.per_step = 1024
        rays.single_image = False
        rays.num_coarse = 24
        rays.num_fine = 48
        train.num_steps = 2500
        train.eval_every = 250
        train.checkpoint_every = 250
        train.val_images = 0
    elif size == "tiny":
        data.builtin_category = "mug"
        data.n_views = 6
        data.resolution = 16
        data.val_views = 1
        model.net_depth = 2
        model.net_width = 32
        model.skip_layer = 1
        model.net_width_condition = 16
        model.deg_point = 4
        model.deg_view = 2
        rays.per_step = 128
        rays.single_image = False
        rays.num_coarse = 8
        rays.num_fine = 8
        train.num_steps = 12
        train.eval_every = 6
        train.checkpoint_every = 6
        config.optim.learning_rate = 1e-3
        config.logging.log_every = 4
        config.logging.progress = False
        config.logging.tensorboard = False
        gen.resolution0 = 8
        gen.upsampling_steps = 1
        gen.num_views = 1
        config.eval.n_points = 5000
        config.eval.n_samples = 2000
        data.path = "data/nerf_tiny"
    if "blender" in options:
        data.layout = "blender"
        data.path = "data/nerf_builtin_blender" if size != "tiny" else "data/nerf_tiny_blender"
    if "specular" in options:
        data.material = "specular"
        data.path = "data/dvr_builtin_specular" if size != "tiny" else "data/nerf_tiny_specular"
    if "synthetic" in options:
        data.layout = "blender"
        data.builtin = False
        data.path = "data/nerf_synthetic/lego"
        data.scale = 3.0
        data.near, data.far = 2.0, 6.0
    return config
