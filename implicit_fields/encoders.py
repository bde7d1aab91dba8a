"""Condition encoders, as in `im2mesh/encoder/`, and the latent encoder of the VAE.

* `ResnetPointnet` ('pointnet_resnet'): point cloud [B, n, 3] -> c.
* `VoxelEncoder` ('voxel_simple'): 32^3 voxel grid [B, 32, 32, 32] -> c (the
  original's 3-D CNN of the voxel super-resolution experiment).
* `Resnet18` ('resnet18'): RGB image [B, H, W, 3] in [0, 1] -> c (the original's
  single-image encoder: torchvision's ResNet-18 with `fc` replaced by a linear
  layer 512 -> c, ImageNet normalisation of the input; trained from scratch here).
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
    "Conv2d",
    "conv2d",
    "Resnet18",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
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


IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB in [0, 1] (the original's `normalize_imagenet`)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB in [0, 1]."""


class BatchNorm2d(layers.BatchNorm):
    """`torch.nn.BatchNorm2d` on NHWC features: affine, PyTorch statistics.

    Training normalises with the batch mean and biased variance over
    (batch, H, W) and updates the running statistics with momentum 0.1 and the
    unbiased variance; evaluation uses the running statistics. Parameters
    'scale' (init 1) and 'bias' (init 0); batch stats 'mean' and 'var'
    (PyTorch's weight, bias, running_mean, running_var).

    Attributes:
      use_running_average: evaluate with the running statistics.
      momentum: weight of the new batch statistic.
      epsilon: added to the variance.
    """

    affine: bool = True


class Conv2d(nn.Module):
    """A bias-free 2-D convolution as torchvision's ResNet uses, on NHWC inputs.

    Parameter 'kernel' [k, k, in, out] (PyTorch's weight transposed by
    (2, 3, 1, 0)), initialised as torchvision's ResNet: Kaiming normal with
    fan_out and gain sqrt(2). Padding is symmetric, as PyTorch's. On the CPU
    backend 1x1 convolutions and those with outputs under 64 pixels are
    computed as k^2 strided slices and one matmul (im2col, as `Conv3d`):
    XLA's CPU kernels for the gradient of a convolution with few pixels and
    many channels (ResNet-18's layer3 and layer4) are up to ~30x slower than
    that; larger ones, and all of them elsewhere, use
    `lax.conv_general_dilated`. Both give the same result up to float rounding.

    Attributes:
      features: output channels.
      kernel_size: k.
      stride: stride along both spatial axes.
      padding: zeros added on each side.
      impl: 'auto' (see `conv2d`), 'im2col' or 'xla'.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        """Maps x [batch, H, W, in] to [batch, H', W', features], H' = (H + 2 padding - k) // stride + 1."""
        k = self.kernel_size
        std = math.sqrt(2.0 / (self.features * k * k))

        def kernel_init(key, shape, dtype=jnp.float32):
            # Drawn flat: XLA's CPU compiler is slow on high-rank random-bit programs.
            return std * jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)

        kernel = self.param("kernel", kernel_init, (k, k, x.shape[-1], self.features))
        return conv2d(x, kernel, self.stride, self.padding, self.impl)


def conv2d(x, kernel, stride: int = 1, padding: int = 0, impl: str = "auto"):
    """A bias-free 2-D convolution with symmetric zero padding (PyTorch's `F.conv2d`), NHWC.

    Args:
      x: [batch, H, W, in].
      kernel: [kh, kw, in, out].
      stride: stride along both spatial axes.
      padding: zeros added on each side of both spatial axes.
      impl: 'auto' (XLA's convolution off CPU; on CPU im2col for 1x1 kernels
        and small outputs, XLA's convolution for large ones), 'im2col' or 'xla'.

    Returns:
      [batch, H', W', out] with H' = (H + 2 padding - kh) // stride + 1 (W' alike).
    """
    if impl == "auto":
        impl = _auto_conv2d_impl(x.shape, kernel.shape, stride, padding)
    if impl == "xla":
        p = padding
        return jax.lax.conv_general_dilated(
            x, kernel, (stride, stride), ((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
    if impl == "im2col":
        return _conv2d_im2col(x, kernel, stride, padding)
    raise ValueError(f"unknown Conv2d impl {impl!r}; use 'auto', 'im2col' or 'xla'")


_IM2COL_MAX_PIXELS = 64
"""On CPU, im2col computes a k x k convolution whose output has fewer pixels than
this per image; XLA's convolution the larger ones (see `_auto_conv2d_impl`)."""


def _auto_conv2d_impl(x_shape, kernel_shape, stride: int, padding: int) -> str:
    """What `conv2d(impl='auto')` runs: 'xla' off CPU; on CPU the faster path for the shape.

    Forward+backward on CPU (benchmarks/conv2d.py): XLA's convolution is up to
    ~2x faster on large feature maps (ResNet-18's stem and layer1 at 64^2 or
    224^2 inputs), but its gradient kernels slow down badly on small maps with
    many channels (~10-40x slower than im2col at 4x4 and 2x2 with 256-512
    channels); a 1x1 convolution is a strided slice and a plain matmul,
    slightly faster than XLA's at every size.
    """
    if jax.default_backend() != "cpu":
        return "xla"
    kh, kw = kernel_shape[:2]
    oh = (x_shape[1] + 2 * padding - kh) // stride + 1
    ow = (x_shape[2] + 2 * padding - kw) // stride + 1
    if kh * kw == 1 or oh * ow < _IM2COL_MAX_PIXELS:
        return "im2col"
    return "xla"


@functools.partial(jax.jit, static_argnames=("stride", "padding"))
def _conv2d_im2col(x, kernel, stride: int, padding: int):
    """`conv2d` as kh kw strided slices of the padded input and one matmul.

    Jitted so that eager calls (e.g. `model.init`) compile it once. A 1x1
    convolution is one strided slice and a matmul.

    Args:
      x: [batch, H, W, in].
      kernel: [kh, kw, in, out].
      stride: stride along both spatial axes.
      padding: zeros added on each side of both spatial axes.

    Returns:
      [batch, H', W', out] with H' = (H + 2 padding - kh) // stride + 1.
    """
    kh, kw, in_features, out_features = kernel.shape
    assert x.shape[-1] == in_features, (x.shape, kernel.shape)
    s, p = stride, padding
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    oh = (x.shape[1] + 2 * p - kh) // s + 1
    ow = (x.shape[2] + 2 * p - kw) // s + 1
    cols = [
        jax.lax.slice(
            xp,
            (0, a, b, 0),
            (x.shape[0], a + s * (oh - 1) + 1, b + s * (ow - 1) + 1, in_features),
            (1, s, s, 1),
        )
        for a in range(kh)
        for b in range(kw)
    ]
    # Column (a, b, i) of the patches matches kernel[a, b, i] in C order.
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    return patches @ kernel.reshape(kh * kw * in_features, out_features)


class BasicBlock(nn.Module):
    """torchvision's ResNet `BasicBlock`: two 3x3 convolutions with batch norm and a skip.

    relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is
    `downsample` (a strided 1x1 convolution and batch norm, named '0' and '1'
    as in PyTorch's `nn.Sequential`) when the stride or width changes.

    Attributes:
      features: output channels.
      stride: stride of conv1 (and of the shortcut).
      conv_impl: `Conv2d.impl` of the convolutions.
    """

    features: int
    stride: int = 1
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        ura, impl = not train, self.conv_impl
        out = Conv2d(self.features, 3, self.stride, 1, impl, name="conv1")(x)
        out = nn.relu(BatchNorm2d(ura, name="bn1")(out))
        out = Conv2d(self.features, 3, 1, 1, impl, name="conv2")(out)
        out = BatchNorm2d(ura, name="bn2")(out)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = _Downsample(self.features, self.stride, impl, name="downsample")(x, train)
        return nn.relu(out + x)


class _Downsample(nn.Module):
    """The shortcut of a `BasicBlock` that changes shape: '0' conv 1x1, '1' batch norm."""

    features: int
    stride: int
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv2d(self.features, 1, self.stride, 0, self.conv_impl, name="0")(x)
        return BatchNorm2d(not train, name="1")(x)


class _ResnetLayer(nn.Module):
    """One stage `layerN` of the ResNet: BasicBlocks named '0', '1', ..."""

    features: int
    num_blocks: int = 2
    stride: int = 1
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i in range(self.num_blocks):
            stride = self.stride if i == 0 else 1
            x = BasicBlock(self.features, stride, self.conv_impl, name=str(i))(x, train)
        return x


class _Resnet18Features(nn.Module):
    """torchvision's `resnet18` without `fc`: NHWC image -> [batch, 8 width] pooled features."""

    width: int = 64
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        w, impl = self.width, self.conv_impl
        x = Conv2d(w, 7, 2, 3, impl, name="conv1")(x)
        x = nn.relu(BatchNorm2d(not train, name="bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2), (8, 2))):
            x = _ResnetLayer(w * mult, 2, stride, impl, name=f"layer{i + 1}")(x, train)
        return jnp.mean(x, axis=(1, 2))  # adaptive average pooling to 1x1, flattened


class Resnet18(nn.Module):
    """The original single-image encoder (`im2mesh/encoder/conv.py: Resnet18`).

    ImageNet normalisation of the input, torchvision's ResNet-18 (`features`:
    conv1 7x7/2, bn1, max pool 3x3/2, layer1..layer4 of two BasicBlocks each
    with widths w, 2w, 4w, 8w, global average pooling) and `fc` (8w -> c_dim).
    Variables are named as the PyTorch modules (`features/layer2/0/downsample/1/
    scale` <-> `encoder.features.layer2.0.downsample.1.weight`). With w = 64 and
    c_dim = 256 it has 11,307,840 parameters (torchvision's 11,689,512 with
    fc 512 -> 1000 replaced by 512 -> 256). The original starts from ImageNet
    weights; here it is trained from scratch (or converted from a checkpoint).

    Attributes:
      c_dim: output code size (original image config: 256).
      hidden_dim: w, the channels of conv1 (torchvision: 64).
      normalize: apply the ImageNet mean / std normalisation.
      conv_impl: how the convolutions are computed (`Conv2d.impl`): 'auto'
        (XLA's convolution off CPU, per shape the faster path on CPU),
        'im2col' or 'xla'.
    """

    c_dim: int = 256
    hidden_dim: int = 64
    normalize: bool = True
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, images, train: bool = False):
        """Args:
          images: RGB, float32 [batch, H, W, 3] in [0, 1] (the original: 224 x 224).
          train: batch-norm mode (batch statistics and running-average updates).

        Returns:
          Codes c, float32 [batch, c_dim].
        """
        assert images.ndim == 4 and images.shape[-1] == 3, images.shape
        x = images.astype(jnp.float32)
        if self.normalize:
            mean = jnp.asarray(IMAGENET_MEAN).reshape(1, 1, 1, 3)
            x = (x - mean) / jnp.asarray(IMAGENET_STD).reshape(1, 1, 1, 3)
        net = _Resnet18Features(self.hidden_dim, self.conv_impl, name="features")(x, train)
        return layers.Dense(self.c_dim, name="fc")(net)


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
    "resnet18": Resnet18,
}

LATENT_ENCODERS = {
    "simple": LatentEncoder,
}


def create_encoder(name: str, **kwargs) -> nn.Module:
    """Builds an encoder by its config name ('pointnet_resnet', 'voxel_simple' or 'resnet18')."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)


def create_latent_encoder(name: str, **kwargs) -> nn.Module:
    """Builds a latent encoder q(z | p, o, c) by its config name ('simple')."""
    if name not in LATENT_ENCODERS:
        raise ValueError(f"unknown latent encoder {name!r}; choose one of {sorted(LATENT_ENCODERS)}")
    return LATENT_ENCODERS[name](**kwargs)
