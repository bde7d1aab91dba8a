"""Condition encoders, as in `im2mesh/encoder/`, and the latent encoder of the VAE.

* `ResnetPointnet` ('pointnet_resnet'): point cloud [B, n, 3] -> c.
* `VoxelEncoder` ('voxel_simple'): 32^3 voxel grid [B, 32, 32, 32] -> c (the
  original's 3-D CNN of the voxel super-resolution experiment).
* `LatentEncoder` ('simple' in `LATENT_ENCODERS`): q(z | p, o[, c]), the
  `encoder_latent.Encoder` of the unconditional / VAE Occupancy Network; it maps
  points [B, T, 3] with their occupancies [B, T] to the mean and log standard
  deviation of a diagonal Gaussian over z.

Parameter names follow the original modules, so `implicit_fields.convert` maps a
PyTorch state dict one to one.
"""

import functools
import math
from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from implicit_fields import layers

__all__ = [
    "ResnetPointnet",
    "VoxelEncoder",
    "Conv3d",
    "LatentEncoder",
    "ENCODERS",
    "LATENT_ENCODERS",
    "create_encoder",
    "create_latent_encoder",
]


class ResnetPointnet(nn.Module):
    """PointNet with ResNet blocks and global max-pool skip connections.

    `fc_pos` (dim -> 2h), then 5 `ResnetBlockFC(2h -> h)`; before blocks 1-4
    the global max-pool of the features is concatenated to every point; a final
    max-pool, ReLU and `fc_c` (h -> c_dim).

    Attributes:
      c_dim: output code size (original: 512).
      hidden_dim: h (original: 512).
    """

    c_dim: int = 512
    hidden_dim: int = 512

    @nn.compact
    def __call__(self, points, train: bool = False):
        """Args:
          points: input point cloud, float32 [batch, n, 3].
          train: unused (no batch norm); kept for a uniform encoder signature.

        Returns:
          Codes c, float32 [batch, c_dim].
        """
        del train
        assert points.ndim == 3, points.shape
        h = self.hidden_dim
        net = layers.Dense(2 * h, name="fc_pos")(points)
        net = layers.ResnetBlockFC(size_out=h, name="block_0")(net)
        for i in range(1, 5):
            pooled = jnp.max(net, axis=1, keepdims=True)
            net = jnp.concatenate([net, jnp.broadcast_to(pooled, net.shape)], axis=-1)
            net = layers.ResnetBlockFC(size_out=h, name=f"block_{i}")(net)
        net = jnp.max(net, axis=1)
        return layers.Dense(self.c_dim, name="fc_c")(nn.relu(net))


class VoxelEncoder(nn.Module):
    """The original 3-D CNN voxel encoder (`im2mesh/encoder/voxels.py: VoxelEncoder`).

    `conv_in` (1 -> w, 3^3, padding 1), then four stride-2 3^3 convolutions
    `conv_0..conv_3` (w -> 2w -> 4w -> 8w -> 16w, each preceded by a ReLU), a
    ReLU, the channel-first flatten of the final [16w, 2, 2, 2] features and
    `fc` (-> c_dim). The original has w = 32 (16w * 8 = 4096 features).
    Convolution kernels are [3, 3, 3, in, out] (PyTorch's weight transposed by
    (2, 3, 4, 1, 0)); the spatial axes are those of the grid (x, y, z).

    Attributes:
      c_dim: output code size (original voxel config: 256).
      hidden_dim: w, the channels of `conv_in` (original: 32).
    """

    c_dim: int = 256
    hidden_dim: int = 32

    @nn.compact
    def __call__(self, voxels, train: bool = False):
        """Args:
          voxels: occupancy grid, float32 [batch, R, R, R] with R = 32 (any R
            divisible by 16 works; the flattened size is 16w (R/16)^3).
          train: unused (no batch norm); kept for a uniform encoder signature.

        Returns:
          Codes c, float32 [batch, c_dim].
        """
        del train
        assert voxels.ndim == 4, voxels.shape
        w = self.hidden_dim
        net = voxels[..., None].astype(jnp.float32)
        net = Conv3d(w, 1, name="conv_in")(net)
        for i in range(4):
            net = Conv3d(w * 2 ** (i + 1), 2, name=f"conv_{i}")(nn.relu(net))
        # PyTorch flattens [B, C, D, H, W]; flatten channel-first to share its layout.
        hidden = jnp.transpose(net, (0, 4, 1, 2, 3)).reshape(net.shape[0], -1)
        return layers.Dense(self.c_dim, name="fc")(nn.relu(hidden))


class Conv3d(nn.Module):
    """A 3^3 convolution with padding 1, initialised as PyTorch's `nn.Conv3d`.

    Parameters are 'kernel' [3, 3, 3, in, out] and 'bias' [out], both uniform in
    +-1/sqrt(27 in) at init. On the CPU backend the convolution is computed as
    27 strided slices and one matmul (im2col): XLA's CPU kernels for the
    gradient of a strided 3-D convolution are about 15x slower than that;
    elsewhere `lax.conv_general_dilated` is used. Both give the same result up
    to float rounding.

    Attributes:
      features: output channels.
      stride: stride along every spatial axis.
      impl: 'auto' (im2col on CPU, XLA's convolution elsewhere), 'im2col' or 'xla'.
    """

    features: int
    stride: int = 1
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        """Maps x [batch, D, H, W, in] to [batch, D', H', W', features], D' = (D - 1) // stride + 1."""
        in_features = x.shape[-1]
        init = layers.torch_uniform_init(27 * in_features)

        def kernel_init(key, shape, dtype=jnp.float32):
            # Drawn flat: XLA's CPU compiler is slow on 5-D random-bit programs.
            return init(key, (math.prod(shape),), dtype).reshape(shape)

        kernel = self.param("kernel", kernel_init, (3, 3, 3, in_features, self.features))
        bias = self.param("bias", init, (self.features,))
        impl = self.impl
        if impl == "auto":
            impl = "im2col" if jax.default_backend() == "cpu" else "xla"
        if impl == "xla":
            s = self.stride
            y = jax.lax.conv_general_dilated(
                x, kernel, (s, s, s), ((1, 1),) * 3, dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
            )
        elif impl == "im2col":
            y = _conv3d_im2col(x, kernel, self.stride)
        else:
            raise ValueError(f"unknown Conv3d impl {self.impl!r}; use 'auto', 'im2col' or 'xla'")
        return y + bias.reshape((1, 1, 1, 1, self.features))


@functools.partial(jax.jit, static_argnames=("stride",))
def _conv3d_im2col(x, kernel, stride: int):
    """3^3 convolution with padding 1 as 27 strided slices and one matmul.

    Jitted so that eager calls (e.g. `model.init`) compile it once instead of
    dispatching the 27 slices one by one.

    Args:
      x: [batch, D, H, W, in].
      kernel: [3, 3, 3, in, out].
      stride: stride along every spatial axis.

    Returns:
      [batch, D', H', W', out] with D' = (D - 1) // stride + 1.
    """
    s, in_features = stride, x.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
    out = [(n - 1) // s + 1 for n in x.shape[1:4]]
    cols = [
        jax.lax.slice(
            xp,
            (0, a, b, c, 0),
            (x.shape[0], a + s * (out[0] - 1) + 1, b + s * (out[1] - 1) + 1,
             c + s * (out[2] - 1) + 1, in_features),
            (1, s, s, s, 1),
        )
        for a in range(3)
        for b in range(3)
        for c in range(3)
    ]
    # Column (a, b, c, i) of the patches matches kernel[a, b, c, i] in C order.
    return jnp.concatenate(cols, axis=-1) @ kernel.reshape(27 * in_features, kernel.shape[-1])


class LatentEncoder(nn.Module):
    """q(z | p, o[, c]): the original latent encoder (`onet/models/encoder_latent.py: Encoder`).

    `fc_0(o) + fc_pos(p) [+ fc_c(c)]` (-> h), then `fc_1`, pooled-feature
    concatenation, `fc_2` (2h -> h), concatenation, `fc_3` (2h -> h), a pool
    over the points and `fc_mean` / `fc_logstd` (h -> z_dim). Pooling is a max
    (a mean with `leaky`, where the activations are leaky ReLUs of slope 0.2).

    Attributes:
      z_dim: latent size.
      hidden_size: h (original: 128).
      leaky: the original's `leaky` variant.
    """

    z_dim: int = 128
    hidden_size: int = 128
    leaky: bool = False

    @nn.compact
    def __call__(self, p, occ, c: Optional[jnp.ndarray] = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
        """Args:
          p: points, float32 [batch, T, 3].
          occ: their occupancies, float32 [batch, T].
          c: optional condition code, float32 [batch, c_dim] (ignored when c_dim is 0).

        Returns:
          (mean, logstd), each float32 [batch, z_dim].
        """
        assert p.ndim == 3 and occ.shape == p.shape[:2], (p.shape, occ.shape)
        h = self.hidden_size
        if self.leaky:
            act = lambda x: nn.leaky_relu(x, 0.2)  # noqa: E731
            pool = jnp.mean
        else:
            act, pool = nn.relu, jnp.max
        net = layers.Dense(h, name="fc_0")(occ[..., None]) + layers.Dense(h, name="fc_pos")(p)
        if c is not None and c.shape[-1] > 0:
            net = net + layers.Dense(h, name="fc_c")(c)[:, None, :]
        net = layers.Dense(h, name="fc_1")(act(net))
        net = _concat_pooled(net, pool)
        net = layers.Dense(h, name="fc_2")(act(net))
        net = _concat_pooled(net, pool)
        net = layers.Dense(h, name="fc_3")(act(net))
        net = pool(net, axis=1)
        mean = layers.Dense(self.z_dim, name="fc_mean")(net)
        logstd = layers.Dense(self.z_dim, name="fc_logstd")(net)
        return mean, logstd


def _concat_pooled(net, pool):
    """[B, T, F] -> [B, T, 2F]: each point's features and the pool over the points."""
    pooled = pool(net, axis=1, keepdims=True)
    return jnp.concatenate([net, jnp.broadcast_to(pooled, net.shape)], axis=-1)


ENCODERS = {
    "pointnet_resnet": ResnetPointnet,
    "voxel_simple": VoxelEncoder,
}

LATENT_ENCODERS = {
    "simple": LatentEncoder,
}


def create_encoder(name: str, **kwargs) -> nn.Module:
    """Builds an encoder by its config name ('pointnet_resnet' or 'voxel_simple')."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)


def create_latent_encoder(name: str, **kwargs) -> nn.Module:
    """Builds a latent encoder q(z | p, o, c) by its config name ('simple')."""
    if name not in LATENT_ENCODERS:
        raise ValueError(f"unknown latent encoder {name!r}; choose one of {sorted(LATENT_ENCODERS)}")
    return LATENT_ENCODERS[name](**kwargs)
