"""DVR: per-scene reconstruction of one object from its images and masks (`--config .../dvr.py:ARG`).

No 3D supervision and no depth: RGB, freespace, occupancy and normal losses.
ARG is a comma-separated list of a size and options, all optional. The size is one of

* `cpu` (default): a built-in sofa, 24 rendered views of 64 x 64 (4 held
  out), a 128-wide decoder, 2,000 steps of 1,024 rays; about 15 minutes on
  two CPU cores;
* `full`: the original's network and ray marching (width 512, 2,048 rays a
  step, 16 marching steps doubled at 50k, 100k and 250k iterations up to 128,
  1,024 steps to render, Adam 1e-4), 300k steps, on 128 x 128 renders; for a
  GPU;
* `tiny`: the tests' smoke-test sizes.

The options (any of them, comma-separated, e.g. `dvr.py:cpu,specular,view`):

* `volume`: the occupancy field rendered as a volume (`rays.mode='volume'`, UNISURF's
  alpha = occupancy probability) with a mask loss of weight 1 instead of the
  freespace and occupancy losses;
* `specular`: the scene rendered with white Blinn-Phong highlights that move with the
  view (`data.material='specular'`, in `data/dvr_builtin_specular`);
* `view`: IDR's view-dependent colour (`model.view_dependent=True`: a rendering MLP
  of the position, the field's normal, the view direction and a feature).

  python -m experiments.main --config experiments/configs/dvr.py --workdir runs/dvr

Writes WORKDIR/mesh.ply (MISE, coloured by the texture field), renderings.png
(held-out views: ground truth next to our rendering), metrics.json (IoU /
Chamfer against the exact ground-truth shape, mask IoU and PSNR on held-out
views).
"""

from implicit_fields.methods.dvr import config as dvr_config

SIZES = ("cpu", "full", "tiny")
OPTIONS = ("volume", "specular", "view")


def parse_arg(arg):
    """(size, set of options) of an argument such as 'cpu,specular,view' (each optional)."""
    size, options = SIZES[0], set()
    for token in (t.strip() for t in (arg or "").split(",")):
        if token in SIZES:
            size = token
        elif token in OPTIONS:
            options.add(token)
        elif token:
            raise ValueError(f"unknown config argument {token!r}; sizes {SIZES}, options {OPTIONS}")
    return size, options


def get_config(arg=None):
    size, options = parse_arg(arg)
    config = dvr_config.get_config()
    if "volume" in options:
        config.rays.mode = "volume"
        # The opacity's BCE against the mask takes the place of the freespace / occupancy
        # terms of surface rendering (those are not used in volume mode).
        config.loss.lambda_mask = 1.0
        if size == "cpu":
            # Every sample is differentiated (not only the surface point): 32 samples and
            # 1,500 steps keep the run within the surface model's 15 minutes on two cores.
            config.rays.volume_samples = 32
            config.train.num_steps = 1500
            config.optim.milestones = (900, 1200)
    if "specular" in options:
        config.data.material = "specular"
        config.data.path = "data/dvr_builtin_specular"
    if "view" in options:
        config.model.view_dependent = True
    if size == "full":
        config.data.resolution = 128
        config.model.hidden_dim = 512
        config.rays.per_step = 2048
        config.rays.steps_start = 16
        config.rays.steps_milestones = (50_000, 100_000, 250_000)
        config.rays.render_steps = 1024
        config.optim.learning_rate = 1e-4
        config.optim.milestones = (200_000, 250_000)  # Our choice for a run of 300k steps.
        config.train.num_steps = 300_000
        config.train.eval_every = 5000
        config.train.checkpoint_every = 5000
        # IDR's sizes for the view-dependent colour (feature 256, rendering MLP 4 x 512).
        config.model.feature_dim = 256
        config.model.render_hidden = 512
    elif size == "tiny":
        config.data.builtin_category = "mug"
        config.data.n_views = 6
        config.data.resolution = 16
        config.data.val_views = 1
        config.model.hidden_dim = 32
        config.model.n_blocks = 2
        config.model.feature_dim = 8
        config.model.render_hidden = 16
        config.model.render_layers = 2
        config.rays.per_step = 128
        config.rays.steps_start = 16
        config.rays.steps_milestones = ()
        config.rays.render_steps = 16
        config.rays.volume_samples = 16
        config.optim.learning_rate = 1e-3
        config.optim.milestones = (8,)
        config.train.num_steps = 12
        config.train.eval_every = 4
        config.train.checkpoint_every = 4
        config.logging.log_every = 4
        config.logging.progress = False
        config.logging.tensorboard = False
        config.generate.resolution0 = 8
        config.generate.upsampling_steps = 1
        config.generate.num_views = 1
        config.eval.n_points = 5000
        config.eval.n_samples = 2000
    return config
