"""Tests of the image readers: RGB views, masks and depth maps, and their errors."""

import numpy as np
import pytest
from PIL import Image

from implicit_fields import vis
from implicit_fields.data import image_io
from implicit_fields.data.onet_format import DataFormatError


def test_read_rgb_png_and_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    vis.write_png(tmp_path / "rgb.png", rgb)
    got = image_io.read_rgb(tmp_path / "rgb.png")
    assert got.dtype == np.float32 and got.shape == (6, 5, 3)
    np.testing.assert_array_equal(got, rgb.astype(np.float32) / 255.0)
    # Alpha is dropped and grey is repeated (as PIL's convert("RGB")).
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    vis.write_png(tmp_path / "rgba.png", rgba)
    np.testing.assert_array_equal(image_io.read_rgb(tmp_path / "rgba.png"), rgba[:, :, :3] / np.float32(255))
    grey = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    vis.write_png(tmp_path / "grey.png", grey)
    expected = np.repeat(grey[..., None], 3, -1).astype(np.float32) / 255.0
    np.testing.assert_array_equal(image_io.read_rgb(tmp_path / "grey.png"), expected)
    yy, xx = np.mgrid[0:16, 0:16]
    smooth = np.stack([16 * xx, 16 * yy, np.full_like(xx, 100)], -1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "view.jpg", quality=95)
    jpeg = image_io.read_rgb(tmp_path / "view.jpg")
    assert jpeg.shape == (16, 16, 3) and np.abs(jpeg * 255 - smooth).mean() < 3.0


def test_read_mask_uses_the_first_channel(tmp_path):
    m = np.zeros((4, 6, 3), np.uint8)
    m[1:3, 2:5, 0] = 255
    m[0, 0, 1] = 255  # Not the first channel: background.
    vis.write_png(tmp_path / "mask.png", m)
    expected = np.zeros((4, 6), bool)
    expected[1:3, 2:5] = True
    got = image_io.read_mask(tmp_path / "mask.png")
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expected)
    vis.write_png(tmp_path / "grey.png", expected)  # Grey 0 / 255.
    np.testing.assert_array_equal(image_io.read_mask(tmp_path / "grey.png"), expected)


def test_read_depth_marks_unknown_depth_inf(tmp_path):
    depth = np.full((3, 4), 1.5, np.float64)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, 0.0, -1.0, np.inf
    np.save(tmp_path / "d.npy", depth)
    got = image_io.read_depth(tmp_path / "d.npy")
    assert got.dtype == np.float32 and got.shape == (3, 4)
    assert np.all(np.isinf(got[0])) and np.all(got[1:] == 1.5)
    np.save(tmp_path / "c.npy", np.stack([depth, np.zeros_like(depth)], -1))  # (H, W, C): channel 0.
    np.testing.assert_array_equal(image_io.read_depth(tmp_path / "c.npy"), got)


def test_errors_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    for read in (image_io.read_rgb, image_io.read_mask):
        with pytest.raises(DataFormatError, match=r"bad.png: unreadable image"):
            read(tmp_path / "bad.png")
    cases = {
        "d.exr": (None, "truncated OpenEXR file (4 bytes"),
        "missing.npy": (None, "file not found"),
        "int.npy": (np.zeros((3, 3), np.int32), "depth must be a float array"),
        "flat.npy": (np.zeros(9, np.float32), "depth must have shape (H, W)"),
    }
    for name, (array, problem) in cases.items():
        if array is not None:
            np.save(tmp_path / name, array)
        elif name.endswith(".exr"):
            (tmp_path / name).write_bytes(b"\x76\x2f\x31\x01")
        with pytest.raises(DataFormatError) as err:
            image_io.read_depth(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and problem in str(err.value), str(err.value)
