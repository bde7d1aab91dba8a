"""Smoke-test sizes for the tests: a few objects, a tiny network, a few steps."""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.data.builtin_objects_per_category = 4
    config.data.builtin_categories = ("chair", "mug")
    config.data.builtin_num_points = 4096
    config.data.builtin_num_surface_points = 4096
    config.data.points_subsample = 64
    config.data.pointcloud_n = 32
    config.model.c_dim = 16
    config.model.encoder_hidden = 16
    config.model.decoder_hidden = 16
    config.model.decoder_blocks = 2
    config.optim.learning_rate = 1e-3
    config.train.batch_size = 8
    config.train.num_steps = 2
    config.train.log_every = 1
    config.train.eval_every = 2
    config.train.checkpoint_every = 2
    config.train.val_points = 512
    config.train.eval_batch_size = 2
    config.train.progress = False
    config.generate.resolution0 = 8
    config.generate.upsampling_steps = 1
    config.generate.resolution = 16
    config.generate.batch_points = 4096
    config.generate.num_pictures = 2
    config.eval.n_samples = 2000
    return config
