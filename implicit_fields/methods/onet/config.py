"""ONet's defaults, which are also its schema: the original point-cloud Occupancy Network.

Every key an ONet config may set is defined here (shared sections in
`config_utils.common_config`); the trainer rejects any other. The values are
those of the original `configs/pointcloud/onet.yaml`; the experiment configs
(`experiments/configs/onet.py`) override what a variant or a size changes.
"""

import ml_collections

from implicit_fields import config_utils
from implicit_fields.config_utils import Bool, Choice, Float, Int, Str, Strings


def get_config() -> ml_collections.ConfigDict:
    """The defaults of an Occupancy Network run (the original onet_pointcloud)."""
    config = config_utils.common_config("onet")
    config.field.threshold = 0.2  # The original's test.threshold (validation IoU and meshes).

    config.data = data = ml_collections.ConfigDict()
    data.path = "data/builtin"  # Dataset root in the Occupancy Networks layout.
    data.builtin = True  # Generate the built-in procedural dataset at `path` if it is missing.
    data.builtin_objects_per_category = 150  # Objects per category when generating.
    data.builtin_categories = ()  # Category names/ids to generate; () means all.
    data.builtin_num_points = 100_000  # Occupancy points per object (points.npz).
    data.builtin_num_surface_points = 100_000  # Surface points per object (pointcloud.npz).
    data.categories = ()  # Category ids to train/evaluate on; () means all in metadata.yaml.
    data.train_split = "train"  # Split the model trains on.
    data.val_split = "val"  # Split of the validation during training.
    data.test_split = "test"  # The test split's name.
    data.points_subsample = 2048  # Query points per object and step (original: 2048).
    data.points_jitter = 1e-4  # N(0, 1) * jitter added to query points (original, float16 data).
    data.pointcloud_n = 300  # Input points per object (original: 300).
    data.pointcloud_noise = 0.005  # Std of the input noise (original: 0.005).
    data.input_type = "pointcloud"  # Model input: 'pointcloud', 'voxels' (model.binvox), 'img' or '' (none).
    data.voxel_resolution = 32  # Voxels per side of model.binvox (original: 32); built-in ones use it.
    data.img_folder = "img_choy2016"  # Per-object folder of the single-view images (original layout).
    data.img_size = 224  # Images are resized to img_size^2 on loading (original: 224).
    data.img_n_views = 24  # Views rendered per built-in object (original: 24).
    data.img_with_camera = False  # Image items also carry their view's world_mat / camera_mat.
    data.builtin_img_resolution = 137  # Side of the built-in renders (Choy et al.: 137).
    data.cache = True  # Keep loaded objects in memory.

    config.model = model = ml_collections.ConfigDict()
    # 'pointnet_resnet', 'voxel_simple', 'resnet18', 'resnet18_pixel' (a pixel-aligned feature map,
    # PIFu's idea; needs data.img_with_camera) or '' (unconditional).
    model.encoder = "pointnet_resnet"
    # 'cbatchnorm' (DecoderCBatchNorm), 'simple' or 'pixel_aligned' (with 'resnet18_pixel' only).
    model.decoder = "cbatchnorm"
    model.c_dim = 512  # Code size (original pointcloud config: 512); the channels of resnet18_pixel's map.
    model.encoder_hidden = 512  # ResnetPointnet width (512); VoxelEncoder (32), Resnet18 (64) conv1 width.
    model.decoder_hidden = 256  # Decoder width (original: 256).
    model.decoder_blocks = 5  # Decoder ResNet blocks (original: 5).
    model.z_dim = 0  # Latent size of the VAE (0: no latent; original unconditional: 128).
    model.encoder_latent = "simple"  # Latent encoder q(z | p, o, c) used when z_dim > 0.
    model.encoder_latent_hidden = 128  # Latent encoder width (original: 128).

    config.optim.learning_rate = 1e-4  # Original: Adam 1e-4, constant.

    train = config.train
    train.batch_size = 64  # Objects per step, split over all devices (original: 64).
    train.num_steps = 300_000  # Total optimiser steps.
    train.eval_every = 2000  # Steps between validation IoU (the best model is kept).
    train.checkpoint_every = 1000  # Steps between checkpoints.
    train.val_objects = 0  # Validation objects used during training; 0 means all.
    train.val_points = 100_000  # Query points per validation object for IoU.
    train.eval_batch_size = 8  # Objects per validation call.

    gen = config.generate  # gen.checkpoint: 'best' (highest val IoU) or 'latest'.
    gen.split = "val"  # Which split to mesh.
    gen.method = "mise"  # 'mise' (multiresolution, the original's) or 'dense' grid.
    gen.resolution0 = 32  # MISE: cells per side of the first level (original configs: 32).
    gen.upsampling_steps = 2  # MISE: levels of subdivision; final grid resolution0 * 2^steps.
    gen.simplify_nfaces = 0  # MISE: simplify to about this many faces first; 0 = off (demo 5000).
    gen.refinement_steps = 0  # MISE: vertex refinement steps (original default 0, demo 30).
    # Refinement gradient: 'second_order' (the original's, through grad f), 'first_order'
    # (n_target held fixed, half the cost) or 'auto' (first order for piecewise-linear
    # ReLU decoders, where the two are the same, else second order).
    gen.refinement_gradient = "auto"
    # MISE: marching cubes by 'pymcubes' (host, whole grid) or 'jax' (jitted, active cells only).
    gen.marching_cubes = "pymcubes"
    # MISE: which new points a finer level evaluates: 'cells' (the original: all of each active
    # cell's) or 'surface' (only those of the fine cells the surface crosses; ~25% fewer queries).
    gen.subdivision = "cells"
    gen.resolution = 128  # Dense: cells per side of the grid.
    gen.batch_points = 0  # Points per network call; 0: 100k on GPU/TPU, 4096 on the CPU (faster there).
    gen.max_objects = 0  # Objects to mesh; 0 means the whole split.
    # MISE: objects meshed together, one jitted call per level for all (`mise.extract_meshes_batched`,
    # the same meshes); 1: one at a time (`mise.extract_mesh`).
    gen.batch_objects = 1  # Measured slower batched on the CPU; try 8 on a GPU (benchmarks/generation.py).
    gen.num_pictures = 8  # Objects (one per category) shown in the comparison picture.

    config.eval = ev = ml_collections.ConfigDict()
    ev.n_samples = 100_000  # Points sampled on each predicted mesh (original: 100k).
    ev.fscore_threshold = 0.01  # F-score distance (ConvONet's F@1%).
    # Values the original leaves undefined: 'original' (its scoring: an empty mesh has IoU 0,
    # normal consistency -1 and no Chamfer-L1 / F-score, P = R = 0 no F-score; left out of
    # the means, as its pandas means skip them) or 'worst' (empty: Chamfer-L1 sqrt(3) x10,
    # normal consistency 0, F-score 0; P = R = 0: F-score 0). eval_meshes.csv holds both.
    ev.undefined_metrics = "original"
    # N(0, 1) * jitter added to the IoU points (the original's, for float16 points.npz),
    # seeded by config.seed and the object; 0: off.
    ev.iou_jitter = 1e-4
    return config


# What each of ONet's own keys must be (the shared ones: `config_utils.COMMON_CHECKS`); the
# trainer checks every value before any work (`task.check_config`).
CHECKS = {
    "data.path": Str(),
    "data.builtin": Bool(),
    "data.builtin_objects_per_category": Int(1),
    "data.builtin_categories": Strings(),
    "data.builtin_num_points": Int(1),
    "data.builtin_num_surface_points": Int(1),
    "data.categories": Strings(),
    "data.train_split": Str(),
    "data.val_split": Str(),
    "data.test_split": Str(),
    "data.points_subsample": Int(1, meaning="query points per object and step"),
    "data.points_jitter": Float(0.0),
    "data.pointcloud_n": Int(1),
    "data.pointcloud_noise": Float(0.0),
    "data.input_type": Choice(("pointcloud", "voxels", "img", "")),
    "data.voxel_resolution": Int(1),
    "data.img_folder": Str(),
    "data.img_size": Int(8),
    "data.img_n_views": Int(1),
    "data.img_with_camera": Bool(),
    "data.builtin_img_resolution": Int(8),
    "data.cache": Bool(),
    "model.encoder": Choice(("pointnet_resnet", "voxel_simple", "resnet18", "resnet18_pixel", "")),
    "model.decoder": Choice(("cbatchnorm", "simple", "pixel_aligned")),
    "model.c_dim": Int(0),
    "model.encoder_hidden": Int(1),
    "model.decoder_hidden": Int(1),
    "model.decoder_blocks": Int(1),
    "model.z_dim": Int(0, meaning="0: no latent"),
    "model.encoder_latent": Choice(("simple",)),
    "model.encoder_latent_hidden": Int(1),
    "train.batch_size": Int(1),
    "train.val_objects": Int(0, meaning="0: all"),
    "train.val_points": Int(1),
    "train.eval_batch_size": Int(1),
    "generate.split": Str(),
    "generate.method": Choice(("mise", "dense")),
    "generate.resolution0": Int(1),
    "generate.upsampling_steps": Int(0),
    "generate.simplify_nfaces": Int(0, meaning="0: off"),
    "generate.refinement_steps": Int(0),
    "generate.refinement_gradient": Choice(("auto", "first_order", "second_order")),
    "generate.marching_cubes": Choice(("pymcubes", "jax")),
    "generate.subdivision": Choice(("cells", "surface")),
    "generate.resolution": Int(1),
    "generate.batch_points": Int(0, meaning="0: the device's default"),
    "generate.batch_objects": Int(1),
    "generate.max_objects": Int(0, meaning="0: the whole split"),
    "generate.num_pictures": Int(0),
    "eval.n_samples": Int(1),
    "eval.fscore_threshold": Float(0.0, min_open=True),
    "eval.undefined_metrics": Choice(("original", "worst")),
    "eval.iou_jitter": Float(0.0, meaning="0: off"),
}

# Which encoder reads which input (the model's `encoder` and the data's `input_type`).
ENCODER_INPUTS = {
    "pointnet_resnet": "pointcloud",
    "voxel_simple": "voxels",
    "resnet18": "img",
    "resnet18_pixel": "img",
    "": "",
}
