"""Every .npz / .npy reader on bad bytes: an error naming the file, never numpy's allow_pickle hint."""

import os

import numpy as np
import pytest

from implicit_fields import cameras
from implicit_fields.data import datasets, image_io, multiview, onet_format
from implicit_fields.data.onet_format import DataFormatError


def _valid_npz(path):
    cams = cameras.sample_views(2, seed=0)
    onet_format.save_cameras(path, cams)


def _pickled(path):
    """An archive with every key the readers need, one of them a pickled object array."""
    objects = np.array([{"a": 1}, None], dtype=object)  # np.savez pickles it.
    plain = dict(occupancies=np.zeros(1, np.uint8), normals=np.zeros((2, 3)), loc=np.zeros(3), scale=1.0)
    with open(path, "wb") as f:
        np.savez(f, points=objects, world_mat_0=objects, camera_mat_0=objects, **plain)


BAD_CONTENTS = {
    "random_bytes": lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)),
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("points,occupancies\n1,2\n"),
    "zip_signature_then_junk": lambda p: p.write_bytes(b"PK\x03\x04" + bytes(range(256))),
    "npy_signature_then_junk": lambda p: p.write_bytes(b"\x93NUMPY" + bytes(range(200))),
    "truncated": lambda p: (_valid_npz(p), p.write_bytes(p.read_bytes()[:150])),
    "pickled_objects": _pickled,
    "a_folder": lambda p: p.mkdir(),
}

READERS = {
    "points.npz": onet_format.load_points_npz,
    "pointcloud.npz": onet_format.load_pointcloud_npz,
    "cameras.npz": onet_format.load_cameras,
    "any.npz": onet_format.load_npz,
    "depth.npy": image_io.read_depth,
    "array.npy": onet_format.load_npy,
}


def _check(message, path):
    assert message.startswith(f"{path}: "), message
    assert "allow_pickle" not in message and "unsafe" not in message, message
    assert "\n" not in message


@pytest.mark.parametrize("contents", sorted(BAD_CONTENTS))
@pytest.mark.parametrize("name", sorted(READERS))
def test_bad_bytes_are_a_format_error_naming_the_file(tmp_path, name, contents):
    path = tmp_path / name
    BAD_CONTENTS[contents](path)
    if name.endswith(".npy") and contents == "pickled_objects":
        path.unlink()
        np.save(path, np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataFormatError) as info:
        READERS[name](path)
    _check(str(info.value), path)
    if contents in ("random_bytes", "text", "empty"):
        assert f"not a valid {os.path.splitext(name)[1]} file" in str(info.value)
    if contents == "pickled_objects":
        assert "pickled data" in str(info.value) and "never loaded" in str(info.value)


def test_a_valid_npz_and_npy_still_read(tmp_path):
    _valid_npz(tmp_path / "cameras.npz")
    assert onet_format.load_cameras(tmp_path / "cameras.npz")["world_mat"].shape == (2, 4, 4)
    np.save(tmp_path / "depth.npy", np.ones((3, 4), np.float32))
    assert image_io.read_depth(tmp_path / "depth.npy").shape == (3, 4)


@pytest.mark.parametrize("victim", ["points.npz", "pointcloud.npz"])
@pytest.mark.parametrize("contents", ["random_bytes", "pickled_objects"])
def test_a_dataset_object_with_bad_bytes_names_its_file(tmp_path, victim, contents):
    folder = tmp_path / "cat" / "m0"
    folder.mkdir(parents=True)
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 3))
    onet_format.write_points_npz(folder / "points.npz", pts, pts[:, 0] > 0, np.zeros(3), 1.0)
    onet_format.write_pointcloud_npz(folder / "pointcloud.npz", pts, pts, np.zeros(3), 1.0)
    onet_format.write_split(tmp_path / "cat", "train", ["m0"])
    ds = datasets.ShapesDataset(str(tmp_path), "train", cache=False)
    assert ds.load(0)["points"].shape == (16, 3)
    (folder / victim).unlink()
    BAD_CONTENTS[contents](folder / victim)
    with pytest.raises(DataFormatError) as info:
        ds.load(0)
    _check(str(info.value), folder / victim)


@pytest.mark.parametrize("victim", ["cameras.npz", "depth/0000.npy"])
def test_multiview_folders_with_bad_bytes_name_the_file(tmp_path, victim):
    folder = tmp_path / "obj"
    (folder / "image").mkdir(parents=True)
    (folder / "depth").mkdir()
    from implicit_fields import vis

    vis.write_png(folder / "image" / "0000.png", np.zeros((4, 4, 3), np.uint8))
    np.save(folder / "depth" / "0000.npy", np.ones((4, 4), np.float32))
    _valid_npz(folder / "cameras.npz")
    assert multiview.load_multiview(folder, with_mask=False).num_views == 1
    (folder / victim).write_bytes(np.random.default_rng(1).bytes(100))
    with pytest.raises(DataFormatError) as info:
        multiview.load_multiview(folder, with_mask=False)
    _check(str(info.value), folder / victim)
