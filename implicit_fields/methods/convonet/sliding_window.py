"""Sliding-window generation: scenes larger than a training cube, decoded crop by crop.

The original's `generate_mesh_sliding` (`src/conv_onet/generation.py`): a
model on the voxel lattice (`model.local_coord`: the grid's voxels tile space,
the networks read a point's position inside its voxel, features sit at voxel
centres) is equivariant to whole-voxel shifts, so a scene of any size can be
cut into query crops of `query_voxels`^3 voxels. Each crop's input box adds a
margin of `margin` voxels on every side, which carries the 3D U-Net's
receptive field (`unet.receptive_field_radius`); the points inside it are
encoded on the crop's own grid, the field is decoded at the query crop's
sample points, the crops are stitched into one grid of the whole scene, and
marching cubes runs once.

Memory is bounded by the crop: the networks only ever see one input crop (its
points and its (query + 2 margin)^3 grid) and `batch_points` query points at a
time; what grows with the scene is the stitched grid of logits (4 bytes per
sample) and the mesh.

Exactness: where the U-Net's reach fits inside the margin and the U-Net has
no normalisation over the whole crop (`unet3d_layer_order='cr'`: the
original's GroupNorm makes every feature depend on the whole crop), the
stitched grid equals one decode of the whole scene (`decode_whole`) to float
precision, with no seams. Crop offsets are multiples of 2^(levels-1) voxels,
so that the U-Net's pooling windows fall on the same voxels in every crop.
"""

import dataclasses
import itertools
import math
import time
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import mcubes
import numpy as np
import tqdm

from implicit_fields import local_features, meshing, unet
from implicit_fields.methods.convonet import model as convonet_model


@dataclasses.dataclass(frozen=True)
class Lattice:
    """The sample lattice of a scene: `counts` voxels per axis from voxel index `start`.

    Attributes:
      voxel: the side of a voxel (the model's).
      start: int [3], the global voxel index of the scene grid's corner (the
        lattice is anchored at 0: voxel k spans [k voxel, (k + 1) voxel)).
      counts: int [3], voxels per axis (multiples of the query crop).
      samples_per_voxel: s; the field is sampled at (start + k / s) voxel,
        k = 0 .. counts s (both ends included).
    """

    voxel: float
    start: Tuple[int, int, int]
    counts: Tuple[int, int, int]
    samples_per_voxel: int

    @property
    def origin(self) -> np.ndarray:
        return np.asarray(self.start, np.float64) * self.voxel

    @property
    def shape(self) -> Tuple[int, int, int]:
        """The stitched grid's shape: counts * s + 1 samples per axis."""
        return tuple(int(c) * self.samples_per_voxel + 1 for c in self.counts)

    def sample_points(self, lo, hi) -> np.ndarray:
        """The sample points of indices lo <= k < hi per axis: float32 [prod(hi - lo), 3], 'ij' order."""
        axes = [
            (self.start[a] + np.arange(lo[a], hi[a]) / self.samples_per_voxel) * self.voxel for a in range(3)
        ]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        return grid.reshape(-1, 3).astype(np.float32)


def pooling_multiple(model: convonet_model.ConvolutionalOccupancyNetwork) -> int:
    """2^(levels - 1): crop offsets and sizes are multiples of it, so the U-Net pools the same voxels."""
    return 2 ** (model.unet3d_levels - 1) if model.unet3d else 1


def default_margin(model: convonet_model.ConvolutionalOccupancyNetwork) -> int:
    """The smallest margin (voxels) that holds the 3D U-Net's reach plus the decoder's trilinear cell.

    The reach (`unet.receptive_field_radius`) plus one voxel (a sample point
    reads the 8 voxel centres around it), rounded up to `pooling_multiple`.
    """
    reach = (unet.receptive_field_radius(model.unet3d_levels) if model.unet3d else 0) + 1
    m = pooling_multiple(model)
    return int(math.ceil(reach / m) * m)


def scene_lattice(
    points: np.ndarray, model, query_voxels: int, samples_per_voxel: int, bounds=None
) -> Lattice:
    """The lattice covering `bounds` (default: the points' box), in whole query crops."""
    if points.ndim != 2 or points.shape[-1] != 3 or not len(points):
        raise ValueError(f"the scene's points must be a non-empty [N, 3] array, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("the scene's points contain NaN or inf")
    lo, hi = (points.min(0), points.max(0)) if bounds is None else (np.asarray(b, float) for b in bounds)
    v = model.voxel_size
    start = np.floor(lo / v).astype(np.int64)
    counts = np.ceil((hi - start * v) / v).astype(np.int64)
    counts = np.maximum(1, np.ceil(counts / query_voxels)).astype(np.int64) * query_voxels
    return Lattice(v, tuple(int(x) for x in start), tuple(int(x) for x in counts), samples_per_voxel)


def _check(model, query_voxels: int, margin: int, samples_per_voxel: int):
    if not model.local_coord:
        raise ValueError(
            "sliding-window generation needs a model on the voxel lattice (config.model.local_coord=True, "
            "plane_type ('grid',))"
        )
    m = pooling_multiple(model)
    for name, value in (("query_voxels", query_voxels), ("margin", margin)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0 or value % m:
            raise ValueError(f"{name}={value!r}: must be a multiple of {m} (the U-Net's pooling), >= 0")
    if query_voxels < m or query_voxels == 0:
        raise ValueError(f"query_voxels={query_voxels}: must be at least {max(m, 1)}")
    if isinstance(samples_per_voxel, bool) or not isinstance(samples_per_voxel, int) or samples_per_voxel < 1:
        raise ValueError(f"samples_per_voxel={samples_per_voxel!r}: must be an integer >= 1")


def _bucket(n: int, minimum: int = 1024) -> int:
    """The padded point count of a crop: the next power of two (few compilations)."""
    return max(minimum, 1 << int(math.ceil(math.log2(max(n, 1)))))


def create_crop_fns(model, variables, crop_voxels: int):
    """The model on a crop grid of `crop_voxels`^3 voxels of its voxel size, jitted.

    Returns:
      `encode(points [1, N, 3], cells [1, N]) -> c` and
      `decode(c, points [1, T, 3], coords [1, T, 3]) -> logits [1, T]`.
    """
    crop_model = model.clone(grid_resolution=crop_voxels, voxel=model.voxel_size)
    cls = convonet_model.ConvolutionalOccupancyNetwork

    @jax.jit
    def encode(points, cells):
        return crop_model.apply(variables, points, cells, method=cls.encode_cells)

    @jax.jit
    def decode(c, points, coords):
        return crop_model.apply(variables, points, c, coords, method=cls.decode_coords)

    return encode, decode


def _decode_region(
    encode, decode, points, global_cells, lattice, crop_start, crop_voxels, lo, hi, batch_points
):
    """Logits at the sample indices [lo, hi) of the lattice, from the input crop of `crop_voxels`
    voxels whose corner is global voxel `crop_start` (relative to `lattice.start`)."""
    v = lattice.voxel
    local = global_cells - np.asarray(crop_start)
    inside = np.all((local >= 0) & (local < crop_voxels), axis=-1)
    sel = np.nonzero(inside)[0]
    n = _bucket(len(sel))
    crop_points = np.zeros((n, 3), np.float32)
    cells = np.full((n,), -1, np.int32)
    if len(sel):
        crop_points[: len(sel)] = points[sel]
        crop_points[len(sel) :] = points[sel[0]]
        loc = local[sel]
        cells[: len(sel)] = loc[:, 0] + crop_voxels * (loc[:, 1] + crop_voxels * loc[:, 2])
    c = encode(jnp.asarray(crop_points[None]), jnp.asarray(cells[None]))
    query = lattice.sample_points(lo, hi)
    # Coordinates relative to the crop's corner, from the global lattice (exact integers first).
    corner = (np.asarray(lattice.start) + np.asarray(crop_start)) * v
    out = np.empty(len(query), np.float32)
    size = min(batch_points, len(query))  # the same for every crop: one compilation
    for s in range(0, len(query), size):
        chunk = query[s : s + size]
        real = len(chunk)
        if real < size:  # one shape per crop size: pad the last chunk
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - real, 0)])
        coords = local_features.lattice_coords(chunk.astype(np.float64), corner, v, crop_voxels)
        logits = decode(c, jnp.asarray(chunk[None]), jnp.asarray(coords[None], jnp.float32))
        out[s : s + real] = np.asarray(logits)[0, :real]
    return out.reshape(tuple(int(b - a) for a, b in zip(lo, hi)))


def decode_sliding(
    model,
    variables,
    points: np.ndarray,
    query_voxels: int,
    margin: Optional[int] = None,
    samples_per_voxel: int = 2,
    bounds=None,
    batch_points: int = 32768,
    progress: bool = False,
) -> Tuple[np.ndarray, Lattice, Dict]:
    """The scene's logits on its sample lattice, decoded crop by crop.

    Args:
      model: a `ConvolutionalOccupancyNetwork` with `local_coord`.
      variables: its variables.
      points: the scene's input point cloud [N, 3], in the model's units.
      query_voxels: the side of a query crop in voxels (a multiple of
        `pooling_multiple(model)`).
      margin: voxels added on each side of a query crop for its input crop
        (default `default_margin`: the U-Net's reach).
      samples_per_voxel: samples of the field per voxel and axis.
      bounds: (lo [3], hi [3]) of the scene (default: the points' box).
      batch_points: query points per decoder call.

    Returns:
      (logits float32 [lattice.shape], lattice, stats: crops, crop_voxels,
      seconds, num_queries).
    """
    margin = default_margin(model) if margin is None else margin
    _check(model, query_voxels, margin, samples_per_voxel)
    points = np.asarray(points, np.float32)
    lattice = scene_lattice(points, model, query_voxels, samples_per_voxel, bounds)
    crop_voxels = query_voxels + 2 * margin
    encode, decode = create_crop_fns(model, variables, crop_voxels)
    global_cells = _global_cells(points, lattice)
    values = np.empty(lattice.shape, np.float32)
    s = samples_per_voxel
    tiles = [range(c // query_voxels) for c in lattice.counts]
    t0 = time.perf_counter()
    crops = list(itertools.product(*tiles))
    for ijk in tqdm.tqdm(crops, desc="sliding window", unit="crop", disable=not progress):
        q0 = np.asarray(ijk) * query_voxels
        lo = q0 * s
        hi = lo + query_voxels * s + 1  # shared faces are decoded twice, to the same values
        values[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = _decode_region(
            encode, decode, points, global_cells, lattice, q0 - margin, crop_voxels, lo, hi, batch_points
        )
    stats = {
        "crops": len(crops),
        "crop_voxels": crop_voxels,
        "query_voxels": query_voxels,
        "margin": margin,
        "seconds": time.perf_counter() - t0,
        "num_queries": int(len(crops) * (query_voxels * s + 1) ** 3),
    }
    return values, lattice, stats


def decode_whole(
    model,
    variables,
    points: np.ndarray,
    query_voxels: int,
    margin: Optional[int] = None,
    samples_per_voxel: int = 2,
    bounds=None,
    batch_points: int = 32768,
) -> Tuple[np.ndarray, Lattice]:
    """The same lattice as `decode_sliding`, decoded from one input crop holding the whole scene.

    The reference for the sliding window (and for its memory): one encoding
    of a cube of the scene's largest side plus the same margin, then every
    sample point.
    """
    margin = default_margin(model) if margin is None else margin
    _check(model, query_voxels, margin, samples_per_voxel)
    points = np.asarray(points, np.float32)
    lattice = scene_lattice(points, model, query_voxels, samples_per_voxel, bounds)
    crop_voxels = int(max(lattice.counts)) + 2 * margin
    encode, decode = create_crop_fns(model, variables, crop_voxels)
    global_cells = _global_cells(points, lattice)
    values = _decode_region(
        encode,
        decode,
        points,
        global_cells,
        lattice,
        -margin * np.ones(3, np.int64),
        crop_voxels,
        np.zeros(3, np.int64),
        np.asarray(lattice.shape),
        batch_points,
    )
    return values, lattice


def _global_cells(points: np.ndarray, lattice: Lattice) -> np.ndarray:
    """Each point's voxel, counted from the scene grid's corner: int64 [N, 3]."""
    return np.floor(points.astype(np.float64) / lattice.voxel).astype(np.int64) - np.asarray(lattice.start)


def interpolate(values: np.ndarray, lattice: Lattice, points: np.ndarray) -> np.ndarray:
    """The stitched field read at points by trilinear interpolation of its samples (clamped at the border)."""
    x = (np.asarray(points, np.float64) - lattice.origin) / (lattice.voxel / lattice.samples_per_voxel)
    hi = np.asarray(values.shape) - 1
    x = np.clip(x, 0, hi)
    i0 = np.minimum(np.floor(x).astype(np.int64), np.maximum(hi - 1, 0))
    w = x - i0
    out = 0.0
    for corner in itertools.product((0, 1), repeat=3):
        idx = np.minimum(i0 + np.asarray(corner), hi)
        weight = np.prod(np.where(np.asarray(corner) == 1, w, 1 - w), axis=1)
        out = out + weight * values[idx[:, 0], idx[:, 1], idx[:, 2]]
    return out


def mesh_lattice(values: np.ndarray, lattice: Lattice, threshold_logit: float):
    """Marching cubes once over the stitched grid, in the scene's coordinates.

    Returns:
      (vertices float32 [V, 3], faces int64 [F, 3]); the grid's outside is
      closed (padded with empty space), as `meshing.marching_cubes` does.
    """
    if np.isnan(values).any():
        raise ValueError(f"the field is NaN at {int(np.isnan(values).sum())} of {values.size} samples")
    values = np.clip(values.astype(np.float64), -meshing.LOGIT_LIMIT, meshing.LOGIT_LIMIT)
    padded = np.pad(values, 1, mode="constant", constant_values=meshing.OUTSIDE)
    vertices, faces = mcubes.marching_cubes(padded, float(threshold_logit))
    vertices = (vertices - 1.0) * (lattice.voxel / lattice.samples_per_voxel) + lattice.origin
    return vertices.astype(np.float32), faces.astype(np.int64)
