"""Dense-grid extraction: conventions, watertightness, orientation, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import losses, meshing
from mesh_checks import edges_shared_twice, volume_area

R = 0.4


def sphere_logits(points, radius=R, center=(0.0, 0.0, 0.0)):
    """The reference note's analytic field: logit(0.2) + 20 (r - |p - c|); surface at |p - c| = r."""
    d = jnp.linalg.norm(points - jnp.asarray(center, points.dtype)[None, :], axis=-1)
    return losses.probability_to_logit(0.2) + 20.0 * (radius - d)


def test_grid_points_span_the_padded_box():
    pts = meshing.grid_points(4, padding=0.1)
    assert pts.shape == (125, 3)
    np.testing.assert_allclose(pts.min(0), -0.55, atol=1e-6)
    np.testing.assert_allclose(pts.max(0), 0.55, atol=1e-6)
    np.testing.assert_allclose(pts[1] - pts[0], [0.0, 0.0, 1.1 / 4], atol=1e-6)  # x-major order


def test_dense_sphere_is_watertight_outward_and_accurate():
    fn = jax.jit(sphere_logits)
    v, f, stats = meshing.extract_mesh_dense(fn, resolution=64, batch_points=50_000, return_stats=True)
    assert stats["num_queries"] == 65**3 and stats["resolution"] == 64
    r = np.linalg.norm(v, axis=1)
    assert np.abs(r - R).mean() < 1e-3  # the field is linear in r near the surface
    assert edges_shared_twice(f)
    vol, _ = volume_area(v, f)
    assert vol > 0  # outward faces
    assert abs(vol - 4 / 3 * np.pi * R**3) / (4 / 3 * np.pi * R**3) < 0.01


def test_shifted_sphere_lands_where_the_field_says():
    fn = jax.jit(lambda p: sphere_logits(p, 0.2, (0.1, -0.2, 0.05)))
    v, f = meshing.extract_mesh_dense(fn, resolution=48)
    np.testing.assert_allclose(v.mean(0), [0.1, -0.2, 0.05], atol=2e-3)


def test_full_field_gives_the_closed_box_and_empty_field_no_mesh():
    v, f = meshing.extract_mesh_dense(lambda p: jnp.full(p.shape[:1], 10.0), resolution=8)
    assert len(f) > 0 and edges_shared_twice(f)
    np.testing.assert_allclose(np.abs(v).max(), 0.55, atol=0.55 / 8)
    v, f = meshing.extract_mesh_dense(lambda p: jnp.full(p.shape[:1], -10.0), resolution=8)
    assert len(v) == 0 and len(f) == 0


def test_nan_field_is_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        meshing.extract_mesh_dense(lambda p: jnp.full(p.shape[:1], jnp.nan), resolution=8)


def test_wrong_output_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"logits \(N,\)"):
        meshing.extract_mesh_dense(lambda p: p, resolution=4)


def test_evaluate_chunks_issues_every_call_then_checks_shapes():
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (1000, 3)).astype(np.float32)
    fn = jax.jit(lambda p: jnp.sum(p**2, axis=-1))
    reference = np.sum(points**2, axis=-1)
    for sizes in ([1000], [512, 256, 256], [300] * 4):  # the last pads 200 points
        np.testing.assert_allclose(meshing.evaluate_chunks(fn, points, sizes), reference, rtol=1e-6)
    np.testing.assert_allclose(meshing.evaluate_points(fn, points, batch_points=7), reference, rtol=1e-6)
    np.testing.assert_allclose(meshing.evaluate_points(fn, points), reference, rtol=1e-6)
    with pytest.raises(ValueError, match=r"logits \(N,\); got shape \(300, 3\) for N=300"):
        meshing.evaluate_chunks(lambda p: p, points, [300] * 4)
