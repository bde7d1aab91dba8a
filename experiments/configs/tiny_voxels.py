"""Smoke-test sizes of the voxel model: the tiny config with 16^3 voxel inputs."""

from experiments.configs import tiny


def get_config():
    config = tiny.get_config()
    config.data.input_type = "voxels"
    config.data.voxel_resolution = 16
    config.model.encoder = "voxel_simple"
    config.model.encoder_hidden = 4
    return config
