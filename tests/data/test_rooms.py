"""Tests of the built-in synthetic rooms (ConvONet's recipe), their loading and the room evaluation crop."""

import csv
import itertools
import json
import math
import os
import shutil

import ml_collections
import numpy as np
import pytest
import trimesh

import experiment_configs
from implicit_fields import metrics
from implicit_fields.data import datasets, onet_format, pipeline, reconstruction, rooms
from implicit_fields.data.shapes import rotation_matrix

_TINY = dict(num_files=3, num_points=1500, num_surface_points=1200, num_workers=0, progress=False)
_FLOOR_TOP = rooms.FLOOR_Y + rooms.FLOOR_THICKNESS
_F16 = 5e-4  # float16 rounding of coordinates in [-0.55, 0.55].


@pytest.fixture(scope="module")
def rooms_dir(tmp_path_factory):
    """Rooms of 4 and 8 objects, 3 of each (one per split), 3 files of each kind."""
    return rooms.generate_rooms(
        tmp_path_factory.mktemp("rooms") / "r", object_counts=(4, 8), rooms_per_class=3, **_TINY
    )


def _scenes(root):
    return [
        os.path.join(root, c, s)
        for c in ("rooms_04", "rooms_08")
        for s in ("00000000", "00000001", "00000002")
    ]


@pytest.fixture(scope="module")
def recipes():
    """Two recipes per object count (no points sampled)."""
    return {
        n: [rooms.draw_recipe(n, np.random.default_rng([5, n, i])) for i in range(2)]
        for n in rooms.OBJECT_COUNTS
    }


# --------------------------------------------------------------------------------------
# The recipe.
# --------------------------------------------------------------------------------------


def test_scale_table_is_the_originals():
    assert rooms.SCALE_RANGES == {
        8: (0.1, 0.25),
        7: (0.15, 0.25),
        6: (0.2, 0.3),
        5: (0.25, 0.4),
        4: (0.25, 0.45),
    }
    assert rooms.CLASS_IDS == ("02933112", "03001627", "03636649", "04256520", "04379243")


@pytest.mark.parametrize("n", rooms.OBJECT_COUNTS)
def test_scales_angles_and_classes_per_count(recipes, n):
    lo, hi = rooms.SCALE_RANGES[n]
    for room in recipes[n]:
        assert room["n_objects"] == n == len(room["objects"]) == len(room["bboxes"])
        assert np.all((room["scales"] >= lo) & (room["scales"] <= hi))
        assert np.all((room["y_angles"] >= 0.0) & (room["y_angles"] < 360.0))
        assert set(room["classes"]) <= set(rooms.CLASS_IDS)
        # Each object stands on the floor.
        for shape in room["objects"]:
            assert shape.bounds()[0][1] == pytest.approx(_FLOOR_TOP, abs=1e-9)


@pytest.mark.parametrize("n", rooms.OBJECT_COUNTS)
def test_footprints_never_overlap_and_stay_inside(recipes, n):
    for room in recipes[n]:
        boxes = room["bboxes"]
        for a, b in itertools.combinations(boxes, 2):
            overlap = np.minimum(a[1], b[1]) - np.maximum(a[0], b[0])
            assert np.any(overlap <= 1e-12), (a, b)
        x, z = room["xz_groundplane_range"]
        w, t = room["walls"], rooms.WALL_THICKNESS
        assert np.all(boxes[:, 0, 0] >= -x / 2 + w[1] * t - 1e-12) and np.all(
            boxes[:, 1, 0] <= x / 2 - w[3] * t + 1e-12
        )
        assert np.all(boxes[:, 0, 1] >= -z / 2 + w[0] * t - 1e-12) and np.all(
            boxes[:, 1, 1] <= z / 2 - w[2] * t + 1e-12
        )
        for shape, box in zip(room["objects"], boxes):
            lo, hi = rooms.footprint(shape)
            np.testing.assert_allclose(np.stack([lo, hi]), box, atol=1e-9)
            # The object itself (dense surface samples) lies in its footprint.
            pts, _ = shape.sample_surface(2000, np.random.default_rng(0))
            assert np.all(pts[:, [0, 2]] >= box[0] - 1e-9) and np.all(pts[:, [0, 2]] <= box[1] + 1e-9)


@pytest.mark.parametrize("category", sorted(rooms.ROOM_CLASSES.values()))
@pytest.mark.parametrize("angle", [0.0, 90.0, 217.0])
def test_place_object_scale_floor_and_yaw(category, angle):
    canonical = rooms.make_object(category, np.random.default_rng(3))
    upright, s, center, _ = rooms.place_object(canonical, 0.3, 0.0)
    lo, hi = upright.bounds()
    assert np.max(hi - lo) == pytest.approx(0.3, abs=1e-9)  # The longest edge is the scale.
    assert lo[1] == pytest.approx(_FLOOR_TOP, abs=1e-12)
    turned, s2, _, rot = rooms.place_object(canonical, 0.3, angle)
    assert s2 == s
    np.testing.assert_allclose(rot, rotation_matrix((0, 1, 0), math.radians(angle)))
    # The turned object's occupancy is the canonical one in its rotated, scaled frame.
    rng = np.random.default_rng(1)
    surface, normals = turned.sample_surface(3000, rng)  # Just inside and just outside the surface.
    pts = np.concatenate(
        [surface - 1e-7 * normals, surface + 1e-7 * normals, rng.uniform(-0.3, 0.3, (3000, 3))]
    )
    local = (pts - [0.0, _FLOOR_TOP, 0.0]) @ rot / s + center  # rot.T @ (p - offset) / s + c
    np.testing.assert_array_equal(turned.contains(pts), canonical.contains(local))
    assert turned.contains(pts).any() and not turned.contains(pts).all()


@pytest.mark.parametrize("wall", range(4))
def test_walls_present_with_probability_half(wall):
    layouts = [rooms.draw_layout(np.random.default_rng([11, i])) for i in range(4000)]
    share = np.mean([lay["walls"][wall] for lay in layouts])
    assert share == pytest.approx(0.5, abs=0.04)  # 5 standard deviations.
    xz = np.array([lay["xz_groundplane_range"] for lay in layouts])
    assert np.all(xz.max(axis=1) == 1.0) and np.all((xz.min(axis=1) >= 0.3) & (xz.min(axis=1) <= 1.0))
    assert np.mean(xz[:, 0] == 1.0) == pytest.approx(0.5, abs=0.04)
    heights = np.array([lay["wall_height"] for lay in layouts])
    assert heights.min() >= 0.2 and heights.max() <= 0.4 and heights.std() > 0.05


def test_recipe_is_deterministic_and_seeded(recipes):
    a, c = recipes[8]
    b = rooms.draw_recipe(8, np.random.default_rng([5, 8, 0]))  # The rng of `a`.
    for key in ("scales", "y_angles", "xz_groundplane_range", "walls", "bboxes"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["classes"] == b["classes"] and a["object_seeds"] == b["object_seeds"]
    assert [s.to_dict() for s in a["objects"]] == [s.to_dict() for s in b["objects"]]
    assert not np.array_equal(a["scales"], c["scales"])


# --------------------------------------------------------------------------------------
# Exact occupancy.
# --------------------------------------------------------------------------------------


def _analytic_occupancy(folder, points):
    """The OR written out from item_dict.npz and the objects re-made from their seeds."""
    with np.load(os.path.join(folder, onet_format.ITEM_DICT_FILE)) as f:
        item = {k: f[k] for k in f.files}
    room = rooms.load_room(folder)
    x, y, z = points.T
    xr, zr = item["xz_groundplane_range"]
    t, h = float(item["wall_thickness"]), float(item["wall_height"][0])
    occ = (np.abs(x) <= xr / 2) & (np.abs(z) <= zr / 2) & (y >= -0.5) & (y <= -0.5 + 0.01)  # Floor.
    in_wall_y = (y >= _FLOOR_TOP) & (y <= _FLOOR_TOP + h)
    in_x, in_z = np.abs(x) <= xr / 2, np.abs(z) <= zr / 2
    walls = item["walls"].astype(bool)
    occ |= walls[0] & in_wall_y & in_x & (z >= -zr / 2) & (z <= -zr / 2 + t)
    occ |= walls[1] & in_wall_y & in_z & (x >= -xr / 2) & (x <= -xr / 2 + t)
    occ |= walls[2] & in_wall_y & in_x & (z >= zr / 2 - t) & (z <= zr / 2)
    occ |= walls[3] & in_wall_y & in_z & (x >= xr / 2 - t) & (x <= xr / 2)
    for cls, name, angle, frame in zip(
        item["classes"], item["objects"], item["y_angles"], room["object_frames"]
    ):
        seed = int(str(name).split("/seed_")[1])
        canonical = rooms.make_object(str(cls), np.random.default_rng(seed))
        rot = rotation_matrix((0, 1, 0), math.radians(float(angle)))
        local = (points - frame["origin"]) @ rot / frame["s"] + frame["center"]
        occ |= canonical.contains(local)
    return occ


@pytest.mark.parametrize("scene", range(6))
def test_stored_occupancy_is_the_analytic_or(rooms_dir, scene):
    folder = _scenes(rooms_dir)[scene]
    room = rooms.load_room(folder)
    for path in onet_format.multi_files(folder, onet_format.POINTS_IOU_DIR):
        stored = onet_format.load_points_iou_npz(path)
        pts = stored["points"].astype(np.float64)
        assert pts.shape == (1500, 3) and np.abs(pts).max() <= 0.55
        np.testing.assert_array_equal(stored["occupancies"], _analytic_occupancy(folder, pts))
        occ, sem = rooms.room_labels(room, pts)
        np.testing.assert_array_equal(stored["semantics"], sem)
        assert np.all((sem == len(rooms.room_solids(room))) == ~stored["occupancies"])
        assert stored["z_scale"] == 0.0


@pytest.mark.parametrize("where", ["object", "floor", "wall", "air", "below_floor"])
def test_occupancy_of_chosen_points(rooms_dir, where):
    rng = np.random.default_rng(2)
    for folder in _scenes(rooms_dir):
        room = rooms.load_room(folder)
        x, z = room["xz_groundplane_range"]
        if where == "object":
            pts = np.concatenate(
                [p - 1e-5 * n for p, n in (s.sample_surface(200, rng) for s in room["objects"])]
            )
            expected = True
        elif where == "floor":
            pts = np.stack(
                [
                    rng.uniform(-x / 2, x / 2, 500),
                    rng.uniform(-0.5, -0.49, 500),
                    rng.uniform(-z / 2, z / 2, 500),
                ],
                1,
            )
            expected = True
        elif where == "wall":
            if not room["wall_boxes"]:
                continue
            pts = np.concatenate(
                [
                    box.sample_surface(300, rng)[0] * 0.999 + (box.lo + box.hi) / 2 * 0.001
                    for _, box in room["wall_boxes"]
                ]
            )
            expected = True
        elif where == "air":  # Above every object (scale <= 0.45) and wall (height <= 0.4).
            pts = rng.uniform([-0.55, 0.0, -0.55], [0.55, 0.55, 0.55], (500, 3))
            expected = False
        else:
            pts = rng.uniform([-0.55, -0.55, -0.55], [0.55, -0.5 - 1e-6, 0.55], (500, 3))
            expected = False
        np.testing.assert_array_equal(rooms.room_occupancy(room, pts), np.full(len(pts), expected))
        np.testing.assert_array_equal(_analytic_occupancy(folder, pts), np.full(len(pts), expected))


# --------------------------------------------------------------------------------------
# Point clouds.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scene", range(6))
def test_pointcloud_floor_top_and_inner_walls_only(rooms_dir, scene):
    folder = _scenes(rooms_dir)[scene]
    room = rooms.load_room(folder)
    x, z = room["xz_groundplane_range"]
    t = rooms.WALL_THICKNESS
    inner = {
        0: (2, -z / 2 + t, [0, 0, 1]),
        1: (0, -x / 2 + t, [1, 0, 0]),
        2: (2, z / 2 - t, [0, 0, -1]),
        3: (0, x / 2 - t, [-1, 0, 0]),
    }
    for path in onet_format.multi_files(folder, onet_format.MULTI_POINTCLOUD_DIR):
        pcl = onet_format.load_multi_pointcloud_npz(path)
        pts, nrm, sem = pcl["points"].astype(np.float64), pcl["normals"], pcl["semantics"]
        assert 0.5 * 1200 < len(pts) <= 1200
        np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=2e-3)
        labels = {rooms.CLASS_IDS.index(c) for c in room["classes"]}
        assert set(np.unique(sem)) <= labels | {-1} and labels <= set(np.unique(sem))
        # Walls and floor (-1): the floor's upper face or a present wall's inner face, nothing inside a wall.
        wall_pts, wall_nrm = pts[sem == -1], nrm[sem == -1]
        on_floor = (np.abs(wall_pts[:, 1] - _FLOOR_TOP) < _F16) & np.all(wall_nrm == [0, 1, 0], axis=1)
        on_wall = np.zeros(len(wall_pts), bool)
        for k, _ in room["wall_boxes"]:
            axis, plane, normal = inner[k]
            on_wall |= (np.abs(wall_pts[:, axis] - plane) < _F16) & np.all(wall_nrm == normal, axis=1)
        assert np.all(on_floor | on_wall)
        assert on_floor.sum() > 0 and (on_wall.sum() > 0) == bool(room["wall_boxes"])
        for k, _ in room["wall_boxes"]:
            axis, plane, normal = inner[k]
            assert np.all(normal[axis] * (pts[:, axis] - plane) >= -_F16)
        # An object's points lie in the footprint of an object of its class, between the floor and its height.
        for label in labels:
            members = [i for i, c in enumerate(room["classes"]) if rooms.CLASS_IDS.index(c) == label]
            obj = pts[sem == label]
            inside = np.zeros(len(obj), bool)
            for i in members:
                box, top = room["bboxes"][i], _FLOOR_TOP + room["scales"][i]
                inside |= np.all(
                    (obj[:, [0, 2]] >= box[0] - _F16) & (obj[:, [0, 2]] <= box[1] + _F16), axis=1
                ) & ((obj[:, 1] >= _FLOOR_TOP - _F16) & (obj[:, 1] <= top + _F16))
            assert inside.all()
        # Walls and floor are down-weighted: fewer points than their share of the area.
        assert (sem == -1).mean() < 0.5


# --------------------------------------------------------------------------------------
# Files, determinism, stale data.
# --------------------------------------------------------------------------------------


def _arrays(folder):
    out = {}
    for kind in (onet_format.POINTS_IOU_DIR, onet_format.MULTI_POINTCLOUD_DIR):
        for path in onet_format.multi_files(folder, kind):
            out[os.path.relpath(path, folder)] = onet_format.load_npz(path)
    out["item"] = onet_format.load_npz(os.path.join(folder, onet_format.ITEM_DICT_FILE))
    return out


def test_layout_and_determinism(rooms_dir, tmp_path):
    assert onet_format.read_metadata(rooms_dir) == {c: {"id": c, "name": c} for c in ("rooms_04", "rooms_08")}
    for c in ("rooms_04", "rooms_08"):
        lists = [onet_format.read_split(os.path.join(rooms_dir, c), s) for s in onet_format.SPLITS]
        assert lists == [["00000000"], ["00000001"], ["00000002"]]
        with np.load(os.path.join(rooms_dir, c, "00000001", onet_format.ITEM_DICT_FILE)) as f:
            assert str(f["split"]) == "val" and int(f["room_idx"]) == 1 and int(f["n_objects"]) == int(c[-2:])
            assert f["bboxes"].shape == (int(c[-2:]), 2, 2) and f["walls"].shape == (4,)
    again = rooms.generate_rooms(tmp_path / "again", object_counts=(8,), rooms_per_class=3, **_TINY)
    for scene in ("00000000", "00000002"):
        a, b = (
            _arrays(os.path.join(rooms_dir, "rooms_08", scene)),
            _arrays(os.path.join(again, "rooms_08", scene)),
        )
        assert sorted(a) == sorted(b) and len(a) == 7
        for name in a:
            for key in a[name]:
                np.testing.assert_array_equal(a[name][key], b[name][key])
    other = rooms.generate_rooms(tmp_path / "other", object_counts=(8,), rooms_per_class=1, seed=1, **_TINY)
    o = _arrays(os.path.join(other, "rooms_08", "00000000"))
    assert not np.array_equal(
        o["item"]["scales"], _arrays(os.path.join(rooms_dir, "rooms_08", "00000000"))["item"]["scales"]
    )


def _data_config(path, **settings):
    config = ml_collections.ConfigDict({"path": str(path), "builtin": True})
    config.update({f"rooms_{k}": v for k, v in settings.items()})
    return config


_ENSURE = dict(object_counts=(8,), per_class=1, num_files=1, num_points=300, num_surface_points=300)


def test_ensure_rooms_generates_resumes_and_refuses_other_settings(tmp_path):
    root = tmp_path / "e"
    assert rooms.ensure_rooms(_data_config(root, **_ENSURE), progress=False) == str(root)
    scene = root / "rooms_08" / "00000000"
    mtime = os.path.getmtime(scene / rooms.SCENE_FILE)
    # Complete and asked the same: kept as it is.
    rooms.ensure_rooms(_data_config(root, **_ENSURE), progress=False)
    assert os.path.getmtime(scene / rooms.SCENE_FILE) == mtime
    # Asked otherwise: refused, naming the keys.
    for key, value in (("num_points", 400), ("num_files", 2), ("per_class", 2), ("object_counts", (4, 8))):
        with pytest.raises(ValueError, match=f"config.data.rooms_{key}"):
            rooms.ensure_rooms(_data_config(root, **{**_ENSURE, key: value}), progress=False)
    # A scene made with other settings is refused by the generator, naming what differs.
    with pytest.raises(ValueError, match="num_points: 300 there, 400 asked"):
        rooms.generate_rooms(
            root,
            object_counts=(8,),
            rooms_per_class=1,
            num_files=1,
            num_points=400,
            num_surface_points=300,
            num_workers=0,
            progress=False,
        )
    # An interrupted run: a stale temporary folder and a missing scene.
    before = _arrays(scene)
    stale = root / "rooms_08" / ".tmp-00000000-123"
    stale.mkdir()
    (stale / "partial.npz").write_bytes(b"partial")
    shutil.rmtree(scene)
    os.remove(root / onet_format.METADATA_FILE)
    rooms.ensure_rooms(_data_config(root, **_ENSURE), progress=False)
    assert not stale.exists()
    after = _arrays(scene)
    for name in before:
        for key in before[name]:
            np.testing.assert_array_equal(before[name][key], after[name][key])
    # Without data.builtin a missing folder is an error, not generated.
    config = _data_config(tmp_path / "missing", **_ENSURE)
    config.builtin = False
    with pytest.raises(FileNotFoundError, match="config.data.builtin=True"):
        rooms.ensure_rooms(config)


# --------------------------------------------------------------------------------------
# The loader.
# --------------------------------------------------------------------------------------


def test_loader_reads_the_layout(rooms_dir):
    ds = datasets.ShapesDataset(rooms_dir, "train")
    assert ds.layout == onet_format.LAYOUT_MULTI and len(ds) == 2
    assert ds.required_files() == ["points_iou/points_iou_00.npz", "pointcloud/pointcloud_00.npz"]
    for i, folder in enumerate((_scenes(rooms_dir)[0], _scenes(rooms_dir)[3])):
        data = ds.load(i)
        pts = onet_format.load_points_iou_npz(onet_format.multi_file(folder, "points_iou", 0))
        pcl = onet_format.load_multi_pointcloud_npz(onet_format.multi_file(folder, "pointcloud", 0))
        np.testing.assert_array_equal(data["points"], pts["points"])
        np.testing.assert_array_equal(data["occupancies"], pts["occupancies"])
        np.testing.assert_array_equal(data["surface_points"], pcl["points"])
        np.testing.assert_array_equal(data["surface_normals"], pcl["normals"])
        assert data["loc"].tolist() == [0, 0, 0] and float(data["scale"]) == 1.0
        assert len(data["points_files"]) == len(data["pointcloud_files"]) == 3
        # Evaluation reads file 00.
        q, occ = datasets.eval_query_points(data, i, 700)
        rows = {tuple(p): o for p, o in zip(pts["points"].tolist(), pts["occupancies"].tolist())}
        assert all(rows[tuple(p)] == o for p, o in zip(q.tolist(), occ.tolist()))
        p_iou, _ = datasets.iou_points(data)
        assert p_iou.shape == (1500, 3)
        inputs = datasets.eval_inputs(data, i, 50, 0.0)
        assert {tuple(p) for p in inputs.tolist()} <= {tuple(p) for p in pcl["points"].tolist()}


@pytest.mark.parametrize("seed", range(6))
def test_training_items_draw_files_from_the_rng(rooms_dir, seed):
    ds = datasets.ShapesDataset(rooms_dir, "train")
    data = ds.load(1)
    files = [onet_format.load_points_iou_npz(str(p)) for p in data["points_files"]]
    clouds = [onet_format.load_multi_pointcloud_npz(str(p)) for p in data["pointcloud_files"]]
    draw = np.random.default_rng(seed)
    i, j = int(draw.integers(0, 3)), int(draw.integers(0, 3))  # Points file, then point-cloud file.
    item = datasets.sample_item(data, np.random.default_rng(seed), 400, 300, 0.0, points_jitter=0.0)
    rows = {tuple(p): o for p, o in zip(files[i]["points"].tolist(), files[i]["occupancies"].tolist())}
    assert all(
        rows.get(tuple(p)) == bool(o) for p, o in zip(item["points"].tolist(), item["occupancies"].tolist())
    )
    assert {tuple(p) for p in item["inputs"].tolist()} <= {tuple(p) for p in clouds[j]["points"].tolist()}
    again = datasets.sample_item(data, np.random.default_rng(seed), 400, 300, 0.0, points_jitter=0.0)
    for k in item:
        np.testing.assert_array_equal(item[k], again[k])
    # The cached item keeps file 00.
    np.testing.assert_array_equal(ds.load(1)["points"], files[0]["points"])


def test_pipeline_batches_on_rooms(rooms_dir):
    config = experiment_configs.load("onet.py:tiny")
    config.data.path, config.data.categories = rooms_dir, ()
    ds = datasets.from_config(config.data, "train")
    batch = pipeline.make_train_batch(ds, 3, 4, 0, 64, 32, 0.005)
    assert batch["points"].shape == (4, 64, 3) and batch["inputs"].shape == (4, 32, 3)
    used = set()
    for step in range(8):  # Over steps, items use several files.
        for slot in range(4):
            rng = np.random.default_rng([0, step, slot])
            used.add(int(rng.integers(0, 3)))
    assert len(used) > 1
    batches, count = pipeline.val_batches(config, datasets.from_config(config.data, "val"), 1)
    assert count == 2 and batches[0][0]["points"].shape[1] == config.train.val_points


def _copy_scene_dataset(rooms_dir, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(rooms_dir, root)
    return root, root / "rooms_04" / "00000000"


@pytest.mark.parametrize(
    "damage, where, message",
    [
        (
            "remove points_iou/points_iou_00.npz",
            "open",
            r"train.lst: 1 of the 1 objects .*points_iou/points_iou_00.npz",
        ),
        (
            "remove pointcloud/pointcloud_00.npz",
            "open",
            r"train.lst: 1 of the 1 objects .*pointcloud/pointcloud_00.npz",
        ),
        (
            "remove points_iou/points_iou_01.npz",
            "load",
            r"points_iou: points_iou_XX.npz files must be numbered 00 .. 01, found \[0, 2\]",
        ),
        ("corrupt pointcloud/pointcloud_00.npz", "load", r"pointcloud_00.npz: not a valid .npz file"),
        (
            "drop-key points_iou/points_iou_00.npz",
            "load",
            r"points_iou_00.npz: missing key\(s\) \['occupancies'\]",
        ),
    ],
)
def test_loader_errors_name_the_file(rooms_dir, tmp_path, damage, where, message):
    root, scene = _copy_scene_dataset(rooms_dir, tmp_path)
    action, rel = damage.split(" ")
    path = scene / rel
    if action == "remove":
        os.remove(path)
    elif action == "corrupt":
        path.write_bytes(b"not a zip")
    else:
        data = onet_format.load_npz(path)
        del data["occupancies"]
        with open(path, "wb") as f:
            np.savez(f, **data)
    if where == "open":
        with pytest.raises(onet_format.DataFormatError, match=message):
            datasets.ShapesDataset(str(root), "train", categories=["rooms_04"])
    else:
        ds = datasets.ShapesDataset(str(root), "train", categories=["rooms_04"], cache=False)
        with pytest.raises(onet_format.DataFormatError, match=message):
            ds.load(0)


# --------------------------------------------------------------------------------------
# The evaluation crop.
# --------------------------------------------------------------------------------------


def _cube_cloud(half=0.25, n=20_000):
    mesh = trimesh.creation.box(extents=[2 * half] * 3)
    pts, idx = trimesh.sample.sample_surface(mesh, n, seed=0)
    corners = np.array(list(itertools.product([-half, half], repeat=3)))
    normals = np.concatenate(
        [mesh.face_normals[idx], corners / np.linalg.norm(corners, axis=1, keepdims=True)]
    )
    return np.concatenate([pts, corners]), normals


@pytest.mark.parametrize(
    "point, kept",
    [
        ((0.0, 0.0, 0.0), True),
        ((0.256, 0.0, 0.0), True),
        ((0.258, 0.0, 0.0), False),
        ((-0.258, 0.0, 0.0), False),
        ((0.0, 0.0, 0.256), True),
        ((0.0, 0.0, -0.258), False),
        ((0.0, -0.256, 0.0), True),
        ((0.0, -0.258, 0.0), False),
        ((0.0, 5.0, 0.0), True),  # No bound above: only the floor side is cropped.
    ],
)
def test_crop_mask_on_a_known_box(point, kept):
    gt = np.array(list(itertools.product([-0.25, 0.25], repeat=3)))
    assert metrics.crop_to_gt_bbox_mask(np.array([point]), gt).tolist() == [kept]
    assert metrics.GT_BBOX_MARGIN == 0.007


@pytest.mark.parametrize(
    "direction, cropped",
    [
        ((1, 0, 0), True),
        ((-1, 0, 0), True),
        ((0, 0, 1), True),
        ((0, 0, -1), True),
        ((0, -1, 0), True),
        ((0, 1, 0), False),
    ],
)
def test_crop_removes_geometry_outside_the_gt_box(direction, cropped):
    gt, gt_normals = _cube_cloud()
    # The GT cube stretched by 0.5 towards `direction`: extrapolated geometry there.
    d = np.array(direction, float)
    box = trimesh.creation.box(extents=0.5 + 0.5 * np.abs(d))
    box.apply_translation(0.25 * d)
    args = (box.vertices, box.faces, np.zeros((1, 3)), np.ones(1, bool), gt, gt_normals)
    plain = metrics.mesh_metrics(*args, n_samples=3000, rng=0)
    crop = metrics.mesh_metrics(*args, n_samples=3000, rng=0, crop_to_gt_bbox=True)
    assert plain["precision"] < 0.75 and plain["iou"] == crop["iou"]
    if cropped:
        assert crop["precision"] > 0.97 and crop["accuracy"] < 0.5 * plain["accuracy"]
    else:
        assert crop["precision"] < 0.75
    assert crop["completeness"] == pytest.approx(plain["completeness"], rel=0.3)


def test_crop_leaving_nothing_scores_an_empty_prediction():
    gt, gt_normals = _cube_cloud()
    far = trimesh.creation.box(extents=[0.1] * 3).apply_translation([2.0, 0.0, 0.0])
    out = metrics.mesh_metrics(
        far.vertices,
        far.faces,
        gt[:50],
        np.zeros(50, bool),
        gt,
        gt_normals,
        n_samples=500,
        crop_to_gt_bbox=True,
    )
    empty = metrics.empty_prediction_metrics(True)
    assert (
        metrics.is_empty(out) and out["accuracy"] == empty["accuracy"] and out["normal_consistency"] == -1.0
    )
    assert out["iou"] != out["iou"]  # 0 / 0: nothing inside either (the original's compute_iou).


@pytest.mark.parametrize("value", ["yes", 1, None, 0.0])
def test_crop_option_must_be_a_bool(value):
    with pytest.raises(ValueError, match=r"config.eval.crop_to_gt_bbox"):
        metrics.check_eval_config({"crop_to_gt_bbox": value})
    metrics.check_eval_config({"crop_to_gt_bbox": True})


def test_evaluate_meshes_on_rooms_with_and_without_the_crop(rooms_dir, tmp_path):
    config = experiment_configs.load("onet.py:tiny")
    config.data.path, config.data.categories = rooms_dir, ()
    config.generate.split = "test"
    config.logging.progress = False
    config.eval.n_samples = 3000
    ds = datasets.from_config(config.data, "test", cache=False)
    records = []
    for i, item in enumerate(
        ds.items
    ):  # The floor's box as the prediction: its underside lies below the crop.
        room = rooms.load_room(ds.model_dir(i))
        x, z = room["xz_groundplane_range"]
        floor = trimesh.creation.box(extents=[x, 0.01, z]).apply_translation([0, -0.495, 0])
        path = tmp_path / "meshes" / item.category / f"{item.model}.ply"
        path.parent.mkdir(parents=True, exist_ok=True)
        floor.export(path)
        records.append(
            {
                "category": item.category,
                "category_name": item.category,
                "model": item.model,
                "mesh": os.path.relpath(path, tmp_path),
            }
        )
    results = {}
    for crop in (False, True):
        with config.unlocked():
            config.eval.crop_to_gt_bbox = crop
        out = tmp_path / f"crop_{crop}"
        out.mkdir()
        shutil.copytree(tmp_path / "meshes", out / "meshes")
        result = reconstruction.evaluate_meshes(config, str(out), records)
        assert (
            result["crop_to_gt_bbox"] is crop
            and json.load(open(out / "metrics.json"))["crop_to_gt_bbox"] is crop
        )
        with open(out / "eval_meshes.csv") as f:
            results[crop] = {r["model"] + r["category"]: r for r in csv.DictReader(f)}
    assert sorted(results[True]) == sorted(results[False]) and len(results[True]) == 2
    for key in results[True]:
        plain, crop = results[False][key], results[True][key]
        assert float(crop["accuracy"]) < float(plain["accuracy"])
        assert float(crop["iou"]) == float(plain["iou"])
