"""Tests of the DVR camera convention: pixels, projection, rays, box intersection, framing.

(The cameras.npz reader and writer are tested in tests/data/test_onet_format.py.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import cameras


def _similarity(scale, translation, axis=(1.0, 2.0, -0.5), angle=0.7):
    """A scale_mat like DTU's: object (unit cube) -> world, a rotation, scale and shift."""
    from implicit_fields.data.shapes import rotation_matrix

    s = np.eye(4)
    s[:3, :3] = scale * rotation_matrix(axis, angle)
    s[:3, 3] = translation
    return s


def _dtu_like_camera(scale_mat):
    """A camera whose world_mat is a full projection (not rigid), as in DVR's DTU files,
    and whose camera_mat maps [0, W] x [0, H] pixels to [-1, 1]."""
    cam = cameras.look_at_camera((0.3, 0.5, -2.2), (0.05, 0.0, 0.1), focal=1.0)
    world_center = scale_mat[:3, :3] @ np.array([0.3, 0.5, -2.2]) + scale_mat[:3, 3]
    target = scale_mat[:3, :3] @ np.array([0.05, 0.0, 0.1]) + scale_mat[:3, 3]
    rt = cameras.look_at_camera(world_center, target)["world_mat"]
    w, h, f = 1600.0, 1200.0, 2800.0
    k = np.array([[f, 0.0, 810.0, 0.0], [0.0, f, 590.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0, 0, 0, 1.0]])
    to_unit = np.array([[2.0 / w, 0, 0, -1.0], [0, 2.0 / h, 0, -1.0], [0, 0, 1, 0], [0, 0, 0, 1]])
    cam["world_mat"] = k @ rt
    cam["camera_mat"] = to_unit
    cam["scale_mat"] = scale_mat
    return cam


def _cams():
    out = [cameras.look_at_camera((0.4, 0.9, -1.8), focal=1.7)]
    out.append(_dtu_like_camera(_similarity(350.0, (20.0, -40.0, 600.0))))
    return out


def test_pixel_grid_convention():
    g = cameras.pixel_grid(3, 5)
    assert g.shape == (3, 5, 2)
    np.testing.assert_allclose(g[0, 0], [-1.0, -1.0])  # image[0, 0] (top-left)
    np.testing.assert_allclose(g[0, -1], [1.0, -1.0])  # x runs along columns
    np.testing.assert_allclose(g[-1, 0], [-1.0, 1.0])  # y runs along rows
    np.testing.assert_allclose(g[1, 2], [0.0, 0.0])
    flat = g.reshape(-1, 2)
    rows, cols = cameras.pixel_to_index(flat, 3, 5)
    np.testing.assert_array_equal(rows * 5 + cols, np.arange(15))  # row-major order


@pytest.mark.parametrize("which", [0, 1])
def test_project_then_unproject_round_trips(which):
    cam = _cams()[which]
    rng = np.random.default_rng(which)
    pts = rng.uniform(-0.5, 0.5, (200, 3))
    pix, depth = cameras.project_to_image(pts, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    assert np.all(depth > 0)
    back = cameras.image_points_to_world(
        pix, cam["camera_mat"], cam["world_mat"], cam["scale_mat"], depth=depth
    )
    np.testing.assert_allclose(back, pts, atol=1e-9)


@pytest.mark.parametrize("which", [0, 1])
def test_rays_are_parametrised_by_camera_depth(which):
    cam = _cams()[which]
    rng = np.random.default_rng(10 + which)
    pts = rng.uniform(-0.5, 0.5, (100, 3))
    pix, depth = cameras.project_to_image(pts, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    o, d = cameras.pixels_to_rays(pix, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    # The pixel's ray at parameter = the point's camera depth is the point itself.
    np.testing.assert_allclose(o + depth[:, None] * d, pts, atol=1e-9)
    # And any point of the ray projects to the same pixel with camera depth = parameter.
    t = rng.uniform(0.5, 4.0, 100)
    pix2, depth2 = cameras.project_to_image(
        o + t[:, None] * d, cam["camera_mat"], cam["world_mat"], cam["scale_mat"]
    )
    np.testing.assert_allclose(pix2, pix, atol=1e-9)
    np.testing.assert_allclose(depth2, t, rtol=1e-9)
    # Origins are the camera centre, of camera depth 0.
    centre = cameras.origin_to_world(cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    np.testing.assert_allclose(o, np.broadcast_to(centre, o.shape), atol=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):  # Its pixel is undefined.
        _, d0 = cameras.project_to_image(centre[None], cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    assert abs(d0[0]) < 1e-9


def test_scale_mat_is_honoured():
    scale = _similarity(2.5, (1.0, -3.0, 0.5))
    world_cam = cameras.look_at_camera((4.0, 2.0, -6.0), (1.0, -3.0, 0.5), focal=1.5)
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3))
    world_pts = pts @ scale[:3, :3].T + scale[:3, 3]
    pix_obj, d_obj = cameras.project_to_image(pts, world_cam["camera_mat"], world_cam["world_mat"], scale)
    pix_w, d_w = cameras.project_to_image(
        world_pts, world_cam["camera_mat"], world_cam["world_mat"], np.eye(4)
    )
    np.testing.assert_allclose(pix_obj, pix_w, atol=1e-12)
    np.testing.assert_allclose(d_obj, d_w, atol=1e-12)
    # Rays come out in object space: mapped by scale_mat they are the world rays.
    o, d = cameras.pixels_to_rays(pix_obj, world_cam["camera_mat"], world_cam["world_mat"], scale)
    ow, dw = cameras.pixels_to_rays(pix_w, world_cam["camera_mat"], world_cam["world_mat"], np.eye(4))
    np.testing.assert_allclose(o @ scale[:3, :3].T + scale[:3, 3], ow, atol=1e-9)
    np.testing.assert_allclose(d @ scale[:3, :3].T, dw, atol=1e-9)
    np.testing.assert_allclose(o + d_obj[:, None] * d, pts, atol=1e-9)
    # The camera centre in object space is the world centre pulled back.
    centre = cameras.origin_to_world(world_cam["camera_mat"], world_cam["world_mat"], scale)
    np.testing.assert_allclose(scale[:3, :3] @ centre + scale[:3, 3], [4.0, 2.0, -6.0], atol=1e-9)


def test_look_at_camera_frame():
    cam = cameras.look_at_camera((0.0, 0.0, -2.0), focal=2.0)  # Looking at the front (+z).
    args = (cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    r = cam["world_mat"][:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) > 0
    pix, depth = cameras.project_to_image(
        np.array([[0.0, 0.0, 0.0], [0.0, 0.4, 0.0], [0.4, 0.0, 0.0]]), *args
    )
    np.testing.assert_allclose(pix[0], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(depth[0], 2.0)
    assert pix[1, 1] < 0  # World up is up in the image (smaller rows).
    assert pix[2, 0] < 0  # Looking along +z (right-handed, y up), +x is on the left.
    np.testing.assert_allclose(pix[1, 1], -2.0 * 0.4 / 2.0)  # focal in [-1, 1] units
    np.testing.assert_allclose(cameras.origin_to_world(*args), [0.0, 0.0, -2.0], atol=1e-12)
    # Looking straight down still gives a valid frame.
    top = cameras.look_at_camera((0.0, 3.0, 0.0))
    assert np.all(np.isfinite(top["world_mat"]))
    np.testing.assert_allclose(abs(np.linalg.det(top["world_mat"][:3, :3])), 1.0)


def test_sample_views_deterministic_and_framing():
    a = cameras.sample_views(8, radius=2.0, seed=3)
    b = cameras.sample_views(8, radius=2.0, seed=3)
    c = cameras.sample_views(8, radius=2.0, seed=4)
    for k in cameras.CAMERA_KEYS:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.allclose(a["world_mat"], c["world_mat"])
    np.testing.assert_allclose(np.linalg.norm(a["eye"], axis=1), 2.0)
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    for i in range(8):
        pix, depth = cameras.project_to_image(
            corners, a["camera_mat"][i], a["world_mat"][i], a["scale_mat"][i]
        )
        assert np.all(depth > 0) and np.all(np.abs(pix) <= 1.0 + 1e-9)  # The unit cube fits.
        assert np.abs(pix).max() > 0.6  # ... and is not tiny.


def _brute_box(o, d, padding, n=10001, t_max=10.0):
    t = np.linspace(0.0, t_max, n)
    half = 0.5 * (1 + padding)
    p = o[:, None, :] + t[None, :, None] * d[:, None, :]
    inside = np.all(np.abs(p) <= half, axis=2)
    hit = inside.any(axis=1)
    first = np.where(hit, t[np.argmax(inside, axis=1)], 0.0)
    last = np.where(hit, t[n - 1 - np.argmax(inside[:, ::-1], axis=1)], 0.0)
    return first, last, hit, t[1] - t[0]


def test_intersect_box_against_brute_force():
    rng = np.random.default_rng(0)
    n = 200
    o = rng.uniform(-2.0, 2.0, (n, 3))
    d = rng.normal(size=(n, 3))
    d[:40, 0] = 0.0  # Parallel to the x slabs.
    d[20:60, 1] = 0.0
    d[60:70] = [0.0, 0.0, 1.0]
    o[70:90] = rng.uniform(-0.4, 0.4, (20, 3))  # Starting inside the box.
    d[90:150] = rng.uniform(-0.5, 0.5, (60, 3)) - o[90:150]  # Aimed at the box.
    d *= (rng.uniform(0.5, 2.0, n) / np.linalg.norm(d, axis=1))[:, None]  # Any length.
    near, far, hit = cameras.intersect_box(o, d, padding=0.1)
    assert np.all(np.isfinite(near)) and np.all(np.isfinite(far))
    bn, bf, bhit, step = _brute_box(o, d, 0.1)
    np.testing.assert_array_equal(hit, bhit)
    assert 80 < hit.sum() < n and hit[70:90].all() and np.all(near[70:90] == 0.0)
    assert np.all(np.abs(near - bn)[hit] <= step + 1e-9)
    assert np.all(np.abs(far - bf)[hit] <= step + 1e-9)
    assert np.all(near[~hit] == 0) and np.all(far[~hit] == 0)
    # Entry and exit points lie on the padded cube's boundary.
    entry = hit & (near > 0)
    for sel, t in ((entry, near), (hit, far)):
        p = o[sel] + t[sel, None] * d[sel]
        np.testing.assert_allclose(np.abs(p).max(axis=1), 0.55, atol=1e-9)
    # Padding 0 is the unit cube.
    _, far0, hit0 = cameras.intersect_box(
        np.array([[0.0, 0.0, -2.0]]), np.array([[0.0, 0.0, 1.0]]), padding=0.0
    )
    assert hit0[0] and abs(far0[0] - 2.5) < 1e-12


def test_jax_versions_match_and_jit():
    cam = _cams()[0]
    pix = cameras.pixel_grid(6, 7).reshape(-1, 2)
    o_np, d_np = cameras.pixels_to_rays(pix, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    f = jax.jit(cameras.pixels_to_rays)
    o_j, d_j = f(
        jnp.asarray(pix, jnp.float32), *(jnp.asarray(cam[k], jnp.float32) for k in cameras.CAMERA_KEYS)
    )
    assert isinstance(o_j, jax.Array)
    np.testing.assert_allclose(np.asarray(o_j), o_np, atol=1e-5)
    np.testing.assert_allclose(np.asarray(d_j), d_np, atol=1e-5)
    near, far, hit = jax.jit(cameras.intersect_box)(o_j, d_j)
    n_np, f_np, h_np = cameras.intersect_box(o_np, d_np)
    np.testing.assert_array_equal(np.asarray(hit), h_np)
    np.testing.assert_allclose(np.asarray(near), n_np, atol=1e-4)
    np.testing.assert_allclose(np.asarray(far), f_np, atol=1e-4)
    # Zero direction components: finite values and finite gradients.
    o0 = jnp.array([[0.0, 0.0, -2.0], [3.0, 0.0, 0.0]])
    d0 = jnp.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    grad = jax.grad(lambda o: jnp.sum(cameras.intersect_box(o, d0)[0]))(o0)
    assert np.all(np.isfinite(np.asarray(grad)))
    # Batched cameras (one per row) with per-row pixels.
    mats = [jnp.stack([jnp.asarray(cam[k], jnp.float32)] * 2) for k in cameras.CAMERA_KEYS]
    pts = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 5, 3)), jnp.float32)
    pj, dj = jax.jit(cameras.project_to_image)(pts, *mats)
    back = jax.jit(cameras.image_points_to_world)(pj, *mats, dj)
    np.testing.assert_allclose(np.asarray(back), np.asarray(pts), atol=1e-5)


def test_camera_at_picks_one_view():
    cams = cameras.sample_views(3, seed=2)
    one = cameras.camera_at(cams, 1)
    assert sorted(one) == sorted(cameras.CAMERA_KEYS)  # The 'eye' of sample_views is left out.
    for k in cameras.CAMERA_KEYS:
        assert one[k].shape == (4, 4) and one[k].dtype == np.float64
        np.testing.assert_array_equal(one[k], cams[k][1])
    # A (4, 4) matrix is shared by every view; a missing one is the identity.
    mixed = cameras.camera_at({"camera_mat": cams["camera_mat"][0], "world_mat": cams["world_mat"]}, 2)
    np.testing.assert_array_equal(mixed["camera_mat"], cams["camera_mat"][0])
    np.testing.assert_array_equal(mixed["world_mat"], cams["world_mat"][2])
    np.testing.assert_array_equal(mixed["scale_mat"], np.eye(4))


def test_focal_for_radius_fits_the_padded_sphere():
    # The sphere of radius 1.03 * extent seen from distance 2: its silhouette's half-angle
    # asin(r / 2) lands exactly on the image edge, f * tan(angle) = 1.
    r = 1.03 * 0.4
    assert cameras.focal_for_radius(0.4, 2.0) == pytest.approx(1.0 / np.tan(np.arcsin(r / 2.0)), rel=1e-12)
    cam = cameras.look_at_camera((0.0, 0.0, -2.0), focal=cameras.focal_for_radius(0.4, 2.0))
    edge = np.array([[r * np.cos(np.arcsin(r / 2.0)), 0.0, -r * r / 2.0]])  # A silhouette point.
    pix, _ = cameras.project_to_image(edge, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    np.testing.assert_allclose(np.abs(pix[0, 0]), 1.0, atol=1e-12)
    # At most the unit cube's bounding sphere (default_focal); the camera must be outside.
    assert cameras.focal_for_radius(5.0, 2.0) == pytest.approx(cameras.default_focal(2.0), rel=1e-12)
    with pytest.raises(ValueError, match="must exceed the shape's radius"):
        cameras.focal_for_radius(0.4, 0.3)
