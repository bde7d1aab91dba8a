"""`implicit_fields.data.mesh_render`: the mesh z-buffer against exact analytic renders."""

import numpy as np
import pytest
import trimesh

from implicit_fields import cameras as cam_lib
from implicit_fields.data import mesh_render, shape_render
from implicit_fields.data.shapes import Box, Shape, rotation_matrix

CENTRE = np.array([0.05, -0.03, 0.02])
RADIUS = 0.4


def _cameras(n=4, seed=0, focal=None):
    cams = cam_lib.sample_views(n, 2.0, seed, (-20.0, 60.0), focal)
    return [cam_lib.camera_at(cams, i) for i in range(n)]


def _sphere_truth(cam, h, w):
    """Exact mask and camera depth of the sphere (CENTRE, RADIUS) from ray-sphere roots."""
    pixels = cam_lib.pixel_grid(h, w).reshape(-1, 2)
    o, d = cam_lib.pixels_to_rays(pixels, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    oc = o - CENTRE
    a = (d * d).sum(1)
    b = 2.0 * (oc * d).sum(1)
    c = (oc * oc).sum(1) - RADIUS**2
    disc = b * b - 4 * a * c
    hit = disc >= 0
    depth = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    return hit.reshape(h, w), depth.reshape(h, w)


def test_sphere_mesh_matches_the_analytic_sphere():
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=RADIUS)  # 5,120 faces.
    vertices = np.asarray(mesh.vertices) + CENTRE
    for cam in _cameras():
        view = mesh_render.render_mesh(vertices, mesh.faces, cam, 48, 64)
        assert view["image"].shape == (48, 64, 3) and view["image"].dtype == np.uint8
        mask, depth = _sphere_truth(cam, 48, 64)
        iou = (view["mask"] & mask).sum() / (view["mask"] | mask).sum()
        assert iou > 0.98, iou
        both = view["mask"] & mask
        assert both.sum() > 300
        err = np.abs(view["depth"][both] - depth[both])
        # The inscribed polyhedron lies at most ~1.2e-3 inside the sphere.
        assert np.median(err) < 1.5e-3 and np.quantile(err, 0.99) < 5e-3, (np.median(err), err.max())
        assert np.all(view["depth"][both] >= depth[both] - 1e-5)  # Never in front of the sphere.
        assert np.all(np.isinf(view["depth"][~view["mask"]]))
        assert np.all((view["image"][~view["mask"]] == 255))  # White background.
        np.testing.assert_array_equal(view["face"] >= 0, view["mask"])


def test_box_mesh_agrees_with_the_exact_renderer():
    half = np.array([0.3, 0.15, 0.2])
    rot = rotation_matrix([0.3, 1.0, -0.2], 0.7)
    shift = np.array([0.05, 0.02, -0.04])
    shape = Shape([Box(half, rot, shift)])
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rot, shift
    mesh = trimesh.creation.box(extents=2 * half, transform=transform)
    appearance = shape_render.Appearance([[0.8, 0.4, 0.2]])
    focal = mesh_render.fit_focal(mesh.vertices, 2.0)  # The box fills the view.
    for cam in _cameras(3, seed=1, focal=focal):
        ours = mesh_render.render_mesh(mesh.vertices, mesh.faces, cam, 40, 40, appearance)
        exact = shape_render.render_view(shape, cam, 40, 40, appearance)
        assert np.sum(ours["mask"] != exact["mask"]) <= 2  # Only pixel centres on an edge.
        both = ours["mask"] & exact["mask"]
        assert both.sum() > 200
        # Planar faces: depth is exact (perspective-correct), normals and colours too.
        np.testing.assert_allclose(ours["depth"][both], exact["depth"][both], rtol=1e-5)
        np.testing.assert_allclose(ours["normals"][both], exact["normals"][both], atol=1e-5)
        assert np.abs(ours["image"][both].astype(int) - exact["image"][both]).max() <= 1


def test_winding_chunking_and_edge_cases():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=RADIUS)
    cam = _cameras(1)[0]
    ref = mesh_render.render_mesh(mesh.vertices, mesh.faces, cam, 32, 32)
    flipped = mesh_render.render_mesh(mesh.vertices, mesh.faces[:, ::-1], cam, 32, 32)
    np.testing.assert_array_equal(flipped["image"], ref["image"])  # Winding does not matter.
    face, depth, _ = mesh_render.rasterize(mesh.vertices, mesh.faces, cam, 32, 32, max_candidates=50)
    np.testing.assert_array_equal(face, ref["face"])
    np.testing.assert_array_equal(depth.astype(np.float32), ref["depth"])
    # No faces, or only zero-area ones: a blank image (documented), not an error.
    for faces in (np.zeros((0, 3), np.int64), np.array([[0, 0, 1], [2, 2, 2]])):
        blank = mesh_render.render_mesh(mesh.vertices, faces, cam, 16, 16)
        assert not blank["mask"].any() and np.all(blank["image"] == 255)
        assert np.all(np.isinf(blank["depth"]))
    with pytest.raises(ValueError, match="face indices"):
        mesh_render.render_mesh(mesh.vertices, [[0, 1, 10**6]], cam, 16, 16)
    with pytest.raises(ValueError, match="vertices must have shape"):
        mesh_render.render_mesh(np.zeros((4, 2)), [[0, 1, 2]], cam, 16, 16)
    with pytest.raises(ValueError, match="non-finite"):
        mesh_render.render_mesh([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], [[0, 1, 2]], cam, 16, 16)
