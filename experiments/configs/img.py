"""Single-image reconstruction: the original `configs/img/onet.yaml`.

One RGB view in (`img_choy2016/`: a random one of the 24 views per training
sample, view 0 for validation and test), resized to 224 x 224, the ResNet-18
encoder ('resnet18', c_dim 256, ImageNet normalisation; trained from scratch
here, since no pretrained weights can be downloaded), the conditional-batch-norm
decoder (hidden 256), 2,048 query points per object, batch 64, Adam 1e-4, model
selection by validation IoU at threshold 0.2. On the built-in data the 24 views
are rendered from the exact shapes (137 x 137, white background) when missing.

  python -m experiments.main --config experiments/configs/img.py --workdir runs/img
"""

from experiments.configs import default


def get_config():
    config = default.get_config()
    config.data.input_type = "img"
    config.data.img_folder = "img_choy2016"
    config.data.img_size = 224
    config.data.img_n_views = 24
    config.data.builtin_img_resolution = 137
    config.data.points_subsample = 2048
    config.model.encoder = "resnet18"
    config.model.encoder_hidden = 64  # torchvision's ResNet-18 widths 64, 128, 256, 512.
    config.model.c_dim = 256
    config.model.decoder = "cbatchnorm"
    config.model.decoder_hidden = 256
    return config
