"""Tests of dataset reading: the Occupancy Networks layout, img_choy2016 images and bad-input errors."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from implicit_fields import cameras, vis
from implicit_fields.data import datasets, onet_format


def test_dataset_reads_the_builtin_layout(tiny_dataset):
    ds = datasets.ShapesDataset(tiny_dataset, "train")
    assert len(ds) == 2 * 2 and {ds.category_name(c) for c in ds.categories} == {"chair", "mug"}
    d = ds.load(0)
    assert d["points"].shape == (4096, 3) and d["points"].dtype == np.float32
    assert d["occupancies"].dtype == bool and 0 < d["occupancies"].mean() < 1
    assert d["surface_points"].shape == d["surface_normals"].shape == (4096, 3)
    assert np.abs(d["surface_points"]).max() <= 0.5 + 1e-3
    np.testing.assert_allclose(np.linalg.norm(d["surface_normals"], axis=1), 1.0, atol=2e-3)


def _copy(tiny_dataset, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dst)
    return str(dst)


def test_missing_and_malformed_files_name_the_file(tiny_dataset, tmp_path):
    path = _copy(tiny_dataset, tmp_path)
    ds = datasets.ShapesDataset(path, "train", cache=False)
    victim = os.path.join(ds.model_dir(0), "points.npz")
    os.remove(victim)
    with pytest.raises(onet_format.DataFormatError, match="points.npz"):
        ds.load(0)
    np.savez(victim, pts=np.zeros((5, 3)), occupancies=np.zeros(1, np.uint8), loc=np.zeros(3), scale=1.0)
    with pytest.raises(onet_format.DataFormatError, match=r"points.npz.*points"):
        ds.load(0)
    pc = os.path.join(ds.model_dir(1), "pointcloud.npz")
    good = np.load(pc)
    pts = good["points"].astype(np.float32)
    pts[3] = np.nan
    np.savez(pc, points=pts.astype(np.float16), normals=good["normals"], loc=good["loc"], scale=good["scale"])
    with pytest.raises(onet_format.DataFormatError, match=r"pointcloud.npz.*(NaN|nan|finite)"):
        ds.load(1)


def test_empty_split_and_unknown_category_are_clear_errors(tiny_dataset, tmp_path):
    path = _copy(tiny_dataset, tmp_path)
    cat = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))[0]
    open(os.path.join(path, cat, "val.lst"), "w").close()
    with pytest.raises(onet_format.DataFormatError, match="val.lst"):
        datasets.ShapesDataset(path, "val")
    with pytest.raises(ValueError, match="not in dataset"):
        datasets.ShapesDataset(path, "train", categories=["99999999"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.ShapesDataset(str(tmp_path / "nowhere"), "train")


def test_image_reader_errors_name_the_file(tmp_path):
    folder = tmp_path / "img_choy2016"
    with pytest.raises(onet_format.DataFormatError, match="image folder not found"):
        datasets.load_images(str(folder))
    folder.mkdir()
    with pytest.raises(onet_format.DataFormatError, match="no images"):
        datasets.load_images(str(folder))
    vis.write_png(str(folder / "000.png"), np.full((5, 5, 3), 200, np.uint8))
    assert datasets.load_images(str(folder)).shape == (1, 5, 5, 3)
    (folder / "001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(onet_format.DataFormatError, match=r"001\.jpg: unreadable image"):
        datasets.load_images(str(folder))


def test_jpeg_views_as_in_the_original_layout_are_read(tmp_path):
    """The original's img_choy2016 holds 000.jpg ...: a JPEG round trip, grey-scale too, and a broken file."""
    folder = tmp_path / "img_choy2016"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    view = np.stack([8 * xx, 8 * yy, np.full_like(xx, 128)], -1).astype(np.uint8)  # smooth: JPEG keeps it
    Image.fromarray(view).save(folder / "000.jpg", quality=95)
    grey = (rng.uniform(0, 1) * 255 * np.ones((32, 32))).astype(np.uint8)
    Image.fromarray(grey, mode="L").save(folder / "001.jpg", quality=95)
    images = datasets.load_images(str(folder))
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert np.abs(images[0].astype(float) - view).mean() < 3.0
    np.testing.assert_allclose(images[1], np.repeat(grey[..., None], 3, -1), atol=2)  # L -> RGB
    (folder / "002.jpg").write_bytes((folder / "000.jpg").read_bytes()[:200])  # truncated
    with pytest.raises(onet_format.DataFormatError, match=r"002\.jpg"):
        datasets.load_images(str(folder))


def test_resize_image_keeps_constants_and_averages_when_shrinking():
    const = np.full((7, 9, 3), 0.25, np.float32)
    np.testing.assert_allclose(datasets.resize_image(const, 5), 0.25, atol=1e-6)
    checker = (np.indices((8, 8)).sum(0) % 2).astype(np.float32)[..., None]
    np.testing.assert_allclose(datasets.resize_image(checker, 4), 0.5, atol=0.13)
    assert datasets.resize_image(checker, 16).shape == (16, 16, 1)


def test_image_cameras_are_read_from_cameras_npz(tmp_path):
    folder = tmp_path / "img_choy2016"
    folder.mkdir()
    with pytest.raises(onet_format.DataFormatError, match="camera file not found"):
        datasets.load_image_cameras(str(folder), 2)
    cams = cameras.sample_views(3, seed=0)
    onet_format.save_cameras(folder / "cameras.npz", cams)
    got = datasets.load_image_cameras(str(folder), 2)
    assert sorted(got) == ["camera_mat", "world_mat"]
    for k in got:
        assert got[k].dtype == np.float32 and got[k].shape == (2, 4, 4)
        np.testing.assert_array_equal(got[k], cams[k][:2].astype(np.float32))
    with pytest.raises(onet_format.DataFormatError, match="3 cameras for 4 images"):
        datasets.load_image_cameras(str(folder), 4)
