"""Texture Fields' networks and losses (`mesh2tex/texnet/models`, `mesh2tex/geometry/pointnet.py`).

A texture field `t(p, c, z) -> RGB` colours 3-D points `p` given a shape code
`c` (a point-cloud encoder on points with normals) and an image or latent code
`z`. It is trained through images without ray marching: every pixel of a
ground-truth depth map is lifted to its surface point (`cameras.depth_to_points`,
the original's `depth_map_to_3d`), the field is evaluated there, and the
colours are composited over the background with the depth's mask.

Networks (variables named as the PyTorch modules):

* `SimplePointnet` (VAE / GAN shape encoder, 6-d input) here; the conditional
  model's `ResnetPointnetConv` is `encoders.ResnetPointnet` on 6-d points (a
  1x1 Conv1d is a linear layer on each point);
* the image encoder: `encoders.Resnet18` with `fc` 512 -> z_dim;
* `TextureDecoder`: `each_layer_c` (5 blocks) and `each_layer_c_larger` (7);
* `VAEEncoder`: the image-based posterior q(z | image, c) (`vae_encoder.Resnet`);
* `Discriminator`: `Resnet_Conditional` on RGB + depth (+ the shape code);
* `TextureNetwork`: the generator, with `encode_geometry`, `encode_image`,
  `infer_z`, `decode` and `render` (lift, decode, composite).

Losses: `pixel_loss` (conditional), `elbo` (VAE), `gan_losses` with `r1_penalty`
(GAN), as the original computes them (`texnet/training.py`).
"""

import dataclasses
import math
from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from implicit_fields import cameras, encoders, layers


def _act(leaky: bool):
    return (lambda x: nn.leaky_relu(x, 0.2)) if leaky else nn.relu


class Conv2dBias(nn.Module):
    """`torch.nn.Conv2d` with bias on NHWC inputs, initialised as PyTorch's (uniform 1/sqrt(fan_in))."""

    features: int
    kernel_size: int = 3
    padding: int = 1
    use_bias: bool = True
    zero_init: bool = False
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        fan_in = x.shape[-1] * k * k
        init = nn.initializers.zeros if self.zero_init else layers.torch_uniform_init(fan_in)
        kernel = self.param("kernel", init, (k, k, x.shape[-1], self.features))
        y = layers.conv2d(x, kernel, 1, self.padding, self.impl)
        if self.use_bias:
            bias = self.param("bias", layers.torch_uniform_init(fan_in), (self.features,))
            y = y + bias.reshape(1, 1, 1, -1)
        return y


def avg_pool_3x3_s2(x):
    """`nn.AvgPool2d(3, stride=2, padding=1)` (zero padding counted, as PyTorch's default)."""
    summed = jax.lax.reduce_window(
        x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    )
    return summed / 9.0


class ResnetBlockConv2d(nn.Module):
    """The original's pre-activation 3x3 ResNet block: `shortcut(x) + conv_1(act(conv_0(act(x))))`."""

    f_out: int
    leaky: bool = True
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        f_in = x.shape[-1]
        f_hidden = min(f_in, self.f_out)
        act = _act(self.leaky)
        x_s = x
        if f_in != self.f_out:
            x_s = Conv2dBias(self.f_out, 1, 0, False, impl=self.impl, name="shortcut")(x)
        dx = Conv2dBias(f_hidden, impl=self.impl, name="conv_0")(act(x))
        dx = Conv2dBias(self.f_out, zero_init=True, impl=self.impl, name="conv_1")(act(dx))
        return x_s + dx


def _num_levels(img_size: int) -> int:
    levels = int(math.log2(img_size / 4))
    if img_size != 4 * 2**levels:
        raise ValueError(f"image size {img_size} must be 4 * 2^k (the 4x4 final grid of the original)")
    return levels


class ConvResnet(nn.Module):
    """The trunk of the VAE encoder and the discriminator: conv_img, blocks with 3x3/2 average pools.

    `conv_img` (-> nf), [+ fc_inject_c(c)], then ResnetBlockConv2d(nf, nf) and per
    level an average pool and a block (nf * 2^i -> nf * 2^(i+1), capped at
    nf_max) down to 4 x 4; returns the flattened features in PyTorch's (C, H, W) order.
    """

    img_size: int
    nfilter: int
    nfilter_max: int
    leaky: bool = True
    inject_c: bool = False
    impl: str = "auto"

    @nn.compact
    def __call__(self, x, c=None):
        levels = _num_levels(self.img_size)
        if x.shape[1:3] != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} images, got {x.shape[1:3]}")
        nf = self.nfilter
        out = Conv2dBias(nf, impl=self.impl, name="conv_img")(x)
        if self.inject_c:
            out = out + layers.Dense(nf, name="fc_inject_c")(c)[:, None, None, :]
        out = ResnetBlockConv2d(nf, self.leaky, self.impl, name="resnet_0")(out)
        for i in range(levels):
            out = avg_pool_3x3_s2(out)
            out = ResnetBlockConv2d(
                min(nf * 2 ** (i + 1), self.nfilter_max), self.leaky, self.impl, name=f"resnet_{2 * i + 2}"
            )(out)
        return jnp.transpose(out, (0, 3, 1, 2)).reshape(out.shape[0], -1)


class SimplePointnet(nn.Module):
    """Texture Fields' `SimplePointnet` on points with normals (6-d): pooled skip connections.

    Attributes:
      c_dim: code size (original 512).
      hidden_dim: h (original 128).
      leaky: LeakyReLU 0.2 and average pooling (VAE / GAN configs) instead of ReLU and max.
    """

    c_dim: int = 512
    hidden_dim: int = 128
    leaky: bool = True

    @nn.compact
    def __call__(self, pn):
        act = _act(self.leaky)
        pool = jnp.mean if self.leaky else jnp.max
        h = self.hidden_dim
        net = act(layers.Dense(2 * h, name="conv_p")(pn))
        for i in range(4):
            # conv_1..3 see [net, pooled] concatenated; as a pair, pooled's share of the
            # layer is computed once per object instead of once per point (the same function).
            net = layers.Dense(h, name=f"conv_{i}")(net)
            if i < 3:
                net = (act(net), act(pool(net, axis=1, keepdims=True)))
        net = pool(net, axis=1)
        return layers.Dense(self.c_dim, name="fc_c")(act(net))


class PointwiseBlock(nn.Module):
    """`ResnetBlockPointwise`: `x + conv_1(act(conv_0(act(x))))` on each point; conv_1 starts at zero."""

    leaky: bool = False

    @nn.compact
    def __call__(self, x):
        act = _act(self.leaky)
        net = layers.Dense(x.shape[-1], name="conv_0")(act(x))
        return x + layers.Dense(x.shape[-1], zero_init=True, name="conv_1")(act(net))


class TextureDecoder(nn.Module):
    """`each_layer_c` (5 blocks) / `each_layer_c_larger` (7): the code [c, z] enters every block.

    `conv_p` (3 -> h); per block `net += fc_cz_i([c, z])`, `net = block_i(net)`;
    then `conv_out(act(net))` (zero-initialised) and a sigmoid.
    """

    n_blocks: int = 7
    hidden_dim: int = 128
    leaky: bool = True
    resnet_leaky: bool = False

    @nn.compact
    def __call__(self, p, c, z):
        """p [B, K, 3], c [B, c_dim], z [B, z_dim] -> RGB [B, K, 3] in (0, 1)."""
        cz = jnp.concatenate([c, z], axis=-1)
        net = layers.Dense(self.hidden_dim, name="conv_p")(p)
        for i in range(self.n_blocks):
            net = net + layers.Dense(self.hidden_dim, name=f"fc_cz_{i}")(cz)[:, None, :]
            net = PointwiseBlock(self.resnet_leaky, name=f"block{i}")(net)
        out = layers.Dense(3, zero_init=True, name="conv_out")(_act(self.leaky)(net))
        return jax.nn.sigmoid(out)


class VAEEncoder(nn.Module):
    """The image-based posterior q(z | image, c) (`vae_encoder.Resnet`): (mean, log std)."""

    img_size: int
    z_dim: int = 512
    nfilter: int = 32
    nfilter_max: int = 1024
    leaky: bool = True
    impl: str = "auto"

    @nn.compact
    def __call__(self, images, c):
        n, n_max = self.nfilter, self.nfilter_max
        trunk = ConvResnet(self.img_size, n, n_max, self.leaky, inject_c=True, impl=self.impl, name="trunk")
        out = trunk(images, c)
        act = _act(self.leaky)
        return layers.Dense(self.z_dim, name="fc_mean")(act(out)), layers.Dense(self.z_dim, name="fc_logstd")(
            act(out)
        )


class Discriminator(nn.Module):
    """`Resnet_Conditional`: a ResNet on RGB + depth (non-surface depth 0) -> one logit per image.

    With `shape_code`, the shape code is added to the first features (`fc_inject_c`).
    `fc` starts at zero, as the original.
    """

    img_size: int
    nfilter: int = 64
    nfilter_max: int = 1024
    leaky: bool = True
    shape_code: bool = True
    impl: str = "auto"

    @nn.compact
    def __call__(self, images, depth, c=None):
        depth = jnp.where(jnp.isfinite(depth), depth, 0.0)
        x = jnp.concatenate([images, depth[..., None]], axis=-1)
        n, n_max = self.nfilter, self.nfilter_max
        trunk = ConvResnet(self.img_size, n, n_max, self.leaky, self.shape_code, self.impl, name="trunk")
        out = trunk(x, c)
        return layers.Dense(1, zero_init=True, name="fc")(_act(self.leaky)(out))[:, 0]


class TextureNetwork(nn.Module):
    """The generator: shape encoder, image encoder (conditional) or posterior (VAE), decoder.

    Attributes:
      kind: 'conditional', 'vae' or 'gan'.
      c_dim, z_dim: shape and image / latent code sizes.
      geometry_encoder: 'resnet' or 'simple'; geometry_hidden, geometry_leaky.
      encoder: 'resnet18' (conditional) or ''.
      decoder_blocks, decoder_hidden, decoder_leaky, decoder_resnet_leaky: the decoder.
      img_size: training image side (the VAE posterior's input).
      vae_nfilter, vae_nfilter_max: the posterior's widths.
      white_background: composite over white (else black).
      conv_impl: `layers.Conv2d.impl`.
    """

    kind: str = "conditional"
    c_dim: int = 512
    z_dim: int = 512
    geometry_encoder: str = "resnet"
    geometry_hidden: int = 128
    geometry_leaky: bool = False
    encoder: str = "resnet18"
    decoder_blocks: int = 7
    decoder_hidden: int = 128
    decoder_leaky: bool = True
    decoder_resnet_leaky: bool = False
    img_size: int = 128
    vae_nfilter: int = 32
    vae_nfilter_max: int = 1024
    white_background: bool = True
    conv_impl: str = "auto"

    def setup(self):
        if self.geometry_encoder == "resnet":
            self.geometry = encoders.ResnetPointnet(c_dim=self.c_dim, hidden_dim=self.geometry_hidden)
        else:
            self.geometry = SimplePointnet(self.c_dim, self.geometry_hidden, self.geometry_leaky)
        if self.encoder:
            self.image_encoder = encoders.Resnet18(c_dim=self.z_dim, conv_impl=self.conv_impl)
        if self.kind == "vae":
            self.vae_encoder = VAEEncoder(
                self.img_size, self.z_dim, self.vae_nfilter, self.vae_nfilter_max, True, self.conv_impl
            )
        self.decoder = TextureDecoder(
            self.decoder_blocks, self.decoder_hidden, self.decoder_leaky, self.decoder_resnet_leaky
        )

    def encode_geometry(self, points, normals):
        """Shape code c [B, c_dim] of surface points and normals [B, N, 3] each."""
        return self.geometry(jnp.concatenate([points, normals], axis=-1))

    def encode_image(self, images, train: bool = False):
        """Image code z [B, z_dim] of condition images [B, S, S, 3] in [0, 1]."""
        return self.image_encoder(images, train=train)

    def infer_z(self, images, c):
        """The VAE posterior's (mean, log std) [B, z_dim] given real images and the shape code."""
        return self.vae_encoder(images, c)

    def decode(self, p, c, z):
        """RGB [B, K, 3] of points p [B, K, 3]."""
        return self.decoder(p, c, z)

    def render(self, depth, world_mat, camera_mat, c, z):
        """The field's image of depth maps [B, H, W]: lift, decode, composite over the background.

        Returns:
          (image [B, H, W, 3], mask [B, H, W] bool).
        """
        points, mask = cameras.depth_to_points(depth, world_mat, camera_mat)
        b, h, w = depth.shape
        rgb = self.decode(points.reshape(b, h * w, 3), c, z).reshape(b, h, w, 3)
        return composite(rgb, mask, self.white_background), mask

    def __call__(self, depth, world_mat, camera_mat, points, normals, condition=None, z=None, train=False):
        """The original `forward`: the image of each depth map for its object and condition."""
        c = self.encode_geometry(points, normals)
        if self.encoder:
            z = self.encode_image(condition, train=train)
        if self.kind == "vae" and (z is None or self.is_initializing()):
            # Without z: the posterior mean of a blank image (initialisation creates its variables).
            z_post, _ = self.infer_z(jnp.zeros(depth.shape + (3,), depth.dtype), c)
            z = z_post if z is None else z
        return self.render(depth, world_mat, camera_mat, c, z)


def composite(rgb, mask, white_background: bool = True):
    """`mask * rgb + (1 - mask) * background` (white or black), as the original's images."""
    bg = 1.0 if white_background else 0.0
    return jnp.where(mask[..., None], rgb, bg)


@dataclasses.dataclass(frozen=True)
class TextureFieldsModel:
    """The generator and, for the GAN, the discriminator (the trainer's `create_model`)."""

    generator: TextureNetwork
    discriminator: Optional[Discriminator] = None


def create_model(model_config, img_size: int) -> TextureFieldsModel:
    """The networks of `config.model` for training images of side `img_size`."""
    m = model_config
    generator = TextureNetwork(
        kind=m.kind,
        c_dim=m.c_dim,
        z_dim=m.z_dim,
        geometry_encoder=m.geometry_encoder,
        geometry_hidden=m.geometry_hidden,
        geometry_leaky=m.geometry_leaky,
        encoder=m.encoder if m.kind == "conditional" else "",
        decoder_blocks=m.decoder_blocks,
        decoder_hidden=m.decoder_hidden,
        decoder_leaky=m.decoder_leaky,
        decoder_resnet_leaky=m.decoder_resnet_leaky,
        img_size=img_size,
        vae_nfilter=m.vae_nfilter,
        vae_nfilter_max=m.vae_nfilter_max,
        white_background=m.white_background,
        conv_impl=m.conv_impl,
    )
    discriminator = None
    if m.kind == "gan":
        discriminator = Discriminator(
            img_size, m.disc_nfilter, m.disc_nfilter_max, True, m.disc_shape_code, m.conv_impl
        )
    return TextureFieldsModel(generator, discriminator)


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------


def pixel_loss(fake, real, kind: str = "l1"):
    """`F.l1_loss` / `F.mse_loss`: the mean over every pixel and channel, background included."""
    diff = fake - real
    return jnp.mean(jnp.abs(diff)) if kind == "l1" else jnp.mean(diff * diff)


def kl_standard_normal(mean, logstd):
    """KL(N(mean, exp(logstd)^2) || N(0, I)) summed over the code: [B]."""
    return jnp.sum(-logstd + 0.5 * (jnp.exp(2.0 * logstd) + mean * mean) - 0.5, axis=-1)


def elbo(fake, real, mean, logstd) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
    """The original's `elbo`: `mse(fake, real) + mean_b KL_b / (H W 3)`, and its two terms."""
    recon = jnp.mean((fake - real) ** 2)
    kl = jnp.mean(kl_standard_normal(mean, logstd)) / float(math.prod(real.shape[1:]))
    return recon + kl, {"recon": recon, "kl": kl}


def bce_with_logits(logits, target: float):
    """`F.binary_cross_entropy_with_logits(d, full(target))`: the mean over the batch."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)))


def r1_penalty(d_fn, real):
    """R1: `mean_b sum_pixels (dD(real_b) / d real_b)^2` (the original's `compute_grad2`, unweighted).

    Args:
      d_fn: images [B, H, W, 3] -> logits [B] (one logit per image, independent across the batch).
      real: real images [B, H, W, 3].
    """
    grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(real)
    return jnp.mean(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1))
