"""Dense-grid mesh extraction with marching cubes, in the original's conventions.

Grid convention (shared with MISE): a field is sampled on `(R + 1)^3` points
spanning the padded cube of side `1 + padding` centred at the origin,
`p = (1 + padding) * (i / R - 0.5)` for integer `i` in [0, R]. Marching cubes
(PyMCubes) runs on the grid padded by one layer of `OUTSIDE` (-1e9), so meshes of shapes
that touch the box are still closed, and the vertices are mapped back to the
query coordinates. PyMCubes reports vertices at integer grid indices (the
original's own libmcubes needed an extra -0.5 shift; this one does not).
Faces are oriented outward (occupied side = inside).

Logits: a field must return floating-point logits (booleans or integers are
refused, they are not logits). An infinite logit is a legitimate certainty (a
field computing `log(p / (1 - p))` with p in {0, 1}), so logits are clipped to
`[-LOGIT_LIMIT, LOGIT_LIMIT]` as they are read: interpolating between +inf and
-inf would give NaN vertices. NaN logits remain an error.
"""

import math
import operator
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import mcubes
import numpy as np
import trimesh

from implicit_fields import losses

LogitFn = Callable[[np.ndarray], np.ndarray]

# Logits are clipped to +-LOGIT_LIMIT: an occupancy probability indistinguishable from 0 or 1,
# far from any threshold, and far above the logits of any real field (which are left alone).
LOGIT_LIMIT = 1e6
# The value of the layer around the grid that closes meshes at the box: far below -LOGIT_LIMIT,
# so that even a clipped +inf next to it puts the vertex on the box (within 1e-3 of a cell).
OUTSIDE = -1e9


def check_integer(name: str, value, minimum: int) -> int:
    """`value` as an int, or a ValueError naming `name` unless it is an integer >= `minimum`."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {number}")
    return number


def check_padding(padding) -> float:
    """`padding` as a float, or a ValueError unless it is a finite number >= 0."""
    try:
        value = float(padding)
    except (TypeError, ValueError):
        raise ValueError(f"padding must be a finite number >= 0, got {padding!r}") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"padding must be a finite number >= 0, got {padding!r}")
    return value


def check_batch_points(batch_points) -> int:
    """Points per call: `default_batch_points()` for None, else an integer >= 1 (ValueError otherwise)."""
    if batch_points is None:
        return default_batch_points()
    try:
        return check_integer("batch_points", batch_points, 1)
    except ValueError as error:
        raise ValueError(f"{error} (None for the default)") from None


def check_logit_dtype(dtype, source: str = "logit_fn") -> None:
    """Raises ValueError unless `dtype` (of what `source` returned) is floating point.

    Booleans (occupancy labels) or integers are not logits: meshing them as logits
    would put the surface at the wrong level.
    """
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{source} returned {jnp.dtype(dtype).name} values, but logits must be floating point "
            "(e.g. float32); booleans or integers are not logits (convert occupancy probabilities p "
            "with log(p) - log(1 - p))"
        )


def clip_logits(values: np.ndarray) -> np.ndarray:
    """Logits as float32 numpy, +-inf (and finite values beyond it) clipped to +-`LOGIT_LIMIT`; NaN kept."""
    values = np.asarray(values)
    if values.dtype.itemsize > 4:  # clip before the cast, which would overflow to inf (with a warning)
        values = np.clip(values, -LOGIT_LIMIT, LOGIT_LIMIT)
    return np.clip(values.astype(np.float32), -LOGIT_LIMIT, LOGIT_LIMIT)


def grid_axis(resolution: int, padding: float = 0.1) -> np.ndarray:
    """Coordinates of the lattice indices 0..R along one axis.

    Returns:
      float32 [R+1].

    Raises:
      ValueError: when `resolution` is not an integer >= 1 or `padding` not a finite number >= 0.
    """
    resolution = check_integer("resolution", resolution, 1)
    box = 1.0 + check_padding(padding)
    return (box * (np.arange(resolution + 1, dtype=np.float64) / resolution - 0.5)).astype(np.float32)


def grid_points(resolution: int, padding: float = 0.1) -> np.ndarray:
    """The `(R+1)^3` lattice points in x-major order.

    Returns:
      float32 [(R+1)^3, 3].
    """
    return lattice_points(grid_axis(resolution, padding))


def lattice_points(axis: np.ndarray) -> np.ndarray:
    """The points of the cubic lattice with coordinates `axis` [n] along each axis, x-major: [n^3, 3]."""
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def default_batch_points() -> int:
    """Points per network call when none is given.

    100,000 (the original's chunk) on GPU and TPU. On the CPU, 4096: chunks
    whose 256-wide activations stay in cache run the ONet decoders about 1.2x
    faster than 100,000-point chunks (`benchmarks/mise.py --compare-batch-points
    100000`).
    """
    return 4096 if jax.default_backend() == "cpu" else 100_000


def evaluate_chunks(logit_fn: LogitFn, points: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Calls `logit_fn` on consecutive chunks of `points` with the given sizes.

    Chunks running past the end are zero-padded. Every call is issued before
    any result is read back, so an accelerator (or XLA's CPU thread pool)
    never waits for the host between chunks.

    Args:
      logit_fn: maps float32 points [n, 3] to logits [n].
      points: float32 numpy [N, 3].
      sizes: chunk sizes (each a shape `logit_fn` is called with).

    Returns:
      float32 numpy [min(N, sum(sizes))], clipped to +-`LOGIT_LIMIT` (NaN kept).

    Raises:
      ValueError: when `logit_fn` returns another shape than (n,) or values that
        are not floating point.
    """
    n = points.shape[0]
    outputs, start = [], 0
    for size in sizes:
        chunk = points[start : start + size]
        if chunk.shape[0] < size:
            chunk = np.concatenate([chunk, np.zeros((size - chunk.shape[0], 3), np.float32)])
        outputs.append(logit_fn(chunk))
        start += size
    results = []
    for size, values in zip(sizes, outputs):
        if getattr(values, "shape", None) != (size,):
            raise ValueError(
                f"logit_fn must map points (N, 3) to logits (N,); got shape "
                f"{getattr(values, 'shape', type(values).__name__)} for N={size}"
            )
        values = np.asarray(values)
        check_logit_dtype(values.dtype)
        results.append(clip_logits(values))
    if not results:
        return np.zeros(0, np.float32)
    return np.concatenate(results)[:n]


def evaluate_points(logit_fn: LogitFn, points: np.ndarray, batch_points: Optional[int] = None) -> np.ndarray:
    """Evaluates `logit_fn` on `points` in fixed-size chunks (the last one padded).

    Fixed chunk shapes mean a jitted `logit_fn` compiles once.

    Args:
      batch_points: points per call (None: `default_batch_points()`).

    Returns:
      float32 [N].
    """
    n = points.shape[0]
    batch_points = min(check_batch_points(batch_points), max(n, 1))
    return evaluate_chunks(logit_fn, np.asarray(points, np.float32), [batch_points] * (-(-n // batch_points)))


def check_grid(shape, threshold_logit, padding) -> float:
    """Checks a grid of logits for marching cubes: a cube of side >= 2, a finite iso-level.

    Returns:
      The padding, checked (`check_padding`).

    Raises:
      ValueError: naming the bad argument.
    """
    shape = tuple(shape)
    if len(shape) != 3 or len(set(shape)) != 1 or shape[0] < 2:
        raise ValueError(f"values must be a cubic grid [R+1, R+1, R+1] with R >= 1, got {shape}")
    if not abs(float(threshold_logit)) < LOGIT_LIMIT:
        raise ValueError(f"threshold_logit must be finite (within +-{LOGIT_LIMIT:g}), got {threshold_logit}")
    return check_padding(padding)


def marching_cubes(
    values: np.ndarray, threshold_logit: float, padding: float = 0.1
) -> Tuple[np.ndarray, np.ndarray]:
    """Marching cubes on a grid of logits, returning a mesh in query coordinates.

    Args:
      values: logits on the `(R+1)^3` grid, [R+1, R+1, R+1]; +-inf (a certain
        occupancy) is clipped to +-`LOGIT_LIMIT`.
      threshold_logit: iso-level (in logits).
      padding: the padding of the grid's box.

    Returns:
      (vertices float32 [V, 3], faces int64 [F, 3]), outward-oriented.

    Raises:
      ValueError: when the grid has NaN values or is not a cube of side >= 2, or
        the threshold or padding is invalid.
    """
    values = np.asarray(values)
    padding = check_grid(values.shape, threshold_logit, padding)
    if np.isnan(values).any():
        raise ValueError(
            f"the field returned NaN at {int(np.isnan(values).sum())} of {values.size} grid points; "
            "cannot extract a surface"
        )
    n = values.shape[0]
    values = np.clip(values.astype(np.float64), -LOGIT_LIMIT, LOGIT_LIMIT)
    padded = np.pad(values, 1, mode="constant", constant_values=OUTSIDE)
    vertices, faces = mcubes.marching_cubes(padded, float(threshold_logit))
    vertices = vertices - 1.0
    vertices = (1.0 + padding) * (vertices / (n - 1) - 0.5)
    return vertices.astype(np.float32), faces.astype(np.int64)


def simplify_mesh(vertices, faces, num_faces: int, aggressiveness: float = 5.0):
    """Quadric-error edge collapse down to about `num_faces` faces.

    The algorithm of Fast-Quadric-Mesh-Simplification, which the original's
    `libsimplify` wraps (aggressiveness 5 there; the demo uses 5000 faces), through
    the `fast_simplification` package. A mesh already at or under the budget is
    returned unchanged (copied).

    Args:
      vertices: float [V, 3].
      faces: int [F, 3].
      num_faces: target face count (> 0).
      aggressiveness: higher is faster and coarser (the original: 5).

    Returns:
      (vertices float32 [V', 3], faces int64 [F', 3]), F' <= max(F, num_faces) and
      close to `num_faces`; orientation is kept.
    """
    import fast_simplification  # imported lazily: only this function needs it

    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if num_faces <= 0:
        raise ValueError(f"num_faces must be positive, got {num_faces}")
    if faces.shape[0] <= num_faces:
        return vertices.astype(np.float32), faces.copy()
    v, f = fast_simplification.simplify(
        vertices, faces.astype(np.int32), target_count=int(num_faces), agg=float(aggressiveness)
    )
    return np.asarray(v, np.float32), np.asarray(f, np.int64)


def extract_mesh_dense(
    logit_fn: LogitFn,
    *,
    resolution: int = 128,
    threshold: float = 0.2,
    padding: float = 0.1,
    batch_points: Optional[int] = None,
    return_stats: bool = False,
):
    """Evaluates the field on the full `(R+1)^3` grid, then runs marching cubes.

    Args:
      logit_fn: maps float32 points [N, 3] to floating-point logits [N] (pass a
        jitted function); +-inf is clipped to +-`LOGIT_LIMIT`.
      resolution: cells per side R (an integer >= 1).
      threshold: occupancy probability of the surface (0.2 in the ONet configs).
      padding: box padding (the box has side 1 + padding), >= 0.
      batch_points: points per call of `logit_fn` (None: `default_batch_points()`).
      return_stats: also return a dict with 'num_queries', 'resolution' and
        per-stage seconds.

    Returns:
      (vertices, faces) or (vertices, faces, stats).

    Raises:
      ValueError: for an invalid argument (checked before the field is
        evaluated), or when the field returns NaN, the wrong shape or
        non-floating-point values.
    """
    resolution = check_integer("resolution", resolution, 1)
    padding = check_padding(padding)
    threshold_logit = losses.probability_to_logit(threshold)
    batch_points = check_batch_points(batch_points)
    t0 = time.perf_counter()
    points = grid_points(resolution, padding)
    values = evaluate_points(logit_fn, points, batch_points).reshape((resolution + 1,) * 3)
    t1 = time.perf_counter()
    vertices, faces = marching_cubes(values, threshold_logit, padding)
    t2 = time.perf_counter()
    if not return_stats:
        return vertices, faces
    stats: Dict[str, float] = {
        "num_queries": int(points.shape[0]),
        "resolution": int(resolution),
        "time_network": t1 - t0,
        "time_marching_cubes": t2 - t1,
        "time_total": t2 - t0,
    }
    return vertices, faces, stats


def write_mesh(
    path: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: Optional[np.ndarray] = None,
    comments: Sequence[str] = (),
) -> None:
    """Writes a binary PLY atomically (a temporary file, then a rename), creating its folder.

    Args:
      path: the .ply file.
      vertices: float [V, 3].
      faces: int [F, 3].
      colors: optional per-vertex RGB, float [V, 3] in [0, 1] (stored as uint8).
      comments: lines for the header's `comment` entries (e.g. the checkpoint
        step that made the mesh; `read_ply_comments` reads them back).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    vertex_colors = None
    if colors is not None:
        vertex_colors = (np.clip(np.asarray(colors, np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    mesh = trimesh.Trimesh(vertices, faces, vertex_colors=vertex_colors, process=False)
    data = trimesh.exchange.ply.export_ply(mesh, encoding="binary")
    if comments:
        head, rest = data.split(b"\n", 2)[:2], data.split(b"\n", 2)[2]
        lines = b"".join(b"comment " + " ".join(str(c).split()).encode("utf-8") + b"\n" for c in comments)
        data = head[0] + b"\n" + head[1] + b"\n" + lines + rest
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_ply_comments(path: str) -> List[str]:
    """The `comment` lines of a PLY file's header (without the word 'comment').

    Raises:
      ValueError: when `path` is not a PLY file.
    """
    comments = []
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path}: not a PLY file")
        for _ in range(10_000):
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: the PLY header has no end_header (truncated file?)")
            line = line.strip()
            if line == b"end_header":
                return comments
            if line.startswith(b"comment"):
                comments.append(line[len(b"comment") :].strip().decode("utf-8", "replace"))
    raise ValueError(f"{path}: the PLY header does not end")
