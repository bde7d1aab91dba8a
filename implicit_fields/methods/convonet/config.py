"""ConvONet's defaults, which are also its schema: the original ShapeNet 3-plane model.

The values are those of the original `configs/pointcloud/shapenet_3plane.yaml`
(3,000 input points with noise 0.005, 2,048 query points, batch 32, Adam 1e-4,
threshold 0.2, three 64^2 planes of 32 channels, a depth-4 U-Net, a local
decoder of width 32); the experiment configs (`experiments/configs/convonet.py`)
set the grid (32^3, 3-level 3D U-Net), the rooms and the smaller sizes. The data
section is ONet's: the same ONet-layout datasets, built-in or prepared.
"""

import ml_collections

from implicit_fields import config_utils
from implicit_fields.config_utils import Bool, Choice, Float, Int, Ints, Str, Strings

FEATURE_TYPES = ("xz", "xy", "yz", "grid")


def get_config() -> ml_collections.ConfigDict:
    """The defaults of a ConvONet run (the original shapenet_3plane)."""
    config = config_utils.common_config("convonet")
    config.field.threshold = 0.2  # The original's test.threshold.

    config.data = data = ml_collections.ConfigDict()
    data.path = "data/builtin"  # Dataset root in the Occupancy Networks layout.
    data.builtin = True  # Generate the built-in procedural dataset at `path` if it is missing.
    # Which built-in data: 'shapes' (the ShapeNet-like objects, ONet's) or 'rooms' (the synthetic
    # rooms of the original's recipe, in its room layout; `data.rooms_*` below).
    data.builtin_kind = "shapes"
    data.builtin_objects_per_category = 150  # Objects per category when generating.
    data.builtin_categories = ()  # Category names/ids to generate; () means all.
    data.builtin_num_points = 100_000  # Occupancy points per object (points.npz).
    data.builtin_num_surface_points = 100_000  # Surface points per object (pointcloud.npz).
    data.categories = ()  # Category ids to train/evaluate on; () means all in metadata.yaml.
    data.train_split = "train"  # Split the model trains on.
    data.val_split = "val"  # Split of the validation during training.
    data.test_split = "test"  # The test split's name.
    data.points_subsample = 2048  # Query points per object and step (original: 2048).
    data.points_jitter = 1e-4  # N(0, 1) * jitter added to query points (float16 data, as ONet).
    data.pointcloud_n = 3000  # Input points per object (original: 3000).
    data.pointcloud_noise = 0.005  # Std of the input noise (original: 0.005).
    data.cache = True  # Keep loaded objects in memory.
    # Built-in rooms (data.builtin_kind 'rooms'; the original: 1000 rooms per class, 10 files of 100k).
    data.rooms_object_counts = (4, 5, 6, 7, 8)  # Objects per room of each class rooms_04 ... rooms_08.
    data.rooms_per_class = 1000  # Rooms per class (split 75 / 5 / 20 %).
    data.rooms_num_files = 10  # pointcloud_XX / points_iou_XX files per room (training draws one).
    data.rooms_num_points = 100_000  # Uniform occupancy points per points_iou file.
    data.rooms_num_surface_points = 100_000  # Surface points per pointcloud file.

    config.model = model = ml_collections.ConfigDict()
    model.plane_type = ("xz", "xy", "yz")  # Feature planes and/or 'grid' (original: 3 planes).
    model.plane_resolution = 64  # Cells per side of each plane (original objects: 64; rooms 128).
    model.grid_resolution = 32  # Cells per side of the grid (original objects: 32; rooms 64).
    model.c_dim = 32  # Feature channels (original: 32).
    model.encoder_hidden = 32  # Local-pool PointNet width (original: 32).
    model.encoder_blocks = 5  # Its ResNet blocks (original: 5).
    model.scatter_type = "max"  # Local pool between blocks: 'max' (original) or 'mean'.
    model.unet = True  # A 2D U-Net on the planes (one instance shared by them).
    model.unet_depth = 4  # Its levels (original: 4 objects, 5 rooms).
    model.unet_start_filts = 32  # Its first width, doubled per level (original: 32).
    model.unet3d = True  # A 3D U-Net on the grid.
    model.unet3d_levels = 3  # Its levels (original: 3 for 32^3, 4 for 64^3).
    model.unet3d_f_maps = 32  # Its first width (original: 32).
    model.unet3d_layer_order = "gcr"  # 'gcr' (GroupNorm, conv, ReLU: original) or 'cr' (no norm).
    # The crop models' lattice (grid only): networks read a point's position inside its voxel and
    # features sit at voxel centres, so scenes larger than the training cube decode crop by crop.
    model.local_coord = False
    model.decoder_hidden = 32  # Local decoder width (original: 32).
    model.decoder_blocks = 5  # Its ResNet blocks (original: 5).

    config.optim.learning_rate = 1e-4  # Original: Adam 1e-4, constant.

    train = config.train
    train.batch_size = 32  # Objects per step, split over all devices (original ShapeNet: 32).
    train.num_steps = 300_000  # Total optimiser steps.
    train.eval_every = 10_000  # Steps between validation IoU (original: 10000; the best is kept).
    train.checkpoint_every = 2000  # Steps between checkpoints.
    train.val_objects = 0  # Validation objects used during training; 0 means all.
    train.val_points = 100_000  # Query points per validation object for IoU.
    train.eval_batch_size = 8  # Objects per validation call.

    gen = config.generate  # gen.checkpoint: 'best' (highest val IoU) or 'latest'.
    gen.split = "val"  # Which split to mesh.
    gen.method = "mise"  # 'mise' (the original's) or 'dense' grid.
    gen.resolution0 = 32  # MISE: cells per side of the first level (original: 32).
    gen.upsampling_steps = 2  # MISE: levels of subdivision (original: 2, i.e. 128^3).
    gen.simplify_nfaces = 0  # MISE: simplify to about this many faces; 0 = off.
    gen.refinement_steps = 0  # MISE: vertex refinement steps (original: 0).
    gen.marching_cubes = "pymcubes"  # 'pymcubes' (host, whole grid) or 'jax' (jitted, active cells).
    gen.subdivision = "cells"  # MISE: 'cells' (the original) or 'surface' (fewer queries).
    gen.resolution = 128  # Dense: cells per side of the grid.
    gen.batch_points = 0  # Points per decoder call; 0: 100k on GPU/TPU, 4096 on the CPU.
    gen.max_objects = 0  # Objects to mesh; 0 means the whole split.
    gen.num_pictures = 8  # Objects (one per category) shown in the comparison picture.

    config.eval = ev = ml_collections.ConfigDict()
    ev.n_samples = 100_000  # Points sampled on each predicted mesh (original: 100k).
    ev.fscore_threshold = 0.01  # F-score distance (F@1%).
    ev.undefined_metrics = "original"  # 'original' or 'worst' (see the ONet config).
    ev.iou_jitter = 1e-4  # N(0, 1) * jitter added to the IoU points; 0: off.
    # The rooms' evaluation (the original's `remove_wall`): keep the points sampled on the predicted
    # mesh inside the ground-truth point cloud's box +- 0.007 (y only from below) before Chamfer-L1,
    # normal consistency and F-score.
    ev.crop_to_gt_bbox = False
    return config


CHECKS = {
    "data.path": Str(),
    "data.builtin": Bool(),
    "data.builtin_kind": Choice(("shapes", "rooms")),
    "data.rooms_object_counts": Ints(4, 8),
    "data.rooms_per_class": Int(1),
    "data.rooms_num_files": Int(1),
    "data.rooms_num_points": Int(1),
    "data.rooms_num_surface_points": Int(1),
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
    "data.cache": Bool(),
    "model.plane_type": Strings(),
    "model.plane_resolution": Int(2),
    "model.grid_resolution": Int(2),
    "model.c_dim": Int(1),
    "model.encoder_hidden": Int(1),
    "model.encoder_blocks": Int(1),
    "model.scatter_type": Choice(("max", "mean")),
    "model.unet": Bool(),
    "model.unet_depth": Int(1),
    "model.unet_start_filts": Int(1),
    "model.unet3d": Bool(),
    "model.unet3d_levels": Int(1),
    "model.unet3d_f_maps": Int(1),
    "model.unet3d_layer_order": Choice(("gcr", "cr")),
    "model.local_coord": Bool(),
    "model.decoder_hidden": Int(1),
    "model.decoder_blocks": Int(1),
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
    "generate.marching_cubes": Choice(("pymcubes", "jax")),
    "generate.subdivision": Choice(("cells", "surface")),
    "generate.resolution": Int(1),
    "generate.batch_points": Int(0, meaning="0: the device's default"),
    "generate.max_objects": Int(0, meaning="0: the whole split"),
    "generate.num_pictures": Int(0),
    "eval.n_samples": Int(1),
    "eval.fscore_threshold": Float(0.0, min_open=True),
    "eval.undefined_metrics": Choice(("original", "worst")),
    "eval.iou_jitter": Float(0.0, meaning="0: off"),
    "eval.crop_to_gt_bbox": Bool(),
}
