"""The 2-D and 3-D U-Nets of Convolutional Occupancy Networks (Peng et al., ECCV 2020).

Both follow the original PyTorch code layer for layer, so that its
initialisations and checkpoints carry over; inputs and outputs are channels-last
(NHWC, NDHWC), as Flax lays them out.

* `UNet2D` is `src/encoder/unet.py` (from jaxony/unet-pytorch) with
  `up_mode='transpose'` and `merge_mode='concat'`, the only modes ConvONet
  uses: `depth` levels of two 3x3 convolutions + ReLU, 2x2 max pooling between
  them; each decoder level upsamples with a 2x2 stride-2 transposed
  convolution (halving the channels), concatenates [upsampled, skip] and
  applies two 3x3 convolutions + ReLU; a final 1x1 convolution gives
  `out_channels`. The convolutions (and the final 1x1) are Xavier-normal with
  zero bias; the transposed convolutions keep PyTorch's default
  initialisation. ConvONet uses `start_filts=32`, `depth=4` for objects
  (32-64-128-256 channels, 3 x 64^2 planes) and `depth=5` for rooms
  (3 x 128^2 planes), with 32 input and output channels, and shares one
  instance across the three planes.
* `UNet3D` is `src/encoder/unet3d.py` (from wolny/pytorch-3dunet) with
  `DoubleConv` blocks and layer order 'gcr': every convolution is
  GroupNorm -> 3^3 convolution (no bias) -> ReLU. Encoder level i has
  `f_maps * 2^i` channels and max-pools by 2 before its block (not the first);
  its first convolution gives max(out // 2, in) channels. Each decoder level
  upsamples by nearest-neighbour interpolation, concatenates [skip, upsampled]
  (the other order than `UNet2D`) and applies two convolutions to the skip's
  channel count. A final 1x1x1 convolution (with bias) gives `out_channels`;
  no final activation (the original builds a sigmoid but applies it only in
  its `testing` mode, which ConvONet never sets). Convolutions keep PyTorch's
  default initialisation. ConvONet uses `f_maps=32`, `num_levels=3` for 32^3
  grids (objects) and 4 for 64^3 grids (rooms), 32 input and output channels.

Parameter names mirror the PyTorch state dict ('down_convs.0.conv1.weight' is
`params['down_convs_0']['conv1']['kernel']`, 'encoders.0.basic_module.
SingleConv1.groupnorm.weight' is `params['encoders_0']['SingleConv1']
['groupnorm']['scale']`). Kernels are PyTorch's weights transposed to
channels-last: a convolution weight [out, in, *k] becomes [*k, in, out]; a
transposed-convolution weight [in, out, 2, 2] becomes [2, 2, in, out] (no
flip: output pixel (2h + a, 2w + b) is input pixel (h, w) times kernel [a, b]).

Every spatial size must be a multiple of 2^(levels - 1) (the original pads its
resolutions to one, `update_reso`).

Receptive field: an output voxel of either U-Net depends, through the
convolutions, on input voxels up to `receptive_field_radius(levels)` =
7 * 2^(levels - 1) - 5 voxels away along each axis (2, 9, 23, 51, 107 for 1-5
levels). With GroupNorm ('gcr') every output depends on every input through
the normalisation statistics as well. The original's sliding-window
generation pads each query crop by `sliding_window_receptive_field(levels)` =
2^(levels + 2) - 1 voxels in total (31 for 3 levels, 63 for 4), less than the
2 * radius above: it is the original's choice of crop, not the exact field.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from implicit_fields import layers

LAYER_ORDERS = ("gcr", "cr")
"""Layer orders `UNet3D` supports: GroupNorm -> conv -> ReLU (ConvONet's) and conv (with bias) -> ReLU."""


def receptive_field_radius(levels: int) -> int:
    """How far (in voxels, along each axis) an input voxel can reach an output of a U-Net.

    Holds for `UNet2D` (levels = `depth`) and `UNet3D` (levels = `num_levels`):
    each level has two 3-wide convolutions, pooling and upsampling are by 2.
    An output at position p depends on inputs within [p - r, p + r] on every
    axis, r = 7 * 2^(levels - 1) - 5; the bound is reached for some positions
    (the pooling grid makes the exact window depend on p mod 2^(levels - 1)).
    GroupNorm ('gcr') adds a global dependency through its statistics.

    Args:
      levels: number of resolution levels (>= 1).

    Returns:
      The radius r.

    Raises:
      ValueError: if `levels` < 1.
    """
    _check_levels("levels", levels)
    return 7 * 2 ** (levels - 1) - 5


def sliding_window_receptive_field(num_levels: int) -> int:
    """The original's `recep_field` = 2^(num_levels + 2) for the sliding-window crops.

    `src/conv_onet/config.py` sizes an input crop as `query_vol_size +
    recep_field - 1` voxels (then rounded up to a multiple of
    2^(num_levels - 1)): 32 for 3 levels, 64 for 4. It is smaller than the
    exact reach (`receptive_field_radius`); use it to reproduce the original's
    crops.

    Args:
      num_levels: levels of the 3-D U-Net (>= 1).

    Returns:
      2^(num_levels + 2).

    Raises:
      ValueError: if `num_levels` < 1.
    """
    _check_levels("num_levels", num_levels)
    return 2 ** (num_levels + 2)


def _check_levels(name: str, levels) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {levels!r}")


def _check_input(x, ndim: int, levels: int, what: str) -> None:
    """Raises ValueError unless x has `ndim` axes and spatial sizes divisible by 2^(levels - 1)."""
    layout = "NHWC" if ndim == 4 else "NDHWC"
    if x.ndim != ndim:
        raise ValueError(f"{what}: input must be {layout} with {ndim} axes, got shape {tuple(x.shape)}")
    step = 2 ** (levels - 1)
    if any(n % step for n in x.shape[1:-1]):
        raise ValueError(
            f"{what}: spatial sizes {tuple(x.shape[1:-1])} must be multiples of 2^(levels - 1) = {step} "
            f"for {levels} levels"
        )


def _flat_init(init):
    """Draws a kernel flat and reshapes it (XLA's CPU compiler is slow on high-rank random programs)."""

    def flat(key, shape, dtype=jnp.float32):
        return init(key, (math.prod(shape),), dtype).reshape(shape)

    return flat


def _xavier_normal(fan_in: int, fan_out: int):
    """`torch.nn.init.xavier_normal_`: N(0, 2 / (fan_in + fan_out)), not truncated."""
    std = math.sqrt(2.0 / (fan_in + fan_out))

    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return _flat_init(init)


def _max_pool(x):
    """2 x 2 (x 2) max pooling with stride 2 over every spatial axis."""
    window = (2,) * (x.ndim - 2)
    return nn.max_pool(x, window, strides=window, padding="VALID")


class _Conv2d(nn.Module):
    """`nn.Conv2d` (k x k, padding k // 2, bias) with the original U-Net's Xavier-normal, zero-bias init.

    Attributes:
      features: output channels.
      kernel_size: k (3 or 1).
    """

    features: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x):
        k, fan_in = self.kernel_size, x.shape[-1]
        init = _xavier_normal(fan_in * k * k, self.features * k * k)
        kernel = self.param("kernel", init, (k, k, fan_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return layers.conv2d(x, kernel, 1, k // 2) + bias.reshape((1, 1, 1, self.features))


class _UpConv2x2(nn.Module):
    """`nn.ConvTranspose2d(in, out, kernel_size=2, stride=2)` with PyTorch's default init.

    Output pixel (2h + a, 2w + b) is `x[h, w] @ kernel[a, b] + bias`.
    PyTorch computes the transposed convolution's fan-in from its weight
    [in, out, 2, 2] as 4 * out, so weight and bias are uniform in
    +-1/sqrt(4 out).

    Attributes:
      features: output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x):
        init = layers.torch_uniform_init(4 * self.features)
        kernel = self.param("kernel", _flat_init(init), (2, 2, x.shape[-1], self.features))
        bias = self.param("bias", init, (self.features,))
        b, h, w, _ = x.shape
        y = jnp.einsum("nhwi,abio->nhawbo", x, kernel).reshape(b, 2 * h, 2 * w, self.features)
        return y + bias.reshape((1, 1, 1, self.features))


class _DownConv2d(nn.Module):
    """Two 3x3 convolutions + ReLU (`DownConv` without its pooling, which `UNet2D` applies)."""

    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(_Conv2d(self.features, name="conv1")(x))
        return nn.relu(_Conv2d(self.features, name="conv2")(x))


class _UpConv2d(nn.Module):
    """`UpConv`: transposed-conv upsampling, concat [upsampled, skip], two 3x3 convolutions + ReLU."""

    features: int

    @nn.compact
    def __call__(self, skip, x):
        x = _UpConv2x2(self.features, name="upconv")(x)
        x = jnp.concatenate([x, skip], axis=-1)
        x = nn.relu(_Conv2d(self.features, name="conv1")(x))
        return nn.relu(_Conv2d(self.features, name="conv2")(x))


class UNet2D(nn.Module):
    """The 2-D U-Net of ConvONet's plane features (`src/encoder/unet.py`, concat, transposed upsampling).

    Level i has `start_filts * 2^i` channels (i < depth); the input channel
    count is taken from the input (ConvONet: c_dim = 32).

    Attributes:
      out_channels: channels of the output (the original's `num_classes`, ConvONet's c_dim).
      start_filts: channels of the first level.
      depth: number of levels (the original's `depth`; depth - 1 poolings).
    """

    out_channels: int = 32
    start_filts: int = 32
    depth: int = 4

    @nn.compact
    def __call__(self, x):
        """Maps x [batch, H, W, in] to [batch, H, W, out_channels].

        H and W must be multiples of 2^(depth - 1).

        Raises:
          ValueError: for a bad `depth` or input shape.
        """
        _check_levels("UNet2D.depth", self.depth)
        _check_input(x, 4, self.depth, "UNet2D")
        skips = []
        for i in range(self.depth):
            if i:
                x = _max_pool(x)
            x = _DownConv2d(self.start_filts * 2**i, name=f"down_convs_{i}")(x)
            skips.append(x)
        for i in range(self.depth - 1):
            features = self.start_filts * 2 ** (self.depth - 2 - i)
            x = _UpConv2d(features, name=f"up_convs_{i}")(skips[-(i + 2)], x)
        return _Conv2d(self.out_channels, kernel_size=1, name="conv_final")(x)


class _Conv3d(nn.Module):
    """`nn.Conv3d` (k^3, padding k // 2) with PyTorch's default init, weight and bias in +-1/sqrt(k^3 in).

    Attributes:
      features: output channels.
      kernel_size: k (3 or 1).
      use_bias: whether the convolution has a bias.
    """

    features: int
    kernel_size: int = 3
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        k, fan_in = self.kernel_size, x.shape[-1]
        init = layers.torch_uniform_init(k**3 * fan_in)
        kernel = self.param("kernel", _flat_init(init), (k, k, k, fan_in, self.features))
        y = layers.conv3d(x, kernel)  # im2col on the CPU, whose 3-D convolution gradients are slow
        if self.use_bias:
            y = y + self.param("bias", init, (self.features,)).reshape((1, 1, 1, 1, self.features))
        return y


class _SingleConv3d(nn.Module):
    """`SingleConv`: [GroupNorm ->] 3^3 convolution (bias only without the norm) -> ReLU.

    GroupNorm (eps 1e-5, affine) normalises the convolution's input with
    `num_groups` groups, or one group when the input has fewer channels.

    Attributes:
      features: output channels.
      layer_order: 'gcr' or 'cr'.
      num_groups: GroupNorm groups.
    """

    features: int
    layer_order: str
    num_groups: int

    @nn.compact
    def __call__(self, x):
        norm = self.layer_order == "gcr"
        if norm:
            channels = x.shape[-1]
            groups = 1 if channels < self.num_groups else self.num_groups
            if channels % groups:
                raise ValueError(
                    f"UNet3D.num_groups: a GroupNorm input has {channels} channels, "
                    f"not divisible into {groups} groups"
                )
            x = nn.GroupNorm(num_groups=groups, epsilon=1e-5, use_fast_variance=False, name="groupnorm")(x)
        return nn.relu(_Conv3d(self.features, use_bias=not norm, name="conv")(x))


class _DoubleConv3d(nn.Module):
    """`DoubleConv`: two `SingleConv`s.

    In the encoder the first gives max(features // 2, in) channels, in the
    decoder `features`; the second gives `features`.

    Attributes:
      features: output channels.
      encoder: whether the block is on the encoder path.
      layer_order: 'gcr' or 'cr'.
      num_groups: GroupNorm groups.
    """

    features: int
    encoder: bool
    layer_order: str
    num_groups: int

    @nn.compact
    def __call__(self, x):
        middle = max(self.features // 2, x.shape[-1]) if self.encoder else self.features
        x = _SingleConv3d(middle, self.layer_order, self.num_groups, name="SingleConv1")(x)
        return _SingleConv3d(self.features, self.layer_order, self.num_groups, name="SingleConv2")(x)


class UNet3D(nn.Module):
    """The 3-D U-Net of ConvONet's grid features (`src/encoder/unet3d.py`, DoubleConv, nearest upsampling).

    Encoder level i has `f_maps * 2^i` channels; the input channel count is
    taken from the input (ConvONet: c_dim = 32).

    Attributes:
      out_channels: channels of the output (ConvONet's c_dim).
      f_maps: channels of the first level.
      num_levels: number of levels (num_levels - 1 poolings).
      num_groups: GroupNorm groups (one group where a layer has fewer channels).
      layer_order: 'gcr' (GroupNorm -> conv -> ReLU, ConvONet's) or 'cr' (conv with bias -> ReLU, no
        normalisation; the original's own receptive-field check uses it).
    """

    out_channels: int = 32
    f_maps: int = 32
    num_levels: int = 3
    num_groups: int = 8
    layer_order: str = "gcr"

    @nn.compact
    def __call__(self, x):
        """Maps x [batch, D, H, W, in] to [batch, D, H, W, out_channels].

        D, H and W must be multiples of 2^(num_levels - 1).

        Raises:
          ValueError: for bad settings or input shape.
        """
        _check_levels("UNet3D.num_levels", self.num_levels)
        if self.layer_order not in LAYER_ORDERS:
            raise ValueError(f"UNet3D.layer_order: must be one of {LAYER_ORDERS}, got {self.layer_order!r}")
        if isinstance(self.num_groups, bool) or not isinstance(self.num_groups, int) or self.num_groups < 1:
            raise ValueError(f"UNet3D.num_groups: must be an integer >= 1, got {self.num_groups!r}")
        _check_input(x, 5, self.num_levels, "UNet3D")
        order, groups = self.layer_order, self.num_groups
        skips = []
        for i in range(self.num_levels):
            if i:
                x = _max_pool(x)
            x = _DoubleConv3d(self.f_maps * 2**i, True, order, groups, name=f"encoders_{i}")(x)
            skips.append(x)
        for i in range(self.num_levels - 1):
            skip = skips[-(i + 2)]
            # Nearest-neighbour upsampling to the skip's size (exactly x2 on every axis).
            for axis in (1, 2, 3):
                x = jnp.repeat(x, 2, axis=axis)
            x = jnp.concatenate([skip, x], axis=-1)
            x = _DoubleConv3d(skip.shape[-1], False, order, groups, name=f"decoders_{i}")(x)
        return _Conv3d(self.out_channels, kernel_size=1, name="final_conv")(x)
