"""The unconditional (generative) Occupancy Network: the original `configs/unconditional/onet_*.yaml`.

No input (`data.input_type=''`, no encoder, c_dim 0); a latent z of size 128 with the
prior N(0, I); the latent encoder q(z | p, o) ('simple', width 128); the `simple`
decoder (width 128, z added once at the input); the loss KL(q || p0) + sum-over-points
BCE; one category (the original trains one model per category: cars, airplanes, sofas,
chairs), 2,048 query points, batch 64, Adam 1e-4. Validation IoU and the meshes of
`--mode generate` auto-encode each object through the posterior mean of q; new shapes
come from `python -m experiments.sample`.

  python -m experiments.main --config experiments/configs/unconditional.py --workdir runs/unconditional
  python -m experiments.sample --workdir runs/unconditional --num 16 --interpolate
"""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.data.input_type = ""
    config.data.builtin_categories = ("chair",)
    config.data.categories = ("03001627",)  # chair
    config.model.encoder = ""
    config.model.c_dim = 0
    config.model.decoder = "simple"
    config.model.decoder_hidden = 128
    config.model.z_dim = 128
    config.model.encoder_latent = "simple"
    config.model.encoder_latent_hidden = 128
    return config
