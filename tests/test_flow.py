"""flow.integrate: closed-form trajectories, forward-backward, adjoint gradients, jit/vmap, batched times."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import flow

TIGHT = dict(rtol=1e-7, atol=1e-9)


def rotation(omega, points, t):
    """The velocity of a rigid rotation about z at angular speed omega (params): omega e_z x p."""
    del t
    return jnp.stack([-omega * points[:, 1], omega * points[:, 0], jnp.zeros_like(points[:, 0])], axis=-1)


def rotated(points, angle):
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return np.stack([c * x - s * y, s * x + c * y, np.broadcast_to(z, c.shape[:1] + z.shape)], axis=-1)


def swirl(params, points, t):
    """A nonlinear, time-dependent field: A tanh(B p + t c)."""
    return jnp.tanh(points @ params["B"] + (t * params["c"])[None, :]) @ params["A"]


def _swirl_params(seed=0):
    rng = np.random.default_rng(seed)
    # numpy float64: each test picks its dtype.
    return {k: 0.8 * rng.normal(size=s) for k, s in (("A", (4, 3)), ("B", (3, 4)), ("c", (4,)))}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("times", [[0.0, 0.25, 0.5, 1.0], [1.0, 0.6, 0.0]])
def test_rigid_rotation_matches_its_closed_form(times):
    points = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    out = flow.integrate(rotation, jnp.float32(2.0), points, jnp.asarray(times), rtol=1e-6, atol=1e-8)
    expected = rotated(points, 2.0 * (np.asarray(times) - times[0]))
    assert out.shape == (len(times), 7, 3)
    np.testing.assert_array_equal(np.asarray(out[0]), points)  # The first state is the input, exactly.
    np.testing.assert_allclose(np.asarray(out), expected, atol=2e-5)


def test_forward_then_backward_returns_to_the_start(x64):
    params = jax.tree.map(jnp.asarray, _swirl_params())
    points = jnp.asarray(np.random.default_rng(1).uniform(-0.5, 0.5, size=(20, 3)))
    times = jnp.linspace(0.0, 1.0, 17)  # Occupancy Flow's 17 frames, t = i / 16.
    forward = flow.integrate(swirl, params, points, times, **TIGHT)
    back = flow.integrate(swirl, params, forward[-1], times[::-1], **TIGHT)
    np.testing.assert_allclose(np.asarray(back[::-1]), np.asarray(forward), atol=1e-6)
    assert float(jnp.abs(forward[-1] - points).max()) > 0.1  # It did move.
    # At the original's tolerances the round trip is as good as they ask.
    loose = flow.integrate(swirl, params, flow.integrate(swirl, params, points, times)[-1], times[::-1])
    np.testing.assert_allclose(np.asarray(loose[-1]), np.asarray(points), atol=5e-3)


def test_adjoint_gradients_agree_with_the_steps_and_finite_differences(x64):
    params = jax.tree.map(jnp.asarray, _swirl_params(2))
    points = jnp.asarray(np.random.default_rng(3).uniform(-0.5, 0.5, size=(6, 3)))
    times = jnp.asarray([0.0, 0.5, 1.0])
    w = jnp.asarray(np.random.default_rng(4).normal(size=(3, 6, 3)))

    def loss(p, x, adjoint):
        return jnp.sum(w * flow.integrate(swirl, p, x, times, adjoint=adjoint, **TIGHT))

    g_back = jax.grad(loss, argnums=(0, 1))(params, points, "backsolve")
    g_ckpt = jax.grad(loss, argnums=(0, 1))(params, points, "checkpoint")
    for a, b in zip(jax.tree.leaves(g_back), jax.tree.leaves(g_ckpt)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # Central differences along random directions of the parameters and the points.
    rng = np.random.default_rng(5)
    dp = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
    dx = jnp.asarray(rng.normal(size=points.shape))
    eps = 1e-5
    plus = loss(jax.tree.map(lambda a, d: a + eps * d, params, dp), points + eps * dx, "checkpoint")
    minus = loss(jax.tree.map(lambda a, d: a - eps * d, params, dp), points - eps * dx, "checkpoint")
    numeric = (plus - minus) / (2 * eps)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(g_back[0]), jax.tree.leaves(dp)))
    analytic += jnp.vdot(g_back[1], dx)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5)


def test_jit_vmap_and_batched_times_agree_with_one_at_a_time():
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _swirl_params(6))
    rng = np.random.default_rng(7)
    points = jnp.asarray(rng.uniform(-0.5, 0.5, size=(3, 10, 3)), jnp.float32)
    times = jnp.linspace(0.0, 1.0, 5)
    batched = jax.jit(jax.vmap(lambda x: flow.integrate(swirl, params, x, times)))(points)
    single = [flow.integrate(swirl, params, points[i], times) for i in range(3)]
    np.testing.assert_allclose(np.asarray(batched), np.stack([np.asarray(s) for s in single]), atol=1e-5)
    # Each sample pulled back from its own time to 0 in one solve (a time reparametrisation),
    # with a per-sample argument; one sample does not move (t_start == t_end).
    t_start = jnp.asarray([1.0, 0.4, 0.0])
    codes = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)

    def coded(p, x, t, code):
        return code * swirl(p, x, t)

    fine = dict(rtol=1e-6, atol=1e-8)  # The two solves choose different steps; compare them tightly.
    pull = jax.jit(lambda x, t: flow.integrate_samples(coded, params, x, t, 0.0, sample_args=codes, **fine))
    pulled = pull(points, t_start)
    for i in range(3):
        ref = (
            flow.integrate(
                lambda p, x, t, i=i: coded(p, x, t, codes[i]),
                params,
                points[i],
                jnp.stack([t_start[i], 0.0]),
                **fine,
            )[-1]
            if float(t_start[i])
            else points[i]
        )
        np.testing.assert_allclose(np.asarray(pulled[i]), np.asarray(ref), atol=5e-5)


def test_bad_arguments_are_named():
    points = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match="adjoint='exact': must be one of"):
        flow.integrate(rotation, 1.0, points, jnp.asarray([0.0, 1.0]), adjoint="exact")
    with pytest.raises(ValueError, match="strictly increasing or strictly decreasing"):
        flow.integrate(rotation, 1.0, points, jnp.asarray([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match=r"points must be \(\.\.\., N, 3\)"):
        flow.integrate(rotation, 1.0, jnp.zeros((4, 2)), jnp.asarray([0.0, 1.0]))
    with pytest.raises(ValueError, match="velocity_fn returned shape"):
        flow.integrate(lambda p, x, t: x[:, :2], 1.0, points, jnp.asarray([0.0, 1.0]))
    with pytest.raises(ValueError, match="rtol=0"):
        flow.integrate(rotation, 1.0, points, jnp.asarray([0.0, 1.0]), rtol=0)
    # A single time is the input.
    np.testing.assert_array_equal(
        np.asarray(flow.integrate(rotation, 1.0, points + 1, jnp.asarray([0.3]))[0]), 1
    )


def test_function_evaluations_are_counted_and_grow_with_the_tolerance():
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _swirl_params(8))
    points = jnp.asarray(np.random.default_rng(9).uniform(-0.5, 0.5, size=(5, 3)), jnp.float32)
    times = jnp.linspace(0.0, 1.0, 17)
    loose = flow.num_function_evaluations(swirl, params, points, times)
    tight = flow.num_function_evaluations(swirl, params, points, times, rtol=1e-6, atol=1e-8)
    # Dopri5: at least one step of 6 new stages, plus the start; more steps when asked for more accuracy.
    assert 7 <= loose < tight


def test_samples_with_traced_times_differentiate_with_the_continuous_adjoint(x64):
    # A training batch pulls points back from its frames' times, traced inside the jitted
    # step; the continuous adjoint must get them as arguments (a closure over them fails).
    params = jax.tree.map(jnp.asarray, _swirl_params(8))
    points = jnp.asarray(np.random.default_rng(9).uniform(-0.5, 0.5, size=(2, 5, 3)))

    def loss(p, t, adjoint):
        return jnp.sum(flow.integrate_samples(swirl, p, points, t, 0.0, adjoint=adjoint, **TIGHT) ** 2)

    t = jnp.asarray([1.0, 0.5])
    grads = {a: jax.jit(jax.grad(loss), static_argnums=2)(params, t, a) for a in flow.ADJOINTS}
    for a, b in zip(jax.tree.leaves(grads["backsolve"]), jax.tree.leaves(grads["checkpoint"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # And with respect to the times themselves.
    g_t = jax.jit(jax.grad(loss, argnums=1), static_argnums=2)(params, t, "backsolve")
    eps = 1e-6
    numeric = [
        (loss(params, t.at[i].add(eps), "checkpoint") - loss(params, t.at[i].add(-eps), "checkpoint"))
        / (2 * eps)
        for i in range(2)
    ]
    np.testing.assert_allclose(np.asarray(g_t), np.asarray(numeric), rtol=1e-4)
