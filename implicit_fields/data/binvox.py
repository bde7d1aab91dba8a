"""The `.binvox` voxel format: reading, writing and simple conversions.

Format (Patrick Min's binvox, as read by the original `im2mesh/utils/binvox_rw.py`)::

    #binvox 1
    dim D0 D1 D2
    translate tx ty tz
    scale s
    data
    <run-length encoded bytes: (value, count) pairs, value in {0, 1}, count in 1..255>

The voxels are stored with y running fastest, then z, then x ("xzy" order: the flat index
is ``x * D1 * D2 + z * D2 + y``). Like the original reader (``read_as_3d_array`` with
``fix_coords=True``), :func:`read_binvox` returns the dense grid in "xyz" order,
``data[i, j, k]`` being the voxel at x index i, y index j, z index k, and :func:`write_binvox`
accepts either order.

``translate`` and ``scale`` place the grid in model coordinates: voxel (i, j, k) has its
centre at ``translate + scale * ((i, j, k) + 0.5) / dims``. The Occupancy Networks loader
ignores them: its voxel grids always span the unit cube [-0.5, 0.5]^3 of the normalised
object, voxel (i, j, k) covering ``[-0.5 + i/R, -0.5 + (i+1)/R]`` along x (and likewise for
y, z), and the voxel IoU of its trainer evaluates the network at the voxel centres
``-0.5 + (i + 0.5)/R``. :data:`UNIT_CUBE_TRANSLATE` and :data:`UNIT_CUBE_SCALE` are the
header values that describe exactly that placement.

Errors name the file and the problem (:class:`BinvoxError`, a
:class:`~implicit_fields.data.onet_format.DataFormatError`).
"""

import dataclasses
import os
from typing import Sequence, Tuple

import numpy as np

from implicit_fields.data.onet_format import DataFormatError

__all__ = [
    "BinvoxError",
    "Voxels",
    "VOXELS_FILE",
    "UNIT_CUBE_TRANSLATE",
    "UNIT_CUBE_SCALE",
    "encode_rle",
    "decode_rle",
    "read_binvox",
    "write_binvox",
    "voxel_centers",
    "voxels_to_mesh",
]

VOXELS_FILE = "model.binvox"
"""File name of an object's voxelisation in the Occupancy Networks layout."""

UNIT_CUBE_TRANSLATE = (-0.5, -0.5, -0.5)
UNIT_CUBE_SCALE = 1.0
"""Header values of a grid spanning [-0.5, 0.5]^3 (the Occupancy Networks placement)."""

_MAX_DIM = 4096  # Larger grids are certainly a corrupt header.


class BinvoxError(DataFormatError):
    """A `.binvox` file is missing or malformed; the message names the file."""


@dataclasses.dataclass
class Voxels:
    """A dense voxel grid and its binvox header.

    Attributes:
      data: bool [D0, D1, D2] in `axis_order`.
      dims: the header's (D0, D1, D2).
      translate: (3,) floats, model-space position of the grid corner.
      scale: float, model-space edge length of the whole grid.
      axis_order: 'xyz' (the default when reading) or 'xzy' (the file's raw order).
    """

    data: np.ndarray
    dims: Tuple[int, int, int]
    translate: Tuple[float, float, float]
    scale: float
    axis_order: str = "xyz"


def _fail(path, problem):
    raise BinvoxError(f"{os.fspath(path)}: {problem}")


def encode_rle(flat) -> bytes:
    """Run-length encodes a flat 0/1 array as binvox (value, count) byte pairs.

    Args:
      flat: bool or integer array [N] with values in {0, 1}.

    Returns:
      bytes of length 2 * (number of runs), runs split at 255.
    """
    flat = np.asarray(flat).reshape(-1).astype(np.uint8)
    if flat.size == 0:
        return b""
    if flat.max(initial=0) > 1:
        raise ValueError("binvox voxels must be 0 or 1")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    values = flat[starts]
    # Split runs longer than 255 into full runs of 255 plus a remainder.
    pieces = -(-lengths // 255)
    run_values = np.repeat(values, pieces)
    run_counts = np.full(run_values.size, 255, np.int64)
    last = np.cumsum(pieces) - 1
    run_counts[last] = lengths - 255 * (pieces - 1)
    out = np.empty(2 * run_values.size, np.uint8)
    out[0::2] = run_values
    out[1::2] = run_counts
    return out.tobytes()


def decode_rle(raw: bytes, size: int, path="<bytes>") -> np.ndarray:
    """Decodes binvox run-length data into a flat bool array of `size` voxels.

    Raises:
      BinvoxError: odd byte count, values other than 0/1, zero counts, or a
        total that is not `size`.
    """
    buf = np.frombuffer(raw, dtype=np.uint8)
    if buf.size % 2:
        _fail(path, f"run-length data has an odd number of bytes ({buf.size}); the file is truncated")
    values, counts = buf[0::2], buf[1::2]
    if values.size and values.max() > 1:
        _fail(path, f"run-length values must be 0 or 1, found {int(values.max())}")
    if counts.size and counts.min() == 0:
        _fail(path, "run-length data holds a run of length 0")
    total = int(counts.sum(dtype=np.int64))
    if total != size:
        _fail(path, f"run-length data holds {total} voxels but the header's dims give {size}")
    return np.repeat(values.astype(bool), counts)


def _read_header(f, path):
    def line(what):
        raw = f.readline()
        if not raw:
            _fail(path, f"unexpected end of file in the header (expected {what})")
        return raw.strip().decode("ascii", errors="replace")

    first = line("'#binvox'")
    if not first.startswith("#binvox"):
        _fail(path, f"not a binvox file (first line {first[:40]!r}, expected '#binvox 1')")
    dims = translate = scale = None
    while True:
        text = line("'data'")
        if text == "data":
            break
        key, _, rest = text.partition(" ")
        fields = rest.split()
        try:
            if key == "dim":
                dims = tuple(int(v) for v in fields)
            elif key == "translate":
                translate = tuple(float(v) for v in fields)
            elif key == "scale":
                scale = float(fields[0])
            else:
                _fail(path, f"unknown header line {text[:40]!r}")
        except (ValueError, IndexError):
            _fail(path, f"malformed header line {text[:40]!r}")
    if dims is None or len(dims) != 3 or min(dims) < 1 or max(dims) > _MAX_DIM:
        _fail(path, f"header needs 'dim D0 D1 D2' with 1 <= D <= {_MAX_DIM}, got {dims}")
    translate = (0.0, 0.0, 0.0) if translate is None else translate
    if len(translate) != 3:
        _fail(path, f"'translate' needs 3 numbers, got {translate}")
    scale = 1.0 if scale is None else scale
    return dims, translate, scale


def read_binvox(source, fix_coords: bool = True) -> Voxels:
    """Reads a `.binvox` file.

    Args:
      source: a path, or a binary file object (then errors name it '<stream>').
      fix_coords: return the grid in 'xyz' order (as the original reader's
        default); False keeps the file's 'xzy' order.

    Returns:
      `Voxels` with `data` bool [D0, D1, D2] (for 'xyz' with cubic dims,
      `data[i, j, k]` is the voxel at x=i, y=j, z=k).

    Raises:
      BinvoxError: missing file, bad header or bad run-length data.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            _fail(path, "file not found")
        with open(path, "rb") as f:
            return _read(f, path, fix_coords)
    return _read(source, "<stream>", fix_coords)


def _read(f, path, fix_coords):
    dims, translate, scale = _read_header(f, path)
    flat = decode_rle(f.read(), int(np.prod(dims)), path)
    # The original reshapes the raw xzy stream to `dims` and swaps the last two axes.
    data = flat.reshape(dims)
    if fix_coords:
        data = np.ascontiguousarray(np.transpose(data, (0, 2, 1)))
    return Voxels(data, tuple(dims), tuple(translate), float(scale), "xyz" if fix_coords else "xzy")


def write_binvox(
    path,
    data,
    translate: Sequence[float] = UNIT_CUBE_TRANSLATE,
    scale: float = UNIT_CUBE_SCALE,
    axis_order: str = "xyz",
) -> None:
    """Writes a dense voxel grid as `.binvox` (atomically: temp file, then rename).

    Args:
      path: output file.
      data: bool (or 0/1) [D0, D1, D2] in `axis_order`.
      translate: header translate (default: the unit cube [-0.5, 0.5]^3).
      scale: header scale.
      axis_order: 'xyz' (data[x, y, z]) or 'xzy' (the file's raw order).
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"voxel data must be 3-D, got shape {data.shape}")
    if axis_order not in ("xyz", "xzy"):
        raise ValueError(f"axis_order must be 'xyz' or 'xzy', got {axis_order!r}")
    if data.dtype != bool and not np.isin(data, (0, 1)).all():
        raise ValueError("voxel data must be boolean or 0/1")
    dims = data.shape
    raw = data if axis_order == "xzy" else np.transpose(data, (0, 2, 1))
    header = (
        "#binvox 1\n"
        f"dim {dims[0]} {dims[1]} {dims[2]}\n"
        f"translate {' '.join(repr(float(t)) for t in translate)}\n"
        f"scale {float(scale)!r}\n"
        "data\n"
    )
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(encode_rle(raw.reshape(-1)))
    os.replace(tmp, path)


def voxel_centers(resolution: int) -> np.ndarray:
    """Centres of the voxels of a grid over [-0.5, 0.5]^3, in C order of [x, y, z].

    Returns:
      float32 [resolution^3, 3]; row `(i * R + j) * R + k` is voxel (i, j, k).
    """
    axis = (np.arange(resolution, dtype=np.float64) + 0.5) / resolution - 0.5
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    return grid.reshape(-1, 3).astype(np.float32)


def voxels_to_mesh(occ) -> Tuple[np.ndarray, np.ndarray]:
    """The boundary faces of the occupied voxels of a grid over [-0.5, 0.5]^3.

    Every face between an occupied voxel and a free one (or the outside) becomes
    two triangles, oriented outward; shared vertices are merged.

    Args:
      occ: bool [R0, R1, R2], in xyz order.

    Returns:
      (vertices float32 [V, 3], faces int64 [F, 3]).
    """
    occ = np.asarray(occ, bool)
    res = np.asarray(occ.shape, np.float64)
    padded = np.pad(occ, 1)
    quads = []
    # For each axis and direction: cells that are occupied with a free neighbour.
    for axis in range(3):
        for step in (1, -1):
            neighbour = np.roll(padded, -step, axis=axis)
            cells = np.argwhere(padded & ~neighbour) - 1
            cells = cells[(cells >= 0).all(1) & (cells < occ.shape).all(1)]
            if cells.size == 0:
                continue
            u, v = [a for a in range(3) if a != axis]
            base = cells.astype(np.float64)
            base[:, axis] += 1.0 if step > 0 else 0.0
            corners = np.repeat(base[:, None, :], 4, axis=1)
            corners[:, 1, u] += 1
            corners[:, 2, u] += 1
            corners[:, 2, v] += 1
            corners[:, 3, v] += 1
            # (u, v, axis) is right-handed for axis 0 and 2, left-handed for axis 1 order.
            right_handed = (u, v, axis) in ((1, 2, 0), (2, 0, 1), (0, 1, 2))
            if (step > 0) != right_handed:
                corners = corners[:, ::-1]
            quads.append(corners)
    if not quads:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    corners = np.concatenate(quads)  # [Q, 4, 3] integer lattice coordinates
    flat = corners.reshape(-1, 3)
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    idx = inverse.reshape(-1, 4)
    faces = np.concatenate([idx[:, [0, 1, 2]], idx[:, [0, 2, 3]]])
    vertices = (unique / res - 0.5).astype(np.float32)
    return vertices, faces.astype(np.int64)
