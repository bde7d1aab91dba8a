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


# ---------------------------------------------------------------------------
# Infinite logits, non-float logits, argument checks.
# ---------------------------------------------------------------------------


def _inside(points):
    return jnp.linalg.norm(points, axis=-1) < R


def logodds_sphere(points):
    """log(p / (1 - p)) with p clipped to [0, 1]: +-inf away from the surface, p = 0.2 at |p| = R."""
    p = jnp.clip(0.2 + 5.0 * (R - jnp.linalg.norm(points, axis=-1)), 0.0, 1.0)
    return jnp.log(p) - jnp.log1p(-p)


def numpy_float64_sphere(points):
    """A host field returning float64: 1e300 inside (inf in float32), -inf outside."""
    return np.where(np.linalg.norm(np.asarray(points), axis=-1) < R, 1e300, -np.inf)


# Fields whose surface is the sphere |p| = R (occupied inside), with infinite or float32-overflowing logits.
INFINITE_FIELDS = {
    "inf_inside_and_outside": lambda p: jnp.where(_inside(p), jnp.inf, -jnp.inf),
    "inf_inside_finite_outside": lambda p: jnp.where(_inside(p), jnp.inf, sphere_logits(p)),
    "finite_inside_inf_outside": lambda p: jnp.where(_inside(p), sphere_logits(p), -jnp.inf),
    "logodds": logodds_sphere,
    "huge_finite": lambda p: jnp.where(_inside(p), 3e38, -3e38),
    "numpy_float64": numpy_float64_sphere,
}


def assert_sphere_mesh(v, f, resolution):
    """A closed, outward, finite mesh whose vertices lie within a cell of the sphere |p| = R."""
    assert len(f) > 100 and np.isfinite(v).all()
    assert edges_shared_twice(f)
    assert volume_area(v, f)[0] > 0
    cell = 1.1 / resolution
    assert np.abs(np.linalg.norm(v, axis=1) - R).max() <= cell


@pytest.mark.parametrize("name", sorted(INFINITE_FIELDS))
def test_infinite_logits_give_a_finite_mesh_on_the_surface(name):
    v, f = meshing.extract_mesh_dense(INFINITE_FIELDS[name], resolution=16)
    assert_sphere_mesh(v, f, 16)


def test_infinite_logits_at_the_box_keep_the_box_closed_on_its_boundary():
    # Occupied outside the sphere (the other sign): the mesh is the box minus the ball.
    v, f = meshing.extract_mesh_dense(lambda p: jnp.where(_inside(p), -jnp.inf, jnp.inf), resolution=16)
    assert np.isfinite(v).all() and edges_shared_twice(f)
    on_box = np.abs(v).max(axis=1) > 0.5
    # On the box to 1e-3 of a cell (the padding layer is far below the clipped -inf), not half a cell out.
    np.testing.assert_allclose(np.abs(v[on_box]).max(axis=1), 0.55, atol=1e-3 * 1.1 / 16)
    assert np.abs(np.linalg.norm(v[~on_box], axis=1) - R).max() <= 1.1 / 16
    full_inf, _ = meshing.extract_mesh_dense(lambda p: jnp.full(p.shape[:1], jnp.inf), resolution=8)
    np.testing.assert_allclose(np.abs(full_inf).max(axis=1), 0.55, atol=1e-3 * 1.1 / 8)


@pytest.mark.parametrize("impl", ["pymcubes", "jax"])
@pytest.mark.parametrize("fill", [np.inf, -np.inf, 1e38])
def test_marching_cubes_of_a_grid_with_infinite_values(impl, fill):
    from implicit_fields import marching_cubes as jax_marching_cubes

    mc = meshing.marching_cubes if impl == "pymcubes" else jax_marching_cubes.marching_cubes
    th = losses.probability_to_logit(0.2)
    plain = np.asarray(sphere_logits(meshing.grid_points(16)), np.float32).reshape((17,) * 3)
    values = plain.copy()
    values[plain > 3.0 if fill > 0 else plain < -3.0] = fill  # the certain part: inside, or outside
    v, f = mc(values, th)
    assert_sphere_mesh(v, f, 16)
    assert len(v) == len(mc(plain, th)[0])  # the same cells cross the surface


@pytest.mark.parametrize("dtype", [jnp.bool_, jnp.int32, jnp.uint8, np.int64])
def test_non_float_logits_are_a_clear_error(dtype):
    def labels(points):
        inside = np.linalg.norm(np.asarray(points), axis=-1) < R
        return inside.astype(dtype) if dtype is np.int64 else jnp.asarray(inside, dtype)

    with pytest.raises(ValueError, match=f"logit_fn returned {np.dtype(dtype).name} values.*floating point"):
        meshing.extract_mesh_dense(labels, resolution=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(resolution=0), "resolution must be an integer >= 1, got 0"),
        (dict(resolution=-4), "resolution must be an integer >= 1, got -4"),
        (dict(resolution=8.5), "resolution must be an integer >= 1, got 8.5"),
        (dict(resolution="8"), "resolution must be an integer >= 1, got '8'"),
        (dict(resolution=True), "resolution must be an integer >= 1, got True"),
        (dict(padding=-0.1), "padding must be a finite number >= 0, got -0.1"),
        (dict(padding=float("nan")), "padding must be a finite number >= 0, got nan"),
        (dict(padding=float("inf")), "padding must be a finite number >= 0, got inf"),
        (dict(threshold=0.0), r"threshold must be a probability in \(0, 1\), got 0.0"),
        (dict(threshold=1.5), r"threshold must be a probability in \(0, 1\), got 1.5"),
        (dict(threshold=float("nan")), r"threshold must be a probability in \(0, 1\), got nan"),
        (dict(batch_points=0), "batch_points must be an integer >= 1, got 0 .None for the default."),
        (dict(batch_points=-5), "batch_points must be an integer >= 1, got -5"),
        (dict(batch_points=100.5), "batch_points must be an integer >= 1, got 100.5"),
    ],
)
def test_invalid_arguments_are_named_before_the_field_is_called(kwargs, match):
    calls = []

    def field(points):
        calls.append(points.shape)
        return sphere_logits(points)

    with pytest.raises(ValueError, match=match):
        meshing.extract_mesh_dense(field, **{"resolution": 4, **kwargs})
    assert calls == []


@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 4, 5), (8, 8)])
def test_marching_cubes_needs_a_cubic_grid(shape):
    with pytest.raises(ValueError, match="cubic grid"):
        meshing.marching_cubes(np.zeros(shape, np.float32), 0.0)
