"""DVR multi-view reconstruction of one built-in object from its images and masks alone.

Per-scene optimisation as in the original's DTU configs (no encoder, c_dim 0, batch of
rays from the training views, MultiStepLR), shrunk to run in minutes on a CPU: a
128-wide decoder, 64x64 renders, 24 views of which 4 are held out. No 3D supervision
and no depth (lambda_depth 0): RGB, freespace, occupancy and normal losses only.

  python -m experiments.main --config experiments/configs/dvr_multiview.py --workdir runs/dvr

Writes WORKDIR/mesh.ply (MISE, coloured by the texture field), renderings.png (held-out
views: ground truth next to our rendering), metrics.json (IoU / Chamfer against the
exact ground-truth shape, mask IoU and PSNR on held-out views).
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.method = "dvr"
    config.seed = 0

    config.data = data = ml_collections.ConfigDict()
    # A folder in the multi-view layout (image/, mask/, [depth/,] cameras.npz). With
    # `builtin` it is rendered from a built-in object when missing; any other folder in
    # the original's layout (DTU scan, ShapeNet renderings) works with builtin False.
    data.path = "data/dvr_builtin"
    data.builtin = True
    data.builtin_category = "sofa"  # Category name or synset of the built-in object.
    data.builtin_index = 0  # Object index within the category (same generator as data/builtin).
    data.builtin_seed = 0  # Seed of the built-in object (shape) and of its views.
    data.n_views = 24  # Views rendered.
    data.resolution = 64  # Rendered image size (pixels per side).
    data.texture = "stripes"  # 'stripes' or 'none' (plain per-part colours).
    data.val_views = 4  # The last views are held out from training (evaluation only).
    # Occupancy loss at the visual-hull depth (carved from the training masks) instead of
    # a random depth: the original's `depth_from_visual_hull` (used for its NMR data).
    data.visual_hull_depth = True
    data.visual_hull_resolution = 128

    config.model = model = ml_collections.ConfigDict()
    model.hidden_dim = 128  # Decoder width (original 512).
    model.n_blocks = 5  # ResNet blocks (original 5).

    config.loss = loss = ml_collections.ConfigDict()
    loss.lambda_rgb = 1.0
    loss.lambda_depth = 0.0  # Images and masks only.
    loss.lambda_freespace = 1.0
    loss.lambda_occupied = 1.0
    loss.lambda_normal = 0.1  # DTU: 0.1 (ShapeNet 0.05).
    loss.threshold = 0.5  # Surface occupancy probability (DVR: 0.5).
    loss.padding = 0.1  # The field lives in the cube of side 1 + padding.
    loss.n_secant = 8

    config.rays = rays = ml_collections.ConfigDict()
    rays.per_step = 1024  # Rays per step (DTU: batch 1 x 2048 pixels; ShapeNet 1024 per image).
    rays.steps_start = 64  # Marching steps, doubled at each milestone (original: 16 ...).
    rays.steps_milestones = (1000,)  # Original: 50k, 100k, 250k iterations.
    rays.steps_max = 128  # Original: 128.
    rays.render_steps = 256  # Marching steps for rendering views (original: 1024).

    config.optim = optim = ml_collections.ConfigDict()
    optim.learning_rate = 5e-4  # Original 1e-4; larger for a run of minutes.
    optim.milestones = (1200, 1600)  # MultiStepLR milestones (DTU: 3000, 5000).
    optim.gamma = 0.5

    config.train = train = ml_collections.ConfigDict()
    train.num_steps = 2000
    train.log_every = 50
    train.checkpoint_every = 250
    train.max_to_keep = 2
    train.progress = True
    train.tensorboard = True

    config.generate = gen = ml_collections.ConfigDict()
    gen.resolution0 = 32  # MISE first level.
    gen.upsampling_steps = 2  # MISE: final grid 128^3.
    gen.batch_points = 0  # Points per network call; 0: meshing.default_batch_points().
    gen.num_views = 4  # Held-out views shown in renderings.png.

    config.eval = ev = ml_collections.ConfigDict()
    ev.n_points = 100_000  # Uniform points in the padded cube for IoU.
    ev.n_samples = 100_000  # Surface samples for Chamfer / normal consistency / F-score.
    ev.fscore_threshold = 0.01

    config.debug = debug = ml_collections.ConfigDict()
    debug.disable_jit = False
    return config
