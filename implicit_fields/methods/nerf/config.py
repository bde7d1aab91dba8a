"""NeRF's defaults, which are also its schema: a radiance field of one scene from posed images.

Every key a NeRF config may set is defined here (shared sections in
`config_utils.common_config`); the trainer rejects any other. The defaults are
the original's network and sampling (jaxnerf `configs/blender.yaml`,
`nerf/utils.py` flags: 8 x 256 with a skip at layer 4, 10 / 4 octaves, 64
coarse + 128 fine samples, 4,096 rays, white background, 5e-4 to 5e-6) on
the built-in scene that DVR uses; `experiments/configs/nerf.py` holds the sizes
(full, cpu, tiny).
"""

import ml_collections

from implicit_fields import config_utils, train_utils
from implicit_fields.config_utils import Bool, Choice, Float, Int, Str


def get_config() -> ml_collections.ConfigDict:
    """The defaults of a NeRF run."""
    config = config_utils.common_config("nerf")
    # The field lives in the padded unit cube like every field of the library: samples are
    # taken inside it and MISE meshes it. field.threshold is not used (the mesh is the
    # level set of the density, `generate.density_threshold`).
    config.field.padding = 0.1

    config.data = data = ml_collections.ConfigDict()
    # The scene: DVR's multi-view layout (image/, mask/, cameras.npz; the last `val_views`
    # views held out) or the NeRF "Blender" layout (transforms_{train,val,test}.json, RGBA
    # PNGs); the layout is recognised from the files. With `builtin` a missing folder is
    # rendered from a built-in object in `layout` (the same scene DVR renders by default).
    data.path = "data/dvr_builtin"
    data.layout = "multiview"  # Layout to render a missing built-in scene in: 'multiview' or 'blender'.
    data.builtin = True
    data.builtin_category = "sofa"
    data.builtin_index = 0
    data.builtin_seed = 0
    data.n_views = 24
    data.resolution = 64
    data.texture = "stripes"
    data.material = "diffuse"  # 'diffuse' or 'specular' (a view-dependent highlight).
    data.val_views = 4  # Multi-view layout: the last views are held out (validation and test).
    # Blender layout: world units per unit of the field's cube (the scene must fit in the
    # padded cube: NeRF's synthetic scenes lie within about [-1.5, 1.5]^3, scale 3).
    data.scale = 1.0
    # Ray bounds in camera depth (the Blender scenes' near 2, far 6); 0 and 0: each ray's
    # own intersection with the field's padded cube (tighter, and rays that miss it are
    # background).
    data.near = 0.0
    data.far = 0.0
    data.white_background = True  # Composite on white (Blender's RGBA images, our renders).

    config.model = model = ml_collections.ConfigDict()
    model.net_depth = 8  # Trunk layers (original 8).
    model.net_width = 256  # Trunk width (original 256).
    model.skip_layer = 4  # The input is concatenated after every skip_layer-th layer (original 4).
    model.net_depth_condition = 1  # Layers of the view-direction branch (original 1).
    model.net_width_condition = 128  # Its width (original 128).
    model.deg_point = 10  # Octaves of the points' encoding (original 10: 63 inputs).
    model.deg_view = 4  # Octaves of the view directions' encoding (original 4: 27 inputs).
    model.use_viewdirs = True  # The view-direction branch (original True).

    config.rays = rays = ml_collections.ConfigDict()
    rays.per_step = 4096  # Rays per step (original 4,096).
    rays.single_image = True  # Each step's rays come from one training image (original) or all.
    rays.num_coarse = 64  # Stratified samples of the coarse network (original 64).
    rays.num_fine = 128  # Inverse-CDF samples of the fine network (original 128; it sees 192).
    rays.chunk = 4096  # Rays per call when rendering whole views.

    config.optim.learning_rate = 5e-4  # Original 5e-4 ...
    config.optim.schedule = "exponential"
    config.optim.final_lr_fraction = 0.01  # ... to 5e-6 at the last step.

    config.train.num_steps = 1_000_000  # Original 1M.
    config.train.eval_every = 25_000
    config.train.checkpoint_every = 25_000
    config.train.val_images = 4  # Validation renders the first views of the 'val' split (0: all).

    gen = config.generate  # gen.checkpoint: 'best' (highest held-out PSNR) or 'latest'.
    gen.resolution0 = 32  # MISE first level.
    gen.upsampling_steps = 2  # MISE: final grid 128^3.
    gen.batch_points = 0  # Points per network call; 0: meshing.default_batch_points().
    # The mesh is the level set of the fine network's density sigma (per unit of the field's
    # length) at this value; 0: the level whose silhouettes best match the training masks
    # (the usual fixed 50 of NeRF mesh extraction depends on the scene's scale and training).
    gen.density_threshold = 0.0
    gen.num_views = 4  # Held-out views shown in renderings.png.

    config.eval = ev = ml_collections.ConfigDict()
    ev.n_points = 100_000  # Uniform points in the padded cube for the mesh IoU.
    ev.n_samples = 100_000  # Surface samples for Chamfer-L1 / normal consistency / F-score.
    ev.fscore_threshold = 0.01
    ev.undefined_metrics = "original"  # As DVR's (see implicit_fields.metrics).
    return config


# What each of NeRF's own keys must be (the shared ones: `config_utils.COMMON_CHECKS`).
CHECKS = {
    "train.compute_dtype": train_utils.Float32Only(
        method="NeRF",
        reason=(
            "its high-frequency positional encoding and the transmittance products of volume rendering "
            "need float32, and its flax Dense layers would compute in float32 anyway"
        ),
    ),
    "data.path": Str(),
    "data.layout": Choice(("multiview", "blender")),
    "data.builtin": Bool(),
    "data.builtin_category": Str(),
    "data.builtin_index": Int(0),
    "data.builtin_seed": Int(0),
    "data.n_views": Int(2, meaning="at least one for training and one held out"),
    "data.resolution": Int(8),
    "data.texture": Choice(("stripes", "none")),
    "data.material": Choice(("diffuse", "specular")),
    "data.val_views": Int(0),
    "data.scale": Float(0.0, min_open=True),
    "data.near": Float(0.0, meaning="0 with far 0: each ray's intersection with the padded cube"),
    "data.far": Float(0.0, meaning="0 with near 0: each ray's intersection with the padded cube"),
    "data.white_background": Bool(),
    "model.net_depth": Int(1),
    "model.net_width": Int(1),
    "model.skip_layer": Int(1),
    "model.net_depth_condition": Int(0),
    "model.net_width_condition": Int(1),
    "model.deg_point": Int(0),
    "model.deg_view": Int(0),
    "model.use_viewdirs": Bool(),
    "train.val_images": Int(0, meaning="0: every view of the val split"),
    "rays.per_step": Int(1),
    "rays.single_image": Bool(),
    "rays.num_coarse": Int(2),
    "rays.num_fine": Int(0, meaning="0: the coarse network only"),
    "rays.chunk": Int(1),
    "generate.resolution0": Int(1),
    "generate.upsampling_steps": Int(0),
    "generate.batch_points": Int(0, meaning="0: the device's default"),
    "generate.density_threshold": Float(0.0, meaning="0: matched to the training masks"),
    "generate.num_views": Int(0),
    "eval.n_points": Int(1),
    "eval.n_samples": Int(1),
    "eval.fscore_threshold": Float(0.0, min_open=True),
    "eval.undefined_metrics": Choice(("original", "worst")),
}
