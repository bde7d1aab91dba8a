"""Tests for implicit_fields.metrics against analytic sphere configurations."""

import re

import numpy as np
import pytest
import trimesh

from implicit_fields import metrics

RADIUS = 0.4
N_SURFACE = 100_000


def _sphere_samples(n, radius, center, rng):
    """Exact uniform samples on a sphere: points (n, 3), unit normals (n, 3)."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.asarray(center) + radius * d, d


def _shifted_sphere_expectations(radius, delta, tau):
    """Continuum accuracy, squared accuracy and precision for two spheres.

    A point q = delta*e_x + r*u on the shifted sphere has distance
    | |q| - r | to the other sphere, |q|^2 = r^2 + delta^2 + 2*r*delta*t with
    t = u_x uniform on [-1, 1] (Archimedes), and by symmetry the reverse
    direction has the same distribution. Integrated with the trapezoid rule.
    """
    t = np.linspace(-1.0, 1.0, 400_001)
    d = np.abs(np.sqrt(radius**2 + delta**2 + 2 * radius * delta * t) - radius)
    mean_d = np.trapezoid(d, t) / 2
    mean_d2 = np.trapezoid(d**2, t) / 2
    # Closed form for P(d <= tau): (r - tau)^2 <= |q|^2 <= (r + tau)^2.
    lo = ((radius - tau) ** 2 - radius**2 - delta**2) / (2 * radius * delta)
    hi = ((radius + tau) ** 2 - radius**2 - delta**2) / (2 * radius * delta)
    prob = (np.clip(hi, -1, 1) - np.clip(lo, -1, 1)) / 2
    return mean_d, mean_d2, prob


def _lens_iou(radius, delta):
    """IoU of two equal balls whose centres are `delta` apart."""
    lens = np.pi * (4 * radius + delta) * (2 * radius - delta) ** 2 / 12
    ball = 4 / 3 * np.pi * radius**3
    return lens / (2 * ball - lens)


@pytest.fixture(scope="module")
def sphere_mesh():
    return trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)


@pytest.fixture(scope="module")
def gt_surface():
    return _sphere_samples(N_SURFACE, RADIUS, np.zeros(3), np.random.default_rng(123))


def test_sample_mesh_surface(sphere_mesh):
    points, normals = metrics.sample_mesh_surface(
        sphere_mesh.vertices, sphere_mesh.faces, 20_000, np.random.default_rng(0)
    )
    assert points.shape == normals.shape == (20_000, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    radius = np.linalg.norm(points, axis=1)
    assert np.all(radius <= RADIUS + 1e-9) and np.all(radius > RADIUS - 1e-3)
    assert np.all(np.sum(points * normals, axis=1) > 0)  # Outward faces.
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=0.01)

    # Area weighting: a 1x1 and a 3x1 right triangle -> 1/4 vs 3/4 of samples.
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 1], [0, 1, 1]], np.float64)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    pts, nrm = metrics.sample_mesh_surface(verts, faces, 40_000, 1)
    assert abs(np.mean(pts[:, 2] == 0) - 0.25) < 0.01
    # Uniform in the triangle: the mean is the centroid.
    np.testing.assert_allclose(pts[pts[:, 2] == 1, :2].mean(0), [1, 1 / 3], atol=0.01)
    np.testing.assert_allclose(nrm, np.tile([0, 0, 1.0], (40_000, 1)))

    empty_pts, empty_nrm = metrics.sample_mesh_surface(np.zeros((0, 3)), np.zeros((0, 3), int), 10, 0)
    assert empty_pts.shape == empty_nrm.shape == (0, 3)


def test_occupancy_iou():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 1], bool)
    assert metrics.occupancy_iou(a, b) == pytest.approx(2 / 4)
    assert metrics.occupancy_iou(a, a) == 1.0
    assert metrics.occupancy_iou(np.zeros(5, bool), np.zeros(5, bool)) == 0.0
    # Floats are thresholded at 0.5, like the original compute_iou.
    assert metrics.occupancy_iou(a * 0.7, b.astype(float)) == pytest.approx(0.5)
    none = np.zeros_like(a)
    batch = metrics.occupancy_iou(np.stack([a, a, none]), np.stack([b, a, none]))
    np.testing.assert_allclose(batch, [0.5, 1.0, 0.0])


def test_identical_sphere(sphere_mesh, gt_surface):
    rng = np.random.default_rng(1)
    points_iou = rng.uniform(-0.55, 0.55, (50_000, 3))
    occ_gt = np.linalg.norm(points_iou, axis=1) < RADIUS
    out = metrics.mesh_metrics(sphere_mesh.vertices, sphere_mesh.faces, points_iou, occ_gt, *gt_surface)
    assert out["iou"] > 0.995
    assert out["chamfer_l1"] < 0.004  # Sampling density limit (~0.0022).
    assert out["chamfer_l2"] < 2e-5
    assert out["normal_consistency"] > 0.999
    assert out["fscore"] > 0.999
    assert out["chamfer_l1"] == pytest.approx(0.5 * (out["accuracy"] + out["completeness"]))


def test_shifted_spheres_pointcloud_analytic(gt_surface):
    delta, tau = 0.05, 0.01
    pred = _sphere_samples(N_SURFACE, RADIUS, [delta, 0, 0], np.random.default_rng(2))
    out = metrics.pointcloud_metrics(*pred, *gt_surface, fscore_threshold=tau)
    mean_d, mean_d2, prob = _shifted_sphere_expectations(RADIUS, delta, tau)
    # Finite sampling only adds small positive bias to NN distances.
    assert out["accuracy"] == pytest.approx(mean_d, rel=0.03)
    assert out["completeness"] == pytest.approx(mean_d, rel=0.03)
    assert out["chamfer_l1"] == pytest.approx(mean_d, rel=0.03)
    assert out["chamfer_l2"] == pytest.approx(mean_d2, rel=0.05)
    assert out["precision"] == pytest.approx(prob, abs=0.012)
    assert out["recall"] == pytest.approx(prob, abs=0.012)
    assert out["fscore"] == pytest.approx(prob, abs=0.012)  # P == R.


def test_shifted_sphere_mesh_iou_and_chamfer(sphere_mesh, gt_surface):
    delta = 0.1
    rng = np.random.default_rng(3)
    lo = np.array([-RADIUS, -RADIUS, -RADIUS])
    hi = np.array([RADIUS + delta, RADIUS, RADIUS])
    points_iou = rng.uniform(lo, hi, (100_000, 3))
    occ_gt = np.linalg.norm(points_iou, axis=1) < RADIUS
    vertices = sphere_mesh.vertices + [delta, 0, 0]
    out = metrics.mesh_metrics(vertices, sphere_mesh.faces, points_iou, occ_gt, *gt_surface, rng=4)
    assert out["iou"] == pytest.approx(_lens_iou(RADIUS, delta), abs=0.008)
    mean_d, mean_d2, prob = _shifted_sphere_expectations(RADIUS, delta, 0.01)
    assert out["chamfer_l1"] == pytest.approx(mean_d, rel=0.03)
    assert out["chamfer_l2"] == pytest.approx(mean_d2, rel=0.05)
    assert out["fscore"] == pytest.approx(prob, abs=0.012)


SQRT3 = np.sqrt(3)
NAN = float("nan")
# The original's EMPTY_PCL_DICT (+ EMPTY_PCL_DICT_NORMALS) as our keys: no 'chamfer-L1',
# 'chamfer-L2' or 'f-score' entries (NaN), accuracy / completeness sqrt(3), normals -1.
EMPTY = {
    "original": {
        "accuracy": SQRT3,
        "completeness": SQRT3,
        "chamfer_l1": NAN,
        "chamfer_l2": NAN,
        "normal_consistency": -1.0,
        "precision": NAN,
        "recall": NAN,
        "fscore": NAN,
    },
    "worst": {
        "accuracy": SQRT3,
        "completeness": SQRT3,
        "chamfer_l1": SQRT3,
        "chamfer_l2": 3.0,
        "normal_consistency": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "fscore": 0.0,
    },
}


def _assert_same(out, expected):
    assert set(out) == set(expected)
    for k, v in expected.items():
        if np.isnan(v):
            assert np.isnan(out[k]), (k, out[k])
        else:
            assert out[k] == pytest.approx(v), (k, out[k])


@pytest.mark.parametrize("undefined", ["original", "worst"])
@pytest.mark.parametrize("with_normals", [True, False])
def test_empty_point_cloud(gt_surface, undefined, with_normals):
    expected = dict(EMPTY[undefined])
    if not with_normals:
        expected["normal_consistency"] = NAN  # The original: no normal keys at all.
    normals = np.zeros((0, 3)) if with_normals else None
    gt_points, gt_normals = gt_surface
    out = metrics.pointcloud_metrics(
        np.zeros((0, 3)), normals, gt_points, gt_normals if with_normals else None, undefined=undefined
    )
    _assert_same(out, expected)
    assert metrics.is_empty(metrics.pointcloud_metrics(np.zeros((0, 3)), normals, gt_points, None))


EMPTY_MESHES = {
    "no vertices": (np.zeros((0, 3)), np.zeros((0, 3), int)),
    "no faces": (np.eye(3), np.zeros((0, 3), int)),
    "zero area": (np.array([[0, 0, 0], [0.1, 0, 0], [0.2, 0, 0]]), np.array([[0, 1, 2]])),
}


@pytest.mark.parametrize("undefined", ["original", "worst"])
@pytest.mark.parametrize("mesh", sorted(EMPTY_MESHES))
def test_empty_mesh(gt_surface, undefined, mesh):
    vertices, faces = EMPTY_MESHES[mesh]
    points_iou = np.random.default_rng(5).uniform(-0.5, 0.5, (1000, 3))
    occ_gt = np.linalg.norm(points_iou, axis=1) < RADIUS
    out = metrics.mesh_metrics(vertices, faces, points_iou, occ_gt, *gt_surface, undefined=undefined)
    _assert_same(out, dict(EMPTY[undefined], iou=0.0))  # The original's IoU of an empty mesh: 0.


@pytest.mark.parametrize("offset", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("with_normals", [True, False])
def test_far_apart_fscore_is_nan_as_the_original(offset, with_normals):
    rng = np.random.default_rng(6)
    a, na = _sphere_samples(500, 0.1, [0, 0, 0], rng)
    b, nb = _sphere_samples(500, 0.1, [offset, 0, 0], rng)
    if not with_normals:
        na = nb = None
    out = metrics.pointcloud_metrics(a, na, b, nb)
    assert out["precision"] == 0.0 and out["recall"] == 0.0
    assert np.isnan(out["fscore"])  # 0 / 0 in the original
    assert out["accuracy"] > offset - 0.25 and np.isfinite(out["chamfer_l1"])
    assert np.isnan(out["normal_consistency"]) != with_normals
    worst = metrics.pointcloud_metrics(a, na, b, nb, undefined="worst")
    assert worst["fscore"] == 0.0
    _assert_same(metrics.worst_case(out), worst)
    assert {k: v for k, v in worst.items() if k != "fscore"} == {
        k: v for k, v in out.items() if k != "fscore"
    }
    assert metrics.CHAMFER_REPORT_SCALE == 10.0


@pytest.mark.parametrize("undefined", ["original", "worst"])
@pytest.mark.parametrize("offset", [0.7, 3.0])
def test_mesh_far_from_the_target(sphere_mesh, gt_surface, undefined, offset):
    points_iou = np.random.default_rng(8).uniform(-0.5, 0.5, (2000, 3))
    occ_gt = np.linalg.norm(points_iou, axis=1) < RADIUS
    far = sphere_mesh.vertices * 0.1 + [offset, 0, 0]
    gt_points, gt_normals = gt_surface[0][:3000], gt_surface[1][:3000]
    out = metrics.mesh_metrics(
        far, sphere_mesh.faces, points_iou, occ_gt, gt_points, gt_normals, n_samples=3000, undefined=undefined
    )
    assert out["iou"] == 0.0 and out["precision"] == 0.0 and out["recall"] == 0.0
    assert np.isnan(out["fscore"]) if undefined == "original" else out["fscore"] == 0.0
    assert out["chamfer_l1"] > offset - 0.5 and 0.0 <= out["normal_consistency"] <= 1.0


@pytest.mark.parametrize("undefined,expected", [("original", NAN), ("worst", 0.0)])
def test_iou_of_an_empty_union(sphere_mesh, gt_surface, undefined, expected):
    # A non-empty mesh with no IoU point inside, and a shape with none inside: 0 / 0.
    points_iou = np.random.default_rng(9).uniform(0.45, 0.5, (500, 3))
    out = metrics.mesh_metrics(
        sphere_mesh.vertices,
        sphere_mesh.faces,
        points_iou,
        np.zeros(500, bool),
        *gt_surface,
        undefined=undefined,
    )
    _assert_same({"iou": out["iou"]}, {"iou": expected})
    assert metrics.worst_case(out)["iou"] == 0.0


@pytest.mark.parametrize(
    "values,mean,left_out",
    [
        ([1.0, 2.0, 3.0], 2.0, 0),
        ([1.0, NAN, 3.0], 2.0, 1),
        ([NAN, NAN, 0.5], 0.5, 2),
        ([NAN], NAN, 1),
        ([], NAN, 0),
        ([-1.0, 1.0, NAN, 0.0], 0.0, 1),
    ],
)
def test_nan_mean_skips_nan_as_pandas(values, mean, left_out):
    got, skipped = metrics.nan_mean(values)
    assert skipped == left_out
    assert np.isnan(got) if np.isnan(mean) else got == pytest.approx(mean)


@pytest.mark.parametrize("scale", [1e-4, 1e-2])
@pytest.mark.parametrize("seed", [0, 7])
def test_jitter_is_seeded_and_of_the_given_scale(scale, seed):
    points = np.random.default_rng(1).uniform(-0.5, 0.5, (20_000, 3)).astype(np.float16)
    a = metrics.jitter_points(points, scale, np.random.default_rng(seed))
    b = metrics.jitter_points(points, scale, np.random.default_rng(seed))
    c = metrics.jitter_points(points, scale, np.random.default_rng(seed + 1))
    assert a.dtype == np.float32 and a.shape == points.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    noise = a.astype(np.float64) - points.astype(np.float64)
    assert abs(noise.std() / scale - 1) < 0.03 and abs(noise.mean()) < 0.03 * scale
    np.testing.assert_array_equal(metrics.jitter_points(points, 0.0, seed), points.astype(np.float32))


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("undefined_metrics", "nan", "config.eval.undefined_metrics='nan': must be one of"),
        ("undefined_metrics", None, "undefined_metrics=None"),
        ("iou_jitter", -1e-4, "config.eval.iou_jitter=-0.0001: must be a finite number >= 0"),
        ("iou_jitter", float("nan"), "iou_jitter=nan"),
        ("iou_jitter", "1e-4", "iou_jitter='1e-4'"),
        ("fscore_threshold", 0.0, "fscore_threshold=0.0: must be a finite number > 0"),
        ("n_samples", 0, "n_samples=0: must be an integer > 0"),
        ("n_samples", 1.5, "n_samples=1.5"),
    ],
)
def test_eval_options_are_checked(key, value, match):
    good = {"undefined_metrics": "worst", "iou_jitter": 0.0, "fscore_threshold": 0.01, "n_samples": 10}
    metrics.check_eval_config(good)
    with pytest.raises(ValueError, match=re.escape(match)):
        metrics.check_eval_config(dict(good, **{key: value}))
    with pytest.raises(ValueError, match="undefined="):
        metrics.pointcloud_metrics(np.zeros((1, 3)), None, np.zeros((1, 3)), None, undefined="zero")


def test_correspondence_errors_follow_the_matched_points():
    """Vertices near ground-truth points, both moved rigidly: the error is the offset's mean length."""
    rng = np.random.default_rng(0)
    pcl0 = rng.uniform(-0.5, 0.5, size=(200, 3))
    idx = rng.choice(200, size=40, replace=False)
    offset = rng.normal(size=(40, 3)) * 1e-3  # Small: each vertex's nearest point is its own.
    angles = np.linspace(0.0, 1.2, 5)
    rot = np.stack([[[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]] for a in angles])
    pcl = np.einsum("tij,mj->tmi", rot, pcl0)
    verts = np.einsum("tij,vj->tvi", rot, pcl0[idx] + offset)
    errors = metrics.correspondence_errors(verts, pcl)
    np.testing.assert_allclose(errors, np.linalg.norm(offset, axis=1).mean(), rtol=1e-9)
    # Vertices that stay put while the truth moves: the error grows with the motion.
    still = metrics.correspondence_errors(np.broadcast_to(verts[:1], verts.shape), pcl)
    assert still[0] == pytest.approx(errors[0]) and np.all(np.diff(still) > 0)
    with pytest.raises(ValueError, match="of one T"):
        metrics.correspondence_errors(verts[:3], pcl)
    with pytest.raises(ValueError, match="finite"):
        metrics.correspondence_errors(np.where(verts > 0.4, np.nan, verts), pcl)
