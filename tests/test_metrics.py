"""Tests for implicit_fields.metrics against analytic sphere configurations."""

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


def test_empty_prediction(gt_surface):
    expected = {
        "accuracy": np.sqrt(3),
        "completeness": np.sqrt(3),
        "chamfer_l1": np.sqrt(3),
        "chamfer_l2": 3.0,
        "normal_consistency": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "fscore": 0.0,
    }
    out = metrics.pointcloud_metrics(np.zeros((0, 3)), np.zeros((0, 3)), *gt_surface)
    assert out == pytest.approx(expected)
    points_iou = np.random.default_rng(5).uniform(-0.5, 0.5, (1000, 3))
    out = metrics.mesh_metrics(
        np.zeros((0, 3)), np.zeros((0, 3), int), points_iou, np.ones(1000, bool), *gt_surface
    )
    assert out == pytest.approx(dict(expected, iou=0.0))


def test_far_apart_fscore_zero_and_no_normals():
    a, _ = _sphere_samples(500, 0.1, [0, 0, 0], np.random.default_rng(6))
    b, _ = _sphere_samples(500, 0.1, [1, 0, 0], np.random.default_rng(7))
    out = metrics.pointcloud_metrics(a, None, b, None)
    assert out["fscore"] == 0.0 and out["precision"] == 0.0
    assert np.isnan(out["normal_consistency"])
    assert out["accuracy"] > 0.7
    assert metrics.CHAMFER_REPORT_SCALE == 10.0
