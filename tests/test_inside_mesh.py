"""Tests for implicit_fields.inside_mesh (ray-parity point-in-mesh test)."""

import time

import mcubes
import numpy as np
import pytest
import trimesh

from implicit_fields import inside_mesh

RADIUS = 0.4


def _torus_sdf(x, y, z, center, major, minor):
    """Signed distance to a z-axis torus; float64 arrays of equal shape."""
    ring = np.sqrt((x - center) ** 2 + (y - center) ** 2) - major
    return np.sqrt(ring**2 + (z - center) ** 2) - minor


@pytest.fixture(scope="module")
def sphere_mesh():
    return trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)


def test_sphere_matches_analytic(sphere_mesh):
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.55, 0.55, (50_000, 3))
    occ = inside_mesh.contains(sphere_mesh.vertices, sphere_mesh.faces, points)
    assert occ.shape == (50_000,) and occ.dtype == bool
    dist = np.linalg.norm(points, axis=1)
    gt = dist < RADIUS
    assert np.mean(occ == gt) > 0.999
    # The inscribed polyhedron deviates from the sphere by < 1e-3 here, so
    # points farther than that from the sphere must agree exactly.
    far = np.abs(dist - RADIUS) > 1e-3
    np.testing.assert_array_equal(occ[far], gt[far])


def test_face_orientation_does_not_matter(sphere_mesh):
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.5, 0.5, (5_000, 3))
    a = inside_mesh.contains(sphere_mesh.vertices, sphere_mesh.faces, points)
    b = inside_mesh.contains(sphere_mesh.vertices, sphere_mesh.faces[:, ::-1], points)
    np.testing.assert_array_equal(a, b)


def test_torus_marching_cubes_with_rays_through_vertices():
    # In index coordinates, marching-cubes vertices on z-edges have integer
    # x, y exactly, so queries at integer x, y send their rays exactly
    # through mesh vertices and edges.
    n, major, minor = 64, 18.0, 7.0
    center = (n - 1) / 2
    grid = np.arange(n, dtype=np.float64)
    x, y, z = np.meshgrid(grid, grid, grid, indexing="ij")
    vertices, faces = mcubes.marching_cubes(_torus_sdf(x, y, z, center, major, minor), 0.0)
    rng = np.random.default_rng(2)
    on_grid = np.concatenate(
        [rng.integers(0, n, (30_000, 2)).astype(np.float64), rng.uniform(0, n - 1, (30_000, 1))], axis=1
    )
    anywhere = rng.uniform(0, n - 1, (30_000, 3))
    for points in (on_grid, anywhere):
        occ = inside_mesh.contains(vertices, faces, points)
        sdf = _torus_sdf(points[:, 0], points[:, 1], points[:, 2], center, major, minor)
        assert np.mean(occ == (sdf < 0)) > 0.999
        far = np.abs(sdf) > 0.1  # Marching-cubes error is ~0.03 voxel.
        np.testing.assert_array_equal(occ[far], sdf[far] < 0)


def test_box_rays_through_grid_aligned_edges_and_vertices():
    # Unit box, each face split into 8x8 squares of two triangles. Query xy
    # on the vertex grid, on edge midpoints and on square centres (which lie
    # on the triangle diagonals); every ray hits shared edges or vertices.
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    for _ in range(3):
        box = box.subdivide()
    ticks = -0.5 + np.arange(1, 16) / 16.0  # Vertices and midpoints.
    gx, gy = np.meshgrid(ticks, ticks, indexing="ij")
    xy = np.stack([gx.ravel(), gy.ravel()], axis=1)
    inside_z = np.array([-0.49, -0.3, 0.0, 0.125, 0.45])
    outside_z = np.array([-0.75, 0.51, 0.9])

    def with_z(zs):
        return np.concatenate([np.repeat(xy, len(zs), axis=0), np.tile(zs, len(xy))[:, None]], axis=1)

    assert inside_mesh.contains(box.vertices, box.faces, with_z(inside_z)).all()
    assert not inside_mesh.contains(box.vertices, box.faces, with_z(outside_z)).any()
    outside_xy = np.array([[0.6, 0.0, 0.0], [0.0, -0.75, 0.1], [2.0, 2.0, 0.0]])
    assert not inside_mesh.contains(box.vertices, box.faces, outside_xy).any()


def test_empty_mesh_and_no_points():
    points = np.zeros((7, 3))
    occ = inside_mesh.contains(np.zeros((0, 3)), np.zeros((0, 3), int), points)
    assert occ.shape == (7,) and occ.dtype == bool and not occ.any()
    box = trimesh.creation.box()
    assert inside_mesh.contains(box.vertices, box.faces, np.zeros((0, 3))).shape == (0,)


def test_speed_sanity_100k_points_80k_faces():
    mesh = trimesh.creation.icosphere(subdivisions=6, radius=RADIUS)
    assert len(mesh.faces) == 81920
    points = np.random.default_rng(3).uniform(-0.55, 0.55, (100_000, 3))
    start = time.perf_counter()
    occ = inside_mesh.contains(mesh.vertices, mesh.faces, points)
    elapsed = time.perf_counter() - start
    print(f"contains: 100k points vs 81920 faces in {elapsed:.3f} s")
    assert np.mean(occ == (np.linalg.norm(points, axis=1) < RADIUS)) > 0.999
