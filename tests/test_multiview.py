"""Tests of the exact multi-view renderer, the DVR on-disk layout and ray sampling."""

import json
import os

import numpy as np
import pytest

from implicit_fields import cameras, vis
from implicit_fields.data import builtin, multiview
from implicit_fields.data.onet_format import DataFormatError
from implicit_fields.shapes import Box, Capsule, Cylinder, Shape, Sphere, Torus, rotation_matrix


def _camera(seed=0, focal=None):
    cams = cameras.sample_views(1, radius=2.0, seed=seed, focal=focal)
    return {k: cams[k][0] for k in cameras.CAMERA_KEYS}


def _rays(cam, h, w):
    pix = cameras.pixel_grid(h, w).reshape(-1, 2)
    return cameras.pixels_to_rays(pix, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])


def _csg_shape():
    """Every primitive kind, rotated, with a box and a torus cut away."""
    rot = rotation_matrix((1.0, 1.0, 0.3), 0.6)
    return Shape(
        [
            Box((0.3, 0.08, 0.25), rot, (0.0, -0.1, 0.0)),
            Cylinder(0.012, 0.2, rotation_matrix((1.0, 0.0, 0.0), np.pi / 2), (0.2, -0.3, 0.1)),
            Capsule(0.05, 0.15, rotation_matrix((0.0, 1.0, 0.0), 1.0), (-0.2, 0.25, 0.0)),
            Sphere(0.12, None, (0.25, 0.25, -0.1)),
            Torus(0.16, 0.035, rotation_matrix((1.0, 0.0, 0.0), 0.5), (0.0, 0.1, 0.3)),
        ],
        [
            Box((0.1, 0.3, 0.1), rot, (0.05, -0.1, 0.0)),
            Torus(0.12, 0.05, None, (0.25, 0.25, -0.1)),
        ],
    )


def test_sphere_depth_matches_closed_form():
    centre, radius = np.array([0.05, -0.02, 0.03]), 0.3
    shape = Shape([Sphere(radius, None, centre)])
    cam = _camera(1, focal=3.0)
    h = w = 48
    view = multiview.render_view(shape, cam, h, w)
    o, d = _rays(cam, h, w)
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
    shape = _csg_shape()
    cam = _camera(2, focal=2.6)
    h = w = 64
    view = multiview.render_view(shape, cam, h, w)
    o, d = _rays(cam, h, w)
    mask = view["mask"].reshape(-1)
    depth = view["depth"].reshape(-1).astype(np.float64)
    depth64, prim, _ = multiview.trace(shape, o, d)
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
    depth, prim, normals = multiview.trace(shape, o, d)
    assert np.isinf(depth[0]) and prim[0] == -1  # Through the hole.
    # Ray (0.3t, 0, 2t - 2) passes through the tube's core circle at t = 1: it enters
    # the tube 0.05 before, along its own direction, where the normal faces it.
    np.testing.assert_allclose(depth[1], 1.0 - 0.05 / np.sqrt(4.09), atol=1e-10)
    np.testing.assert_allclose(normals[1], -d[1] / np.sqrt(4.09), atol=1e-8)
    # Ray (0, 0.28t, 2t - 2): (0.28 t - 0.3)^2 + (2t - 2)^2 = 0.05^2, smaller root.
    roots = np.roots([0.28**2 + 4.0, -2 * 0.28 * 0.3 - 8.0, 0.09 + 4.0 - 0.0025])
    assert np.all(np.isreal(roots))
    np.testing.assert_allclose(depth[2], roots.real.min(), atol=1e-10)
    view = multiview.render_view(shape, cam, 33, 33)
    assert not view["mask"][16, 16] and view["mask"].any()


def test_surface_color_matches_rendered_pixels():
    shape = _csg_shape()
    app = multiview.Appearance.random(len(shape.primitives), seed=5, texture="stripes")
    cam = _camera(3, focal=2.4)
    view = multiview.render_view(shape, cam, 40, 40, app)
    o, d = _rays(cam, 40, 40)
    depth, prim, normals = multiview.trace(shape, o, d)
    hit = prim >= 0
    p = o[hit] + depth[hit, None] * d[hit]
    rendered = view["image"].reshape(-1, 3)[hit].astype(np.float64) / 255.0
    col, owner = multiview.surface_color(shape, app, p, normals[hit])
    assert np.abs(col - rendered).max() <= 0.5 / 255 + 1e-9
    col2, owner2 = multiview.surface_color(shape, app, p)  # Owner and normal found alone.
    assert np.mean(owner2 == prim[hit]) > 0.97
    assert np.mean(np.abs(col2 - rendered).max(axis=1) <= 0.5 / 255 + 1e-9) > 0.97
    # Appearance survives its JSON form; colours vary between primitives.
    app2 = multiview.Appearance.from_dict(json.loads(json.dumps(app.to_dict())))
    np.testing.assert_allclose(
        app2.color(p, normals[hit], prim[hit]), app.color(p, normals[hit], prim[hit]), atol=1e-12
    )
    assert np.unique(view["image"].reshape(-1, 3)[hit], axis=0).shape[0] > 20


def test_write_and_load_round_trip_deterministic(tmp_path):
    shape = _csg_shape()
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    rec = multiview.write_multiview(shape, a, n_views=3, resolution=(24, 32), seed=7, progress=False)
    multiview.write_multiview(shape, b, n_views=3, resolution=(24, 32), seed=7, progress=False)
    multiview.write_multiview(shape, c, n_views=3, resolution=(24, 32), seed=8, progress=False)
    assert sorted(os.listdir(a)) == ["cameras.npz", "depth", "image", "mask", "multiview.json"]
    assert sorted(os.listdir(a / "image")) == ["0000.png", "0001.png", "0002.png"]
    assert sorted(os.listdir(a / "depth")) == ["0000.npy", "0001.npy", "0002.npy"]
    for sub in ("image", "mask", "depth"):
        for name in os.listdir(a / sub):
            assert (a / sub / name).read_bytes() == (b / sub / name).read_bytes()
    assert (a / "image" / "0001.png").read_bytes() != (c / "image" / "0001.png").read_bytes()
    assert vis.read_png(a / "mask" / "0000.png").ndim == 2  # Grey 0/255.
    data = multiview.load_multiview(a)
    assert data.images.shape == (3, 24, 32, 3) and data.images.dtype == np.float32
    assert data.masks.dtype == bool and data.depths.shape == (3, 24, 32)
    cams = cameras.load_cameras(a / "cameras.npz")
    app = multiview.Appearance.from_dict(rec["appearance"])
    for i in range(3):
        cam = {k: cams[k][i] for k in cameras.CAMERA_KEYS}
        view = multiview.render_view(shape, cam, 24, 32, app)
        np.testing.assert_array_equal(data.images[i], view["image"].astype(np.float32) / 255)
        np.testing.assert_array_equal(data.masks[i], view["mask"])
        np.testing.assert_array_equal(data.depths[i], view["depth"])
        np.testing.assert_array_equal(data.world_mat[i], cams["world_mat"][i])
        assert data.masks[i].mean() > 0.05 and rec["mask_fraction"][i] == data.masks[i].mean()


def test_rays_from_loaded_data_hit_the_surface(tmp_path):
    shape = _csg_shape()
    multiview.write_multiview(shape, tmp_path, n_views=4, resolution=32, seed=1, progress=False)
    data = multiview.load_multiview(tmp_path)
    rays = multiview.sample_rays(data, np.random.default_rng(0), 512)
    again = multiview.sample_rays(data, np.random.default_rng(0), 512)
    for k in rays:
        np.testing.assert_array_equal(rays[k], again[k])
    assert rays["origins"].shape == (512, 3) and rays["origins"].dtype == np.float32
    m = rays["mask"]
    assert 0 < m.sum() < 512
    assert np.all(np.isfinite(rays["depth"][m])) and np.all(np.isinf(rays["depth"][~m]))
    o, d = rays["origins"].astype(np.float64), rays["directions"].astype(np.float64)
    u = d / np.linalg.norm(d, axis=1, keepdims=True)
    p = o[m] + rays["depth"][m, None].astype(np.float64) * d[m]
    assert shape.contains(p + 2e-4 * u[m]).all() and not shape.contains(p - 2e-4 * u[m]).any()
    only = multiview.sample_rays(data, np.random.default_rng(1), 64, views=[2])
    assert np.all(only["view"] == 2)
    full = multiview.view_rays(data, 3)
    np.testing.assert_array_equal(full["rgb"].reshape(32, 32, 3), data.images[3])
    np.testing.assert_array_equal(full["mask"].reshape(32, 32), data.masks[3])
    o3, d3 = _rays(data.camera(3), 32, 32)
    np.testing.assert_allclose(full["directions"], d3, atol=1e-6)


def test_loader_errors_name_the_file(tmp_path):
    shape = Shape([Sphere(0.3)])
    with pytest.raises(DataFormatError, match="multi-view folder not found"):
        multiview.load_multiview(tmp_path / "nothing")
    multiview.write_multiview(shape, tmp_path, n_views=3, resolution=16, seed=0, progress=False)
    multiview.load_multiview(tmp_path)

    def fails(match, **kwargs):
        with pytest.raises(DataFormatError, match=match):
            multiview.load_multiview(tmp_path, **kwargs)

    os.rename(tmp_path / "mask" / "0002.png", tmp_path / "m.png")
    fails(r"mask: 2 mask files for 3 images")
    os.rename(tmp_path / "m.png", tmp_path / "mask" / "0002.png")
    np.save(tmp_path / "depth" / "0001.npy", np.zeros((16, 17), np.float32))
    fails(r"depth/0001.npy: depth map size 17x16 differs")
    multiview.load_multiview(tmp_path, with_depth=False)
    os.remove(tmp_path / "depth" / "0001.npy")
    (tmp_path / "depth" / "0001.exr").write_bytes(b"\x76\x2f\x31\x01")
    fails(r"depth/0001.exr: OpenEXR depth maps cannot be read")
    vis.write_png(tmp_path / "image" / "0001.png", np.zeros((20, 16, 3), np.uint8))
    fails(r"image/0001.png: image size 16x20 differs from 16x16", with_depth=False)
    (tmp_path / "image" / "0001.png").write_bytes(b"garbage")
    fails(r"image/0001.png: unreadable image", with_depth=False)
    shutil_rm = tmp_path / "mask"
    for f in os.listdir(shutil_rm):
        os.remove(shutil_rm / f)
    os.rmdir(shutil_rm)
    fails(r"mask: mask folder not found", with_depth=False)
    assert multiview.load_multiview(tmp_path, with_mask=False, with_depth=False, n_views=1).masks.all()
    cams = cameras.load_cameras(tmp_path / "cameras.npz", n=2)
    cameras.save_cameras(tmp_path / "cameras.npz", cams)
    fails(r"cameras.npz: 2 cameras for 3 images", with_mask=False, with_depth=False)


def test_original_layout_rgba_masks_depth_and_ignore_idx(tmp_path):
    """DVR-style folder: RGBA PNG images, 3-channel masks, ignore_image_idx, depth maps."""
    cams = cameras.sample_views(3, seed=0)
    os.makedirs(tmp_path / "image")
    os.makedirs(tmp_path / "mask")
    for i in range(3):
        rgba = np.full((8, 8, 4), 10 * i, np.uint8)
        vis.write_png(tmp_path / "image" / f"{i:03d}.png", rgba)
        m = np.zeros((8, 8, 3), np.uint8)
        m[2:5, 3:6, 0] = 255
        vis.write_png(tmp_path / "mask" / f"{i:03d}.png", m)
    cameras.save_cameras(tmp_path / "cameras.npz", cams)
    data = multiview.load_multiview(tmp_path, ignore_image_idx=[1])
    assert data.depths is None and data.num_views == 2
    os.makedirs(tmp_path / "depth")
    for i in range(3):  # A 0 / NaN background (other renderers) reads as unknown (inf).
        depth = np.zeros((8, 8), np.float32)
        depth[2:5, 3:6] = 1.5
        depth[0, 0] = np.nan
        np.save(tmp_path / "depth" / f"{i:03d}.npy", depth)
    with_depth = multiview.load_multiview(tmp_path)
    assert np.isfinite(with_depth.depths).sum() == 3 * 9
    np.testing.assert_array_equal(np.isfinite(with_depth.depths), with_depth.masks)
    os.rename(tmp_path / "depth", tmp_path / "depth_off")
    np.testing.assert_array_equal(data.view_ids, [0, 2])
    np.testing.assert_array_equal(data.world_mat[1], cams["world_mat"][2])
    np.testing.assert_allclose(data.images[1], 20 / 255)
    assert data.masks[0].sum() == 9
    rays = multiview.sample_rays(data, np.random.default_rng(0), 16)
    assert np.all(np.isinf(rays["depth"]))


def test_builtin_chair_views(tmp_path):
    builtin.generate_dataset(
        tmp_path, ["chair"], 1, seed=0, num_points=64, num_surface_points=64, num_workers=1, progress=False
    )
    folders = multiview.generate_multiview_dataset(tmp_path, n_views=2, resolution=32, seed=0, progress=False)
    assert len(folders) == 1
    data = multiview.load_multiview(folders[0])
    assert data.num_views == 2 and 0.05 < data.masks.mean() < 0.9
    # shape.json is in the normalised coordinates of points.npz: it fits the unit cube.
    shape = multiview.load_shape(folders[0])
    lo, hi = shape.bounds(num_samples=2000)
    assert np.all(lo >= -0.5 - 1e-6) and np.all(hi <= 0.5 + 1e-6)
    assert abs(np.max(hi - lo) - 1.0) < 1e-3
    # A second call skips the rendered object; other parameters need overwrite=True.
    stamp = os.path.getmtime(os.path.join(folders[0], multiview.INFO_FILE))
    multiview.generate_multiview_dataset(tmp_path, n_views=2, resolution=32, seed=0, progress=False)
    assert os.path.getmtime(os.path.join(folders[0], multiview.INFO_FILE)) == stamp
    with pytest.raises(ValueError, match="overwrite=True"):
        multiview.generate_multiview_dataset(tmp_path, n_views=3, resolution=32, seed=0, progress=False)


def test_jpeg_without_pillow_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pillow(name, *args, **kwargs):  # Pillow absent, whether or not it is installed
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no Pillow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pillow)
    os.makedirs(tmp_path / "image")
    (tmp_path / "image" / "000.jpg").write_bytes(b"\xff\xd8\xff")
    vis.write_png(tmp_path / "000.png", np.zeros((4, 4), np.uint8))
    os.makedirs(tmp_path / "mask")
    os.rename(tmp_path / "000.png", tmp_path / "mask" / "000.png")
    cameras.save_cameras(tmp_path / "cameras.npz", cameras.sample_views(1))
    with pytest.raises(DataFormatError, match=r"image/000.jpg: reading .jpg images needs Pillow"):
        multiview.load_multiview(tmp_path)
