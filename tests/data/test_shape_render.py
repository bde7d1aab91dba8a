"""Tests of the exact renderer of the built-in shapes: depth, masks, normals, colours."""

import json

import numpy as np

from implicit_fields import cameras
from implicit_fields.data import shape_render
from implicit_fields.data.shapes import Shape, Sphere, Torus
from shape_fixtures import csg_shape, pixel_rays


def _camera(seed=0, focal=None):
    cams = cameras.sample_views(1, radius=2.0, seed=seed, focal=focal)
    return {k: cams[k][0] for k in cameras.CAMERA_KEYS}


def test_sphere_depth_matches_closed_form():
    centre, radius = np.array([0.05, -0.02, 0.03]), 0.3
    shape = Shape([Sphere(radius, None, centre)])
    cam = _camera(1, focal=3.0)
    h = w = 48
    view = shape_render.render_view(shape, cam, h, w)
    o, d = pixel_rays(cam, h, w)
    # Closed form: |o + t d - c|^2 = r^2, the smaller root.
    oc = o - centre
    a, b, c = (d * d).sum(1), (oc * d).sum(1), (oc * oc).sum(1) - radius**2
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    mask = view["mask"].reshape(-1)
    clear = np.abs(disc) > 1e-6  # Away from exactly tangent rays.
    np.testing.assert_array_equal(mask[clear], (disc >= 0)[clear])
    assert 0.1 < mask.mean() < 0.9
    depth = view["depth"].reshape(-1)
    assert view["depth"].dtype == np.float32
    np.testing.assert_allclose(depth[mask], t[mask], atol=1e-4)
    assert np.all(np.isinf(depth[~mask]))
    # Depth is camera depth: the hit point projects to its own pixel at that depth.
    p = o[mask] + t[mask, None] * d[mask]
    pix, cam_depth = cameras.project_to_image(p, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    np.testing.assert_allclose(cam_depth, depth[mask], atol=1e-4)
    np.testing.assert_allclose(pix, cameras.pixel_grid(h, w).reshape(-1, 2)[mask], atol=1e-9)
    # Analytic normals; white background.
    n = view["normals"].reshape(-1, 3)[mask]
    np.testing.assert_allclose(n, (p - centre) / radius, atol=1e-5)
    assert np.all(view["image"].reshape(-1, 3)[~mask] == 255)


def test_csg_surface_is_exact_and_mask_is_the_hit_set():
    shape = csg_shape()
    cam = _camera(2, focal=2.6)
    h = w = 64
    view = shape_render.render_view(shape, cam, h, w)
    o, d = pixel_rays(cam, h, w)
    mask = view["mask"].reshape(-1)
    depth = view["depth"].reshape(-1).astype(np.float64)
    depth64, prim, _ = shape_render.trace(shape, o, d)
    np.testing.assert_array_equal(np.isfinite(depth64), mask)
    # Hits on every kind of face, cut faces included.
    assert {0, 1, 2, 3, 4, 5, 6} <= set(prim[mask].tolist())
    # The surface at the rendered (float32) depth: contains flips within +-1e-4 along the ray.
    u = d / np.linalg.norm(d, axis=1, keepdims=True)
    p = o[mask] + depth[mask, None] * d[mask]
    assert not shape.contains(p - 1e-4 * u[mask]).any()
    assert shape.contains(p + 1e-4 * u[mask]).all()
    # Brute force: every ray with an occupied sample is in the mask, and its first
    # occupied sample is not before the rendered depth.
    near, far, box_hit = cameras.intersect_box(o, d, padding=0.0)
    steps = np.linspace(0.0, 1.0, 600)
    ts = near[:, None] + steps[None, :] * (far - near)[:, None]
    pts = o[:, None, :] + ts[:, :, None] * d[:, None, :]
    occ = shape.contains(pts.reshape(-1, 3)).reshape(ts.shape) & box_hit[:, None]
    brute_hit = occ.any(axis=1)
    assert brute_hit.sum() > 200
    assert np.all(mask[brute_hit])
    first = ts[np.arange(ts.shape[0]), np.argmax(occ, axis=1)]
    assert np.all(first[brute_hit] >= depth64[brute_hit] - 1e-9)
    assert np.all(first[brute_hit] - depth64[brute_hit] <= (far - near)[brute_hit] / 599 + 1e-9)
    # Thin parts are never missed (the 0.024-thick rod): the renderer finds rays that
    # brute force at this step misses, never the other way round.
    assert mask.sum() >= brute_hit.sum()


def test_torus_hole_and_outer_depth():
    shape = Shape([Torus(0.3, 0.05)])  # Axis z: seen along z it is a ring.
    cam = cameras.look_at_camera((0.0, 0.0, -2.0), focal=2.0)
    o = np.array([[0.0, 0.0, -2.0]] * 3)
    d = np.array([[0.0, 0.0, 1.0], [0.3, 0.0, 2.0], [0.0, 0.28, 2.0]])
    depth, prim, normals = shape_render.trace(shape, o, d)
    assert np.isinf(depth[0]) and prim[0] == -1  # Through the hole.
    # Ray (0.3t, 0, 2t - 2) passes through the tube's core circle at t = 1: it enters
    # the tube 0.05 before, along its own direction, where the normal faces it.
    np.testing.assert_allclose(depth[1], 1.0 - 0.05 / np.sqrt(4.09), atol=1e-10)
    np.testing.assert_allclose(normals[1], -d[1] / np.sqrt(4.09), atol=1e-8)
    # Ray (0, 0.28t, 2t - 2): (0.28 t - 0.3)^2 + (2t - 2)^2 = 0.05^2, smaller root.
    roots = np.roots([0.28**2 + 4.0, -2 * 0.28 * 0.3 - 8.0, 0.09 + 4.0 - 0.0025])
    assert np.all(np.isreal(roots))
    np.testing.assert_allclose(depth[2], roots.real.min(), atol=1e-10)
    view = shape_render.render_view(shape, cam, 33, 33)
    assert not view["mask"][16, 16] and view["mask"].any()


def test_surface_color_matches_rendered_pixels():
    shape = csg_shape()
    app = shape_render.Appearance.random(len(shape.primitives), seed=5, texture="stripes")
    cam = _camera(3, focal=2.4)
    view = shape_render.render_view(shape, cam, 40, 40, app)
    o, d = pixel_rays(cam, 40, 40)
    depth, prim, normals = shape_render.trace(shape, o, d)
    hit = prim >= 0
    p = o[hit] + depth[hit, None] * d[hit]
    rendered = view["image"].reshape(-1, 3)[hit].astype(np.float64) / 255.0
    col, owner = shape_render.surface_color(shape, app, p, normals[hit])
    assert np.abs(col - rendered).max() <= 0.5 / 255 + 1e-9
    col2, owner2 = shape_render.surface_color(shape, app, p)  # Owner and normal found alone.
    assert np.mean(owner2 == prim[hit]) > 0.97
    assert np.mean(np.abs(col2 - rendered).max(axis=1) <= 0.5 / 255 + 1e-9) > 0.97
    # Appearance survives its JSON form; colours vary between primitives.
    app2 = shape_render.Appearance.from_dict(json.loads(json.dumps(app.to_dict())))
    np.testing.assert_allclose(
        app2.color(p, normals[hit], prim[hit]), app.color(p, normals[hit], prim[hit]), atol=1e-12
    )
    assert np.unique(view["image"].reshape(-1, 3)[hit], axis=0).shape[0] > 20


def test_fit_focal_frames_the_shape_and_render_views_stacks_the_views():
    shape = csg_shape()
    focal = shape_render.fit_focal(shape, 2.0)
    points, _ = shape.sample_surface(4096, np.random.default_rng(0))  # The samples fit_focal uses.
    extent = np.sqrt((points * points).sum(axis=1)).max()
    assert focal == cameras.focal_for_radius(extent, 2.0)
    cams = cameras.sample_views(3, radius=2.0, seed=4, focal=focal)
    views = shape_render.render_views(shape, cams, 24, 20)
    assert views["image"].shape == (3, 24, 20, 3) and views["normals"].shape == (3, 24, 20, 3)
    for i in range(3):
        one = shape_render.render_view(shape, cameras.camera_at(cams, i), 24, 20)
        for k in one:
            np.testing.assert_array_equal(views[k][i], one[k])
        # The padded bounding sphere fits the image: the shape never touches the border.
        m = one["mask"]
        assert m.any() and not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
