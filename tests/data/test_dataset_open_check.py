"""Opening a dataset checks its splits up front: every listed object has the files the config
needs, split files exist and are not empty, and listed categories exist on disk."""

import os
import shutil

import ml_collections
import numpy as np
import pytest

from implicit_fields import cameras, vis
from implicit_fields.data import binvox, datasets, onet_format


def _dataset(root, n=8):
    """One category 'cat' of `n` objects with every file any input type needs; all in train."""
    cat = root / "cat"
    rng = np.random.default_rng(0)
    for i in range(n):
        obj = cat / f"m{i}"
        (obj / "img_choy2016").mkdir(parents=True)
        pts = rng.uniform(-0.5, 0.5, (64, 3))
        onet_format.write_points_npz(obj / "points.npz", pts, pts[:, 0] > 0, np.zeros(3), 1.0)
        onet_format.write_pointcloud_npz(obj / "pointcloud.npz", pts, pts, np.zeros(3), 1.0)
        binvox.write_binvox(str(obj / "model.binvox"), np.zeros((4, 4, 4), bool))
        vis.write_png(obj / "img_choy2016" / "000.png", np.zeros((4, 4, 3), np.uint8))
        onet_format.save_cameras(obj / "img_choy2016" / "cameras.npz", cameras.sample_views(1, seed=0))
    onet_format.write_metadata(root, {"cat": "things"})
    for split in onet_format.SPLITS:
        onet_format.write_split(cat, split, [f"m{i}" for i in range(n)])
    return root


def _config(root, input_type, **extra):
    return ml_collections.ConfigDict(
        dict(path=str(root), categories=(), cache=False, input_type=input_type, **extra)
    )


def _remove(path):
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


@pytest.mark.parametrize(
    "input_type, extra, victim",
    [
        ("pointcloud", {}, "points.npz"),
        ("pointcloud", {}, "pointcloud.npz"),
        ("", {}, "points.npz"),
        ("voxels", {}, "model.binvox"),
        ("img", {}, "img_choy2016"),
        ("img", {"img_with_camera": True}, "img_choy2016/cameras.npz"),
        ("pointcloud", {}, ""),  # The whole object folder.
    ],
)
@pytest.mark.parametrize("n_missing", [1, 7])
def test_listed_objects_without_the_needed_files_are_one_error(
    tmp_path, input_type, extra, victim, n_missing
):
    root = _dataset(tmp_path / "ds")
    cfg = _config(root, input_type, **extra)
    assert len(datasets.from_config(cfg, "val")) == 8  # Complete: opens.
    for i in range(n_missing):
        _remove(os.path.join(root, "cat", f"m{i}", victim))
    with pytest.raises(onet_format.DataFormatError) as info:
        datasets.from_config(cfg, "val")
    message = str(info.value)
    assert message.startswith(str(root / "cat" / "val.lst") + ": ") and "\n" not in message
    assert f"{n_missing} of the 8 objects" in message
    what = "no object folder" if not victim else f"missing {victim.rstrip('/')}"
    assert f"m0 ({what}" in message
    if n_missing > 5:
        assert f"and {n_missing - 5} more" in message and "m6" not in message


@pytest.mark.parametrize(
    "input_type, victim",
    [("pointcloud", "model.binvox"), ("pointcloud", "img_choy2016"), ("voxels", "img_choy2016")],
)
def test_files_the_config_does_not_need_may_be_missing(tmp_path, input_type, victim):
    root = _dataset(tmp_path / "ds", n=2)
    _remove(os.path.join(root, "cat", "m0", victim))
    assert len(datasets.from_config(_config(root, input_type), "train")) == 2


@pytest.mark.parametrize("split", onet_format.SPLITS)
def test_an_empty_or_missing_split_file_is_named(tmp_path, split):
    root = _dataset(tmp_path / "ds", n=2)
    (root / "cat" / f"{split}.lst").write_text("\n\n")
    with pytest.raises(onet_format.DataFormatError, match=rf"{split}\.lst: split file is empty"):
        datasets.ShapesDataset(str(root), split)
    os.remove(root / "cat" / f"{split}.lst")
    with pytest.raises(onet_format.DataFormatError, match=rf"{split}\.lst: split file not found"):
        datasets.ShapesDataset(str(root), split)


@pytest.mark.parametrize("via", ["metadata", "categories_argument"])
def test_a_category_missing_from_disk_is_named(tmp_path, via):
    root = _dataset(tmp_path / "ds", n=2)
    onet_format.write_metadata(root, {"cat": "things", "gone": "vanished"})
    categories = ["gone"] if via == "categories_argument" else None
    with pytest.raises(onet_format.DataFormatError, match=r"gone: category folder not found"):
        datasets.ShapesDataset(str(root), "train", categories=categories)


def test_a_split_naming_an_unknown_object_is_found_when_opening(tmp_path):
    root = _dataset(tmp_path / "ds", n=2)
    with open(root / "cat" / "train.lst", "a") as f:
        f.write("typo_id\n")
    with pytest.raises(
        onet_format.DataFormatError, match=r"train\.lst: 1 of the 3 objects.*typo_id \(no object"
    ):
        datasets.ShapesDataset(str(root), "train")
