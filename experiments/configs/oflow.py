"""Occupancy Flow from one file (`--config experiments/configs/oflow.py:ARG`).

ARG is a comma-separated list of a model and a size, both optional:

* models: `pointcloud` (default: the original's 4D point-cloud completion,
  `configs/pointcloud/oflow.yaml`: ResNet-PointNet codes of hidden 128 and
  c 128, velocity field hidden 128, L_t0 + L_t), `correspond` (the same with
  the correspondence loss, `pointcloud/oflow_w_correspond.yaml`) and
  `generative` (`generative/oflow.yaml`: no encoders, z and z_t of 128 from
  PointNet posteriors, the simple decoder, a velocity field of 3 blocks, the
  correspondence loss, KL weighted 1e-4); all Dopri5 (rtol 1e-3, atol 1e-5)
  with the continuous adjoint, batch 16, Adam 1e-4, threshold 0.3;
* sizes: `full` (default: the original's sizes on the built-in shapes in
  motion; for a GPU or TPU), `cpu` (a run of about 25 minutes on two CPU cores:
  batch 8 x 256 points, narrower networks, the checkpointed adjoint) and `tiny` (the tests' smoke-test sizes).

D-FAUST itself: `data.path=data/Humans data.builtin=False data.offset=15
data.categories="('D-FAUST',)"`.

  python -m experiments.main --config experiments/configs/oflow.py:cpu --workdir runs/oflow
"""

from implicit_fields.methods.oflow import config as oflow_config

MODELS = ("pointcloud", "correspond", "generative")
SIZES = ("full", "cpu", "tiny")


def parse_arg(arg):
    """(model, size) of an argument such as 'correspond,cpu' (each optional, defaults first)."""
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
    config = oflow_config.get_config()
    data, model, train, gen = config.data, config.model, config.train, config.generate
    if kind in ("correspond", "generative"):
        config.loss.corr = True
    if kind == "generative":
        model.encoder = model.encoder_temporal = ""
        model.c_dim = 0
        model.decoder = "simple"
        model.z_dim = 128
        model.velocity_blocks = 3
        data.input_points = 4000  # generative/oflow.yaml: 4000 points, no noise.
        data.input_noise = 0.0

    if size == "cpu":
        data.path = "data/motion_cpu"
        data.builtin_sequences_per_category = 40  # 28 training sequences of each category.
        data.builtin_num_points = 20_000
        data.builtin_num_pcl_points = 10_000
        data.points_subsample = 256
        model.decoder_hidden = 128
        model.velocity_hidden = 64
        # On two CPU cores a step differentiated through the solver's steps took 0.36 s, with
        # the continuous adjoint 0.62 s (the backward solve is adaptive too); `full` keeps the
        # original's continuous adjoint.
        config.ode.adjoint = "checkpoint"
        config.optim.learning_rate = 5e-4
        train.batch_size = 8
        train.num_steps = 3000
        train.eval_every = 500
        train.checkpoint_every = 250
        train.val_windows = 4
        train.val_points = 2000
        gen.max_windows = 6
        gen.resolution0 = 16
        gen.upsampling_steps = 2
        gen.baseline_windows = 1
        gen.picture_windows = 3
        config.eval.n_samples = 20_000
        config.eval.iou_points = 20_000
        config.eval.surface_points = 10_000
        if kind == "generative":
            data.input_points = 1000
    elif size == "tiny":
        data.path = "data/motion_tiny"
        data.builtin_categories = ("chair", "lamp")
        data.builtin_sequences_per_category = 5
        data.builtin_frames = 6
        data.builtin_num_points = 2000
        data.builtin_num_pcl_points = 500
        data.length = 5
        data.points_subsample = 64
        data.pcl_points = 16
        data.input_points = 32
        model.encoder_hidden = model.encoder_temporal_hidden = 16
        model.c_dim = 0 if kind == "generative" else 16
        model.decoder_hidden = 16
        model.decoder_blocks = 1  # One block each: compiling networks, solves and adjoints is most of a run.
        model.velocity_hidden = 16
        model.velocity_blocks = 1
        if kind == "generative":
            model.z_dim = 8
            model.encoder_latent_hidden = 16
            model.encoder_latent_blocks = 1
        train.batch_size = 4
        train.num_steps = 4
        train.eval_every = 4
        train.checkpoint_every = 2
        train.val_windows = 1
        train.val_points = 200
        gen.max_windows = 2
        gen.resolution0 = 8
        gen.upsampling_steps = 1
        gen.baseline_windows = 1
        gen.picture_windows = 1
        gen.picture_frames = 3
        gen.gif_size = 48
        config.eval.n_samples = 2000
        config.eval.iou_points = 2000
        config.eval.surface_points = 500
        config.logging.log_every = 2
        config.logging.progress = False
        config.logging.tensorboard = False
    return config
