"""Local feature planes and grids of Convolutional Occupancy Networks (`src/common.py` of ConvONet).

ConvONet scatters per-point features into axis-aligned feature planes ('xz',
'xy', 'yz') or a 3-D grid ('grid') and reads them back at query points by
bilinear / trilinear interpolation. The pure functions here implement the
pieces of the original (Peng et al., ECCV 2020) in JAX, channels-last:

* `normalize_coordinate` / `normalize_3d_coordinate`: points of the padded unit
  cube -> [0, 1), exactly as the original (`p / (1 + padding + eps) + 0.5`,
  values >= 1 set to `1 - eps`, values < 0 set to 0; eps is 1e-5 for planes and
  1e-3 for the grid, the original's `10e-6` and `10e-4`).
* `coordinate_to_index`: normalised coordinates -> flat cell index
  `x + reso * y` (planes) or `x + reso * (y + reso * z)` (grid), the
  original's `coordinate2index`.
* `scatter_mean` / `scatter_max`: `torch_scatter`'s reductions of per-point
  values into cells, empty cells 0.
* `sample_plane` / `sample_grid`: `F.grid_sample` with `align_corners=True`
  and `padding_mode='border'` ('bilinear', i.e. trilinear on a grid, or
  'nearest').

Layouts. A plane of resolution R is [batch, R, R, C] with the flat index
`u + R v` reshaped row-major, so the first axis is v (the plane's second
coordinate) and the second is u: 'xz' is [z, x], 'xy' is [y, x], 'yz' is
[z, y]. A grid is [batch, R, R, R, C] indexed [z, y, x]. These are the
original's [batch, C, ...] tensors with the channels moved last, and match
`grid_sample`, whose grid x indexes the last spatial axis (W), y the one
before (H) and z the first (D).
"""

import itertools
from typing import Tuple

import jax
import jax.numpy as jnp

__all__ = [
    "PLANES",
    "PLANE_AXES",
    "PLANE_EPS",
    "GRID_EPS",
    "normalize_coordinate",
    "normalize_3d_coordinate",
    "coordinate_to_index",
    "scatter_mean",
    "scatter_max",
    "gather_cells",
    "sample_plane",
    "sample_grid",
    "lattice_cells",
    "lattice_coords",
    "local_position",
]

PLANES = ("xz", "xy", "yz")
"""The canonical feature planes, in the original's order."""

PLANE_AXES = {"xz": (0, 2), "xy": (0, 1), "yz": (1, 2)}
"""Which point coordinates a plane keeps: (u, v) = (p[a], p[b])."""

PLANE_EPS = 10e-6
"""The original's margin in `normalize_coordinate` (10e-6 = 1e-5)."""

GRID_EPS = 10e-4
"""The original's margin in `normalize_3d_coordinate` (10e-4 = 1e-3)."""

_MODES = ("bilinear", "nearest")


def _normalize(x, padding: float, eps: float):
    """x / (1 + padding + eps) + 0.5; values >= 1 become 1 - eps, values < 0 become 0."""
    x = x / (1 + padding + eps) + 0.5
    x = jnp.where(x >= 1, 1 - eps, x)
    return jnp.where(x < 0, 0.0, x).astype(x.dtype)


def normalize_coordinate(p, padding: float = 0.1, plane: str = "xz"):
    """Maps points of the padded unit cube to plane coordinates in [0, 1) (the original's version).

    Args:
      p: points, [..., 3], inside [-(1 + padding) / 2, (1 + padding) / 2]^3;
        points outside are moved onto the plane's border.
      padding: the ONet padding of the unit cube (0.1: [-0.55, 0.55]).
      plane: 'xz', 'xy' or 'yz'; keeps (p[..., 0], p[..., 2]), (p[..., 0],
        p[..., 1]) or (p[..., 1], p[..., 2]).

    Returns:
      [..., 2] in [0, 1 - 1e-5].
    """
    if plane not in PLANE_AXES:
        raise ValueError(f"unknown plane {plane!r}; choose one of {list(PLANES)}")
    a, b = PLANE_AXES[plane]
    uv = jnp.stack([p[..., a], p[..., b]], axis=-1)
    return _normalize(uv, padding, PLANE_EPS)


def normalize_3d_coordinate(p, padding: float = 0.1):
    """Maps points of the padded unit cube to grid coordinates in [0, 1) (the original's version).

    Args:
      p: points, [..., 3]; points outside the padded cube are moved onto its border.
      padding: the ONet padding of the unit cube.

    Returns:
      [..., 3] in [0, 1 - 1e-3].
    """
    return _normalize(p, padding, GRID_EPS)


def coordinate_to_index(x, reso: int):
    """Flat cell index of normalised coordinates (the original's `coordinate2index`).

    Each coordinate is scaled by `reso` and truncated; the cell of (i, j) is
    `i + reso * j`, that of (i, j, k) is `i + reso * (j + reso * k)`. Cells
    are clipped to [0, reso - 1] per axis, which changes nothing for
    coordinates in [0, 1) (the output of the normalisations above).

    Args:
      x: [..., 2] or [..., 3], in [0, 1).
      reso: cells per axis.

    Returns:
      int32 [...], in [0, reso^2) or [0, reso^3).
    """
    if x.shape[-1] not in (2, 3):
        raise ValueError(f"coordinates must have 2 or 3 components, got shape {x.shape}")
    if reso < 1:
        raise ValueError(f"resolution must be positive, got {reso}")
    cell = jnp.clip((x * reso).astype(jnp.int32), 0, reso - 1)
    if x.shape[-1] == 2:
        return cell[..., 0] + reso * cell[..., 1]
    return cell[..., 0] + reso * (cell[..., 1] + reso * cell[..., 2])


def _flat_segments(values, index, num_segments: int):
    """Checks shapes; returns (flat values [B N, ...], flat segment ids [B N], batch shape, B)."""
    if num_segments < 1:
        raise ValueError(f"num_segments must be positive, got {num_segments}")
    if not jnp.issubdtype(index.dtype, jnp.integer):
        raise ValueError(f"index must be integer, got {index.dtype}")
    if index.ndim < 1 or values.shape[: index.ndim] != index.shape:
        raise ValueError(
            f"values {values.shape} must start with the shape of index {index.shape} ([..., N, ...])"
        )
    batch = index.shape[:-1]
    n_batch = 1
    for d in batch:
        n_batch *= d
    index = index.reshape(n_batch, index.shape[-1])
    valid = (index >= 0) & (index < num_segments)
    offsets = (jnp.arange(n_batch, dtype=index.dtype) * num_segments).reshape(n_batch, 1)
    # Out-of-range entries go to segment B * S, which segment_sum drops (not into the next batch item).
    flat = jnp.where(valid, index + offsets, n_batch * num_segments).reshape(-1)
    feat = values.shape[len(batch) + 1 :]
    return values.reshape((-1,) + feat), flat, batch, n_batch


def _counts(flat, n_total: int, feat_ndim: int):
    count = jax.ops.segment_sum(jnp.ones(flat.shape, jnp.float32), flat, num_segments=n_total)
    return count.reshape(count.shape + (1,) * feat_ndim)


def _segment_reduce(values, index, num_segments: int, finish, reduce):
    """`reduce` (a `jax.ops.segment_*`) per segment, then `finish(reduced, count)`; [..., S, ...]."""
    flat_values, flat, batch, n_batch = _flat_segments(values, index, num_segments)
    n_total = n_batch * num_segments
    reduced = reduce(flat_values, flat, num_segments=n_total)
    out = finish(reduced, _counts(flat, n_total, flat_values.ndim - 1))
    return out.reshape(batch + (num_segments,) + flat_values.shape[1:])


def scatter_mean(values, index, num_segments: int):
    """Mean of the values per segment, 0 for empty segments (`torch_scatter.scatter_mean`).

    Args:
      values: [..., N, ...features].
      index: int [..., N], each entry's segment; entries outside
        [0, num_segments) are ignored.
      num_segments: S.

    Returns:
      [..., S, ...features].
    """
    return _segment_reduce(
        values,
        index,
        num_segments,
        lambda total, count: total / jnp.maximum(count, 1.0).astype(total.dtype),
        jax.ops.segment_sum,
    )


def scatter_max(values, index, num_segments: int):
    """Maximum of the values per segment, 0 for empty segments (`torch_scatter.scatter_max(...)[0]`).

    The gradient of a maximum that several entries share is split among them
    (`torch_scatter` gives it to one of them).

    Args:
      values: [..., N, ...features].
      index: int [..., N], each entry's segment; entries outside
        [0, num_segments) are ignored.
      num_segments: S.

    Returns:
      [..., S, ...features].
    """
    return _segment_reduce(
        values,
        index,
        num_segments,
        lambda top, count: jnp.where(count > 0, top, jnp.zeros((), top.dtype)),
        jax.ops.segment_max,
    )


def gather_cells(cells, index):
    """Each point's cell features: `cells[b, index[b, n]]` (the original's `gather` after the scatter).

    Args:
      cells: [B, S, C].
      index: int [B, N] in [0, S).

    Returns:
      [B, N, C].
    """
    # Clipped: an entry outside [0, S) (a padding point, which the scatters ignore) reads a border cell.
    return jnp.take_along_axis(cells, index[..., None], axis=1, mode="clip")


def _check_mode(mode: str):
    if mode not in _MODES:
        raise ValueError(f"unknown sample mode {mode!r}; choose one of {list(_MODES)}")


def _axis_corners(t, size: int, mode: str) -> Tuple[list, list]:
    """Corner indices and weights along one axis for t in [0, 1] (align_corners=True, border).

    Returns ([i0, i1], [w0, w1]) for 'bilinear' and ([i], [1]) for 'nearest'.
    """
    x = jnp.clip(t * (size - 1), 0.0, float(size - 1))
    if mode == "nearest":
        # grid_sample rounds half to even (nearbyint), as jnp.round does.
        return [jnp.round(x).astype(jnp.int32)], [None]
    x0 = jnp.floor(x)
    w1 = x - x0
    i0 = jnp.clip(x0.astype(jnp.int32), 0, size - 1)
    i1 = jnp.clip(i0 + 1, 0, size - 1)  # at the last cell w1 is 0
    return [i0, i1], [1.0 - w1, w1]


def _sample(features, coords, mode: str):
    """Multilinear interpolation of features [B, *spatial, C] at coords [B, N, k].

    coords[..., 0] runs along the last spatial axis, coords[..., k - 1] along the first.
    """
    _check_mode(mode)
    spatial = features.shape[1:-1]
    k = len(spatial)
    if coords.ndim != 3 or coords.shape[-1] != k or coords.shape[0] != features.shape[0]:
        raise ValueError(
            f"coordinates must be [batch, N, {k}] for features {features.shape}, got {coords.shape}"
        )
    batch, channels = features.shape[0], features.shape[-1]
    flat = features.reshape(batch, -1, channels)
    # Per spatial axis (first to last): corners and weights; the last axis is coordinate 0.
    per_axis = [_axis_corners(coords[..., k - 1 - a], spatial[a], mode) for a in range(k)]
    strides = [1] * k
    for a in range(k - 2, -1, -1):
        strides[a] = strides[a + 1] * spatial[a + 1]
    out = None
    for corner in itertools.product(*[range(len(idx)) for idx, _ in per_axis]):
        index, weight = 0, None
        for a, c in enumerate(corner):
            idx, w = per_axis[a]
            index = index + strides[a] * idx[c]
            if w[c] is not None:
                weight = w[c] if weight is None else weight * w[c]
        value = gather_cells(flat, index)
        if weight is not None:
            value = value * weight[..., None].astype(value.dtype)
        out = value if out is None else out + value
    return out


def sample_plane(features, uv, mode: str = "bilinear"):
    """Reads a feature plane at points: `F.grid_sample(align_corners=True, padding_mode='border')`.

    `uv` in [0, 1] spans the plane from the first to the last cell centre
    (the original passes `2 uv - 1` to `grid_sample`); values outside are
    clamped to the border.

    Args:
      features: [B, H, W, C] (see the module docstring for the layout).
      uv: [B, N, 2]; u = uv[..., 0] runs along W, v = uv[..., 1] along H.
      mode: 'bilinear' or 'nearest'.

    Returns:
      [B, N, C].
    """
    if features.ndim != 4:
        raise ValueError(f"plane features must be [batch, H, W, C], got shape {features.shape}")
    return _sample(features, uv, mode)


def sample_grid(features, xyz, mode: str = "bilinear"):
    """Reads a feature grid at points: trilinear `F.grid_sample(align_corners=True, padding_mode='border')`.

    Args:
      features: [B, D, H, W, C], indexed [z, y, x].
      xyz: [B, N, 3] in [0, 1] (clamped to the border outside); x runs
        along W, y along H, z along D.
      mode: 'bilinear' (trilinear, as `grid_sample` calls it on 5-D input) or 'nearest'.

    Returns:
      [B, N, C].
    """
    if features.ndim != 5:
        raise ValueError(f"grid features must be [batch, D, H, W, C], got shape {features.shape}")
    return _sample(features, xyz, mode)


# The voxel lattice of sliding-window generation (the original's crop models, `local_coord`).
#
# A grid of R^3 voxels of side `voxel` whose corner is `origin` covers the box
# [origin, origin + R voxel). A point's cell is floor((p - origin) / voxel), and
# the features are read at its continuous voxel coordinate (p - origin) / voxel
# - 1/2, i.e. voxel centres are the sample positions. Everything is a function
# of the point's offset from the lattice, so that shifting a crop by whole
# voxels shifts its features by whole cells: a scene decoded crop by crop
# equals one decode of the whole scene wherever the U-Net's reach stays inside
# the crops' margins.


def lattice_cells(points, origin, voxel: float, reso: int):
    """Flat cell index `x + R (y + R z)` of points on a voxel lattice; -1 outside the R^3 box.

    Args:
      points: [..., 3].
      origin: the box corner, [3] or broadcastable to points.
      voxel: the side of a voxel.
      reso: R, voxels per side.

    Returns:
      int32 [...]: in [0, R^3) inside, -1 outside (which the scatters ignore).
    """
    cell = jnp.floor((points - origin) / voxel).astype(jnp.int32)
    inside = jnp.all((cell >= 0) & (cell < reso), axis=-1)
    flat = cell[..., 0] + reso * (cell[..., 1] + reso * cell[..., 2])
    return jnp.where(inside, flat, -1)


def lattice_coords(points, origin, voxel: float, reso: int):
    """`sample_grid` coordinates of points on a voxel lattice: voxel centres are the samples.

    Args:
      points: [..., 3].
      origin, voxel, reso: the lattice, as `lattice_cells`.

    Returns:
      [..., 3]: ((p - origin) / voxel - 1/2) / (R - 1); 0 and 1 are the first
      and last voxel centres (clamped to the border beyond them).
    """
    return ((points - origin) / voxel - 0.5) / max(reso - 1, 1)


def local_position(points, voxel: float):
    """The position of points inside their voxel, in [0, 1)^3 (the original's `map2local`, linear).

    `remainder(p, voxel) / voxel`: the same for points whole voxels apart, so
    that a network fed with it is equivariant to shifts of the lattice.
    """
    return jnp.remainder(points, voxel) / voxel
