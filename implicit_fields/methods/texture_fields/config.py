"""Texture Fields' defaults, which are also its schema: appearance as a field on a known shape.

Every key a Texture Fields config may set is defined here (shared sections in
`config_utils.common_config`); the trainer rejects any other. The defaults are
the original's single-view conditional car model (`configs/singleview/texfields/
car.yaml`): training at 128 x 128, the condition image at 224 x 224,
evaluation at 256 x 256, batch 18, RMSprop 1e-4, the pixel L1 loss. The VAE
(`configs/VAE/000.yaml`) and GAN (`configs/GAN/000.yaml`) models and the sizes
that run on a CPU are in `experiments/configs/texture_fields.py`.
"""

import ml_collections

from implicit_fields import config_utils
from implicit_fields.config_utils import Bool, Choice, Float, Int, Str, Strings

KINDS = ("conditional", "vae", "gan")


def get_config() -> ml_collections.ConfigDict:
    """The defaults of a Texture Fields run (the original's conditional model)."""
    config = config_utils.common_config("texture_fields")

    config.data = data = ml_collections.ConfigDict()
    # A dataset in Texture Fields' layout: <category>/<object>/ with input_image/, image/ +
    # depth/ (cameras.npz), visualize/, pointcloud.npz, and <category>/{train,val,test}.lst.
    # With `builtin` the built-in shapes are generated there (ONet's files too, so an
    # image-conditioned occupancy model can train on the same objects) and rendered with
    # per-category palettes and procedural textures; the original's car data reads as it is.
    data.path = "data/textured_builtin"
    data.builtin = True
    data.builtin_categories = ("car", "chair", "sofa", "table", "airplane")  # Generated categories.
    data.builtin_objects_per_category = 60
    data.builtin_num_points = 100_000  # ONet's points.npz (for the shape model of textured meshes).
    data.builtin_num_surface_points = 100_000  # pointcloud.npz with normals (the geometry input).
    data.builtin_image_resolution = 256  # Side of image/ and visualize/ renders (original: 256 or more).
    data.builtin_input_resolution = 224  # Side of the input_image/ renders.
    data.builtin_n_views = 10  # Random views with depth per object (original: 10).
    data.builtin_input_views = 17  # Condition views per object (original: 17).
    data.builtin_visualize_views = 5  # Views on a circle (visualize/).
    data.categories = ()  # Categories used (names or synsets); () = all in the folder.
    data.img_size = 128  # Training images and depths, resized by nearest neighbour (original 128).
    data.input_size = 224  # Condition images, resized by nearest neighbour (original 224).
    data.pointcloud_n = 2048  # Points (with normals) subsampled per object and step (original 2048).
    data.cache = True  # Keep the objects' resized views in memory.

    config.model = model = ml_collections.ConfigDict()
    # 'conditional' (shape code + image code -> colour, trained with a pixel loss), 'vae'
    # (image-based posterior over z, ELBO) or 'gan' (z from the prior, adversarial loss).
    model.kind = "conditional"
    model.geometry_encoder = "resnet"  # 'resnet' (ResnetPointnetConv, conditional) or 'simple' (VAE/GAN).
    model.geometry_leaky = False  # 'simple': LeakyReLU 0.2 and average pooling (VAE/GAN: True).
    model.geometry_hidden = 128  # Hidden width of the shape encoder (original 128).
    model.encoder = "resnet18"  # Image encoder of the conditional model ('' for VAE/GAN).
    model.c_dim = 512  # Shape code (original 512).
    model.z_dim = 512  # Image / latent code (original 512; GAN 64).
    model.decoder_blocks = 7  # each_layer_c_larger: 7 (conditional); each_layer_c: 5 (VAE/GAN).
    model.decoder_hidden = 128  # Decoder width (original 128).
    model.decoder_leaky = True  # LeakyReLU 0.2 before the output layer (all three: True).
    model.decoder_resnet_leaky = False  # LeakyReLU in the ResNet blocks (conditional False, VAE/GAN True).
    model.vae_nfilter = 32  # VAE posterior encoder: first conv width (original 32) ...
    model.vae_nfilter_max = 1024  # ... doubled per level up to this (original 1024).
    model.disc_nfilter = 64  # GAN discriminator: first conv width (original 64) ...
    model.disc_nfilter_max = 1024  # ... doubled per level up to this (original 1024).
    # The discriminator also sees the shape code (added to its first features, as the VAE
    # encoder does). The original passes it to the discriminator, whose forward ignores it
    # (False reproduces that).
    model.disc_shape_code = True
    model.white_background = True  # Composite over white (every car config of the original).
    model.conv_impl = "auto"  # 2-D convolutions: 'auto', 'im2col' or 'xla' (`layers.Conv2d`).

    config.loss = loss = ml_collections.ConfigDict()
    loss.pixel = "l1"  # Conditional model's pixel loss: 'l1' (original) or 'l2'.
    loss.w_pix = 1.0  # Weight of the pixel loss (conditional).
    loss.w_vae = 10.0  # Weight of the ELBO (VAE: 10).
    loss.w_gan = 1.0  # Weight of the adversarial losses (GAN: 1).
    loss.r1 = 10.0  # R1 penalty on real images (GAN: 10).

    config.train.batch_size = 18  # Objects (one view each) per step (original: 18; VAE 3, GAN 32).
    config.train.num_steps = 50_000
    config.train.eval_every = 1000  # Original validate_every 1000.
    config.train.checkpoint_every = 1000
    config.train.val_objects = 0  # Validation objects (0: the whole val split).

    config.optim.optimizer = "rmsprop"  # The original's optimiser, for generator and discriminator.
    config.optim.learning_rate = 1e-4  # lr_g = lr_d = 1e-4.

    gen = config.generate  # gen.checkpoint: 'best' (highest validation PSNR) or 'latest'.
    gen.split = "test"
    gen.num_objects = 0  # Objects rendered (0: the whole split).
    gen.picture_objects = 6  # Rows of texture_fields.png (condition | truth | ours).
    gen.picture_views = 2  # Views per row.
    gen.seed = 0  # Latent codes of the VAE and GAN (drawn from the prior).
    gen.batch_pixels = 65536  # Pixels per network call.

    config.eval = ev = ml_collections.ConfigDict()
    ev.img_size = 256  # Evaluation renders (original 256: the same field, finer).
    ev.views = "image"  # 'image' (the 10 random views: the original's test_eval) or 'visualize'.
    # SSIM's data range. 1.0: images in [0, 1] (skimage >= 0.19 asks for it). The original's
    # old skimage took 2.0 (the float dtype's range -1..1) and so reported higher SSIM;
    # metrics.json holds both.
    ev.ssim_data_range = 1.0
    # FID and Feature-L1 need torchvision's ImageNet Inception-v3 (the original's network). No
    # package here ships it and nothing is downloaded: give its state_dict as a .pth/.pt or
    # .npz file here. Empty: not computed (metrics.json says so; no number is printed).
    ev.inception_weights = ""
    return config


# What each of Texture Fields' own keys must be (the shared ones: `config_utils.COMMON_CHECKS`).
CHECKS = {
    "data.path": Str(),
    "data.builtin": Bool(),
    "data.builtin_categories": Strings(),
    "data.builtin_objects_per_category": Int(1),
    "data.builtin_num_points": Int(1),
    "data.builtin_num_surface_points": Int(1),
    "data.builtin_image_resolution": Int(8),
    "data.builtin_input_resolution": Int(8),
    "data.builtin_n_views": Int(1),
    "data.builtin_input_views": Int(1),
    "data.builtin_visualize_views": Int(1),
    "data.categories": Strings(),
    "data.img_size": Int(4),
    "data.input_size": Int(8),
    "data.pointcloud_n": Int(1),
    "data.cache": Bool(),
    "model.kind": Choice(KINDS),
    "model.geometry_encoder": Choice(("resnet", "simple")),
    "model.geometry_leaky": Bool(),
    "model.geometry_hidden": Int(1),
    "model.encoder": Choice(("resnet18", "")),
    "model.c_dim": Int(1),
    "model.z_dim": Int(1),
    "model.decoder_blocks": Int(1),
    "model.decoder_hidden": Int(1),
    "model.decoder_leaky": Bool(),
    "model.decoder_resnet_leaky": Bool(),
    "model.vae_nfilter": Int(1),
    "model.vae_nfilter_max": Int(1),
    "model.disc_nfilter": Int(1),
    "model.disc_nfilter_max": Int(1),
    "model.disc_shape_code": Bool(),
    "model.white_background": Bool(),
    "model.conv_impl": Choice(("auto", "im2col", "xla")),
    "loss.pixel": Choice(("l1", "l2")),
    "loss.w_pix": Float(0.0),
    "loss.w_vae": Float(0.0),
    "loss.w_gan": Float(0.0),
    "loss.r1": Float(0.0),
    "train.batch_size": Int(1),
    "train.val_objects": Int(0, meaning="0: the whole val split"),
    "generate.split": Choice(("train", "val", "test")),
    "generate.num_objects": Int(0, meaning="0: the whole split"),
    "generate.picture_objects": Int(0),
    "generate.picture_views": Int(1),
    "generate.seed": Int(0),
    "generate.batch_pixels": Int(1),
    "eval.img_size": Int(4),
    "eval.views": Choice(("image", "visualize")),
    "eval.ssim_data_range": Float(0.0, min_open=True),
    "eval.inception_weights": Str(empty=True),
}
