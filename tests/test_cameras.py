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


# --------------------------------------------------------------------------------------
# Texture Fields' cameras (from_texture_fields).
# --------------------------------------------------------------------------------------

# Views 0, 1 and 3 of Texture Fields' demo (demo/cc067578ad92517bbe25370c898e25a5/visualize/
# depth/cameras.npz of the original repository, MIT licensed): its 3 x 4 camera_mat_i and
# world_mat_i, as stored.
_TF_CAMERA_MAT = [[149.84375, 0.0, -68.5, 0.0], [0.0, 149.84375, -68.5, 0.0], [0.0, 0.0, -68.5, 0.0]]
_TF_WORLD_MATS = [
    [
        [-1.0, 0.0, 0.0, 0.0],
        [0.0, 0.851658284664154, 0.5240974426269531, 0.0],
        [0.0, 0.5240973830223083, -0.8516583442687988, -1.5264337062835693],
    ],
    [
        [0.0, 0.0, -1.0, 0.0],
        [-0.5734624266624451, 0.8192320466041565, 0.0, 0.0],
        [0.8192319273948669, 0.5734623670578003, 0.0, -1.2206555604934692],
    ],
    [[0.0, 0.0, 1.0, 0.0], [0.0, 1.0000001192092896, 0.0, 0.0], [-1.0, 0.0, 0.0, -1.2000000476837158]],
]


def _tf_depth_map_to_3d(depth, cam_K, cam_W):
    """A literal numpy port of Texture Fields' ``depth_map_to_3d``
    (mesh2tex/texnet/models/__init__.py), line by line, float64.

    Args: depth B x 1 x N x M, cam_K B x 3 x 4, cam_W B x 3 x 4. Returns loc3d B x 3 x N x M
    (indexed [col, row] for a square map: the original transposes) and mask B x 1 x N x M.
    """
    assert depth.shape[1] == 1
    batch_size, _, N, M = depth.shape
    # Turn depth around. This also avoids problems with inplace operations
    depth = -depth.transpose(0, 1, 3, 2)
    zero_one_row = np.array([[0.0, 0.0, 0.0, 1.0]])
    zero_one_row = np.broadcast_to(zero_one_row, (batch_size, 1, 4))
    # add row to world mat
    cam_W = np.concatenate((cam_W, zero_one_row), axis=1)
    # clean depth image for mask
    mask = (np.abs(depth) != float("Inf")).astype(np.float64)
    depth[depth == float("Inf")] = 0
    depth[depth == -1 * float("Inf")] = 0
    # 4d array to 2d array k=N*M
    d = depth.reshape(batch_size, 1, N * M)
    # create pixel location tensor
    px, py = np.meshgrid(np.arange(0, N), np.arange(0, M), indexing="ij")  # torch.meshgrid: "ij".
    p = np.concatenate(
        (
            np.broadcast_to(px, (batch_size, 1, px.shape[0], px.shape[1])),
            np.broadcast_to(M - py, (batch_size, 1, py.shape[0], py.shape[1])),
        ),
        axis=1,
    )
    p = p.reshape(batch_size, 2, py.shape[0] * py.shape[1])
    p = p.astype(np.float64) / M * 2
    # create terms of mapping equation x = P^-1 * d*(qp - b)
    P = cam_K[:, :2, :2]
    q = cam_K[:, 2:3, 2:3]
    b = np.broadcast_to(cam_K[:, :2, 2:3], (batch_size, 2, d.shape[2]))
    Inv_P = np.linalg.inv(P)
    rightside = (p * q - b) * d
    x_xy = np.matmul(Inv_P, rightside)
    # add depth and ones to location in world coord system
    x_world = np.concatenate((x_xy, d, np.ones_like(d)), axis=1)
    # derive loactoion in object coord via loc3d = W^-1 * x_world
    Inv_W = np.linalg.inv(cam_W)
    loc3d = np.matmul(np.broadcast_to(Inv_W, (batch_size, 4, 4)), x_world).reshape(batch_size, 4, N, M)
    loc3d = loc3d[:, :3]
    return loc3d, mask


def _tf_depths(size, seed):
    """Random depth maps of the demo's range (1.3 to 1.7) with inf pixels, (3, size, size)."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1.3, 1.7, (3, size, size))
    depth[rng.random(depth.shape) < 0.3] = np.inf
    return depth


@pytest.mark.parametrize("size", [8, 13, 256])
def test_from_texture_fields_matches_depth_map_to_3d(size):
    k = np.array(_TF_CAMERA_MAT)
    depth = _tf_depths(size, seed=size)
    loc3d, mask = _tf_depth_map_to_3d(depth[:, None], np.stack([k] * 3), np.array(_TF_WORLD_MATS))
    for v in range(3):
        cam = cameras.from_texture_fields(k, _TF_WORLD_MATS[v], size)
        assert cam["camera_mat"].shape == cam["world_mat"].shape == (4, 4)
        points, ours_mask = cameras.depth_to_points(depth[v], cam["world_mat"], cam["camera_mat"])
        expected = loc3d[v].transpose(2, 1, 0)  # [col, row, xyz] -> [row, col, xyz].
        np.testing.assert_array_equal(ours_mask, mask[v, 0].T.astype(bool))
        # Everywhere, the background too (both put those points at the camera centre).
        np.testing.assert_allclose(points, expected, rtol=0, atol=1e-12)
    # Stacks of cameras give the same matrices as one at a time.
    stack = cameras.from_texture_fields(np.stack([k] * 3), np.array(_TF_WORLD_MATS), size)
    points, _ = cameras.depth_to_points(depth, stack["world_mat"], stack["camera_mat"])
    np.testing.assert_allclose(points, loc3d.transpose(0, 3, 2, 1), rtol=0, atol=1e-12)
    assert stack["camera_mat"].shape == stack["world_mat"].shape == stack["scale_mat"].shape == (3, 4, 4)


@pytest.mark.parametrize("size", [8, 13])
def test_from_texture_fields_points_project_to_their_pixels(size):
    depth = _tf_depths(size, seed=1)
    cam = cameras.from_texture_fields(np.stack([_TF_CAMERA_MAT] * 3), np.array(_TF_WORLD_MATS), size)
    # An intrinsic matrix with positive focal lengths and a rigid, right-handed world_mat.
    assert np.all(cam["camera_mat"][:, [0, 1], [0, 1]] > 0)
    rot = cam["world_mat"][:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-6)
    assert np.all(np.linalg.det(rot) > 0)
    for v in range(3):
        c, w = cam["camera_mat"][v], cam["world_mat"][v]
        points, mask = cameras.depth_to_points(depth[v], w, c)
        pixels, d = cameras.project_to_image(points[mask], c, w, np.eye(4))
        np.testing.assert_allclose(pixels, cameras.pixel_grid(size, size)[mask], rtol=0, atol=1e-12)
        np.testing.assert_allclose(d, depth[v][mask], rtol=0, atol=1e-12)  # Positive: in front.
        # The principal point (the image centre in Texture Fields' pixels, (M / 2, M / 2))
        # is straight ahead: the point at depth 1 on the optical axis.
        axis = np.linalg.inv(w) @ np.array([0.0, 0.0, 1.0, 1.0])
        pixel, _ = cameras.project_to_image(axis[None, :3], c, w, np.eye(4))
        np.testing.assert_allclose(pixel[0], [1.0 / (size - 1)] * 2, atol=1e-12)


@pytest.mark.parametrize(
    "camera_mat, world_mat, size, problem",
    [
        (_TF_CAMERA_MAT, _TF_WORLD_MATS[0], 1, "size must be an int >= 2"),
        (_TF_CAMERA_MAT, _TF_WORLD_MATS[0], 8.0, "size must be an int >= 2"),
        (_TF_CAMERA_MAT, _TF_WORLD_MATS[0], True, "size must be an int >= 2"),
        (np.eye(3), _TF_WORLD_MATS[0], 8, "camera_mat must be (..., 3, 4) or (..., 4, 4)"),
        (_TF_CAMERA_MAT, np.eye(3), 8, "world_mat must be (..., 3, 4) or (..., 4, 4)"),
        (np.zeros((3, 4)), _TF_WORLD_MATS[0], 8, "K[2, 2] == 0 or a singular K[:2, :2]"),
        (np.diag([1.0, 0.0, 1.0, 0.0])[:3], _TF_WORLD_MATS[0], 8, "singular K[:2, :2]"),
        (np.full((3, 4), np.nan), _TF_WORLD_MATS[0], 8, "camera_mat has non-finite values"),
        (_TF_CAMERA_MAT, np.full((4, 4), 2.0), 8, "world_mat must be affine"),
    ],
)
def test_from_texture_fields_errors(camera_mat, world_mat, size, problem):
    with pytest.raises(ValueError) as err:
        cameras.from_texture_fields(camera_mat, world_mat, size)
    assert problem in str(err.value)


@pytest.mark.parametrize("shape", [(5, 7), (2, 6, 4)])
def test_depth_to_points_projects_back_to_its_pixels(shape):
    """Lifted depth pixels project to their own pixels at their own depth; no-surface pixels are masked."""
    rng = np.random.default_rng(len(shape))
    views = shape[0] if len(shape) == 3 else 1
    cams = cameras.sample_views(views, radius=2.5, seed=3, focal=1.8)
    world, camera = cams["world_mat"], cams["camera_mat"]
    if len(shape) == 2:
        world, camera = world[0][:3], camera[0]  # A 3 x 4 world matrix is padded as the original's.
    depth = rng.uniform(1.0, 3.0, size=shape)
    depth.reshape(-1)[rng.choice(depth.size, 5, replace=False)] = [np.inf, -np.inf, np.nan, 0.0, -1.0]
    points, mask = cameras.depth_to_points(depth, world, camera)
    np.testing.assert_array_equal(mask, np.isfinite(depth) & (depth > 0))
    assert points.shape == shape + (3,) and np.isfinite(points).all()
    w4 = np.broadcast_to(np.vstack([np.asarray(world).reshape(-1, 4)[-3:], [0, 0, 0, 1]]), (4, 4))
    flat_w = cams["world_mat"] if len(shape) == 3 else w4[None]
    flat_c = cams["camera_mat"] if len(shape) == 3 else np.asarray(camera)[None]
    pts = points.reshape(views, -1, 3)
    pixels, d = cameras.project_to_image(pts, flat_c, flat_w, np.eye(4))
    grid = np.broadcast_to(cameras.pixel_grid(*shape[-2:]).reshape(-1, 2), pixels.shape)
    m = mask.reshape(views, -1)
    np.testing.assert_allclose(pixels[m], grid[m], atol=1e-9)
    np.testing.assert_allclose(d[m], depth.reshape(views, -1)[m], rtol=1e-12)
    # The jitted JAX path agrees with numpy (float32).
    pj, mj = jax.jit(cameras.depth_to_points)(
        jnp.asarray(depth, jnp.float32), jnp.asarray(world, jnp.float32), jnp.asarray(camera, jnp.float32)
    )
    np.testing.assert_array_equal(np.asarray(mj), mask)
    np.testing.assert_allclose(np.asarray(pj)[mask], points[mask], atol=1e-5)
