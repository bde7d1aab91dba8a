"""Tests of the Occupancy Networks on-disk format and the built-in dataset generator."""

import json
import os

import numpy as np
import pytest

from implicit_fields.data import builtin
from implicit_fields.data.onet_format import (
    DataFormatError,
    load_pointcloud_npz,
    load_points_npz,
    read_metadata,
    read_split,
    write_metadata,
    write_pointcloud_npz,
    write_points_npz,
    write_split,
)
from implicit_fields.shapes import CATEGORIES, Shape


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
    return dict(
        points=pts.astype(np.float16), occupancies=np.packbits(occ), loc=np.zeros(3), scale=1.0
    )


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

    @case("garbage", "not a valid npz")
    def _(p):
        p.write_bytes(b"this is not a zip file at all" * 10)

    @case("truncated", "")
    def _(p):
        _save(p, **_good(5000))
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])

    @case("npy_not_npz", "not a valid npz")
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
        "missing", "garbage", "truncated", "npy_not_npz", "wrong_keys", "nan_points",
        "wrong_shape", "empty", "packbits_short", "occ_dtype", "int_points", "bad_loc",
        "inf_loc", "bad_scale",
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
    _save(path, points=pts.astype(np.float16), normals=pts[:10].astype(np.float16),
          loc=np.zeros(3), scale=1.0)
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
    for text in ["", "[1, 2]\n", "a: [unclosed\n", "03001627: chair\n", "03001627:\n  id: x\n",
                 "03001627:\n  id: '1'\n  name: chair\n"]:
        path.write_text(text)
        with pytest.raises(DataFormatError, match="malformed metadata.yaml") as info:
            read_metadata(tmp_path)
        assert str(path) in str(info.value)
    path.unlink()
    with pytest.raises(DataFormatError, match="not found"):
        read_metadata(tmp_path)


# --------------------------------------------------------------------------------------
# Built-in dataset.
# --------------------------------------------------------------------------------------

_SMALL = dict(objects_per_category=2, num_points=600, num_surface_points=300, progress=False)


def _read_dataset(root):
    out = {}
    for synset in CATEGORIES:
        for split in ("train", "test"):
            for mid in read_split(os.path.join(root, synset), split):
                folder = os.path.join(root, synset, mid)
                with open(os.path.join(folder, "shape.json")) as f:
                    record = json.load(f)
                out[(synset, mid)] = (
                    load_points_npz(os.path.join(folder, "points.npz")),
                    load_pointcloud_npz(os.path.join(folder, "pointcloud.npz")),
                    record,
                )
    return out


def test_builtin_dataset_deterministic_across_workers(tmp_path):
    a = builtin.generate_dataset(tmp_path / "a", num_workers=0, seed=3, **_SMALL)
    b = builtin.generate_dataset(tmp_path / "b", num_workers=2, seed=3, **_SMALL)
    assert read_metadata(a) == {s: {"id": s, "name": n} for s, n in CATEGORIES.items()}
    da, db = _read_dataset(a), _read_dataset(b)
    assert sorted(da) == sorted(db) and len(da) == 2 * len(CATEGORIES)
    for key in da:
        (pa, ca, ra), (pb, cb, rb) = da[key], db[key]
        for x, y in ((pa, pb), (ca, cb)):
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
        assert ra == rb
        # The stored labels are exactly the shape's occupancy at the stored points.
        shape = Shape.from_dict(ra)
        np.testing.assert_array_equal(shape.contains(pa["points"]), pa["occupancies"])
        assert pa["points"].shape == (600, 3) and ca["points"].shape == (300, 3)
        assert np.abs(pa["points"]).max() <= 0.55 and np.abs(ca["points"]).max() <= 0.5 + 1e-3
        np.testing.assert_allclose(pa["loc"], ra["loc"])
        assert pa["scale"] == ra["scale"] == ca["scale"]
        assert pa["occupancies"].mean() < 0.5
    # Another seed gives other objects.
    c = builtin.generate_dataset(tmp_path / "c", categories=["mug"], num_workers=0, seed=4, **_SMALL)
    pc = load_points_npz(os.path.join(c, "03797390", "obj_000000", "points.npz"))
    assert not np.array_equal(pc["points"], da[("03797390", "obj_000000")][0]["points"])


def test_builtin_resume_and_param_check(tmp_path):
    root = tmp_path / "d"
    builtin.generate_dataset(root, categories=["chair", "04379243"], num_workers=0, **_SMALL)
    chair = root / "03001627"
    assert read_split(chair, "train") == ["obj_000000"] and read_split(chair, "test") == [
        "obj_000001"
    ]
    assert sorted(os.listdir(root)) == ["03001627", "04379243", "metadata.yaml"]
    # Simulate an interrupted run: a stale temp folder and a missing object.
    stale = chair / ".tmp-obj_000001-12345"
    stale.mkdir()
    (stale / "points.npz").write_bytes(b"partial")
    mtime = os.path.getmtime(chair / "obj_000000" / "points.npz")
    for name in os.listdir(chair / "obj_000001"):
        os.remove(chair / "obj_000001" / name)
    os.rmdir(chair / "obj_000001")
    builtin.generate_dataset(root, categories=["chair"], num_workers=0, **_SMALL)
    assert not stale.exists()
    assert os.path.getmtime(chair / "obj_000000" / "points.npz") == mtime  # Skipped.
    assert load_points_npz(chair / "obj_000001" / "points.npz")["points"].shape == (600, 3)
    with pytest.raises(ValueError, match="use another out_dir"):
        builtin.generate_dataset(root, categories=["chair"], num_workers=0, seed=9, **_SMALL)


def test_split_counts():
    assert builtin.split_counts(125, (0.7, 0.1, 0.2)) == [88, 12, 25]
    assert builtin.split_counts(10, (0.7, 0.1, 0.2)) == [7, 1, 2]
    assert builtin.split_counts(3, (0.7, 0.1, 0.2)) == [1, 1, 1]
    assert builtin.split_counts(2, (0.7, 0.1, 0.2)) == [1, 0, 1]
    assert builtin.split_counts(5, (1.0, 0.0, 0.0)) == [5, 0, 0]
