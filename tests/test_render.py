"""render.surface_depth: closed-form sphere depths, analytic/unrolled/finite-difference gradients,
misses, rays from inside, grazing rays, jit/vmap, a train step, bounded memory; invalid rays,
integer rays, infinite and non-float logits, argument checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from implicit_fields import render

SCALE = 20.0


def sphere_logit(params, points):
    """Occupancy logit of a sphere with differentiable radius and centre (surface at p = 0.5)."""
    d = jnp.linalg.norm(points - params["center"][None, :], axis=-1)
    return SCALE * (params["radius"] - d)


def closed_form_depth(params, origins, directions):
    """First intersection parameter of o + t w with the sphere (inf on a miss)."""
    oc = origins - params["center"][None, :]
    a = jnp.sum(directions * directions, axis=-1)
    b = 2.0 * jnp.sum(directions * oc, axis=-1)
    c = jnp.sum(oc * oc, axis=-1) - params["radius"] ** 2
    disc = b * b - 4.0 * a * c
    hit = disc > 0.0
    t = (-b - jnp.sqrt(jnp.where(hit, disc, 1.0))) / (2.0 * a)
    return jnp.where(hit, t, jnp.inf)


PARAMS = {"radius": jnp.float32(0.3), "center": jnp.asarray([0.02, -0.03, 0.01], jnp.float32)}


def random_rays(n=256, seed=0):
    """Origins on a sphere of radius 1.5 looking at random points near the centre, with
    non-unit direction lengths; about a quarter miss."""
    rng = np.random.default_rng(seed)
    o = rng.normal(size=(n, 3))
    o = 1.5 * o / np.linalg.norm(o, axis=1, keepdims=True)
    target = rng.uniform(-0.4, 0.4, size=(n, 3))
    w = (target - o) * rng.uniform(0.5, 2.0, size=(n, 1))
    return jnp.asarray(o, jnp.float32), jnp.asarray(w, jnp.float32)


def masked_sum(d, mask):
    return jnp.sum(jnp.where(mask, d, 0.0))


def test_depth_matches_the_closed_form_for_random_rays():
    o, w = random_rays()
    d = jax.jit(lambda p: render.surface_depth(sphere_logit, p, o, w))(PARAMS)
    ref = closed_form_depth(PARAMS, o, w)
    hit = np.isfinite(ref)
    assert 0.4 * len(hit) < hit.sum() < 0.95 * len(hit)
    np.testing.assert_array_equal(np.isfinite(d), hit)
    np.testing.assert_allclose(np.asarray(d)[hit], np.asarray(ref)[hit], atol=2e-5)


@pytest.mark.parametrize("gradient", ["analytic", "unrolled"])
def test_gradient_matches_closed_form_and_finite_differences(gradient):
    o, w = random_rays(seed=1)
    hit = jnp.isfinite(closed_form_depth(PARAMS, o, w))
    weights = jnp.asarray(np.random.default_rng(2).uniform(0.5, 1.5, o.shape[0]), jnp.float32)

    def loss(p):
        return masked_sum(weights * render.surface_depth(sphere_logit, p, o, w, gradient=gradient), hit)

    def loss_ref(p):
        return masked_sum(weights * closed_form_depth(p, o, w), hit)

    g = jax.jit(jax.grad(loss))(PARAMS)
    g_ref = jax.grad(loss_ref)(PARAMS)
    for k in PARAMS:
        np.testing.assert_allclose(g[k], g_ref[k], rtol=2e-3, atol=2e-3)
    # Central finite differences of the rendered depth itself (float64 would be nicer;
    # a step of 1e-3 keeps every ray's hit status and the float32 error small).
    h = 1e-3
    lo = jax.jit(loss)
    r = PARAMS["radius"]
    fd_r = (lo({**PARAMS, "radius": r + h}) - lo({**PARAMS, "radius": r - h})) / (2 * h)
    np.testing.assert_allclose(g["radius"], fd_r, rtol=1e-2)
    for i in range(3):
        e = jnp.zeros(3, jnp.float32).at[i].set(h)
        c = PARAMS["center"]
        fd = (lo({**PARAMS, "center": c + e}) - lo({**PARAMS, "center": c - e})) / (2 * h)
        np.testing.assert_allclose(g["center"][i], fd, rtol=1e-2, atol=1e-2)


def test_analytic_and_unrolled_gradients_agree():
    o, w = random_rays(seed=3)

    def loss(p, mode):
        d = render.surface_depth(sphere_logit, p, o, w, gradient=mode, n_steps=64)
        return masked_sum(d**2, jnp.isfinite(d))

    ga = jax.grad(loss)(PARAMS, "analytic")
    gu = jax.grad(loss)(PARAMS, "unrolled")
    for k in PARAMS:
        np.testing.assert_allclose(ga[k], gu[k], rtol=1e-3, atol=1e-4)


def test_misses_inside_and_grazing_rays_are_finite():
    r, c = PARAMS["radius"], np.asarray(PARAMS["center"])
    origins = np.array(
        [
            [0.0, 0.9, 2.0],  # misses the sphere (passes above it), inside the cube
            [5.0, 5.0, 5.0],  # misses the cube entirely
            c + [0.0, 0.0, 0.1],  # starts inside the sphere
            [c[0] + float(r) * (1 - 1e-7), c[1], 2.0],  # grazes the sphere
            [0.0, 0.0, 2.0],  # an ordinary hit
        ],
        np.float32,
    )
    directions = np.array([[0, 0, -1], [1, 0, 0], [0, 0, -1], [0, 0, -1], [0, 0, -1]], np.float32)
    o, w = jnp.asarray(origins), jnp.asarray(directions)
    d = render.surface_depth(sphere_logit, PARAMS, o, w)
    assert np.isinf(d[0]) and np.isinf(d[1]) and d[2] == 0.0
    assert abs(float(d[4]) - float(closed_form_depth(PARAMS, o, w)[4])) < 1e-5
    assert not np.isnan(d[3])  # the grazing ray hits (within the marching resolution) or misses cleanly
    for mode in ("analytic", "unrolled"):
        # Per-ray gradients: the Jacobian of the five depths (one reverse pass per ray).
        jac = jax.jit(jax.jacrev(lambda p, m=mode: render.surface_depth(sphere_logit, p, o, w, gradient=m)))(
            PARAMS
        )
        for i in range(5):
            leaves = [np.asarray(x[i]) for x in jax.tree.leaves(jac)]
            assert all(np.isfinite(x).all() for x in leaves), (mode, i, jac)
            if i in (0, 1, 2):
                assert all((x == 0).all() for x in leaves), (mode, i, jac)
        # A loss over all rays that masks the infs stays finite.
        g = jax.grad(
            lambda p, m=mode: masked_sum(
                render.surface_depth(sphere_logit, p, o, w, gradient=m), jnp.isfinite(d)
            )
        )(PARAMS)
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))


def test_vmap_over_objects_and_jit():
    o, w = random_rays(n=64, seed=4)
    radii = jnp.asarray([0.2, 0.3, 0.35], jnp.float32)
    centers = jnp.asarray([[0.0, 0.0, 0.0], [0.05, 0.0, -0.02], [-0.03, 0.04, 0.0]], jnp.float32)

    def depth(radius, center):
        return render.surface_depth(sphere_logit, {"radius": radius, "center": center}, o, w)

    batched = jax.jit(jax.vmap(depth))(radii, centers)
    for i in range(3):
        p = {"radius": radii[i], "center": centers[i]}
        ref = closed_form_depth(p, o, w)
        np.testing.assert_array_equal(np.isfinite(batched[i]), np.isfinite(ref))
        np.testing.assert_allclose(batched[i][np.isfinite(ref)], ref[np.isfinite(ref)], atol=2e-5)
    # Per-object gradients through vmap.
    grads = jax.jit(jax.vmap(jax.grad(lambda r, c: masked_sum(depth(r, c), jnp.isfinite(depth(r, c))))))(
        radii, centers
    )
    assert grads.shape == (3,) and np.isfinite(grads).all() and (grads < 0).all()


def test_train_step_recovers_a_sphere_from_depths():
    """Fitting radius and centre to observed depths with Adam, through the analytic gradient."""
    o, w = random_rays(n=512, seed=5)
    target = {"radius": jnp.float32(0.32), "center": jnp.asarray([0.03, -0.02, 0.05], jnp.float32)}
    d_gt = closed_form_depth(target, o, w)
    start = {"radius": jnp.float32(0.25), "center": jnp.zeros(3, jnp.float32)}
    opt = optax.adam(3e-3)

    @jax.jit
    def step(p, s):
        def loss(p):
            d = render.surface_depth(sphere_logit, p, o, w, n_steps=32)
            both = jnp.isfinite(d) & jnp.isfinite(d_gt)
            return jnp.sum(jnp.where(both, jnp.abs(d - jnp.where(both, d_gt, 0.0)), 0.0)) / jnp.sum(both)

        value, g = jax.value_and_grad(loss)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, value

    p, s = start, opt.init(start)
    for _ in range(150):
        p, s, value = step(p, s)
    assert abs(float(p["radius"]) - 0.32) < 5e-3, p
    np.testing.assert_allclose(p["center"], target["center"], atol=5e-3)


def test_memory_of_the_analytic_gradient_is_flat_in_the_number_of_steps():
    """XLA's compiled temp memory: constant for the analytic gradient, growing when unrolled."""

    def mlp_logit(params, points):
        h = jnp.tanh(points @ params["w1"] + params["b1"][None, :])
        return h @ params["w2"] + 0.3

    rng = np.random.default_rng(0)
    params = {
        "w1": jnp.asarray(rng.normal(size=(3, 64)), jnp.float32),
        "b1": jnp.zeros(64, jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(64,)) / 8, jnp.float32),
    }
    o, w = random_rays(n=256, seed=6)

    def temp_bytes(mode, steps):
        def loss(p):
            d = render.surface_depth(mlp_logit, p, o, w, n_steps=steps, gradient=mode)
            return masked_sum(d, jnp.isfinite(d))

        return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes

    analytic = [temp_bytes("analytic", s) for s in (16, 256)]
    unrolled = [temp_bytes("unrolled", s) for s in (16, 256)]
    assert analytic[1] == analytic[0], analytic
    assert unrolled[1] > 4 * unrolled[0], unrolled


def test_bad_arguments_are_clear_errors():
    o, w = random_rays(n=4)
    with pytest.raises(ValueError, match="gradient"):
        render.surface_depth(sphere_logit, PARAMS, o, w, gradient="bogus")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        render.surface_depth(sphere_logit, PARAMS, o[:, :2], w)
    with pytest.raises(ValueError, match="threshold"):
        render.surface_depth(sphere_logit, PARAMS, o, w, threshold=1.0)


def test_intersect_box_against_brute_force():
    rng = np.random.default_rng(7)
    o = rng.uniform(-1.5, 1.5, size=(200, 3)).astype(np.float32)
    w = rng.normal(size=(200, 3)).astype(np.float32)
    w[:20, 0] = 0.0  # axis-parallel rays
    d_near, d_far, hit = render.intersect_box(jnp.asarray(o), jnp.asarray(w), padding=0.1)
    t = np.linspace(0.0, 10.0, 20001)
    inside = np.all(np.abs(o[:, None, :] + t[None, :, None] * w[:, None, :]) <= 0.55, axis=-1)
    for i in range(200):
        assert bool(hit[i]) == bool(inside[i].any()), i
        if inside[i].any():
            ts = t[inside[i]]
            assert abs(float(d_near[i]) - ts.min()) < 1e-3 and abs(float(d_far[i]) - ts.max()) < 1e-3


# --------------------------------------------------------------------------------------
# Invalid rays, integer rays, infinite and non-float logits, argument checks.
# --------------------------------------------------------------------------------------

# Centred at the box centre: the field's gradient is NaN there (|p - c| at p = c), so a
# naive sanitising of invalid rays to the origin would itself poison the batch.
CENTRED = {"radius": jnp.float32(0.3), "center": jnp.zeros(3, jnp.float32)}
BAD_RAYS = {
    "nan_origin": ([3], [[np.nan, 0.1, 2.0]], None),
    "inf_origin": ([5], [[np.inf, 0.0, 0.0]], None),
    "neg_inf_origin": ([0], [[0.0, -np.inf, 1.0]], None),
    "nan_direction": ([7], None, [[0.0, np.nan, -1.0]]),
    "inf_direction": ([2], None, [[0.0, 0.0, -np.inf]]),
    "zero_direction": ([4], None, [[0.0, 0.0, 0.0]]),
    "several": (
        [1, 6, 9],
        [[np.nan] * 3, [0.0, 0.0, 2.0], [np.inf, -np.inf, 0.0]],
        [[0, 0, -1], [0, 0, 0], [1, 1, 1]],
    ),
}


def _rays_with_misses(seed):
    """12 rays: random ones, then two ordinary misses (rows 10 and 11)."""
    o, w = (np.array(a) for a in random_rays(n=12, seed=seed))
    o[10:], w[10:] = [[0.0, 0.9, 2.0], [5.0, 5.0, 5.0]], [[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]
    return jnp.asarray(o), jnp.asarray(w)


def _with_bad_rays(o, w, kind):
    """The rays with the bad ones of `kind` written in; returns them, the bad rows and the others."""
    rows, bad_o, bad_w = BAD_RAYS[kind]
    o, w = np.array(o), np.array(w)
    if bad_o is not None:
        o[rows] = bad_o
    if bad_w is not None:
        w[rows] = bad_w
    keep = np.setdiff1d(np.arange(len(o)), rows)
    return jnp.asarray(o), jnp.asarray(w), rows, keep


@functools.partial(jax.jit, static_argnames="gradient")
def _depth_and_grads(params, o, w, mask, gradient):
    """Depths, and the gradients (params, origins, directions) of a loss that leaves out the
    rays outside `mask` and the misses, through a where on the depth."""

    def loss(p, o, w):
        d = render.surface_depth(sphere_logit, p, o, w, gradient=gradient, n_steps=16)
        return jnp.sum(jnp.where(mask & jnp.isfinite(d), d, 0.0) ** 2)

    d = render.surface_depth(sphere_logit, params, o, w, gradient=gradient, n_steps=16)
    return d, jax.grad(loss, argnums=(0, 1, 2))(params, o, w)


@pytest.mark.parametrize("gradient", ["analytic", "unrolled"])
@pytest.mark.parametrize("kind", sorted(BAD_RAYS))
def test_invalid_rays_are_misses_and_do_not_poison_the_gradient(kind, gradient):
    o, w = _rays_with_misses(seed=8)
    o_bad, w_bad, rows, keep = _with_bad_rays(o, w, kind)
    d_good, (g_good, _, _) = _depth_and_grads(CENTRED, o[keep], w[keep], True, gradient)
    assert 2 < int(np.isfinite(d_good).sum()) <= len(keep) - 2  # hits and misses
    # Left out through the where on its (infinite) depth, or by a mask fixed in advance.
    for mask in (jnp.ones(12, bool), jnp.asarray(np.isin(np.arange(12), keep))):
        d_bad, (g_bad, g_o, g_w) = _depth_and_grads(CENTRED, o_bad, w_bad, mask, gradient)
        assert np.isinf(np.asarray(d_bad)[rows]).all()
        np.testing.assert_array_equal(np.asarray(d_bad)[keep], d_good)
        for k in CENTRED:
            assert np.isfinite(g_bad[k]).all(), (k, g_bad)
            np.testing.assert_allclose(g_bad[k], g_good[k], rtol=1e-5, atol=1e-7)
        # The rays themselves: finite gradients, zero for the bad ones.
        assert np.isfinite(g_o).all() and np.isfinite(g_w).all()
        assert (np.asarray(g_o)[rows] == 0).all() and (np.asarray(g_w)[rows] == 0).all()


@pytest.mark.parametrize("gradient", ["analytic", "unrolled"])
def test_a_batch_of_only_invalid_rays_has_zero_gradient(gradient):
    o = jnp.asarray([[np.nan, 0.0, 2.0], [0.0, 0.0, 2.0], [np.inf, 0.0, 0.0]], jnp.float32)
    w = jnp.asarray([[0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], jnp.float32)

    def loss(p):
        d = render.surface_depth(sphere_logit, p, o, w, gradient=gradient, n_steps=16)
        return jnp.sum(jnp.where(jnp.isfinite(d), d, 0.0)), d

    g, d = jax.jit(jax.grad(loss, has_aux=True))(CENTRED)
    assert np.isinf(d).all()
    assert all((np.asarray(x) == 0).all() for x in jax.tree.leaves(g)), g


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_integer_rays_are_cast_to_float32(dtype):
    o = np.array([[0, 0, 2], [1, 0, 2], [0, 2, 0], [3, 3, 3]], dtype)
    w = np.array([[0, 0, -1], [-1, 0, -2], [0, -1, 0], [1, 0, 0]], dtype)
    ref = closed_form_depth(PARAMS, jnp.asarray(o, jnp.float32), jnp.asarray(w, jnp.float32))

    def loss(p, o, w):
        d = render.surface_depth(sphere_logit, p, o, w, n_steps=32)
        return masked_sum(d, jnp.isfinite(ref)), d

    g, d = jax.jit(jax.grad(loss, has_aux=True))(PARAMS, o, w)
    assert d.dtype == jnp.float32
    np.testing.assert_allclose(d, ref, atol=2e-5)
    assert np.isfinite(ref[:3]).all() and np.isinf(d[3])
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))
    near, far, hit = render.intersect_box(jnp.asarray(o), jnp.asarray(w))
    assert near.dtype == jnp.float32 and hit.tolist() == [True, True, True, False]


@pytest.mark.parametrize("dtype", [bool, np.complex64])
def test_rays_that_are_not_numbers_are_a_clear_error(dtype):
    o = np.zeros((2, 3), dtype)
    with pytest.raises(ValueError, match=f"origins must be float.*{np.dtype(dtype).name}"):
        render.surface_depth(sphere_logit, PARAMS, o, np.ones((2, 3), np.float32))


def logodds_sphere(params, points):
    """A field computing log(p / (1 - p)) with p clipped to [0, 1]: +-inf away from the surface."""
    d = jnp.linalg.norm(points - params["center"][None, :], axis=-1)
    p = jnp.clip(0.5 + 5.0 * (params["radius"] - d), 0.0, 1.0)
    return jnp.log(p) - jnp.log1p(-p)


def inf_sphere(params, points):
    """+inf inside, -inf outside (no gradient, but a well-defined surface)."""
    d = jnp.linalg.norm(points - params["center"][None, :], axis=-1)
    return jnp.where(d < params["radius"], jnp.inf, -jnp.inf)


@pytest.mark.parametrize("field", [logodds_sphere, inf_sphere], ids=["logodds", "inf"])
def test_infinite_logits_give_finite_depths_and_analytic_gradients(field):
    o, w = random_rays(n=48, seed=9)
    ref = closed_form_depth(PARAMS, o, w)
    hit = np.isfinite(ref)
    depth = jax.jit(lambda p: render.surface_depth(field, p, o, w, n_steps=64))
    d = depth(PARAMS)
    assert not np.isnan(d).any()
    np.testing.assert_array_equal(np.isfinite(d), hit)
    # The inf field has a jump: the secant steps bisect it to within the marching step.
    step = 1.1 * np.sqrt(3) / 63 * np.linalg.norm(w, axis=1)
    tol = np.full_like(step, 2e-5) if field is logodds_sphere else step / 2**8
    assert (np.abs(np.asarray(d)[hit] - np.asarray(ref)[hit]) <= tol[hit] + 1e-6).all()
    g = jax.jit(jax.grad(lambda p: masked_sum(depth(p), hit)))(PARAMS)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g)), g
    if field is logodds_sphere:  # the same surface motion as the plain sphere
        g_ref = jax.jit(jax.grad(lambda p: masked_sum(closed_form_depth(p, o, w), hit)))(PARAMS)
        for k in PARAMS:
            np.testing.assert_allclose(g[k], g_ref[k], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("dtype", [jnp.bool_, jnp.int32, jnp.uint8])
def test_non_float_logits_are_a_clear_error(dtype):
    o, w = random_rays(n=4)

    def labels(params, points):
        return (jnp.linalg.norm(points, axis=-1) < params["radius"]).astype(dtype)

    for gradient in ("analytic", "unrolled"):
        with pytest.raises(ValueError, match=f"{jnp.dtype(dtype).name} values.*floating point"):
            render.surface_depth(labels, PARAMS, o, w, gradient=gradient)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_steps=1), "n_steps must be an integer >= 2"),
        (dict(n_steps=16.5), "n_steps must be an integer"),
        (dict(n_secant=-1), "n_secant must be an integer >= 0"),
        (dict(chunk_steps=0), "chunk_steps must be an integer >= 1"),
        (dict(padding=-0.1), "padding must be a finite number >= 0"),
        (dict(padding=float("nan")), "padding must be a finite number >= 0"),
        (dict(threshold=0.0), "threshold must be a probability"),
        (dict(threshold=float("nan")), "threshold must be a probability"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    o, w = random_rays(n=4)
    with pytest.raises(ValueError, match=match):
        render.surface_depth(sphere_logit, PARAMS, o, w, **kwargs)


@pytest.mark.parametrize("kind", sorted(BAD_RAYS))
@pytest.mark.parametrize("xp", ["jax", "numpy"])
def test_intersect_box_treats_invalid_rays_as_misses(kind, xp):
    o, w = _rays_with_misses(seed=10)
    o_bad, w_bad, rows, keep = _with_bad_rays(o, w, kind)
    if xp == "numpy":
        o_bad, w_bad = np.asarray(o_bad), np.asarray(w_bad)
    near, far, hit = render.intersect_box(o_bad, w_bad, padding=0.1)
    near0, far0, hit0 = render.intersect_box(o[keep], w[keep], padding=0.1)
    assert not np.asarray(hit)[rows].any()
    assert (np.asarray(near)[rows] == 0).all() and (np.asarray(far)[rows] == 0).all()
    np.testing.assert_array_equal(np.asarray(hit)[keep], hit0)
    np.testing.assert_allclose(np.asarray(near)[keep], near0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(far)[keep], far0, rtol=1e-6)
    if xp == "jax":  # finite gradients, zero for the bad rays

        def total_length(o, w):
            near, far, hit = render.intersect_box(o, w)
            return jnp.sum(jnp.where(hit, far - near, 0.0))

        g_o, g_w = jax.jit(jax.grad(total_length, argnums=(0, 1)))(o_bad, w_bad)
        assert np.isfinite(g_o).all() and np.isfinite(g_w).all()
        assert (np.asarray(g_o)[rows] == 0).all() and (np.asarray(g_w)[rows] == 0).all()
