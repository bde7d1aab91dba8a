"""Jitted active-cell marching cubes: generated tables, closed outward meshes, PyMCubes' vertices."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree

from implicit_fields import losses, marching_cubes, meshing, mise
from mesh_checks import assert_closed_and_oriented, directed_edges, volume_area

R = 0.4
LOGIT_TH = losses.probability_to_logit(0.2)


def _grid(resolution, padding=0.1):
    return meshing.grid_points(resolution, padding).reshape((resolution + 1,) * 3 + (3,)).astype(np.float64)


def sphere_grid(resolution, radius=R, padding=0.1):
    p = _grid(resolution, padding)
    return (LOGIT_TH + 20.0 * (radius - np.linalg.norm(p, axis=-1))).astype(np.float32)


def torus_grid(resolution, major=0.3, minor=0.1):
    p = _grid(resolution) - np.array([0.013, -0.021, 0.007])
    ring = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - major
    return (LOGIT_TH + 20.0 * (minor - np.sqrt(ring**2 + p[..., 2] ** 2))).astype(np.float32)


def _assert_same_vertex_set(v, vr, atol=1e-6):
    """Equal as multisets up to `atol` (vertices of the padding layer nearly coincide)."""
    assert v.shape == vr.shape, (v.shape, vr.shape)
    if len(v) == 0:
        return
    tree, tree_r = cKDTree(v), cKDTree(vr)
    assert tree_r.query(v)[0].max() <= atol
    assert tree.query(vr)[0].max() <= atol
    near = tree.query_ball_point(v, 2 * atol, return_length=True)
    near_r = tree_r.query_ball_point(v, 2 * atol, return_length=True)
    np.testing.assert_array_equal(near, near_r)


def _match(v, vr, atol=1e-6):
    """Index into `vr` of each vertex of `v`, asserting a bijection (vertices must be apart)."""
    assert v.shape == vr.shape, (v.shape, vr.shape)
    if len(v) == 0:
        return np.zeros(0, np.int64)
    dist, index = cKDTree(vr).query(v)
    assert dist.max() <= atol, dist.max()
    assert len(np.unique(index)) == len(v)
    return index


def _canonical_faces(f):
    """Faces rotated to start at their smallest id (orientation kept), rows sorted."""
    shift = np.argmin(f, axis=1)
    rolled = np.stack([f[np.arange(len(f)), (shift + i) % 3] for i in range(3)], axis=1)
    return rolled[np.lexsort(rolled.T[::-1])]


def reference_marching_cubes(values, threshold, padding=0.1):
    """Plain numpy marching cubes with the generated tables (dense, unjitted)."""
    table, counts = marching_cubes._build_tables()
    corners, edges = marching_cubes.CORNERS, marching_cubes.EDGES
    v = np.pad(values.astype(np.float64), 1, constant_values=-1e6)
    n = v.shape[0]
    m = n - 1
    occupied = (v > threshold).astype(np.int64)
    case = sum(occupied[dx : dx + m, dy : dy + m, dz : dz + m] << c for c, (dx, dy, dz) in enumerate(corners))
    cells = np.argwhere((case != 0) & (case != 255))
    cell_case = case[tuple(cells.T)]
    keys = []
    for t in range(table.shape[1]):
        sel = counts[cell_case] > t
        e = table[cell_case[sel], t]  # [k, 3]
        p = cells[sel][:, None, :] + corners[edges[e, 0]]
        keys.append(((p[..., 0] * n + p[..., 1]) * n + p[..., 2]) * 3 + edges[e, 2])
    keys = np.concatenate(keys) if keys else np.zeros((0, 3), np.int64)
    unique, faces = np.unique(keys, return_inverse=True)
    faces = faces.reshape(-1, 3)
    point, axis = unique // 3, unique % 3
    p = np.stack([point // (n * n), (point // n) % n, point % n], axis=-1)
    f1 = v.reshape(-1)[point]
    f2 = v.reshape(-1)[point + np.array([n * n, n, 1])[axis]]
    p = p.astype(np.float64)
    p[np.arange(len(p)), axis] += (threshold - f1) / (f2 - f1)
    vertices = (1.0 + padding) * ((p - 1.0) / (values.shape[0] - 1) - 0.5)
    return vertices.astype(np.float32), faces.astype(np.int64)


def _assert_same_as_reference(mesh, values, threshold, padding=0.1):
    """The jitted mesh equals the numpy reference's (up to vertex and face order)."""
    v, f = mesh
    vr, fr = reference_marching_cubes(values, threshold, padding)
    index = _match(v, vr)
    np.testing.assert_array_equal(_canonical_faces(index[f]), _canonical_faces(fr))


# ---------------------------------------------------------------------------
# The generated tables.
# ---------------------------------------------------------------------------


def test_table_is_deterministic_and_complementary_cases_have_no_surface():
    table, counts = marching_cubes._build_tables()
    assert table.shape[0] == 256 and counts[0] == 0 and counts[255] == 0
    assert np.all(counts[1:255] > 0)
    assert np.all(table[:, :, :] >= 0) and np.all(table < 12)
    marching_cubes._build_tables.cache_clear()
    table2, counts2 = marching_cubes._build_tables()
    np.testing.assert_array_equal(table, table2)
    np.testing.assert_array_equal(counts, counts2)


@pytest.mark.parametrize("case", range(256))
def test_each_case_is_a_surface_bounded_by_its_face_segments(case):
    """The triangles' boundary is exactly the oriented face segments (closed by the cube faces)."""
    triangles = np.asarray(marching_cubes.case_triangles(case), np.int64).reshape(-1, 3)
    segments = marching_cubes.case_segments(case)
    edges = marching_cubes.EDGES
    occupied = [(case >> c) & 1 for c in range(8)]
    crossing = {e for e in range(12) if occupied[edges[e, 0]] != occupied[edges[e, 1]]}
    assert set(triangles.reshape(-1).tolist()) == crossing
    directed = [tuple(x) for x in directed_edges(triangles).tolist()]
    assert len(set(directed)) == len(directed)
    boundary = {e for e in directed if (e[1], e[0]) not in directed}
    assert boundary == set(segments)
    for p, q in segments:  # each segment lies on a face, so a neighbouring cell sees the same one
        shared = [a for a in range(3) if a not in (edges[p, 2], edges[q, 2])]
        assert any(((edges[p, 0] >> a) & 1) == ((edges[q, 0] >> a) & 1) for a in shared), (p, q)


def test_every_single_cell_case_is_closed_outward_and_matches_pymcubes():
    for case in range(1, 256):
        bits = np.array([(case >> c) & 1 for c in range(8)], np.float32)
        values = np.zeros((2, 2, 2), np.float32)
        for c, (dx, dy, dz) in enumerate(marching_cubes.CORNERS):
            values[dx, dy, dz] = 2.0 * bits[c] - 1.0 + 0.1 * c  # distinct positions along edges
        v, f = marching_cubes.marching_cubes(values, 0.0)
        assert_closed_and_oriented(f)
        assert volume_area(v, f)[0] > 0, case
        vr, _ = meshing.marching_cubes(values, 0.0)
        _assert_same_vertex_set(v, vr)


# ---------------------------------------------------------------------------
# Meshes.
# ---------------------------------------------------------------------------


def test_sphere_64_closed_outward_and_pymcubes_vertices():
    values = sphere_grid(64)
    v, f = marching_cubes.marching_cubes(values, LOGIT_TH)
    assert v.dtype == np.float32 and f.dtype == np.int64 and v.shape[1] == 3 and f.shape[1] == 3
    assert_closed_and_oriented(f)
    vr, fr = meshing.marching_cubes(values, LOGIT_TH)
    _assert_same_vertex_set(v, vr)
    assert len(f) == len(fr)
    volume, _ = volume_area(v, f)
    assert volume > 0
    assert abs(volume - volume_area(vr, fr)[0]) < 1e-3 * volume
    _assert_same_as_reference((v, f), values, LOGIT_TH)
    v2, f2 = marching_cubes.marching_cubes(jnp.asarray(values), LOGIT_TH)  # a device array works too
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(f2, f)


def test_sphere_128_volume_and_area_within_one_percent():
    v, f = marching_cubes.marching_cubes(sphere_grid(128), LOGIT_TH)
    assert_closed_and_oriented(f)
    volume, area = volume_area(v, f)
    assert abs(volume - 4 / 3 * np.pi * R**3) / (4 / 3 * np.pi * R**3) < 0.01
    assert abs(area - 4 * np.pi * R**2) / (4 * np.pi * R**2) < 0.01
    assert np.abs(np.linalg.norm(v, axis=1) - R).mean() < 1e-4


def test_torus_closed_and_pymcubes_vertices():
    values = torus_grid(64)  # the sphere's grid size: the compiled function is reused
    v, f = marching_cubes.marching_cubes(values, LOGIT_TH, padding=0.1)
    assert len(f) > 1000
    assert_closed_and_oriented(f)
    _assert_same_vertex_set(v, meshing.marching_cubes(values, LOGIT_TH)[0])
    assert volume_area(v, f)[0] > 0
    _assert_same_as_reference((v, f), values, LOGIT_TH)


@pytest.mark.parametrize("seed", range(3))
def test_random_noise_closed_and_pymcubes_vertices(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(17, 17, 17)).astype(np.float32)
    # Many ambiguous faces (diagonal corners alike, the other diagonal opposite).
    s = values > 0
    ambiguous = (s[:-1, :-1] == s[1:, 1:]) & (s[1:, :-1] == s[:-1, 1:]) & (s[:-1, :-1] != s[1:, :-1])
    assert ambiguous.sum() > 200
    v, f = marching_cubes.marching_cubes(values, 0.0, padding=0.25, capacity=1 << 14)
    assert_closed_and_oriented(f)
    vr, _ = meshing.marching_cubes(values, 0.0, padding=0.25)
    _assert_same_vertex_set(v, vr)
    # Against the numpy reference, with an unoccupied border (vertices on the
    # padding layer nearly coincide, so the vertex correspondence needs them apart).
    values[[0, -1], :, :] = values[:, [0, -1], :] = values[:, :, [0, -1]] = -1.0
    v, f = marching_cubes.marching_cubes(values, 0.0, padding=0.25, capacity=1 << 14)
    assert_closed_and_oriented(f)
    _assert_same_as_reference((v, f), values, 0.0, padding=0.25)


def test_capacity_growth_gives_the_same_mesh():
    values = np.random.default_rng(7).normal(size=(13, 13, 13)).astype(np.float32)
    big = marching_cubes.marching_cubes(values, 0.1, capacity=1 << 14)
    small = marching_cubes.marching_cubes(values, 0.1, capacity=1)  # grows blocks, cells, vertices, faces
    for a, b in zip(big, small):
        np.testing.assert_array_equal(a, b)


def test_empty_full_and_nan():
    v, f = marching_cubes.marching_cubes(np.full((9, 9, 9), -3.0, np.float32), 0.0)
    assert v.shape == (0, 3) and f.shape == (0, 3)
    assert v.dtype == np.float32 and f.dtype == np.int64
    full = np.full((9, 9, 9), 3.0, np.float32)
    v, f = marching_cubes.marching_cubes(full, 0.0)
    vr, fr = meshing.marching_cubes(full, 0.0)
    _assert_same_vertex_set(v, vr)
    assert_closed_and_oriented(f)
    assert abs(volume_area(v, f)[0] - volume_area(vr, fr)[0]) < 1e-6
    assert abs(volume_area(v, f)[0] - 1.1**3) < 1e-4  # the box's boundary
    bad = full.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN at 1 of 729"):
        marching_cubes.marching_cubes(bad, 0.0)
    with pytest.raises(ValueError, match="NaN at 1 of 729"):
        meshing.marching_cubes(bad, 0.0)


def test_threshold_ties_count_as_unoccupied_like_pymcubes():
    values = np.zeros((3, 3, 3), np.float32)
    values[1, 1, 1] = 1.0
    for th in (0.0, 1.0):
        v, f = marching_cubes.marching_cubes(values, th)
        vr, fr = meshing.marching_cubes(values, th)
        assert len(f) == len(fr)
        _assert_same_vertex_set(v, vr)


def test_corner_and_edge_bookkeeping():
    corners, edges = marching_cubes.CORNERS, marching_cubes.EDGES
    assert edges.shape == (12, 3)
    for c0, c1, axis in edges:
        assert c1 == c0 | (1 << axis) and c0 != c1
        np.testing.assert_array_equal(corners[c1] - corners[c0], np.eye(3, dtype=np.int64)[axis])
    assert len({(c0, c1) for c0, c1, _ in edges}) == 12
    assert set(itertools.chain.from_iterable((c0, c1) for c0, c1, _ in edges)) == set(range(8))


def test_mise_extract_mesh_with_jax_marching_cubes():
    @jax.jit
    def sphere(points):
        return LOGIT_TH + 20.0 * (R - jnp.linalg.norm(points, axis=-1))

    kw = dict(resolution0=8, upsampling_steps=1)
    v, f = mise.extract_mesh(sphere, marching_cubes="jax", **kw)
    vr, fr = mise.extract_mesh(sphere, **kw)  # PyMCubes, the default
    assert_closed_and_oriented(f)
    _assert_same_vertex_set(v, vr)
    assert len(f) == len(fr)
    with pytest.raises(ValueError, match="marching_cubes"):
        mise.extract_mesh(sphere, marching_cubes="skimage", **kw)
