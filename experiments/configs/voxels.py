"""Voxel super-resolution: the original `configs/voxels/onet.yaml`.

32^3 voxel grids (`model.binvox`) in, the 3-D CNN `VoxelEncoder` ('voxel_simple',
c_dim 256), the conditional-batch-norm decoder (hidden 256), 1,024 query points per
object, batch 64, Adam 1e-4, model selection by validation IoU at threshold 0.2. On
the built-in data the voxelisations are computed from the exact shapes when missing.

  python -m experiments.main --config experiments/configs/voxels.py --workdir runs/voxels
"""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.data.input_type = "voxels"
    config.data.voxel_resolution = 32
    config.data.points_subsample = 1024  # Original voxel config: 1024.
    config.model.encoder = "voxel_simple"
    config.model.encoder_hidden = 32  # Channels of conv_in (then 64, 128, 256, 512).
    config.model.c_dim = 256
    config.model.decoder = "cbatchnorm"
    config.model.decoder_hidden = 256
    return config
