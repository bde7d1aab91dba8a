"""Smoke-test sizes of the single-image model: the tiny config with 4 views of 16 x 16 pixels."""

from experiments.configs import tiny


def get_config():
    config = tiny.get_config()
    config.data.input_type = "img"
    config.data.img_size = 16
    config.data.img_n_views = 4
    config.data.builtin_img_resolution = 16
    config.model.encoder = "resnet18"
    config.model.encoder_hidden = 4
    return config
