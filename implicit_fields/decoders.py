"""Occupancy decoders f(p, c[, z]) -> logit, as in `im2mesh/onet/models/decoder.py`.

Every decoder maps query points [batch, points, 3] and a per-object condition
c [batch, c_dim] (and optionally a latent z [batch, z_dim]) to occupancy
logits [batch, points]. With `train=False` batch norm uses its running
statistics, so the decoder is a pointwise function of (p, c) and can be
vmapped or chunked over points freely.

`LocalDecoder` (ConvONet, `src/conv_onet/models/decoder.py`) is conditioned
on feature planes / grids instead of one code per object: c is the dict that
`encoders.LocalPoolPointnet` returns. It is not in `DECODERS`, whose decoders
take c [batch, c_dim], except 'pixel_aligned'.

`PixelAlignedDecoder` ('pixel_aligned'; PIFu, Saito et al. 2019) is
conditioned on an image feature map and the view's cameras: c is the dict
{'features' [batch, h, w, C], 'world_mat' [batch, 4, 4], 'camera_mat'
[batch, 4, 4]} (`encoders.Resnet18Pixel` plus the cameras). Each query point
is projected into the image, the map is sampled bilinearly there and the
point's depth in the camera is added (`pixel_aligned_features`).
"""

from typing import Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from implicit_fields import layers, local_features

PIXEL_ALIGNED_KEYS = ("features", "world_mat", "camera_mat")
"""The entries of the condition c of `PixelAlignedDecoder`."""

MIN_DEPTH = 1e-6
"""Camera depths below this are clamped to it before the perspective division (no inf / NaN)."""


class DecoderCBatchNorm(nn.Module):
    """The main ONet decoder: conditional-batch-norm ResNet (`cbatchnorm`).

    `fc_p` (3 -> hidden) [+ `fc_z`], then `n_blocks` `CResnetBlock`s, then
    CBN -> ReLU -> `fc_out` (hidden -> 1).

    Attributes:
      hidden_size: width of the point features (original: 256).
      n_blocks: number of conditional ResNet blocks (original: 5).
    """

    hidden_size: int = 256
    n_blocks: int = 5

    @nn.compact
    def __call__(self, p, c, z=None, train: bool = False):
        """Args:
          p: query points, float32 [batch, points, 3].
          c: condition code, float32 [batch, c_dim].
          z: optional latent code, float32 [batch, z_dim].
          train: use batch statistics (and update the running ones).

        Returns:
          Occupancy logits, float32 [batch, points].
        """
        assert p.ndim == 3 and p.shape[-1] == 3, p.shape
        assert c.ndim == 2 and c.shape[0] == p.shape[0], (c.shape, p.shape)
        net = layers.Dense(self.hidden_size, name="fc_p")(p)
        if z is not None and z.shape[-1] > 0:
            net = net + layers.Dense(self.hidden_size, name="fc_z")(z)[:, None, :]
        for i in range(self.n_blocks):
            net = layers.CResnetBlock(use_running_average=not train, name=f"block{i}")(net, c)
        net = layers.CBatchNorm(use_running_average=not train, relu=True, name="bn")(net, c)
        out = layers.Dense(1, name="fc_out")(net)
        return out[..., 0]


class DecoderSimple(nn.Module):
    """The `simple` decoder: FC ResNet with the code added once at the input.

    `fc_p(p) + fc_z(z) + fc_c(c)`, then `n_blocks` `ResnetBlockFC`s, ReLU,
    `fc_out`. No batch norm, so `train` has no effect.

    Attributes:
      hidden_size: width (original: 128).
      n_blocks: number of ResNet blocks (original: 5).
    """

    hidden_size: int = 128
    n_blocks: int = 5

    @nn.compact
    def __call__(self, p, c: Optional[jnp.ndarray] = None, z=None, train: bool = False):
        """Same signature and shapes as `DecoderCBatchNorm.__call__`; c may be None."""
        del train
        assert p.ndim == 3 and p.shape[-1] == 3, p.shape
        net = layers.Dense(self.hidden_size, name="fc_p")(p)
        if z is not None and z.shape[-1] > 0:
            net = net + layers.Dense(self.hidden_size, name="fc_z")(z)[:, None, :]
        if c is not None and c.shape[-1] > 0:
            net = net + layers.Dense(self.hidden_size, name="fc_c")(c)[:, None, :]
        for i in range(self.n_blocks):
            net = layers.ResnetBlockFC(name=f"block{i}")(net)
        out = layers.Dense(1, name="fc_out")(nn.relu(net))
        return out[..., 0]


class LocalDecoder(nn.Module):
    """The ConvONet decoder: an FC ResNet conditioned on features read from planes / a grid.

    The features of each query point are read from every given plane / grid
    (`local_features.sample_plane` / `sample_grid`: bilinear / trilinear,
    align_corners=True, border padding, at the point's normalised
    coordinates) and summed. Then `fc_p` (3 -> hidden), `n_blocks` times
    [`net += fc_c_i(c)`, `blocks_i` = `ResnetBlockFC(hidden)`], ReLU (leaky,
    slope 0.2, with `leaky`) and `fc_out` (hidden -> 1). No batch norm. The
    original's objects config: hidden 32 with c_dim 32 (16,001 parameters).

    Attributes:
      hidden_size: width (original: 256 by default, 32 in the ConvONet configs).
      n_blocks: number of ResNet blocks (original: 5).
      padding: the ONet padding of the unit cube (original: 0.1); must match the encoder's.
      leaky: leaky ReLU before `fc_out`.
      sample_mode: 'bilinear' (original) or 'nearest'.
      unit_size: 0 (the object models: `fc_p` reads the point), or the voxel
        side of the crop models' `local_coord`: `fc_p` reads the point's
        position inside its voxel (`local_features.local_position`).
    """

    hidden_size: int = 256
    n_blocks: int = 5
    padding: float = 0.1
    leaky: bool = False
    sample_mode: str = "bilinear"
    unit_size: float = 0.0

    @nn.compact
    def __call__(self, p, c: Optional[Dict[str, jnp.ndarray]], z=None, train: bool = False, coords=None):
        """Args:
          p: query points, float32 [batch, points, 3].
          c: {'xz' | 'xy' | 'yz': [batch, R, R, c_dim], 'grid': [batch, R, R, R, c_dim]},
            as `LocalPoolPointnet` returns (all with the same c_dim); None or
            {} for an unconditioned decoder (the original's c_dim 0).
          z: must be None (ConvONet has no latent code); kept for the decoders' signature.
          train: unused (no batch norm).
          coords: optional {type: [batch, points, 2 | 3]} sampling coordinates
            that replace the unit-cube ones (a crop's voxel lattice:
            `local_features.lattice_coords`).

        Returns:
          Occupancy logits, float32 [batch, points].
        """
        del train
        if z is not None and z.shape[-1] > 0:
            raise ValueError("LocalDecoder takes no latent code z")
        assert p.ndim == 3 and p.shape[-1] == 3, p.shape
        p = p.astype(jnp.float32)
        if c is not None and not isinstance(c, Mapping):
            raise ValueError(f"LocalDecoder reads a dict of feature planes / grids, got {type(c).__name__}")
        features = self.sample_features(p, c, coords) if c else None
        position = local_features.local_position(p, self.unit_size) if self.unit_size > 0 else p
        net = layers.Dense(self.hidden_size, name="fc_p")(position)
        for i in range(self.n_blocks):
            if features is not None:
                net = net + layers.Dense(self.hidden_size, name=f"fc_c_{i}")(features)
            net = layers.ResnetBlockFC(name=f"blocks_{i}")(net)
        act = (lambda x: nn.leaky_relu(x, 0.2)) if self.leaky else nn.relu
        out = layers.Dense(1, name="fc_out")(act(net))
        return out[..., 0]

    def sample_features(self, p, c: Dict[str, jnp.ndarray], coords=None):
        """The sum over the planes / grid of c of their features at p: [batch, points, c_dim].

        `coords` ({type: sampling coordinates}) replaces the unit-cube coordinates of those types.
        """
        coords = coords or {}
        known = ("grid",) + local_features.PLANES
        unknown = sorted(set(c) - set(known))
        if unknown:
            raise ValueError(f"unknown feature types {unknown}; expected some of {list(known)}")
        total = 0
        for t in known:  # the original's order: grid, xz, xy, yz
            if t not in c:
                continue
            if c[t].shape[0] != p.shape[0]:
                raise ValueError(f"features {t!r} have batch {c[t].shape[0]}, the points {p.shape[0]}")
            if t == "grid":
                xyz = coords[t] if t in coords else local_features.normalize_3d_coordinate(p, self.padding)
                total = total + local_features.sample_grid(c[t], xyz, self.sample_mode)
            else:
                uv = coords[t] if t in coords else local_features.normalize_coordinate(p, self.padding, t)
                total = total + local_features.sample_plane(c[t], uv, self.sample_mode)
        return total


def project_points(p, world_mat, camera_mat) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """Pixels and camera depths of object-space points (`cameras.project_to_image`, scale_mat = I).

    q = camera_mat @ world_mat @ [p, 1]; pixel = q[:2] / q[2] in the [-1, 1]
    convention of `implicit_fields.cameras`; depth = q[2]. The division uses
    max(depth, MIN_DEPTH), so points at or behind the camera get finite
    (meaningless) pixels and finite gradients instead of inf / NaN.

    Args:
      p: [batch, N, 3].
      world_mat, camera_mat: [batch, 4, 4] affine matrices.

    Returns:
      (pixels [batch, N, 2], depth [batch, N]).
    """
    full = jnp.matmul(camera_mat, world_mat)
    q = jnp.einsum("bij,bnj->bni", full[:, :3, :3], p) + full[:, None, :3, 3]
    depth = q[..., 2]
    safe = jnp.where(depth > MIN_DEPTH, depth, MIN_DEPTH)
    return q[..., :2] / safe[..., None], depth


def pixel_aligned_features(p, c: Mapping[str, jnp.ndarray], depth_scale: float = 2.0):
    """The image features at each point's projection and its normalised depth (PIFu's F(pi(X)) and z).

    The features are `local_features.sample_plane` of c['features'] (bilinear,
    align_corners, border) at uv = (pixel + 1) / 2, so cell (0, 0) of the map
    is read at pixel (-1, -1) and cell (h - 1, w - 1) at (1, 1), the centres
    of the image's corner pixels (as `encoders.Resnet18Pixel` aligns its map).
    The depth is relative to that of the object's centre (the origin):
    depth_scale * (depth(p) - depth(0)), so the unit cube spans about
    [-depth_scale / 2, depth_scale / 2] times sqrt(3) whatever the camera's
    distance (PIFu's `DepthNormalizer`).

    Args:
      p: query points, [batch, N, 3].
      c: {'features': [batch, h, w, C], 'world_mat': [batch, 4, 4], 'camera_mat': [batch, 4, 4]}.
      depth_scale: factor of the depth.

    Returns:
      (features [batch, N, C], depth [batch, N]).

    Raises:
      ValueError: c is not such a dict or its batch sizes differ from p's.
    """
    if not isinstance(c, Mapping) or any(k not in c for k in PIXEL_ALIGNED_KEYS):
        got = sorted(c) if isinstance(c, Mapping) else type(c).__name__
        raise ValueError(f"the pixel-aligned decoder reads a dict with {list(PIXEL_ALIGNED_KEYS)}, got {got}")
    fmap, world_mat, camera_mat = (c[k] for k in PIXEL_ALIGNED_KEYS)
    if fmap.ndim != 4 or world_mat.shape[1:] != (4, 4) or camera_mat.shape[1:] != (4, 4):
        raise ValueError(
            f"pixel-aligned condition: features must be [batch, h, w, C] and the cameras [batch, 4, 4], got "
            f"{fmap.shape}, {world_mat.shape}, {camera_mat.shape}"
        )
    if not fmap.shape[0] == world_mat.shape[0] == camera_mat.shape[0] == p.shape[0]:
        raise ValueError(
            f"pixel-aligned condition: batch sizes {fmap.shape[0]}, {world_mat.shape[0]}, "
            f"{camera_mat.shape[0]} of the features and cameras, {p.shape[0]} of the points"
        )
    world_mat = world_mat.astype(jnp.float32)
    camera_mat = camera_mat.astype(jnp.float32)
    pixels, depth = project_points(p, world_mat, camera_mat)
    features = local_features.sample_plane(fmap, 0.5 * (pixels + 1.0))
    centre = jnp.matmul(camera_mat, world_mat)[:, 2, 3]  # camera depth of the origin
    return features, depth_scale * (depth - centre[:, None])


class PixelAlignedDecoder(nn.Module):
    """PIFu's occupancy MLP on pixel-aligned image features and the point's depth.

    Per point: (f, z) = `pixel_aligned_features(p, c)`; `fc_z` (1 -> hidden),
    then `n_blocks` times [`net += fc_c_i(f)`, `blocks_i` =
    `ResnetBlockFC(hidden)`] (the features enter every block, as PIFu's MLP
    concatenates them into its hidden layers), ReLU and `fc_out` (hidden ->
    1). The object-space point itself is not an input: the field depends on
    the image at the point's pixel and on its depth only. No batch norm.

    Attributes:
      hidden_size: width (PIFu: 1024 down to 128; ONet's decoders: 256).
      n_blocks: number of ResNet blocks.
      depth_scale: factor of the depth relative to the object's centre.
    """

    hidden_size: int = 256
    n_blocks: int = 5
    depth_scale: float = 2.0

    @nn.compact
    def __call__(self, p, c: Mapping[str, jnp.ndarray], z=None, train: bool = False):
        """Args:
          p: query points, float32 [batch, points, 3] (object space).
          c: {'features': [batch, h, w, C], 'world_mat': [batch, 4, 4],
            'camera_mat': [batch, 4, 4]}: the encoder's map and the view's cameras.
          z: must be None (no latent code); kept for the decoders' signature.
          train: unused (no batch norm).

        Returns:
          Occupancy logits, float32 [batch, points].
        """
        del train
        if z is not None and z.shape[-1] > 0:
            raise ValueError("PixelAlignedDecoder takes no latent code z")
        assert p.ndim == 3 and p.shape[-1] == 3, p.shape
        features, depth = pixel_aligned_features(p.astype(jnp.float32), c, self.depth_scale)
        net = layers.Dense(self.hidden_size, name="fc_z")(depth[..., None])
        for i in range(self.n_blocks):
            net = net + layers.Dense(self.hidden_size, name=f"fc_c_{i}")(features)
            net = layers.ResnetBlockFC(name=f"blocks_{i}")(net)
        out = layers.Dense(1, name="fc_out")(nn.relu(net))
        return out[..., 0]


class VelocityField(nn.Module):
    """Occupancy Flow's velocity field v(p, t | c, z) (`im2mesh/oflow/models/velocity_field.py`).

    `fc_p` on (x, y, z, t) (4 -> hidden); per block `net += fc_c[i](c)` and
    `net += fc_z[i](z)` (when given), then `ResnetBlockFC`; finally
    `fc_out(act(net))` (hidden -> 3). The original's input/output packing for
    torchdiffeq's adjoint (codes appended to the state with zero velocity) is not
    needed with diffrax: the codes are arguments of the field.

    Attributes:
      hidden_size: width (original class default 512; 128 in the point-cloud config).
      n_blocks: ResNet blocks (original: 5).
      leaky: LeakyReLU 0.2 before the output layer instead of ReLU.
    """

    hidden_size: int = 512
    n_blocks: int = 5
    leaky: bool = False

    @nn.compact
    def __call__(self, p, t, c=None, z=None):
        """Args:
          p: points [batch, n, 3]; t: times, a scalar or [batch]; c: [batch, c_dim] or None;
          z: [batch, z_dim] or None.

        Returns:
          Velocities [batch, n, 3].
        """
        b, n, _ = p.shape
        t = jnp.broadcast_to(jnp.asarray(t, p.dtype).reshape(-1)[:, None, None], (b, n, 1))
        net = layers.Dense(self.hidden_size, name="fc_p")(jnp.concatenate([p, t], axis=-1))
        for i in range(self.n_blocks):
            if c is not None and c.shape[-1]:
                net = net + layers.Dense(self.hidden_size, name=f"fc_c_{i}")(c)[:, None, :]
            if z is not None and z.shape[-1]:
                net = net + layers.Dense(self.hidden_size, name=f"fc_z_{i}")(z)[:, None, :]
            net = layers.ResnetBlockFC(name=f"blocks_{i}")(net)
        act = (lambda x: nn.leaky_relu(x, 0.2)) if self.leaky else nn.relu
        return layers.Dense(3, name="fc_out")(act(net))


DECODERS = {
    "cbatchnorm": DecoderCBatchNorm,
    "simple": DecoderSimple,
    "pixel_aligned": PixelAlignedDecoder,
}


# Decoders whose logit is piecewise linear in the point p (for fixed c, z): linear
# layers, ReLU and batch norm with running statistics. Their Hessian in p is zero
# almost everywhere, so the normal term of mesh refinement needs no second-order
# gradient (`mise.refine_mesh(second_order=False)` is exact for them). 'pixel_aligned' is not:
# its perspective division and bilinear sampling curve the field.
PIECEWISE_LINEAR = frozenset({"cbatchnorm", "simple"})


def is_piecewise_linear(name: str) -> bool:
    """Whether the decoder `name` is piecewise linear in the query point (eval mode)."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose one of {sorted(DECODERS)}")
    return name in PIECEWISE_LINEAR


def create_decoder(name: str, **kwargs) -> nn.Module:
    """Builds a decoder by its config name ('cbatchnorm', 'simple' or 'pixel_aligned')."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose one of {sorted(DECODERS)}")
    return DECODERS[name](**kwargs)
