"""Tests of the DVR multi-view layout: writing, loading (ours and the original's) and rays."""

import os

import numpy as np
import pytest
from PIL import Image

from implicit_fields import cameras, vis
from implicit_fields.data import builtin, multiview, onet_format, shape_render
from implicit_fields.data.onet_format import DataFormatError
from implicit_fields.data.shapes import Shape, Sphere
from shape_fixtures import csg_shape, pixel_rays


def test_write_and_load_round_trip_deterministic(tmp_path):
    shape = csg_shape()
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
    cams = onet_format.load_cameras(a / "cameras.npz")
    app = shape_render.Appearance.from_dict(rec["appearance"])
    for i in range(3):
        cam = {k: cams[k][i] for k in cameras.CAMERA_KEYS}
        view = shape_render.render_view(shape, cam, 24, 32, app)
        np.testing.assert_array_equal(data.images[i], view["image"].astype(np.float32) / 255)
        np.testing.assert_array_equal(data.masks[i], view["mask"])
        np.testing.assert_array_equal(data.depths[i], view["depth"])
        np.testing.assert_array_equal(data.world_mat[i], cams["world_mat"][i])
        assert data.masks[i].mean() > 0.05 and rec["mask_fraction"][i] == data.masks[i].mean()


def test_rays_from_loaded_data_hit_the_surface(tmp_path):
    shape = csg_shape()
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
    o3, d3 = pixel_rays(data.camera(3), 32, 32)
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
    fails(r"depth/0001.exr: truncated OpenEXR file \(4 bytes")
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
    cams = onet_format.load_cameras(tmp_path / "cameras.npz", n=2)
    onet_format.save_cameras(tmp_path / "cameras.npz", cams)
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
    onet_format.save_cameras(tmp_path / "cameras.npz", cams)
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
    shape = onet_format.load_shape(folders[0])
    lo, hi = shape.bounds(num_samples=2000)
    assert np.all(lo >= -0.5 - 1e-6) and np.all(hi <= 0.5 + 1e-6)
    assert abs(np.max(hi - lo) - 1.0) < 1e-3
    # A second call skips the rendered object; other parameters need overwrite=True.
    stamp = os.path.getmtime(os.path.join(folders[0], multiview.INFO_FILE))
    multiview.generate_multiview_dataset(tmp_path, n_views=2, resolution=32, seed=0, progress=False)
    assert os.path.getmtime(os.path.join(folders[0], multiview.INFO_FILE)) == stamp
    with pytest.raises(ValueError, match="overwrite=True"):
        multiview.generate_multiview_dataset(tmp_path, n_views=3, resolution=32, seed=0, progress=False)


def test_jpeg_images_are_read_and_broken_ones_name_the_file(tmp_path):
    """The original's layout may hold JPEG images (decoded by Pillow); a broken one is a
    clear error naming the file."""
    os.makedirs(tmp_path / "image")
    yy, xx = np.mgrid[0:8, 0:8]
    rgb = np.stack([16 * xx, 16 * yy, np.full_like(xx, 128)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "image" / "000.jpg", quality=95)
    os.makedirs(tmp_path / "mask")
    vis.write_png(tmp_path / "mask" / "000.png", np.full((8, 8), 255, np.uint8))
    onet_format.save_cameras(tmp_path / "cameras.npz", cameras.sample_views(1))
    data = multiview.load_multiview(tmp_path)
    assert data.images.shape == (1, 8, 8, 3) and data.masks.all()
    assert np.abs(data.images[0] * 255 - rgb).mean() < 3.0
    (tmp_path / "image" / "000.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(DataFormatError, match=r"image/000.jpg: unreadable image"):
        multiview.load_multiview(tmp_path)


def test_a_specular_scene_records_its_material_and_a_diffuse_one_keeps_the_old_record(tmp_path):
    shape = Shape([Sphere(0.3)])
    kwargs = dict(n_views=2, resolution=24, seed=3, progress=False)
    plain = multiview.write_multiview(shape, tmp_path / "d", **kwargs)
    shiny = multiview.write_multiview(shape, tmp_path / "s", material="specular", **kwargs)
    assert "material" not in plain["params"]  # a diffuse record is the one written before materials
    assert shiny["params"]["material"] == "specular" and shiny["appearance"]["material"] == "specular"
    assert {k: v for k, v in shiny["params"].items() if k != "material"} == plain["params"]
    d, s = multiview.load_multiview(tmp_path / "d"), multiview.load_multiview(tmp_path / "s")
    np.testing.assert_array_equal(d.masks, s.masks)
    np.testing.assert_array_equal(d.depths, s.depths)
    assert np.all(s.images >= d.images) and (s.images - d.images).max() > 0.1  # highlights
    app = shape_render.Appearance.from_dict(shiny["appearance"])
    view = shape_render.render_view(shape, s.camera(1), 24, 24, app)
    np.testing.assert_array_equal(s.images[1], view["image"].astype(np.float32) / 255)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"material": "shiny"}, "material must be one of"),
        ({"material": "specular", "appearance": shape_render.Appearance([[0.5] * 3])}, "differs from"),
    ],
)
def test_a_bad_material_is_refused_before_anything_is_written(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        multiview.write_multiview(Shape([Sphere(0.3)]), tmp_path / "x", n_views=1, progress=False, **kwargs)
    assert not (tmp_path / "x").exists()
