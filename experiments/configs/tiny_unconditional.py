"""Smoke-test sizes of the unconditional model: no input, the simple decoder, z of size 8."""

from experiments.configs import tiny


def get_config():
    config = tiny.get_config()
    config.data.input_type = ""
    config.model.encoder = ""
    config.model.c_dim = 0
    config.model.decoder = "simple"
    config.model.z_dim = 8
    config.model.encoder_latent_hidden = 16
    return config
