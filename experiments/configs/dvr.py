"""DVR: per-scene reconstruction of one object from its images and masks (`--config .../dvr.py:SIZE`).

No 3D supervision and no depth: RGB, freespace, occupancy and normal losses.
SIZE is one of

* `cpu` (default): a built-in sofa, 24 rendered views of 64 x 64 (4 held
  out), a 128-wide decoder, 2,000 steps of 1,024 rays; about 15 minutes on
  two CPU cores;
* `full`: the original's network and ray marching (width 512, 2,048 rays a
  step, 16 marching steps doubled at 50k, 100k and 250k iterations up to 128,
  1,024 steps to render, Adam 1e-4), 300k steps, on 128 x 128 renders; for a
  GPU;
* `tiny`: the tests' smoke-test sizes.

  python -m experiments.main --config experiments/configs/dvr.py --workdir runs/dvr

Writes WORKDIR/mesh.ply (MISE, coloured by the texture field), renderings.png
(held-out views: ground truth next to our rendering), metrics.json (IoU /
Chamfer against the exact ground-truth shape, mask IoU and PSNR on held-out
views).
"""

from implicit_fields.methods.dvr import config as dvr_config

SIZES = ("cpu", "full", "tiny")


def get_config(arg=None):
    size = (arg or "cpu").strip()
    if size not in SIZES:
        raise ValueError(f"unknown config argument {size!r}; sizes {SIZES}")
    config = dvr_config.get_config()
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
    elif size == "tiny":
        config.data.builtin_category = "mug"
        config.data.n_views = 6
        config.data.resolution = 16
        config.data.val_views = 1
        config.model.hidden_dim = 32
        config.model.n_blocks = 2
        config.rays.per_step = 128
        config.rays.steps_start = 16
        config.rays.steps_milestones = ()
        config.rays.render_steps = 16
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
