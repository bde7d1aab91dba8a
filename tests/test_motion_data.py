"""Tests of the built-in shapes in motion (D-FAUST layout): exact motions, writer, loader."""

import json
import os
import shutil

import numpy as np
import pytest

from implicit_fields.data import motion, onet_format
from implicit_fields.data.motion import (
    Articulation,
    Bend,
    MotionDataset,
    MotionSequence,
    Sway,
    Twist,
    ensure_motion_dataset,
    generate_sequence,
    load_motion,
    load_pcl_npz,
    sample_window,
    subdivide_into_sequences,
)
from implicit_fields.data.onet_format import DataFormatError
from implicit_fields.data.shapes import Box, Cylinder, Shape, Sphere

TIMES = (0.0, 0.13, 0.5, 0.77, 1.0)


def _arm_shape(negative=False):
    """A base box, a post and an arm (box + ball) hinged on the post's top; optionally a hole."""
    positives = [
        Box((0.3, 0.05, 0.3), None, (0.0, -0.4, 0.0)),
        Box((0.04, 0.3, 0.04), None, (0.0, -0.1, 0.0)),
        Box((0.25, 0.03, 0.03), None, (0.2, 0.2, 0.0)),
        Sphere(0.06, None, (0.42, 0.2, 0.0)),
    ]
    negatives = [Sphere(0.03, None, (0.42, 0.2, 0.0)), Box((0.2, 0.02, 0.2), None, (0.0, -0.4, 0.0))]
    return Shape(positives, negatives if negative else [])


_ARM = dict(parts=[{"primitives": [2, 3], "axis": [0.0, 0.0, 1.0], "pivot": [0.0, 0.2, 0.0]}])

MOTIONS = {
    "twist": Twist(1.3, "ramp", (0.05, -0.1), -0.5),
    "bend": Bend(1.1, "bump", 0.7, (0.02, 0.0), -0.5),
    "bend_negative": Bend(-0.9, "ramp", 2.0, (0.0, 0.1), -0.45),
    "bend_wave": Bend(0.8, "wave", -1.0, (0.0, 0.0), -0.5),
    "sway": Sway(0.15, "wave", 1.2, (0.0, 0.0), -0.5, 1.0),
    "articulation": Articulation(_ARM["parts"], 0.9, "bump"),
}


def _random_points(n=4000, seed=0, half=0.55):
    return np.random.default_rng(seed).uniform(-half, half, (n, 3))


# --------------------------------------------------------------------------------------
# Motions: exact inverses, exact occupancy.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MOTIONS))
@pytest.mark.parametrize("t", TIMES)
def test_forward_inverse_roundtrip(name, t):
    m = MOTIONS[name]
    x = _random_points()
    np.testing.assert_allclose(m.forward(m.inverse(x, t), t), x, atol=1e-12)
    np.testing.assert_allclose(m.inverse(m.forward(x, t), t), x, atol=1e-12)
    if t == 0.0:
        np.testing.assert_array_equal(m.forward(x, t), x)
    # The record round trip gives the same map.
    again = motion.Motion.from_dict(json.loads(json.dumps(m.to_dict())))
    np.testing.assert_array_equal(again.forward(x, t), m.forward(x, t))


@pytest.mark.parametrize("name", ["twist", "sway", "bend", "bend_negative"])
@pytest.mark.parametrize("t", TIMES[1:])
def test_deformation_jacobian(name, t):
    """Twist and sway preserve volume (det J = 1); the bend scales areas by 1 - k u."""
    m = MOTIONS[name]
    x = _random_points(200, seed=1, half=0.5)
    h = 1e-6
    jac = np.stack([(m.forward(x + h * e, t) - m.forward(x - h * e, t)) / (2 * h) for e in np.eye(3)], axis=2)
    det = np.linalg.det(jac)
    if name.startswith("bend"):
        k = m.value(t)
        d = np.array([np.cos(m.direction), 0.0, np.sin(m.direction)])
        u = (x - [m.center[0], m.base, m.center[1]]) @ d
        np.testing.assert_allclose(det, 1.0 - k * u, atol=1e-6)
    else:
        np.testing.assert_allclose(det, 1.0, atol=1e-6)


@pytest.mark.parametrize("k", [0.4, -1.2, 1e-9])
def test_bend_maps_axis_to_circle(k):
    """Points of the bent axis land on the circle of radius 1/k through the base point."""
    m = Bend(k, "ramp", 0.3, (0.1, -0.05), -0.5)
    v = np.linspace(0.0, 1.0, 11)
    axis = np.stack([np.full_like(v, 0.1), v - 0.5, np.full_like(v, -0.05)], 1)
    out = m.forward(axis, 1.0)
    d = np.array([np.cos(0.3), 0.0, np.sin(0.3)])
    if abs(k) < 1e-6:
        np.testing.assert_allclose(out, axis, atol=1e-8)
        return
    centre = np.array([0.1, -0.5, -0.05]) + d / k
    np.testing.assert_allclose(np.linalg.norm(out - centre, axis=1), 1.0 / abs(k), atol=1e-12)
    # Arc length along the axis is preserved.
    np.testing.assert_allclose(np.linalg.norm(np.diff(out, axis=0), axis=1).sum(), 1.0, rtol=1e-2)


@pytest.mark.parametrize("t", TIMES)
def test_twist_leaves_a_coaxial_cylinder_unchanged(t):
    cyl = Cylinder(0.2, 0.45, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], (0.05, 0.0, -0.1))  # Axis along y.
    seq = MotionSequence(Shape([cyl]), [Twist(2.0, "ramp", (0.05, -0.1), -0.5)])
    x = _random_points(6000, seed=2)
    np.testing.assert_array_equal(seq.contains(x, t), cyl.contains(x))


@pytest.mark.parametrize("name", ["twist", "bend", "bend_negative", "bend_wave", "sway"])
@pytest.mark.parametrize("t", TIMES)
def test_occupancy_is_rest_occupancy_of_inverse(name, t):
    shape = _arm_shape(negative=True)
    m = MOTIONS[name]
    seq = MotionSequence(shape, [m])
    x = _random_points(6000, seed=3)
    occ = seq.contains(x, t)
    np.testing.assert_array_equal(occ, shape.contains(m.inverse(x, t)))
    # And the moved occupied points are occupied at t: forward then contains is the identity.
    inside = x[shape.contains(x)]
    assert inside.shape[0] > 100
    assert seq.contains(m.forward(inside, t), t).all()


@pytest.mark.parametrize("t", TIMES)
def test_articulation_equals_rigidly_moved_primitives(t):
    """Without negatives, the articulated occupancy is that of the shape with the part's
    primitives moved by their rigid frame (an independent code path)."""
    shape = _arm_shape()
    art = MOTIONS["articulation"]
    seq = MotionSequence(shape, [art])
    rot = art.rotation(t, 1)
    pivot = np.array([0.0, 0.2, 0.0])
    moved = []
    for i, p in enumerate(shape.positives):
        d = p.to_dict()
        if i in (2, 3):
            d["rotation"] = (rot @ p.rotation).tolist()
            d["translation"] = (rot @ (p.translation - pivot) + pivot).tolist()
        moved.append(type(p).from_dict(d))
    x = _random_points(8000, seed=4)
    np.testing.assert_array_equal(seq.contains(x, t), Shape(moved).contains(x))
    if t in (0.0, 1.0):  # bump profile: at rest at both ends.
        np.testing.assert_array_equal(seq.contains(x, t), shape.contains(x))


@pytest.mark.parametrize("t", TIMES)
def test_articulation_with_negatives_moves_them_with_the_part(t):
    shape = _arm_shape(negative=True)
    art = MOTIONS["articulation"]
    seq = MotionSequence(shape, [art, MOTIONS["sway"]])
    x = _random_points(8000, seed=5)
    y = MOTIONS["sway"].inverse(x, t)
    static = Shape(shape.positives[:2], shape.negatives)
    part = Shape(shape.positives[2:], shape.negatives)
    expect = static.contains(y) | part.contains(art.inverse(y, t, 1))
    np.testing.assert_array_equal(seq.contains(x, t), expect)
    # The ball's hole moves with the ball: its centre is free at every time.
    centre = art.forward(np.array([[0.42, 0.2, 0.0]]), t)
    assert not seq.contains(MOTIONS["sway"].forward(centre, t), t)[0]


def test_motion_sequence_rejects_bad_articulations():
    shape = _arm_shape()
    with pytest.raises(ValueError, match="first motion"):
        MotionSequence(shape, [MOTIONS["twist"], MOTIONS["articulation"]])
    with pytest.raises(ValueError, match=">= 4 positives"):
        MotionSequence(
            shape, [Articulation([{"primitives": [7], "axis": [0, 1, 0], "pivot": [0, 0, 0]}], 1, "ramp")]
        )
    with pytest.raises(ValueError, match="at least one static"):
        MotionSequence(
            shape,
            [Articulation([{"primitives": [0, 1, 2, 3], "axis": [0, 1, 0], "pivot": [0, 0, 0]}], 1, "ramp")],
        )
    with pytest.raises(ValueError, match="profile"):
        Twist(1.0, "zigzag")
    with pytest.raises(ValueError, match="'pivot'"):
        motion.Motion.from_dict(
            {
                "type": "articulation",
                "amplitude": 1,
                "profile": "ramp",
                "parts": [{"primitives": [1], "axis": [0, 1, 0]}],
            }
        )


# --------------------------------------------------------------------------------------
# Built-in sequences: correspondences on the surface, inside the cube.
# --------------------------------------------------------------------------------------

SEQUENCES = [("chair", 1), ("chair", 0), ("airplane", 1), ("lamp", 2), ("lamp", 3), ("sofa", 3), ("mug", 1)]


@pytest.fixture(scope="module")
def sequences():
    return {
        key: generate_sequence(key[0], key[1], seed=0, n_frames=7, num_points=3000, num_pcl_points=400)
        for key in SEQUENCES
    }


@pytest.mark.parametrize("key", SEQUENCES)
def test_correspondences_stay_on_the_surface(sequences, key):
    data = sequences[key]
    seq, times = data["sequence"], data["times"]
    # The correspondences are redrawn exactly from the record's seed.
    p0, n0, labels = seq.sample_correspondences(
        400, np.random.default_rng(data["record"]["seeds"]["pcl"]), times
    )
    np.testing.assert_array_equal(labels, data["labels"])
    np.testing.assert_allclose(data["pcl"][0], p0, atol=1e-15)
    eps = 1e-5
    for i, t in enumerate(times):
        x = data["pcl"][i]
        # Pulled back by the inverse maps, every frame's point is its t = 0 sample.
        back = seq.undeform(x, t)
        if seq.articulation is not None:
            for k in range(1, seq.num_parts):
                sel = labels == k
                back[sel] = seq.articulation.inverse(back[sel], t, k)
        np.testing.assert_allclose(back, p0, atol=1e-12)
        # On the surface at t: occupied just inside, free just outside (moved with the point).
        assert seq.contains(seq.move(p0 - eps * n0, labels, t), t).all()
        assert not seq.contains(seq.move(p0 + eps * n0, labels, t), t).any()
        assert np.abs(x).max() <= 0.55
    # Exact occupancies at the float16 points of every frame; the shape moves.
    for i, t in enumerate(times):
        np.testing.assert_array_equal(
            seq.contains(data["points"][i].astype(np.float64), t), data["occupancies"][i]
        )
    assert np.abs(data["pcl"] - data["pcl"][0]).max() > 0.02  # It moves.


def test_sequence_kinds_and_cube(sequences):
    kinds = {key: [m.kind for m in data["sequence"].motions] for key, data in sequences.items()}
    assert kinds[("chair", 1)][0] == "articulation" and sequences[("chair", 1)][
        "sequence"
    ].articulation.parts[0]["axis"].tolist() == [0.0, 1.0, 0.0]  # A swivel chair turns about its column.
    assert sequences[("airplane", 1)]["sequence"].num_parts == 3  # Two wings.
    assert "articulation" not in kinds[("sofa", 3)]
    for data in sequences.values():
        seq = data["sequence"]
        pts, _ = seq.shape.sample_surface(3000, np.random.default_rng(9))
        labels = seq.label_points(pts, _)
        for t in np.linspace(0.0, 1.0, 9):
            assert np.abs(seq.move(pts, labels, t)).max() <= 0.55


# --------------------------------------------------------------------------------------
# Windowing, as the original's HumansDataset.subdivide_into_sequences.
# --------------------------------------------------------------------------------------


def _original_subdivide(models, models_len, length_sequence, n_files_per_sequence, offset_sequence):
    # Transcribed from im2mesh/data/subseq_dataset.py.
    models_len = [n - offset_sequence for n in models_len]
    if n_files_per_sequence > 0:
        models_len = [min(n_files_per_sequence, n) for n in models_len]
    models_out = []
    start_idx = []
    for idx, model in enumerate(models):
        for n in range(0, models_len[idx] - length_sequence + 1):
            models_out.append(model)
            start_idx.append(n + offset_sequence)
    return models_out, start_idx


@pytest.mark.parametrize(
    "lengths,length,offset,n_files",
    [
        ([40, 17, 31], 17, 15, -1),
        ([24, 24], 17, 0, -1),
        ([100, 60], 17, 15, 50),
        ([5, 30], 30, 0, -1),
        ([3], 1, 0, 2),
    ],
)
def test_subdivide_matches_the_original(lengths, length, offset, n_files):
    names = [f"s{i}" for i in range(len(lengths))]
    assert subdivide_into_sequences(names, lengths, length, offset, n_files) == _original_subdivide(
        names, lengths, length, n_files, offset
    )


# --------------------------------------------------------------------------------------
# Writer and loader.
# --------------------------------------------------------------------------------------

_SETTINGS = dict(
    categories=["chair", "mug"],
    sequences_per_category=3,
    n_frames=6,
    num_points=300,
    num_pcl_points=60,
    seed=1,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("motion") / "data")
    return ensure_motion_dataset(root, num_workers=0, progress=False, **_SETTINGS)


def test_layout_and_round_trip(dataset):
    cat = os.path.join(dataset, motion.CATEGORY)
    assert onet_format.read_metadata(dataset) == {
        motion.CATEGORY: {"id": motion.CATEGORY, "name": "built-in shapes in motion"}
    }
    splits = {s: onet_format.read_split(cat, s) for s in onet_format.SPLITS}
    assert splits == {
        "train": ["chair_0000", "mug_0000"],
        "val": ["chair_0001", "mug_0001"],
        "test": ["chair_0002", "mug_0002"],
    }
    folder = os.path.join(cat, "mug_0001")
    assert sorted(os.listdir(os.path.join(folder, "points_seq"))) == [f"{i:08d}.npz" for i in range(6)]
    seq, record = load_motion(folder)
    assert record["frame_times"] == pytest.approx([i / 5 for i in range(6)])
    again = generate_sequence("mug", 1, seed=1, n_frames=6, num_points=300, num_pcl_points=60)
    for i, t in enumerate(record["frame_times"]):
        pts = onet_format.load_points_npz(os.path.join(folder, "points_seq", f"{i:08d}.npz"))
        np.testing.assert_array_equal(pts["occupancies"], seq.contains(pts["points"].astype(np.float64), t))
        np.testing.assert_array_equal(pts["points"], again["points"][i].astype(np.float32))
        pcl = load_pcl_npz(os.path.join(folder, "pcl_seq", f"{i:08d}.npz"))
        assert pcl["points"].dtype == np.float16 and pcl["points"].shape == (60, 3)
        np.testing.assert_array_equal(pcl["points"], again["pcl"][i].astype(np.float16))
        assert pcl["scale"] == pts["scale"] == record["scale"]
        # Fresh uniform points every frame, as D-FAUST's.
        assert i == 0 or not np.array_equal(again["points"][i], again["points"][i - 1])


@pytest.mark.parametrize("length,offset", [(4, 0), (6, 0), (3, 2), (17, 0)])
def test_loader_windows(dataset, length, offset):
    ds = MotionDataset(dataset, "train", length=length, offset=offset)
    names, starts = _original_subdivide(["chair_0000", "mug_0000"], [6, 6], length, -1, offset)
    assert [(w[1], w[2]) for w in ds.windows] == list(zip(names, starts))
    if not len(ds):
        return
    item = ds.load(len(ds) - 1)
    assert item["sequence"] == "mug_0000" and item["start_idx"] == starts[-1]
    np.testing.assert_allclose(item["times"], np.arange(length) / (length - 1))
    np.testing.assert_array_equal(item["frames"], np.arange(starts[-1], starts[-1] + length))
    assert item["points"].shape == (length, 300, 3) and item["occupancies"].shape == (length, 300)
    assert item["pcl"].shape == (length, 60, 3) and item["pcl"].dtype == np.float32
    seq, record = load_motion(ds.sequence_dir(len(ds) - 1))
    for j, f in enumerate(item["frames"]):
        t = record["frame_times"][f]
        np.testing.assert_array_equal(
            seq.contains(item["points"][j].astype(np.float64), t), item["occupancies"][j]
        )


@pytest.mark.parametrize("random", [True, False])
def test_sample_window_pure_and_connected(dataset, random):
    ds = MotionDataset(dataset, "val", length=4, offset=0)
    data = ds.load(2)
    a = sample_window(data, np.random.default_rng(7), 50, 20, num_inputs=30, input_noise=0.01, random=random)
    b = sample_window(data, np.random.default_rng(7), 50, 20, num_inputs=30, input_noise=0.01, random=random)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert (
        a["points"].shape == (4, 50, 3)
        and a["occupancies"].shape == (4, 50)
        and a["inputs"].shape == (4, 30, 3)
    )
    seq, record = load_motion(ds.sequence_dir(2))
    # Points and their occupancies stay paired.
    for j, f in enumerate(a["frames"]):
        occ = seq.contains(a["points"][j].astype(np.float64), record["frame_times"][f])
        np.testing.assert_array_equal(occ, a["occupancies"][j] > 0.5)
    # pcl rows are the same material points in every frame: each row is one row of the files.
    rows = [np.flatnonzero((data["pcl"][0] == p).all(axis=1))[0] for p in a["pcl"][0]]
    np.testing.assert_array_equal(a["pcl"], data["pcl"][:, rows])
    if not random:
        np.testing.assert_array_equal(a["points"], data["points"][:, :50])
    else:
        c = sample_window(data, np.random.default_rng(8), 50, 20)
        assert not np.array_equal(a["points"], c["points"])


def _dfaust_like(root, name, n_frames, first=80, n_points=100, seed=0):
    """A D-FAUST style sequence: pcl files as the original's (float16 points and loc, float64
    scale), each frame normalised by its own loc and scale."""
    rng = np.random.default_rng(seed)
    world = rng.normal(size=(n_points, 3))
    folder = os.path.join(root, name, "pcl_seq")
    os.makedirs(folder)
    worlds = []
    for i in range(n_frames):
        w = world + 0.05 * i
        loc = rng.normal(size=3).astype(np.float16)
        scale = float(rng.uniform(1.5, 2.0))
        np.savez(
            os.path.join(folder, f"{first + i:08d}.npz"),
            points=((w - loc) / scale).astype(np.float16),
            loc=loc,
            scale=scale,
        )
        worlds.append(w)
    return worlds


@pytest.mark.parametrize("length,offset,expect", [(17, 0, 4), (17, 15, 0), (5, 15, 1), (2, 3, 16)])
def test_dfaust_demo_format(tmp_path, length, offset, expect):
    root = tmp_path / "Humans"
    _dfaust_like(root / "Demo", "50002_light_hopping_loose", 20)
    _dfaust_like(root / "Demo", "50004_punching", 17, first=166, seed=1)
    d = load_pcl_npz(root / "Demo" / "50004_punching" / "pcl_seq" / "00000166.npz")
    assert d["points"].dtype == np.float16 and d["points"].shape == (100, 3) and d["loc"].dtype == np.float64
    ds = MotionDataset(root, None, length=length, offset=offset, points=False)
    names, starts = _original_subdivide(
        ["50002_light_hopping_loose", "50004_punching"], [20, 17], length, -1, offset
    )
    assert [(w[0], w[1], w[2]) for w in ds.windows] == [("Demo", n, s) for n, s in zip(names, starts)]
    assert len(ds) == expect + len(_original_subdivide(["x"], [17], length, -1, offset)[0])
    if not len(ds):
        return
    item = ds.load(0)
    assert "points" not in item and item["pcl"].shape == (length, 100, 3)
    # Every frame is mapped into the window's first frame: (loc + scale * p - loc0) / scale0.
    folder = root / "Demo" / names[0] / "pcl_seq"
    files = sorted(os.listdir(folder))[starts[0] : starts[0] + length]
    raw = [np.load(folder / f) for f in files]
    loc0, scale0 = raw[0]["loc"].astype(np.float64), float(raw[0]["scale"])
    for j, r in enumerate(raw):
        expect_j = (
            r["loc"].astype(np.float64) + float(r["scale"]) * r["points"].astype(np.float64) - loc0
        ) / scale0
        np.testing.assert_allclose(item["pcl"][j], expect_j, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------
# Resume, settings, broken files.
# --------------------------------------------------------------------------------------

_TINY = dict(
    categories=["lamp"], sequences_per_category=2, n_frames=3, num_points=100, num_pcl_points=20, seed=0
)


def test_resume_skips_complete_sequences(tmp_path):
    root = ensure_motion_dataset(tmp_path / "d", num_workers=0, progress=False, **_TINY)
    cat = os.path.join(root, motion.CATEGORY)
    keep = os.path.join(cat, "lamp_0000", "pcl_seq", "00000001.npz")
    before = os.stat(keep)
    with open(os.path.join(cat, "lamp_0001", "motion.json")) as f:
        record = json.load(f)
    # An interrupted run: one sequence gone, a temporary folder left, no metadata yet.
    shutil.rmtree(os.path.join(cat, "lamp_0001"))
    os.remove(os.path.join(root, "metadata.yaml"))
    os.makedirs(os.path.join(cat, ".tmp-lamp_0001-123", "pcl_seq"))
    ensure_motion_dataset(root, num_workers=0, progress=False, **_TINY)
    after = os.stat(keep)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    with open(os.path.join(cat, "lamp_0001", "motion.json")) as f:
        assert json.load(f) == record
    assert not [e for e in os.listdir(cat) if e.startswith(".tmp")]
    assert os.path.exists(os.path.join(root, "metadata.yaml"))
    # A complete dataset is left alone.
    ensure_motion_dataset(root, num_workers=0, progress=False, **_TINY)
    assert os.stat(keep).st_mtime_ns == before.st_mtime_ns


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split()


@pytest.mark.parametrize(
    "change,key",
    [
        (dict(n_frames=4), "n_frames"),
        (dict(num_points=101), "num_points"),
        (dict(num_pcl_points=21), "num_pcl_points"),
        (dict(seed=1), "seed"),
        (dict(sequences_per_category=3), "sequences_per_category"),
        (dict(sequences_per_category=1), "sequences_per_category"),
        (dict(categories=["lamp", "mug"]), "categories"),
        (dict(categories=["mug"]), "categories"),
    ],
)
@pytest.mark.parametrize("complete", [True, False])
def test_settings_change_is_refused(tmp_path, change, key, complete):
    root = ensure_motion_dataset(tmp_path / "d", num_workers=0, progress=False, **_TINY)
    if not complete:
        os.remove(os.path.join(root, "metadata.yaml"))
        if change in (dict(sequences_per_category=3), dict(categories=["lamp", "mug"])):
            # An interrupted dataset holds only asked-for sequences: it is completed, not refused.
            ensure_motion_dataset(root, num_workers=0, progress=False, **{**_TINY, **change})
            cat = os.path.join(root, motion.CATEGORY)
            listed = sorted(n for s in onet_format.SPLITS for n in _lines(os.path.join(cat, f"{s}.lst")))
            want = ["lamp_0000", "lamp_0001", "lamp_0002"] if key == "sequences_per_category" else None
            assert listed == (want or ["lamp_0000", "lamp_0001", "mug_0000", "mug_0001"])
            return
    stamp = {f: os.stat(os.path.join(r, f)).st_mtime_ns for r, _, fs in os.walk(root) for f in fs}
    with pytest.raises(ValueError, match=key):
        ensure_motion_dataset(root, num_workers=0, progress=False, **{**_TINY, **change})
    assert {f: os.stat(os.path.join(r, f)).st_mtime_ns for r, _, fs in os.walk(root) for f in fs} == stamp


@pytest.mark.parametrize(
    "bad", [dict(n_frames=1), dict(num_points=0), dict(sequences_per_category=2.5), dict(seed=-1)]
)
def test_bad_arguments_are_named(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ensure_motion_dataset(tmp_path / "d", num_workers=0, progress=False, **{**_TINY, **bad})


@pytest.fixture
def small_copy(tmp_path, dataset):
    root = str(tmp_path / "copy")
    shutil.copytree(dataset, root)
    return root


def _seq_dir(root, name="chair_0000"):
    return os.path.join(root, motion.CATEGORY, name)


@pytest.mark.parametrize(
    "breakage,where",
    [
        ("garbage_pcl", "pcl_seq/00000002.npz"),
        ("garbage_points", "points_seq/00000003.npz"),
        ("pcl_missing_key", "pcl_seq/00000001.npz"),
        ("pcl_fewer_points", "pcl_seq/00000004.npz"),
        ("points_missing_frame", "points_seq"),
        ("pcl_missing_frame", "pcl_seq"),
    ],
)
def test_broken_files_are_named(small_copy, breakage, where):
    folder = _seq_dir(small_copy)
    path = os.path.join(folder, where)
    if breakage.startswith("garbage"):
        with open(path, "wb") as f:
            f.write(b"not an npz at all")
    elif breakage == "pcl_missing_key":
        np.savez(path, points=np.zeros((60, 3), np.float16), loc=np.zeros(3))
    elif breakage == "pcl_fewer_points":
        np.savez(path, points=np.zeros((59, 3), np.float16), loc=np.zeros(3), scale=1.0)
    elif breakage == "points_missing_frame":
        os.remove(os.path.join(path, "00000005.npz"))
    else:
        os.remove(os.path.join(path, "00000005.npz"))
    with pytest.raises(DataFormatError, match=os.path.basename(path)) as info:
        ds = MotionDataset(small_copy, "train", length=6, offset=0)
        ds.load(0)
    assert path in str(info.value) or where in str(info.value)


@pytest.mark.parametrize(
    "breakage,match",
    [
        ("no_pcl_seq", "pcl_seq: folder not found"),
        ("no_split", "train.lst"),
        ("no_category", "category folder not found"),
    ],
)
def test_broken_layout_is_named(small_copy, breakage, match):
    cat = os.path.join(small_copy, motion.CATEGORY)
    if breakage == "no_pcl_seq":
        shutil.rmtree(os.path.join(_seq_dir(small_copy), "pcl_seq"))
    elif breakage == "no_split":
        os.remove(os.path.join(cat, "train.lst"))
    else:
        shutil.rmtree(cat)
    with pytest.raises(DataFormatError, match=match):
        MotionDataset(small_copy, "train", length=3, offset=0)


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2]", '{"shape": {"positives": []}, "motions": []}', None]
)
def test_broken_motion_json_is_named(small_copy, content):
    path = os.path.join(_seq_dir(small_copy), "motion.json")
    if content is None:
        os.remove(path)
    else:
        with open(path, "w") as f:
            f.write(content)
    with pytest.raises(DataFormatError, match="motion.json"):
        load_motion(_seq_dir(small_copy))
    if content is not None:  # The writer refuses to resume over it, naming it too.
        os.remove(os.path.join(small_copy, "metadata.yaml"))
        with pytest.raises(ValueError, match="chair_0000/motion.json"):
            ensure_motion_dataset(small_copy, num_workers=0, progress=False, **_SETTINGS)
