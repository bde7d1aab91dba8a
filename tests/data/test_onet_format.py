"""Tests of the Occupancy Networks on-disk format: points, point clouds, splits, metadata,
built-in objects' shape.json and cameras.npz."""

import json
import os

import numpy as np
import pytest

from implicit_fields import cameras
from implicit_fields.data import onet_format
from implicit_fields.data.onet_format import (
    DataFormatError,
    load_cameras,
    load_pointcloud_npz,
    load_points_npz,
    read_metadata,
    read_split,
    save_cameras,
    write_metadata,
    write_pointcloud_npz,
    write_points_npz,
    write_split,
)
from implicit_fields.data.shapes import Box, Shape, Sphere, rotation_matrix


def _points(n=1001, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.55, 0.55, (n, 3)), rng.random(n) < 0.3


def test_points_npz_round_trip_packbits(tmp_path):
    path = tmp_path / "points.npz"
    pts, occ = _points(1001)  # Not a multiple of 8.
    write_points_npz(path, pts, occ, np.array([0.1, 0.2, 0.3]), 2.5)
    assert sorted(os.listdir(tmp_path)) == ["points.npz"]  # No suffix appended.
    with np.load(path) as raw:
        assert sorted(raw.files) == ["loc", "occupancies", "points", "scale"]
        assert raw["points"].dtype == np.float16 and raw["points"].shape == (1001, 3)
        assert raw["occupancies"].dtype == np.uint8 and raw["occupancies"].shape == (126,)
        np.testing.assert_array_equal(raw["occupancies"], np.packbits(occ))
    d = load_points_npz(path)
    assert d["points"].dtype == np.float32 and d["points"].shape == (1001, 3)
    assert d["occupancies"].dtype == np.bool_ and d["occupancies"].shape == (1001,)
    np.testing.assert_array_equal(d["occupancies"], occ)
    # No jitter: exactly the float16 values, identical on every load.
    np.testing.assert_array_equal(d["points"], pts.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(load_points_npz(path)["points"], d["points"])
    np.testing.assert_allclose(d["loc"], [0.1, 0.2, 0.3])
    assert d["scale"] == 2.5


def test_points_npz_accepts_unpacked_bool(tmp_path):
    path = tmp_path / "points.npz"
    pts, occ = _points(10)
    np.savez(path, points=pts.astype(np.float16), occupancies=occ, loc=np.zeros(3), scale=1.0)
    np.testing.assert_array_equal(load_points_npz(path)["occupancies"], occ)


def test_points_npz_optional_num_uniform(tmp_path):
    path = tmp_path / "points.npz"
    pts, occ = _points(10)
    arrays = dict(points=pts.astype(np.float16), occupancies=occ, loc=np.zeros(3), scale=1.0)
    np.savez(path, **arrays)
    assert "num_uniform" not in load_points_npz(path)  # Built-in and ShapeNet files.
    np.savez(path, num_uniform=np.int64(4), **arrays)
    assert load_points_npz(path)["num_uniform"] == 4
    for bad in (np.int64(11), np.int64(-1), np.float32(4.0), np.array([4])):
        np.savez(path, num_uniform=bad, **arrays)
        with pytest.raises(DataFormatError, match="num_uniform"):
            load_points_npz(path)


def test_pointcloud_npz_round_trip(tmp_path):
    path = tmp_path / "pointcloud.npz"
    pts, _ = _points(500)
    nrm = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    write_pointcloud_npz(path, pts, nrm, np.zeros(3), 1.0)
    with np.load(path) as raw:
        assert sorted(raw.files) == ["loc", "normals", "points", "scale"]
        assert raw["points"].dtype == np.float16 and raw["normals"].dtype == np.float16
    d = load_pointcloud_npz(path)
    assert d["points"].dtype == np.float32 and d["normals"].shape == (500, 3)
    np.testing.assert_allclose(d["normals"], nrm, atol=1e-3)


def _save(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _good(n=16):
    pts, occ = _points(n)
    return dict(points=pts.astype(np.float16), occupancies=np.packbits(occ), loc=np.zeros(3), scale=1.0)


def _bad_points_files(tmp_path):
    """(name, writer, expected message fragment) for every malformed points.npz case."""
    cases = {}

    def case(name, fragment):
        def deco(fn):
            cases[name] = (fn, fragment)
            return fn

        return deco

    @case("missing", "file not found")
    def _(p):
        pass

    @case("garbage", "not a valid .npz file")
    def _(p):
        p.write_bytes(b"this is not a zip file at all" * 10)

    @case("truncated", "")
    def _(p):
        _save(p, **_good(5000))
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])

    @case("npy_not_npz", "not a valid .npz file")
    def _(p):
        with open(p, "wb") as f:
            np.save(f, np.zeros(3))

    @case("wrong_keys", "keys found: ['foo', 'loc', 'points', 'scale']")
    def _(p):
        g = _good()
        g["foo"] = g.pop("occupancies")
        _save(p, **g)

    @case("nan_points", "NaN/inf")
    def _(p):
        g = _good()
        g["points"][3, 1] = np.nan
        _save(p, **g)

    @case("wrong_shape", "shape (N, 3)")
    def _(p):
        g = _good()
        g["points"] = g["points"][:, :2]
        _save(p, **g)

    @case("empty", "empty")
    def _(p):
        g = _good()
        g["points"] = np.zeros((0, 3), np.float16)
        g["occupancies"] = np.zeros(0, np.uint8)
        _save(p, **g)

    @case("packbits_short", "too short")
    def _(p):
        g = _good(64)
        g["occupancies"] = g["occupancies"][:3]
        _save(p, **g)

    @case("occ_dtype", "dtype float64")
    def _(p):
        g = _good()
        g["occupancies"] = np.zeros(16)
        _save(p, **g)

    @case("int_points", "floating point")
    def _(p):
        g = _good()
        g["points"] = np.zeros((16, 3), np.int64)
        _save(p, **g)

    @case("bad_loc", "'loc'")
    def _(p):
        _save(p, **dict(_good(), loc=np.zeros(2)))

    @case("inf_loc", "'loc' contains NaN/inf")
    def _(p):
        _save(p, **dict(_good(), loc=np.array([0.0, np.inf, 0.0])))

    @case("bad_scale", "'scale' must be finite and > 0")
    def _(p):
        _save(p, **dict(_good(), scale=0.0))

    return cases


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "garbage",
        "truncated",
        "npy_not_npz",
        "wrong_keys",
        "nan_points",
        "wrong_shape",
        "empty",
        "packbits_short",
        "occ_dtype",
        "int_points",
        "bad_loc",
        "inf_loc",
        "bad_scale",
    ],
)
def test_points_npz_errors_name_the_file(tmp_path, case):
    writer, fragment = _bad_points_files(tmp_path)[case]
    path = tmp_path / f"model_{case}" / "points.npz"
    path.parent.mkdir()
    writer(path)
    with pytest.raises(DataFormatError) as info:
        load_points_npz(path)
    msg = str(info.value)
    assert str(path) in msg
    assert fragment in msg


def test_pointcloud_errors(tmp_path):
    path = tmp_path / "pointcloud.npz"
    pts, _ = _points(20)
    _save(
        path, points=pts.astype(np.float16), normals=pts[:10].astype(np.float16), loc=np.zeros(3), scale=1.0
    )
    with pytest.raises(DataFormatError, match="does not match") as info:
        load_pointcloud_npz(path)
    assert str(path) in str(info.value)
    _save(path, points=pts.astype(np.float16), loc=np.zeros(3), scale=1.0)
    with pytest.raises(DataFormatError, match=r"missing key\(s\) \['normals'\]"):
        load_pointcloud_npz(path)
    bad = pts.copy()
    bad[0, 0] = np.inf
    _save(path, points=pts.astype(np.float16), normals=bad, loc=np.zeros(3), scale=1.0)
    with pytest.raises(DataFormatError, match="'normals' contains NaN/inf"):
        load_pointcloud_npz(path)


def test_writers_validate(tmp_path):
    path = tmp_path / "points.npz"
    pts, occ = _points(10)
    with pytest.raises(DataFormatError, match="points.npz"):
        write_points_npz(path, pts, occ[:5], np.zeros(3), 1.0)
    with pytest.raises(DataFormatError, match="NaN"):
        write_points_npz(path, pts * np.nan, occ, np.zeros(3), 1.0)
    with pytest.raises(DataFormatError, match="scale"):
        write_points_npz(path, pts, occ, np.zeros(3), -1.0)
    with pytest.raises(DataFormatError, match="float16"):
        write_pointcloud_npz(path, pts * 1e6, pts, np.zeros(3), 1.0)


def test_splits(tmp_path):
    write_split(tmp_path, "train", ["a1", "b2", "c3"])
    assert read_split(tmp_path, "train") == ["a1", "b2", "c3"]
    (tmp_path / "val.lst").write_text("\nx\n\n  y  \n\n")
    assert read_split(tmp_path, "val") == ["x", "y"]
    (tmp_path / "test.lst").write_text("\n  \n")
    with pytest.raises(DataFormatError, match="empty") as info:
        read_split(tmp_path, "test")
    assert str(tmp_path / "test.lst") in str(info.value)
    with pytest.raises(DataFormatError, match="not found") as info:
        read_split(tmp_path, "other")
    assert str(tmp_path / "other.lst") in str(info.value)
    (tmp_path / "bad.lst").write_text("ok\nnot ok\n")
    with pytest.raises(DataFormatError, match="malformed model id"):
        read_split(tmp_path, "bad")


def test_metadata(tmp_path):
    write_metadata(tmp_path, {"03001627": "chair", "02691156": "airplane"})
    meta = read_metadata(tmp_path)
    assert meta == {
        "03001627": {"id": "03001627", "name": "chair"},  # Not an octal integer.
        "02691156": {"id": "02691156", "name": "airplane"},
    }
    path = tmp_path / "metadata.yaml"
    # The original file form, unquoted.
    path.write_text("03001627:\n  id: 03001627\n  name: chair\n")
    assert read_metadata(tmp_path) == {"03001627": {"id": "03001627", "name": "chair"}}
    for text in [
        "",
        "[1, 2]\n",
        "a: [unclosed\n",
        "03001627: chair\n",
        "03001627:\n  id: x\n",
        "03001627:\n  id: '1'\n  name: chair\n",
    ]:
        path.write_text(text)
        with pytest.raises(DataFormatError, match="malformed metadata.yaml") as info:
            read_metadata(tmp_path)
        assert str(path) in str(info.value)
    path.unlink()
    with pytest.raises(DataFormatError, match="not found"):
        read_metadata(tmp_path)


# --------------------------------------------------------------------------------------
# Built-in objects: shape.json.
# --------------------------------------------------------------------------------------


def test_load_shape_and_object_folders(tmp_path):
    shape = Shape([Box((0.2, 0.1, 0.3))], [Sphere(0.05, None, (0.0, 0.1, 0.0))])
    for model in ("obj_000001", "obj_000000", ".tmp-obj_000002-77", "not_an_object"):
        folder = tmp_path / "03001627" / model
        folder.mkdir(parents=True)
        if model != "not_an_object":
            (folder / onet_format.SHAPE_FILE).write_text(json.dumps(shape.to_dict()))
    (tmp_path / "03797390").mkdir()
    (tmp_path / "metadata.yaml").write_text("")
    found = onet_format.object_folders(tmp_path)
    # Sorted, temporary folders (a writer's, not renamed yet) and folders without shape.json skipped.
    assert [(s, m) for s, m, _ in found] == [("03001627", "obj_000000"), ("03001627", "obj_000001")]
    assert found[0][2] == os.path.join(str(tmp_path), "03001627", "obj_000000")
    assert onet_format.object_folders(tmp_path, "chair") == found  # Names or synsets.
    assert onet_format.object_folders(tmp_path, ["mug"]) == []
    with pytest.raises(DataFormatError, match="04379243: category folder not found"):
        onet_format.object_folders(tmp_path, ["table"])
    loaded = onet_format.load_shape(found[0][2])
    points = np.random.default_rng(0).uniform(-0.4, 0.4, (2000, 3))
    np.testing.assert_array_equal(loaded.contains(points), shape.contains(points))
    with pytest.raises(DataFormatError, match=r"not_an_object/shape.json: file not found"):
        onet_format.load_shape(tmp_path / "03001627" / "not_an_object")
    (tmp_path / "03001627" / "obj_000001" / onet_format.SHAPE_FILE).write_text("{}")
    with pytest.raises(DataFormatError, match=r"obj_000001/shape.json: not a valid shape"):
        onet_format.load_shape(tmp_path / "03001627" / "obj_000001")


# --------------------------------------------------------------------------------------
# cameras.npz.
# --------------------------------------------------------------------------------------


def _similarity(scale, translation, axis=(1.0, 2.0, -0.5), angle=0.7):
    """A scale_mat like DTU's: object (unit cube) -> world, a rotation, scale and shift."""
    s = np.eye(4)
    s[:3, :3] = scale * rotation_matrix(axis, angle)
    s[:3, 3] = translation
    return s


def test_cameras_npz_round_trip(tmp_path):
    cams = cameras.sample_views(3, seed=1)
    cams["scale_mat"] = np.stack([_similarity(2.0, (0.1, 0.2, 0.3))] * 3)
    path = tmp_path / "cameras.npz"
    save_cameras(path, cams)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cameras.npz"]
    with np.load(path) as raw:
        keys = set(raw.files)
        np.testing.assert_allclose(raw["world_mat_inv_2"] @ raw["world_mat_2"], np.eye(4), atol=1e-12)
    for i in range(3):
        for name in ("world_mat", "camera_mat", "scale_mat"):
            assert f"{name}_{i}" in keys and f"{name}_inv_{i}" in keys
    loaded = load_cameras(path)
    assert tuple(loaded) == cameras.CAMERA_KEYS  # A camera dict of implicit_fields.cameras.
    for k in cameras.CAMERA_KEYS:
        np.testing.assert_array_equal(loaded[k], cams[k])
    assert load_cameras(path, n=2)["world_mat"].shape == (2, 4, 4)


def _write(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_load_cameras_errors_name_file_and_problem(tmp_path):
    good = cameras.look_at_camera((0.0, 0.0, -2.0))
    path = tmp_path / "cameras.npz"
    with pytest.raises(DataFormatError, match="cameras.npz: camera file not found"):
        load_cameras(path)
    # Missing scale_mat means identity (the original's default); 3x4 world_mat is padded.
    _write(path, world_mat_0=good["world_mat"][:3], camera_mat_0=good["camera_mat"])
    loaded = load_cameras(path)
    np.testing.assert_array_equal(loaded["scale_mat"][0], np.eye(4))
    np.testing.assert_array_equal(loaded["world_mat"][0], good["world_mat"])
    cases = {
        "missing key 'camera_mat_0'": dict(world_mat_0=good["world_mat"]),
        "'world_mat_0' must have shape": dict(world_mat_0=np.eye(3), camera_mat_0=np.eye(4)),
        "'camera_mat_0' contains NaN": dict(
            world_mat_0=good["world_mat"], camera_mat_0=np.full((4, 4), np.nan)
        ),
        "'camera_mat_0' is singular": dict(
            world_mat_0=good["world_mat"], camera_mat_0=np.diag([1.0, 0.0, 1.0, 1.0])
        ),
        "'scale_mat_0' must be affine": dict(
            world_mat_0=good["world_mat"],
            camera_mat_0=good["camera_mat"],
            scale_mat_0=np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]),
        ),
        "no 'world_mat_0' key": dict(foo=np.eye(4)),
    }
    for message, arrays in cases.items():
        _write(path, **arrays)
        with pytest.raises(DataFormatError) as err:
            load_cameras(path)
        assert str(path) in str(err.value) and message in str(err.value), str(err.value)
    _write(path, world_mat_0=good["world_mat"], camera_mat_0=good["camera_mat"])
    with pytest.raises(DataFormatError, match="missing key 'world_mat_1'"):
        load_cameras(path, n=2)
    path.write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match=r"cameras.npz: not a valid .npz file"):
        load_cameras(path)
