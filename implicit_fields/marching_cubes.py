"""Marching cubes over the active cells only, jitted: a device-side replacement for PyMCubes.

Same contract as `meshing.marching_cubes`: logits on the `(R + 1)^3` grid of
the shared grid convention (`p = (1 + padding) * (i / R - 0.5)`), the grid
surrounded by one layer of `meshing.OUTSIDE` so that shapes touching the box are closed,
a point is occupied when its value is `> threshold`, faces are oriented
outward (away from the occupied side), and every vertex lies on a grid edge
at the same linear interpolation PyMCubes uses, `x1 + (iso - f1) / (f2 - f1)`.
The vertex set therefore equals PyMCubes' (to float32 rounding); the
triangulation of a cell may differ.

Inside one jitted call:

1. The 8-corner case index of every cell of the padded grid; a cell is
   *active* when the index is neither 0 nor 255.
2. The active cells are compacted in two levels, as in `mise`: the grid is
   cut into `_BLOCK`^3 blocks, the blocks holding active cells are gathered
   (`jnp.nonzero` with a static `size`, `block_capacity`), then their active
   cells are scattered to their prefix-count positions (`cell_capacity`). A
   map from block to gathered slot (one int32 per block) plus those prefix
   counts give any active cell's compacted index.
3. Vertices: each grid edge is owned by the cell at its lower end (the
   edges from corner 0 along x, y, z), and a crossing edge's owner is active.
   The crossing edges of the compacted cells are numbered by a prefix count
   (in compaction order) and compacted (`vertex_capacity`); the vertex of any
   edge is then a lookup through its owner's compacted index, with no dense
   id grid (memory stays near the size of the grid plus the buffers).
4. Triangles: a per-cell count from the case table, an exclusive prefix sum,
   and for every triangle slot (`triangle_capacity`) its cell by a running
   maximum of the cells' first slots; its three edges come from the table.

Buffers have power-of-two capacities; the call returns the true counts, and
when one is larger than its buffer the buffers grow to the next bucket and
the call is repeated (one compilation per bucket, reused afterwards).
Nothing is truncated. The host only slices the buffers to the counts and maps
the vertices to query coordinates (in float64).

The triangle table is generated here, not copied (`_build_tables`): for each
of the 256 configurations, every cube face contributes segments between its
crossing edges; a face with four crossings (diagonal corners alike) is
resolved by a rule that depends on that face's corner signs only (each
inside corner is cut off on its own), so the two cells sharing a face agree
and the mesh is watertight. Segments are oriented as the boundary of a
surface whose normal points to the unoccupied side (right-hand rule);
chained into loops (every crossing edge starts one segment and ends one),
each loop is triangulated by dynamic programming over its polygon triangulations,
never using a diagonal between two vertices that lie on one cube face (that
edge could also appear in the neighbouring cell and break the manifold), and
otherwise preferring short diagonals.
"""

import functools
import itertools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from implicit_fields.meshing import LOGIT_LIMIT, OUTSIDE, check_grid

_MIN_CAPACITY = 1024  # smallest buffer
_OUTSIDE = OUTSIDE  # value of the padding layer (as meshing.marching_cubes)
_BLOCK = 4  # side of the blocks of the two-level compaction
_CAPS = ("block_capacity", "cell_capacity", "vertex_capacity", "triangle_capacity")

# Corner c of a cell sits at offset (c & 1, (c >> 1) & 1, (c >> 2) & 1) along (x, y, z).
CORNERS = np.array([[(c >> a) & 1 for a in range(3)] for c in range(8)], np.int64)
# Edge e joins corners (c0, c1) with c1 = c0 | (1 << axis): x edges, then y, then z.
EDGES = np.array(
    [(c, c | (1 << a), a) for a in range(3) for c in range(8) if not (c >> a) & 1], np.int64
)  # [12, 3]: c0, c1, axis
_EDGE_MIDPOINTS = 0.5 * (CORNERS[EDGES[:, 0]] + CORNERS[EDGES[:, 1]])  # [12, 3], in the unit cell


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def _bucket(needed: int, total: int) -> int:
    """Power-of-two bucket >= needed, at least _MIN_CAPACITY, at most the bucket of `total`."""
    return min(_next_pow2(max(needed, _MIN_CAPACITY)), _next_pow2(max(total, _MIN_CAPACITY)))


# ---------------------------------------------------------------------------
# The case tables, generated.
# ---------------------------------------------------------------------------


def _face_corners(axis: int, side: int):
    """The 4 corners of a cube face in cyclic order."""
    u, v = [a for a in range(3) if a != axis]
    ring = [(0, 0), (1, 0), (1, 1), (0, 1)]
    return [(side << axis) | (du << u) | (dv << v) for du, dv in ring]


def _edge_index(c0: int, c1: int) -> int:
    lo, hi = min(c0, c1), max(c0, c1)
    return int(np.nonzero((EDGES[:, 0] == lo) & (EDGES[:, 1] == hi))[0][0])


def _edge_faces():
    """For each edge, the set of the two faces (axis, side) that contain it."""
    faces = []
    for c0, _, axis in EDGES:
        faces.append({(a, (c0 >> a) & 1) for a in range(3) if a != axis})
    return faces


def case_segments(case: int):
    """Oriented face segments of one configuration.

    Args:
      case: bit c set when corner c is occupied (value > threshold).

    Returns:
      list of (p, q) local edge ids: the surface's boundary on the cube faces,
      oriented as the boundary of the cell's outward triangles (each segment
      is one of their directed edges p -> q).
    """
    inside = [(case >> c) & 1 for c in range(8)]
    mid = _EDGE_MIDPOINTS
    segments = []
    for axis, side in itertools.product(range(3), range(2)):
        ring = _face_corners(axis, side)
        ring_edges = [_edge_index(ring[i], ring[(i + 1) % 4]) for i in range(4)]
        crossing = [inside[ring[i]] != inside[ring[(i + 1) % 4]] for i in range(4)]
        if sum(crossing) == 2:
            pairs = [tuple(e for e, x in zip(ring_edges, crossing) if x)]
        elif sum(crossing) == 4:  # ambiguous face: cut each occupied corner off on its own
            pairs = [(ring_edges[(i - 1) % 4], ring_edges[i]) for i in range(4) if inside[ring[i]]]
        else:
            pairs = []
        normal = np.zeros(3)
        normal[axis] = 2 * side - 1
        for p, q in pairs:
            d = mid[q] - mid[p]
            corner = EDGES[p, 0]
            side_of_corner = np.dot(np.cross(normal, d), CORNERS[corner] - mid[p])
            # cross(normal, d) must point to the unoccupied side of the face.
            if (side_of_corner < 0) != bool(inside[corner]):
                p, q = q, p
            segments.append((int(p), int(q)))
    return segments


def _triangulate_loop(loop, edge_faces, mid):
    """Triangles (in loop order, so with the loop's orientation) of one polygon loop.

    Dynamic programming over the triangulations of the polygon: a diagonal
    between two vertices on one cube face costs 1e6, any other its length.
    """
    k = len(loop)

    def weight(a, b):
        if (b - a) % k in (1, k - 1):
            return 0.0
        if edge_faces[loop[a]] & edge_faces[loop[b]]:
            return 1e6
        return float(np.linalg.norm(mid[loop[a]] - mid[loop[b]]))

    cost = {}
    choice = {}
    for length in range(2, k):
        for i in range(k - length):
            j = i + length
            best = None
            for m in range(i + 1, j):
                c = cost.get((i, m), 0.0) + cost.get((m, j), 0.0) + weight(i, m) + weight(m, j)
                if best is None or c < best - 1e-12:
                    best, choice[(i, j)] = c, m
            cost[(i, j)] = best
    triangles = []

    def emit(i, j):
        if j - i < 2:
            return
        m = choice[(i, j)]
        triangles.append((loop[i], loop[m], loop[j]))
        emit(i, m)
        emit(m, j)

    emit(0, k - 1)
    return triangles, cost[(0, k - 1)]


def case_triangles(case: int):
    """Outward triangles of one configuration, as triples of local edge ids.

    Returns:
      list of (e0, e1, e2).
    """
    segments = case_segments(case)
    following = {}
    for p, q in segments:
        assert p not in following, (case, segments)
        following[p] = q
    assert sorted(following) == sorted(following.values()), (case, segments)
    edge_faces = _edge_faces()
    mid = _EDGE_MIDPOINTS
    triangles = []
    todo = sorted(following)
    seen = set()
    for start in todo:
        if start in seen:
            continue
        loop = [start]
        seen.add(start)
        while following[loop[-1]] != start:
            loop.append(following[loop[-1]])
            seen.add(loop[-1])
        tris, cost = _triangulate_loop(loop, edge_faces, mid)
        assert cost < 1e6, (case, loop)
        triangles += tris
    return triangles


@functools.lru_cache(maxsize=None)
def _build_tables() -> Tuple[np.ndarray, np.ndarray]:
    """The generated case tables (deterministic, built once).

    Returns:
      triangles: int32 [256, T, 3], local edge ids (rows past the count are 0).
      counts: int32 [256], triangles per configuration.
    """
    per_case = [case_triangles(case) for case in range(256)]
    max_tris = max(len(t) for t in per_case)
    table = np.zeros((256, max_tris, 3), np.int32)
    counts = np.zeros(256, np.int32)
    for case, tris in enumerate(per_case):
        counts[case] = len(tris)
        if tris:
            table[case, : len(tris)] = tris
    return table, counts


# ---------------------------------------------------------------------------
# The jitted extraction.
# ---------------------------------------------------------------------------


def _padded_value(values, p):
    """Values of the grid padded by one layer of `_OUTSIDE`, at padded indices.

    Args:
      values: float32 [R+1, R+1, R+1].
      p: int32 [k, 3], indices into the padded [R+3]^3 grid.

    Returns:
      float32 [k].
    """
    q = p - 1
    inside = jnp.all((q >= 0) & (q < values.shape[0]), axis=-1)
    q = jnp.clip(q, 0, values.shape[0] - 1)
    return jnp.where(inside, values[q[:, 0], q[:, 1], q[:, 2]], np.float32(_OUTSIDE))


@functools.partial(jax.jit, static_argnames=("threshold",) + _CAPS)
def _extract(values, threshold, block_capacity, cell_capacity, vertex_capacity, triangle_capacity):
    """Marching cubes of the padded grid into fixed-size buffers.

    Args:
      values: float32 [R+1, R+1, R+1], logits (+-inf is clipped to +-`LOGIT_LIMIT`).
      threshold: static float, the iso-level.
      block_capacity: static number of `_BLOCK`^3 blocks with active cells
        that can be gathered.
      cell_capacity, vertex_capacity, triangle_capacity: static buffer sizes.

    Returns:
      corner: int32 [vertex_capacity, 3], lower grid point of each vertex's
        edge, in padded-grid indices (the grid's index + 1).
      offset: float32 [vertex_capacity, 3], the interpolation parameter along
        the edge's axis (0 on the other axes).
      faces: int32 [triangle_capacity, 3], vertex ids.
      counts: int32 [5]: blocks with active cells, active cells, vertices,
        triangles, NaN values.
    """
    table, table_counts = _build_tables()
    th = np.float32(threshold)
    # An infinite logit is a certain occupancy: clipped, or an edge from +inf to -inf would
    # interpolate to NaN. NaN stays NaN (counted, then refused by the caller).
    values = jnp.clip(values.astype(jnp.float32), -LOGIT_LIMIT, LOGIT_LIMIT)
    nan_count = jnp.sum(jnp.isnan(values), dtype=jnp.int32)
    b = _BLOCK
    b3 = b**3
    # The cells of the padded grid ((R+2)^3; the padding layer is never
    # occupied), rounded up to whole blocks: [nb * b]^3.
    nb = -(-(values.shape[0] + 1) // b)
    size = nb * b
    occupied = jnp.pad((values > th).astype(jnp.uint8), ((1, size - values.shape[0]),) * 3)
    case = jnp.zeros((size,) * 3, jnp.uint8)
    for c in range(8):
        dx, dy, dz = (int(o) for o in CORNERS[c])
        case = case | (occupied[dx : dx + size, dy : dy + size, dz : dz + size] << c)
    active = (case != 0) & (case != 255)

    # Two-level compaction: blocks holding active cells, then their active cells.
    row_counts = jnp.sum(active.reshape(nb, b, nb, b, nb, b), axis=(1, 3, 5), dtype=jnp.int32).reshape(-1)
    num_cells = jnp.sum(row_counts)
    num_blocks = jnp.sum(row_counts > 0, dtype=jnp.int32)
    (block,) = jnp.nonzero(row_counts > 0, size=block_capacity, fill_value=0)
    block_valid = jnp.arange(block_capacity) < num_blocks
    origin = jnp.stack([block // (nb * nb), (block // nb) % nb, block % nb], axis=-1) * b
    sub_case = jax.vmap(lambda o: lax.dynamic_slice(case, (o[0], o[1], o[2]), (b, b, b)))(origin)
    sub_case = sub_case.reshape(block_capacity, b3)
    sub_active = (sub_case != 0) & (sub_case != 255) & block_valid[:, None]
    # Where each cell lands in the compacted order: block slot, cells before the
    # block, cells before it within the block.
    block_slot = (
        jnp.zeros(nb**3, jnp.int32)
        .at[jnp.where(block_valid, block, nb**3)]
        .set(jnp.arange(block_capacity, dtype=jnp.int32), mode="drop")
    )
    block_counts = jnp.sum(sub_active, axis=1, dtype=jnp.int32)
    block_start = jnp.cumsum(block_counts) - block_counts
    rank_in_block = jnp.cumsum(sub_active, axis=1, dtype=jnp.int32) - sub_active
    compacted = jnp.where(sub_active, block_start[:, None] + rank_in_block, cell_capacity)
    pos = (
        jnp.zeros(cell_capacity, jnp.int32)
        .at[compacted.reshape(-1)]
        .set(jnp.arange(block_capacity * b3, dtype=jnp.int32), mode="drop")
    )  # [C], position in `sub_case` of each compacted cell
    cell_valid = jnp.arange(cell_capacity) < num_cells
    cell_case = jnp.where(cell_valid, sub_case.reshape(-1)[pos], 0).astype(jnp.int32)
    blk, off = block[pos // b3], pos % b3

    def compacted_index(p):  # int32 [..., 3] cell coordinates of active cells -> their index
        q, r = p // b, p % b
        k = block_slot[(q[..., 0] * nb + q[..., 1]) * nb + q[..., 2]]
        return block_start[k] + rank_in_block[k, (r[..., 0] * b + r[..., 1]) * b + r[..., 2]]

    ijk = jnp.stack(
        [
            (blk // (nb * nb)) * b + off // (b * b),
            ((blk // nb) % nb) * b + (off // b) % b,
            (blk % nb) * b + off % b,
        ],
        axis=-1,
    ).astype(jnp.int32)  # [C, 3], the cells' corner 0

    # Vertices: the crossing edges owned by the compacted cells (corner 0 to corner 1, 2, 4).
    bit0 = cell_case & 1
    owned = jnp.stack([bit0 != ((cell_case >> (1 << a)) & 1) for a in range(3)], axis=-1)  # [C, 3]
    owned = owned & cell_valid[:, None]
    owned = owned.reshape(-1)
    num_vertices = jnp.sum(owned, dtype=jnp.int32)
    vertex_id = jnp.cumsum(owned, dtype=jnp.int32) - owned  # [C * 3], for (cell, axis)
    slot = (
        jnp.zeros(vertex_capacity, jnp.int32)
        .at[jnp.where(owned, vertex_id, vertex_capacity)]
        .set(jnp.arange(3 * cell_capacity, dtype=jnp.int32), mode="drop")
    )  # [V], the (cell, axis) of each vertex
    v_cell, v_axis = slot // 3, (slot % 3).astype(jnp.int32)
    corner = ijk[v_cell]
    f1 = _padded_value(values, corner)
    f2 = _padded_value(values, corner + (jnp.arange(3)[None, :] == v_axis[:, None]))
    t = (th - f1) / (f2 - f1)
    offset = jnp.where(jnp.arange(3)[None, :] == v_axis[:, None], t[:, None], 0.0).astype(jnp.float32)

    # Triangles: slot s belongs to the last cell whose first slot is <= s (every
    # active cell has at least one triangle; the empty tail starts past the end).
    per_cell = jnp.asarray(table_counts)[cell_case]
    first = jnp.cumsum(per_cell) - per_cell
    num_triangles = jnp.sum(per_cell)
    s = jnp.arange(triangle_capacity, dtype=jnp.int32)
    starts = (
        jnp.zeros(triangle_capacity, jnp.int32)
        .at[first]
        .max(jnp.arange(cell_capacity, dtype=jnp.int32), mode="drop")
    )
    t_cell = lax.cummax(starts)
    local = jnp.clip(s - first[t_cell], 0, table.shape[1] - 1)
    edges = jnp.asarray(table)[cell_case[t_cell], local]  # [T, 3]
    e_start = jnp.asarray(CORNERS[EDGES[:, 0]], jnp.int32)[edges]  # [T, 3, 3]
    e_axis = jnp.asarray(EDGES[:, 2], jnp.int32)[edges]  # [T, 3]
    owner = compacted_index(ijk[t_cell][:, None, :] + e_start)  # [T, 3], the cells owning the edges
    faces = vertex_id[jnp.clip(owner, 0, cell_capacity - 1) * 3 + e_axis]
    faces = jnp.where((s < num_triangles)[:, None], faces, 0)
    counts = jnp.stack([num_blocks, num_cells, num_vertices, num_triangles, nan_count]).astype(jnp.int32)
    return corner, offset, faces, counts


def marching_cubes(
    values, threshold_logit: float, padding: float = 0.1, *, capacity: Optional[int] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Marching cubes on a grid of logits, returning a mesh in query coordinates.

    Drop-in for `meshing.marching_cubes` (same vertices, outward faces, closed
    at the box), computed on the device over the active cells only.

    Args:
      values: logits on the `(R+1)^3` grid, [R+1, R+1, R+1] (numpy or jax); +-inf
        (a certain occupancy) is clipped to +-`LOGIT_LIMIT`.
      threshold_logit: iso-level (in logits); occupied means `> threshold_logit`.
      padding: the padding of the grid's box.
      capacity: initial number of active cells the buffers hold (default:
        sized from R); grows automatically when too small.

    Returns:
      (vertices float32 [V, 3], faces int64 [F, 3]), outward-oriented;
      both (0, 3) when the grid has no surface.

    Raises:
      ValueError: when the grid has NaN values or is not a cube, or the
        threshold or padding is invalid.
    """
    values = jnp.asarray(values)
    padding = check_grid(values.shape, threshold_logit, padding)
    values = values.astype(jnp.float32)
    n = values.shape[0]
    total_cells = (n + 1) ** 3
    total_blocks = _next_pow2((-(-(n + 1) // _BLOCK)) ** 3)
    threshold = float(threshold_logit)
    cells = _bucket(capacity if capacity is not None else 3 * (n + 1) ** 2, total_cells)
    caps = (min(_next_pow2(max(cells // 16, 64)), total_blocks), cells, cells, 2 * cells)
    while True:
        corner, offset, faces, counts = _extract(values, threshold, *caps)
        num_blocks, num_cells, num_vertices, num_triangles, nan_count = (int(x) for x in np.asarray(counts))
        if nan_count:
            raise ValueError(
                f"the field returned NaN at {nan_count} of {values.size} grid points; "
                "cannot extract a surface"
            )
        needed = (num_blocks, num_cells, num_vertices, num_triangles)
        if all(x <= cap for x, cap in zip(needed, caps)):
            break
        # The block and cell counts are exact; the vertex and triangle counts only
        # when every active cell fit, so those buffers grow with the cell buffer.
        block_cap = max(caps[0], _next_pow2(num_blocks))
        cells = max(caps[1], _bucket(num_cells, total_cells))
        caps = (
            block_cap,
            cells,
            max(caps[2], cells, _next_pow2(num_vertices)),
            max(caps[3], 2 * cells, _next_pow2(num_triangles)),
        )
    if num_triangles == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    # Whole buffers to the host, then numpy slices (a device slice would compile per size).
    corner = np.asarray(corner)[:num_vertices].astype(np.float64)
    offset = np.asarray(offset)[:num_vertices].astype(np.float64)
    vertices = (1.0 + padding) * ((corner + offset - 1.0) / (n - 1) - 0.5)
    return vertices.astype(np.float32), np.asarray(faces)[:num_triangles].astype(np.int64)
