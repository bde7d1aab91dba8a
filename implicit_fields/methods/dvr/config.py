"""DVR's defaults, which are also its schema: per-scene multi-view reconstruction of one object.

Every key a DVR config may set is defined here (shared sections in
`config_utils.common_config`); the trainer rejects any other. The defaults
are a run of minutes on a CPU: a built-in object rendered into 24 views of
64 x 64 pixels (4 held out), a 128-wide decoder, images and masks only (no
depth). The original's DTU values are in the comments; the experiment config
`experiments/configs/dvr.py` holds the sizes (tiny, cpu, full).
"""

import ml_collections

from implicit_fields import config_utils, train_utils
from implicit_fields.config_utils import Bool, Choice, Float, Int, Steps, Str


def get_config() -> ml_collections.ConfigDict:
    """The defaults of a DVR run."""
    config = config_utils.common_config("dvr")
    config.field.threshold = 0.5  # DVR's surface: occupancy probability 0.5 (tau).
    config.field.padding = 0.1  # The field lives in the cube of side 1.1, as the original.

    config.data = data = ml_collections.ConfigDict()
    # A folder in the multi-view layout (image/, mask/, [depth/,] cameras.npz). With
    # `builtin` it is rendered from a built-in object when missing; any other folder in
    # the original's layout (DTU scan, ShapeNet renderings) works with builtin False.
    data.path = "data/dvr_builtin"
    data.builtin = True  # Render the built-in object into `path` when it is missing.
    data.builtin_category = "sofa"  # Category name or synset of the built-in object.
    data.builtin_index = 0  # Object index within the category (same generator as data/builtin).
    data.builtin_seed = 0  # Seed of the built-in object (shape) and of its views.
    data.n_views = 24  # Views rendered.
    data.resolution = 64  # Rendered image size (pixels per side).
    data.texture = "stripes"  # 'stripes' or 'none' (plain per-part colours).
    # 'diffuse' (Lambert: a point's colour is the same in every view, as DVR assumes) or
    # 'specular' (plus white Blinn-Phong highlights that move with the view; for `model.view_dependent`).
    data.material = "diffuse"
    data.val_views = 4  # The last views are held out from training (validation and evaluation).
    # Occupancy loss at the visual-hull depth (carved from the training masks) instead of
    # a random depth: the original's `depth_from_visual_hull` (used for its NMR data).
    data.visual_hull_depth = True
    data.visual_hull_resolution = 128  # Voxels per side of the carved visual hull.

    config.model = model = ml_collections.ConfigDict()
    model.hidden_dim = 128  # Decoder width (original 512; 128 in its `ours_rgb` configs).
    model.n_blocks = 5  # ResNet blocks (original 5).
    # IDR's view-dependent colour (Yariv et al. 2020): the decoder gives [logit, feature] and a
    # rendering MLP maps (x, normal from the logit's gradient, encoded view direction, feature)
    # to RGB. Off: DVR's texture field (one colour per point, whatever the view).
    model.view_dependent = False
    model.feature_dim = 64  # Feature from the geometry network (IDR 256).
    model.render_hidden = 128  # Rendering MLP width (IDR 512).
    model.render_layers = 4  # Rendering MLP hidden layers (IDR 4).
    model.view_freqs = 4  # Octaves of the view direction's positional encoding (IDR 4).

    config.loss = loss = ml_collections.ConfigDict()
    loss.lambda_rgb = 1.0  # Photo-consistency (L1) at the rendered surface point (original 1).
    loss.lambda_depth = 0.0  # Depth L1 (0: images and masks only; original ours_depth 1, combined 10).
    loss.lambda_freespace = 1.0  # BCE to free at a random in-cube point of rays outside the mask (surface).
    loss.lambda_occupied = 1.0  # BCE to occupied on rays inside the mask that found no surface (surface).
    # BCE of the rendered opacity against the mask; rays.mode 'volume' only (there it replaces the
    # freespace and occupancy terms; the experiment config's `volume` option sets 1.0).
    loss.lambda_mask = 0.0
    loss.lambda_normal = 0.1  # Normal smoothness (DTU: 0.1, ShapeNet 0.05).
    loss.n_secant = 8  # Secant steps refining the first crossing (original 8).

    config.rays = rays = ml_collections.ConfigDict()
    rays.per_step = 1024  # Rays per step (DTU: batch 1 x 2048 pixels; ShapeNet 1024 per image).
    rays.steps_start = 64  # Marching steps, doubled at each milestone (original: 16 ...).
    rays.steps_milestones = (1000,)  # Original: 50k, 100k, 250k iterations.
    rays.steps_max = 128  # Original: 128.
    rays.render_steps = 256  # Marching steps for rendering views (original: 1024).
    # 'surface': DVR (the colour at the first crossing of the threshold, depth gradient by
    # implicit differentiation). 'volume': the occupancy field composited along each ray with
    # alpha = occupancy probability (UNISURF), for training and rendered views; the mesh is the same.
    rays.mode = "surface"
    rays.volume_samples = 64  # Volume mode: stratified samples per ray (training and rendering).

    config.optim.learning_rate = 5e-4  # Original 1e-4; larger for a run of minutes.
    config.optim.schedule = "multistep"  # The original's MultiStepLR.
    config.optim.milestones = (1200, 1600)  # Steps where the learning rate is multiplied by gamma.
    config.optim.gamma = 0.5  # Original 0.5.

    config.train.num_steps = 2000  # Optimiser steps.
    config.train.eval_every = 250  # Steps between renderings of the held-out views (best/ by mask IoU).
    config.train.checkpoint_every = 250  # Steps between checkpoints.

    gen = config.generate  # gen.checkpoint: 'best' (highest held-out mask IoU) or 'latest'.
    gen.resolution0 = 32  # MISE first level.
    gen.upsampling_steps = 2  # MISE: final grid 128^3.
    gen.batch_points = 0  # Points per network call; 0: meshing.default_batch_points().
    gen.num_views = 4  # Held-out views shown in renderings.png.

    config.eval = ev = ml_collections.ConfigDict()
    ev.n_points = 100_000  # Uniform points in the padded cube for the IoU.
    ev.n_samples = 100_000  # Surface samples for Chamfer / normal consistency / F-score.
    ev.fscore_threshold = 0.01  # F-score distance (F@1%).
    # Values the original leaves undefined: 'original' (an empty mesh has no Chamfer-L1 /
    # F-score, normal consistency -1; P = R = 0 has no F-score: null in metrics.json) or
    # 'worst' (empty: Chamfer-L1 sqrt(3) x10, normal consistency 0, F-score 0; P = R = 0:
    # F-score 0). metrics.json holds both (`<metric>_<other convention>`).
    ev.undefined_metrics = "original"
    return config


# What each of DVR's own keys must be (the shared ones: `config_utils.COMMON_CHECKS`); the
# trainer checks every value before any work (`task.check_config`).
CHECKS = {
    "train.compute_dtype": train_utils.Float32Only(
        method="DVR",
        reason=(
            "its surface search refines logit sign changes with secant steps and its depth gradient "
            "divides by the field's slope along the ray, which bfloat16 logits make noise"
        ),
    ),
    "data.path": Str(),
    "data.builtin": Bool(),
    "data.builtin_category": Str(),
    "data.builtin_index": Int(0),
    "data.builtin_seed": Int(0),
    "data.n_views": Int(2, meaning="at least one for training and one held out"),
    "data.resolution": Int(8),
    "data.texture": Choice(("stripes", "none")),
    "data.material": Choice(("diffuse", "specular")),
    "data.val_views": Int(0),
    "data.visual_hull_depth": Bool(),
    "data.visual_hull_resolution": Int(8),
    "model.hidden_dim": Int(1),
    "model.n_blocks": Int(1),
    "model.view_dependent": Bool(),
    "model.feature_dim": Int(1),
    "model.render_hidden": Int(1),
    "model.render_layers": Int(1),
    "model.view_freqs": Int(0),
    "loss.lambda_rgb": Float(0.0),
    "loss.lambda_depth": Float(0.0),
    "loss.lambda_freespace": Float(0.0),
    "loss.lambda_occupied": Float(0.0),
    "loss.lambda_normal": Float(0.0),
    "loss.lambda_mask": Float(0.0),
    "loss.n_secant": Int(1),
    "rays.per_step": Int(1),
    "rays.steps_start": Int(2),
    "rays.steps_milestones": Steps(),
    "rays.steps_max": Int(2),
    "rays.render_steps": Int(2),
    "rays.mode": Choice(("surface", "volume")),
    "rays.volume_samples": Int(1),
    "generate.resolution0": Int(1),
    "generate.upsampling_steps": Int(0),
    "generate.batch_points": Int(0, meaning="0: the device's default"),
    "generate.num_views": Int(0),
    "eval.n_points": Int(1),
    "eval.n_samples": Int(1),
    "eval.fscore_threshold": Float(0.0, min_open=True),
    "eval.undefined_metrics": Choice(("original", "worst")),
}
