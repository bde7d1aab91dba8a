"""Condition encoders, as in `im2mesh/encoder/`, and the latent encoder of the VAE.

* `ResnetPointnet` ('pointnet_resnet'): point cloud [B, n, 3] -> c.
* `VoxelEncoder` ('voxel_simple'): 32^3 voxel grid [B, 32, 32, 32] -> c (the
  original's 3-D CNN of the voxel super-resolution experiment).
* `Resnet18` ('resnet18'): RGB image [B, H, W, 3] in [0, 1] -> c (the original's
  single-image encoder: torchvision's ResNet-18 with `fc` replaced by a linear
  layer 512 -> c, ImageNet normalisation of the input; trained from scratch here).
* `Resnet18Pixel` ('resnet18_pixel'): RGB image [B, H, W, 3] -> {'features':
  [B, h, w, c]}, a feature map aligned with the image's pixels (the image
  encoder of pixel-aligned implicit functions, PIFu, Saito et al. 2019): the
  ResNet-18 stages layer1-3, resampled onto one grid and mixed by a 1x1 layer.
  Read by `decoders.PixelAlignedDecoder` at the query points' projections.
* `LocalPoolPointnet` (the original's 'pointnet_local_pool'; not in `ENCODERS`,
  whose encoders are built from `c_dim` and `hidden_dim` alone): point cloud [B, n, 3] -> a dict
  of feature planes [B, R, R, c] and / or a feature grid [B, R, R, R, c], the
  encoder of Convolutional Occupancy Networks (ConvONet, `src/encoder/pointnet.py`).
* `LatentEncoder` ('simple' in `LATENT_ENCODERS`): q(z | p, o[, c]), the
  `encoder_latent.Encoder` of the unconditional / VAE Occupancy Network; it maps
  points [B, T, 3] with their occupancies [B, T] to the mean and log standard
  deviation of a diagonal Gaussian over z.

Parameter names follow the original modules, so `implicit_fields.methods.onet.convert` maps a
PyTorch state dict one to one.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from implicit_fields import layers, local_features

__all__ = [
    "ResnetPointnet",
    "VoxelEncoder",
    "Resnet18",
    "Resnet18Pixel",
    "pixel_aligned_resample",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LocalPoolPointnet",
    "LatentEncoder",
    "LatentPointnet",
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
            # The block sees [net, pooled] concatenated; passed as a pair, pooled's share of fc_0 and
            # the shortcut is computed once per object instead of once per point (the same function).
            pooled = jnp.max(net, axis=1, keepdims=True)
            net = layers.ResnetBlockFC(size_out=h, name=f"block_{i}")((net, pooled))
        net = jnp.max(net, axis=1)
        return layers.Dense(self.c_dim, name="fc_c")(nn.relu(net))


class TemporalResnetPointnet(nn.Module):
    """Occupancy Flow's temporal encoder (`im2mesh/encoder/pointnet.py: TemporalResnetPointnet`).

    A `ResnetPointnet` whose points are the trajectories of corresponding points:
    a sequence [batch, T, n, 3] becomes [batch, n, 3 T] (the original's
    `x.transpose(1, 2).view(batch, n, -1)`: per point the T positions, frame by
    frame), so with 17 frames each point is 51-d.

    Attributes:
      c_dim: output code size (original: the config's c_dim, 128 for point clouds).
      hidden_dim: h (original class default 512; 128 in the point-cloud config).
    """

    c_dim: int = 128
    hidden_dim: int = 512

    @nn.compact
    def __call__(self, sequences, train: bool = False):
        """Args:
          sequences: corresponding point clouds, float32 [batch, T, n, 3].

        Returns:
          Codes c, float32 [batch, c_dim].
        """
        assert sequences.ndim == 4 and sequences.shape[-1] == 3, sequences.shape
        b, t, n, _ = sequences.shape
        per_point = jnp.transpose(sequences, (0, 2, 1, 3)).reshape(b, n, 3 * t)
        return ResnetPointnet(self.c_dim, self.hidden_dim, name="pointnet")(per_point, train)


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
        net = layers.Conv3d(w, 1, name="conv_in")(net)
        for i in range(4):
            net = layers.Conv3d(w * 2 ** (i + 1), 2, name=f"conv_{i}")(nn.relu(net))
        # PyTorch flattens [B, C, D, H, W]; flatten channel-first to share its layout.
        hidden = jnp.transpose(net, (0, 4, 1, 2, 3)).reshape(net.shape[0], -1)
        return layers.Dense(self.c_dim, name="fc")(nn.relu(hidden))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB in [0, 1] (the original's `normalize_imagenet`)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB in [0, 1]."""


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
        out = layers.Conv2d(self.features, 3, self.stride, 1, impl, name="conv1")(x)
        out = nn.relu(layers.BatchNorm2d(ura, name="bn1")(out))
        out = layers.Conv2d(self.features, 3, 1, 1, impl, name="conv2")(out)
        out = layers.BatchNorm2d(ura, name="bn2")(out)
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
        x = layers.Conv2d(self.features, 1, self.stride, 0, self.conv_impl, name="0")(x)
        return layers.BatchNorm2d(not train, name="1")(x)


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
        x = layers.Conv2d(w, 7, 2, 3, impl, name="conv1")(x)
        x = nn.relu(layers.BatchNorm2d(not train, name="bn1")(x))
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


def pixel_aligned_resample(features, stride: int, image_size: Tuple[int, int], out_size: Tuple[int, int]):
    """Resamples a CNN feature map onto a grid aligned with the image's [-1, 1] pixel convention.

    Cell (k, l) of a map of stride s sits on image pixel (s k, s l) (row,
    column), as in ResNet-18, whose strided layers pad (kernel - 1) / 2. Output
    cell (i, j) of an (h, w) grid sits on image pixel (i (H - 1) / (h - 1),
    j (W - 1) / (w - 1)): the cells span the image from its first to its last
    pixel centre, as `implicit_fields.cameras` pixels span [-1, 1]. So
    `local_features.sample_plane(out, (pixel + 1) / 2)` reads the features at
    the image pixel `pixel` (bilinear between cells, clamped to the border).

    Args:
      features: [B, hs, ws, C], a stride-`stride` map of the image.
      stride: s, image pixels per cell.
      image_size: (H, W) of the image.
      out_size: (h, w) of the grid.

    Returns:
      [B, h, w, C], bilinear in `features` (border-clamped outside it).
    """
    (height, width), (h, w) = image_size, out_size
    batch, hs, ws, channels = features.shape
    # Image pixel of each output cell, in the input map's cells, normalised to its [0, 1] span.
    rows = np.arange(h) * ((height - 1) / max(h - 1, 1)) / stride / max(hs - 1, 1)
    cols = np.arange(w) * ((width - 1) / max(w - 1, 1)) / stride / max(ws - 1, 1)
    u, v = np.meshgrid(cols, rows)  # [h, w] each: u along the columns, v along the rows.
    uv = np.stack([u, v], axis=-1).reshape(1, h * w, 2).astype(np.float32)
    uv = jnp.broadcast_to(jnp.asarray(uv), (batch, h * w, 2))
    return local_features.sample_plane(features, uv).reshape(batch, h, w, channels)


class Resnet18Pixel(nn.Module):
    """A pixel-aligned image encoder: ResNet-18's first three stages as one feature map (PIFu's idea).

    ImageNet normalisation, torchvision's ResNet-18 stem (conv1 7x7/2, bn1,
    max pool 3x3/2) and `layer1`..`layer3` (two BasicBlocks each, widths w, 2w,
    4w, strides 4, 8, 16). Each stage's map is resampled onto layer1's grid
    (`pixel_aligned_resample`: cell (i, j) sits on image pixel
    (i (H - 1) / (h - 1), j (W - 1) / (w - 1))), the 7w channels are
    concatenated and `fc` (a 1x1 layer, 7w -> c_dim) mixes them. Features of
    a pixel thus combine local detail (layer1) and wider context (layer3's
    receptive field). PIFu uses a stacked hourglass; this is the cheaper
    ResNet of ONet's image model, trained from scratch.

    Attributes:
      c_dim: channels of the feature map (PIFu: 256).
      hidden_dim: w, the channels of conv1 (torchvision: 64).
      normalize: apply the ImageNet mean / std normalisation.
      conv_impl: how the convolutions are computed (`Resnet18.conv_impl`).
    """

    c_dim: int = 256
    hidden_dim: int = 64
    normalize: bool = True
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, images, train: bool = False) -> Dict[str, jnp.ndarray]:
        """Args:
          images: RGB, float32 [batch, H, W, 3] in [0, 1].
          train: batch-norm mode (batch statistics and running-average updates).

        Returns:
          {'features': float32 [batch, h, w, c_dim]}, (h, w) = layer1's size
          (about (H / 4, W / 4)), aligned with the image as `pixel_aligned_resample` says.
        """
        assert images.ndim == 4 and images.shape[-1] == 3, images.shape
        x = images.astype(jnp.float32)
        if self.normalize:
            mean = jnp.asarray(IMAGENET_MEAN).reshape(1, 1, 1, 3)
            x = (x - mean) / jnp.asarray(IMAGENET_STD).reshape(1, 1, 1, 3)
        w, impl = self.hidden_dim, self.conv_impl
        x = layers.Conv2d(w, 7, 2, 3, impl, name="conv1")(x)
        x = nn.relu(layers.BatchNorm2d(not train, name="bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        maps = []
        for i, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2))):
            x = _ResnetLayer(w * mult, 2, stride, impl, name=f"layer{i + 1}")(x, train)
            maps.append((x, 4 * 2**i))
        out_size = maps[0][0].shape[1:3]
        aligned = [pixel_aligned_resample(m, s, images.shape[1:3], out_size) for m, s in maps]
        features = layers.Dense(self.c_dim, name="fc")(jnp.concatenate(aligned, axis=-1))
        return {"features": features}


class LocalPoolPointnet(nn.Module):
    """The ConvONet encoder: a PointNet with local pooling, scattered into feature planes or a grid.

    `fc_pos` (3 -> 2h), then `n_blocks` `ResnetBlockFC(2h -> h)` named
    `blocks_0...`; before blocks 1.. each point's features are concatenated
    with the pool (max, or mean with `scatter_type='mean'`) over the points
    of its cell, summed over the feature planes / grid (not a global pool);
    `fc_c` (h -> c_dim, no ReLU before it); finally the per-point codes are
    averaged into each plane / the grid (empty cells 0) and, if given, passed
    through the U-Net (`unet` on each plane, one shared instance; `unet3d` on
    the grid). The original's objects config: c_dim = h = 32, 3 planes of 64^2
    (27,232 parameters without the U-Net) or a 32^3 grid.

    The U-Nets are submodules given by the caller (e.g. `unet=UNet2D(...)`),
    so their parameters sit under 'unet' / 'unet3d' as in the original's
    state dict; each maps [B, R, R(, R), c_dim] channels-last features to
    features of the same layout. Without them the raw scattered features are
    returned.

    Attributes:
      c_dim: channels of the feature planes / grid (original: 32).
      hidden_dim: h (original: 32).
      plane_type: the features to build, any of 'xz', 'xy', 'yz' and 'grid'
        (a single name is accepted too).
      plane_resolution: R of the planes (original: 64 objects, 128 rooms).
      grid_resolution: R of the grid (original: 32 objects, 64 rooms).
      padding: the ONet padding of the unit cube (original: 0.1).
      n_blocks: number of ResNet blocks (original: 5).
      scatter_type: the local pool, 'max' (original default) or 'mean'.
      unet: optional module applied to each plane.
      unet3d: optional module applied to the grid.
      unit_size: 0 (the original's object models: `fc_pos` reads the point),
        or the voxel side of the crop models' `local_coord`: `fc_pos` reads
        the point's position inside its voxel (`local_features.local_position`).
    """

    c_dim: int = 128
    hidden_dim: int = 128
    plane_type: Union[str, Sequence[str]] = ("xz",)
    plane_resolution: Optional[int] = None
    grid_resolution: Optional[int] = None
    padding: float = 0.1
    n_blocks: int = 5
    scatter_type: str = "max"
    unet: Optional[nn.Module] = None
    unet3d: Optional[nn.Module] = None
    unit_size: float = 0.0

    def _feature_types(self) -> Tuple[str, ...]:
        """The requested feature types in the original's order ('xz', 'xy', 'yz', 'grid'), checked."""
        types = (self.plane_type,) if isinstance(self.plane_type, str) else tuple(self.plane_type)
        known = local_features.PLANES + ("grid",)
        unknown = [t for t in types if t not in known]
        if unknown or not types:
            raise ValueError(f"plane_type: {list(types)} must name some of {list(known)}")
        ordered = tuple(t for t in known if t in types)
        if any(t != "grid" for t in ordered) and not (self.plane_resolution or 0) > 0:
            raise ValueError(f"plane_resolution must be a positive integer, got {self.plane_resolution}")
        if "grid" in ordered and not (self.grid_resolution or 0) > 0:
            raise ValueError(f"grid_resolution must be a positive integer, got {self.grid_resolution}")
        if self.scatter_type not in ("max", "mean"):
            raise ValueError(f"scatter_type must be 'max' or 'mean', got {self.scatter_type!r}")
        return ordered

    @nn.compact
    def __call__(self, points, train: bool = False, cells=None) -> Dict[str, jnp.ndarray]:
        """Args:
          points: input point cloud, float32 [batch, n, 3] in the padded unit cube.
          train: unused (no batch norm); kept for a uniform encoder signature.
          cells: optional {type: int [batch, n]} flat cell indices that replace
            the unit-cube ones (the voxel lattice of a crop:
            `local_features.lattice_cells`; entries outside the plane / grid are
            left out of every pool).

        Returns:
          {'xz' | 'xy' | 'yz': [batch, R, R, c_dim], 'grid': [batch, R, R, R, c_dim]}
          for the requested types (layouts: `implicit_fields.local_features`).
        """
        del train
        assert points.ndim == 3 and points.shape[-1] == 3, points.shape
        types = self._feature_types()
        points = points.astype(jnp.float32)
        given = cells or {}
        unknown = sorted(set(given) - set(types))
        if unknown:
            raise ValueError(f"cells for {unknown}, which are not among the features {list(types)}")
        index, counts = {}, {}
        for t in types:
            if t == "grid":
                counts[t] = self.grid_resolution**3
                coord = None if t in given else local_features.normalize_3d_coordinate(points, self.padding)
                reso = self.grid_resolution
            else:
                counts[t] = self.plane_resolution**2
                coord = None if t in given else local_features.normalize_coordinate(points, self.padding, t)
                reso = self.plane_resolution
            index[t] = given[t] if t in given else local_features.coordinate_to_index(coord, reso)
        scatter = local_features.scatter_max if self.scatter_type == "max" else local_features.scatter_mean

        def pool_local(net):
            pooled = 0
            for t in types:
                pooled = pooled + local_features.gather_cells(scatter(net, index[t], counts[t]), index[t])
            return pooled

        h = self.hidden_dim
        position = local_features.local_position(points, self.unit_size) if self.unit_size > 0 else points
        net = layers.Dense(2 * h, name="fc_pos")(position)
        net = layers.ResnetBlockFC(size_out=h, name="blocks_0")(net)
        for i in range(1, self.n_blocks):
            net = jnp.concatenate([net, pool_local(net)], axis=-1)
            net = layers.ResnetBlockFC(size_out=h, name=f"blocks_{i}")(net)
        c = layers.Dense(self.c_dim, name="fc_c")(net)

        batch = points.shape[0]
        features = {}
        for t in types:
            fea = local_features.scatter_mean(c, index[t], counts[t])
            if t == "grid":
                r = self.grid_resolution
                fea = fea.reshape(batch, r, r, r, self.c_dim)
                if self.unet3d is not None:
                    fea = self.unet3d(fea)
            else:
                r = self.plane_resolution
                fea = fea.reshape(batch, r, r, self.c_dim)
                if self.unet is not None:
                    fea = self.unet(fea)
            features[t] = fea
        return features


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
        # fc_2 and fc_3 see [net, pooled] concatenated; as a pair, pooled's share is computed
        # once per object instead of once per point (the same function).
        net = layers.Dense(h, name="fc_2")((act(net), act(pool(net, axis=1, keepdims=True))))
        net = layers.Dense(h, name="fc_3")((act(net), act(pool(net, axis=1, keepdims=True))))
        net = pool(net, axis=1)
        mean = layers.Dense(self.z_dim, name="fc_mean")(net)
        logstd = layers.Dense(self.z_dim, name="fc_logstd")(net)
        return mean, logstd


class LatentPointnet(nn.Module):
    """q(z | inputs[, c]) of Occupancy Flow's generative model (`oflow/models/encoder_latent.py: PointNet`).

    With `dim` 3 it reads the first frame of a sequence [batch, T, n, 3]; with
    `dim` 3 T (51 for 17 frames) the trajectories flattened per point as
    `TemporalResnetPointnet` does. `fc_pos` (dim -> 2h), then `n_blocks` times:
    `+ c_layers[i](c)` (when c is given), `ResnetBlockFC(2h -> h)` and, but for the
    last, the max-pooled features concatenated (-> 2h); a final max-pool and
    `fc_mean` / `fc_logstd` (h -> z_dim).

    Attributes:
      z_dim: latent size (the original's generative config: 128).
      hidden_dim: h (original: 128).
      n_blocks: ResNet blocks (original: 3).
      temporal: read the whole trajectories (dim 3 T) instead of frame 0 (dim 3).
    """

    z_dim: int = 128
    hidden_dim: int = 128
    n_blocks: int = 3
    temporal: bool = False

    @nn.compact
    def __call__(self, sequences, c: Optional[jnp.ndarray] = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
        """Args:
          sequences: corresponding point clouds, float32 [batch, T, n, 3].
          c: optional condition code [batch, c_dim].

        Returns:
          (mean, logstd), each float32 [batch, z_dim].
        """
        assert sequences.ndim == 4 and sequences.shape[-1] == 3, sequences.shape
        b, t, n, _ = sequences.shape
        if self.temporal:
            x = jnp.transpose(sequences, (0, 2, 1, 3)).reshape(b, n, 3 * t)
        else:
            x = sequences[:, 0]
        h = self.hidden_dim
        net = layers.Dense(2 * h, name="fc_pos")(x)
        for i in range(self.n_blocks):
            if c is not None and c.shape[-1] > 0:
                net = net + layers.Dense(2 * h, name=f"c_layers_{i}")(c)[:, None, :]
            net = layers.ResnetBlockFC(size_out=h, name=f"blocks_{i}")(net)
            if i < self.n_blocks - 1:
                net = _concat_pooled(net, jnp.max)
        net = jnp.max(net, axis=1)
        mean = layers.Dense(self.z_dim, name="fc_mean")(net)
        logstd = layers.Dense(self.z_dim, name="fc_logstd")(net)
        return mean, logstd


def _concat_pooled(net, pool):
    """[B, T, F] -> [B, T, 2F]: each point's features and the pool over the points."""
    pooled = pool(net, axis=1, keepdims=True)
    return jnp.concatenate([net, jnp.broadcast_to(pooled, net.shape)], axis=-1)


ENCODERS = {
    "pointnet_resnet": ResnetPointnet,
    "pointnet_resnet_temporal": TemporalResnetPointnet,
    "voxel_simple": VoxelEncoder,
    "resnet18": Resnet18,
    "resnet18_pixel": Resnet18Pixel,
}

LATENT_ENCODERS = {
    "simple": LatentEncoder,
    "pointnet": LatentPointnet,
}


def create_encoder(name: str, **kwargs) -> nn.Module:
    """Builds an encoder by its config name (a key of `ENCODERS`)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)


def create_latent_encoder(name: str, **kwargs) -> nn.Module:
    """Builds a latent encoder q(z | p, o, c) by its config name ('simple')."""
    if name not in LATENT_ENCODERS:
        raise ValueError(f"unknown latent encoder {name!r}; choose one of {sorted(LATENT_ENCODERS)}")
    return LATENT_ENCODERS[name](**kwargs)
