"""`implicit_fields.volume`: closed forms, the resampler against numpy, jit, vmap and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import volume

# ---------------------------------------------------------------------------------------------
# Positional encoding.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "d,num_freqs,include_input", [(3, 10, True), (3, 4, True), (2, 3, False), (1, 0, True)]
)
def test_positional_encoding_values_and_dim(d, num_freqs, include_input):
    rng = np.random.default_rng(d + num_freqs)
    x = rng.uniform(-1, 1, (5, d)).astype(np.float32)
    out = np.asarray(volume.positional_encoding(jnp.asarray(x), num_freqs, include_input))
    assert out.shape == (5, volume.encoding_dim(d, num_freqs, include_input))
    assert out.shape[1] == d * (2 * num_freqs + include_input)
    expected = [x] if include_input else []
    expected += [np.sin(2.0**i * x) for i in range(num_freqs)]
    expected += [np.cos(2.0**i * x) for i in range(num_freqs)]
    np.testing.assert_allclose(out, np.concatenate(expected, axis=1), atol=2e-6)


def test_positional_encoding_nerf_sizes():
    # NeRF: 63 inputs for points (10 octaves), 27 for directions (4 octaves).
    assert volume.positional_encoding(jnp.zeros((7, 3)), 10).shape == (7, 63)
    assert volume.positional_encoding(jnp.zeros((2, 4, 3)), 4).shape == (2, 4, 27)


def test_positional_encoding_rejects_negative():
    with pytest.raises(ValueError, match="num_freqs"):
        volume.positional_encoding(jnp.zeros((1, 3)), -1)


# ---------------------------------------------------------------------------------------------
# Compositing: closed forms.
# ---------------------------------------------------------------------------------------------


def _slab_samples(a, b, far, n_in, n_out):
    """Samples with a boundary exactly at a and b: density sigma on [a, b), zero elsewhere."""
    t = np.concatenate(
        [
            np.linspace(0.0, a, n_out, endpoint=False),
            np.linspace(a, b, n_in, endpoint=False),
            np.linspace(b, far, n_out),
        ]
    )
    inside = (t >= a) & (t < b)
    return t, inside


@pytest.mark.parametrize(
    "sigma,a,b,dir_norm", [(0.5, 1.0, 2.0, 1.0), (3.0, 0.5, 1.7, 2.5), (20.0, 2.0, 2.3, 0.7)]
)
def test_homogeneous_slab_opacity_and_depth(sigma, a, b, dir_norm):
    """A slab [a, b] (in t) of constant density: opacity 1 - exp(-sigma L), L = (b - a) |d|, and the
    expected depth of the continuous model, to quadrature accuracy."""
    t, inside = _slab_samples(a, b, 4.0, 4000, 50)
    dens = np.where(inside, sigma, 0.0)
    d = np.array([[dir_norm, 0.0, 0.0]])
    out = volume.composite(
        jnp.asarray(dens[None], jnp.float32),
        jnp.ones((1, t.size, 3), jnp.float32),
        jnp.asarray(t[None], jnp.float32),
        jnp.asarray(d, jnp.float32),
    )
    s = sigma * dir_norm  # Density per unit of t.
    length = (b - a) * dir_norm
    np.testing.assert_allclose(float(out["opacity"][0]), 1.0 - np.exp(-sigma * length), rtol=1e-4)
    # Continuous: E[t] = int_a^b t s exp(-s (t - a)) dt.
    depth = a * (1 - np.exp(-s * (b - a))) + (1 - np.exp(-s * (b - a))) / s - (b - a) * np.exp(-s * (b - a))
    np.testing.assert_allclose(float(out["depth"][0]), depth, rtol=2e-3)
    # Colour 1 everywhere: rgb is the opacity; a white background makes it 1.
    np.testing.assert_allclose(np.asarray(out["rgb"][0]), float(out["opacity"][0]), rtol=1e-6)
    white = volume.composite(
        jnp.asarray(dens[None], jnp.float32),
        jnp.zeros((1, t.size, 3), jnp.float32),
        jnp.asarray(t[None], jnp.float32),
        jnp.asarray(d, jnp.float32),
        white_background=True,
    )
    np.testing.assert_allclose(np.asarray(white["rgb"][0]), 1.0 - float(out["opacity"][0]), rtol=1e-5)


@pytest.mark.parametrize("sigma,radius", [(1.0, 0.5), (4.0, 0.3), (0.2, 0.9)])
def test_sphere_of_constant_density(sigma, radius):
    """Rays through a ball of constant density at several offsets h from its centre: the chord is
    2 sqrt(r^2 - h^2), the opacity 1 - exp(-sigma chord), the expected depth in closed form."""
    h = np.array([0.0, 0.3 * radius, 0.7 * radius, 0.95 * radius, 1.2 * radius])
    origins = np.stack([np.full_like(h, -2.0), h, np.zeros_like(h)], axis=1)
    dirs = np.tile([[1.0, 0.0, 0.0]], (h.size, 1))
    t = volume.sample_stratified(None, jnp.zeros(h.size), jnp.full(h.size, 4.0), 20000)
    p = origins[:, None, :] + np.asarray(t)[..., None] * dirs[:, None, :]
    dens = np.where(np.linalg.norm(p, axis=-1) < radius, sigma, 0.0)
    out = jax.jit(volume.composite)(
        jnp.asarray(dens, jnp.float32), jnp.ones(dens.shape + (3,)), t, jnp.asarray(dirs)
    )
    chord = 2.0 * np.sqrt(np.maximum(radius**2 - h**2, 0.0))
    np.testing.assert_allclose(np.asarray(out["opacity"]), 1.0 - np.exp(-sigma * chord), atol=2e-3)
    enter = 2.0 - chord / 2.0
    depth = np.where(
        chord > 0,
        enter * (1 - np.exp(-sigma * chord))
        + (1 - np.exp(-sigma * chord)) / sigma
        - chord * np.exp(-sigma * chord),
        0.0,
    )
    np.testing.assert_allclose(np.asarray(out["depth"]), depth, atol=3e-3)


def test_weights_are_alpha_times_exclusive_transmittance():
    rng = np.random.default_rng(0)
    dens = rng.uniform(0, 3, (4, 9))
    t = np.sort(rng.uniform(0, 2, (4, 9)), axis=1)
    d = rng.normal(size=(4, 3))
    out = volume.composite(
        jnp.asarray(dens), jnp.asarray(rng.random((4, 9, 3))), jnp.asarray(t), jnp.asarray(d)
    )
    delta = (
        np.concatenate([np.diff(t, axis=1), np.full((4, 1), 1e10)], axis=1)
        * np.linalg.norm(d, axis=1)[:, None]
    )
    alpha = 1 - np.exp(-dens * delta)
    trans = np.concatenate([np.ones((4, 1)), np.cumprod(1 - alpha, axis=1)[:, :-1]], axis=1)
    np.testing.assert_allclose(np.asarray(out["weights"]), alpha * trans, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(out["depth"]), np.sum(alpha * trans * t, axis=1), rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_weights_sum_to_at_most_one(seed):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 3)
    dens = rng.exponential(scale, (64, 32)).astype(np.float32)
    t = np.sort(rng.uniform(0, 5, (64, 32)), axis=1).astype(np.float32)
    d = rng.normal(size=(64, 3)).astype(np.float32)
    out = volume.composite(jnp.asarray(dens), jnp.asarray(rng.random((64, 32, 3)), jnp.float32), t, d)
    w = np.asarray(out["weights"])
    assert (w >= 0).all() and (w.sum(axis=1) <= 1 + 1e-6).all()
    np.testing.assert_allclose(np.asarray(out["opacity"]), w.sum(axis=1), rtol=1e-6)
    occ = volume.composite_occupancy(
        jnp.asarray(rng.random((64, 32)), jnp.float32), jnp.zeros((64, 32, 3)), t
    )
    assert (np.asarray(occ["weights"]).sum(axis=1) <= 1 + 1e-6).all()


def test_composite_occupancy_binary_field_is_surface_rendering():
    """A 0/1 occupancy: the first occupied sample takes all the weight (its colour and its t)."""
    t = jnp.tile(jnp.linspace(0.0, 1.0, 10)[None], (3, 1))
    occ = jnp.asarray(np.array([[0, 0, 0, 1, 1, 0, 1, 1, 1, 1], [0] * 10, [1] + [0] * 9], np.float32))
    colors = jnp.broadcast_to(jnp.arange(10, dtype=jnp.float32)[None, :, None], (3, 10, 3))
    out = volume.composite_occupancy(occ, colors, t, white_background=True)
    np.testing.assert_allclose(np.asarray(out["opacity"]), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(np.asarray(out["rgb"])[:, 0], [3.0, 1.0, 0.0])  # The miss is white.
    np.testing.assert_allclose(np.asarray(out["depth"]), [3 / 9, 0.0, 0.0], atol=1e-7)
    # A constant occupancy o over S samples: opacity 1 - (1 - o)^S.
    o = 0.2
    out = volume.composite_occupancy(jnp.full((1, 10), o), jnp.zeros((1, 10, 3)), t[:1])
    np.testing.assert_allclose(float(out["opacity"][0]), 1 - (1 - o) ** 10, rtol=1e-6)


def test_shape_errors():
    with pytest.raises(ValueError, match="colors"):
        volume.composite(jnp.zeros((2, 4)), jnp.zeros((2, 4)), jnp.zeros((2, 4)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="directions"):
        volume.composite(jnp.zeros((2, 4)), jnp.zeros((2, 4, 3)), jnp.zeros((2, 4)), jnp.zeros((3,)))
    with pytest.raises(ValueError, match="occupancies"):
        volume.composite_occupancy(jnp.zeros((2, 5)), jnp.zeros((2, 4, 3)), jnp.zeros((2, 4)))


# ---------------------------------------------------------------------------------------------
# Sampling.
# ---------------------------------------------------------------------------------------------


def test_sample_stratified_bins_and_midpoints():
    near, far = jnp.asarray([0.0, 2.0, 1.0]), jnp.asarray([1.0, 6.0, 1.0])
    mid = np.asarray(volume.sample_stratified(None, near, far, 4))
    np.testing.assert_allclose(mid[1], [2.5, 3.5, 4.5, 5.5])
    np.testing.assert_allclose(mid[2], 1.0)
    t = np.asarray(volume.sample_stratified(jax.random.PRNGKey(0), near, far, 4))
    assert t.shape == (3, 4)
    edges = np.asarray(near)[:, None] + (np.asarray(far - near))[:, None] * np.arange(5)[None] / 4
    assert ((t >= edges[:, :-1] - 1e-6) & (t <= edges[:, 1:] + 1e-6)).all()
    assert (np.diff(t, axis=1) >= 0).all()
    # Scalars broadcast against the rays' arrays.
    assert volume.sample_stratified(None, 2.0, jnp.full(5, 6.0), 8).shape == (5, 8)
    with pytest.raises(ValueError, match="near and far"):
        volume.sample_stratified(None, 2.0, 6.0, 8)


def _numpy_inverse_cdf(bins, weights, u):
    w = weights + 1e-5
    cdf = np.concatenate([[0.0], np.cumsum(w / w.sum())])
    return np.interp(u, cdf, bins)


@pytest.mark.parametrize("case", ["peaked", "two_modes", "zeros", "uneven_bins"])
def test_sample_pdf_matches_numpy_inverse_cdf(case):
    rng = np.random.default_rng(1)
    bins = np.linspace(2.0, 6.0, 17)
    weights = {
        "peaked": np.eye(16)[5] * 0.9,
        "two_modes": np.exp(-0.5 * ((np.arange(16) - 3) / 1.0) ** 2)
        + 0.5 * np.exp(-0.5 * ((np.arange(16) - 12) / 0.7) ** 2),
        "zeros": np.zeros(16),
        "uneven_bins": rng.random(16),
    }[case]
    if case == "uneven_bins":
        bins = np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 0.5, 16))])
    n = 200
    t = np.asarray(volume.sample_pdf(None, jnp.asarray(bins[None]), jnp.asarray(weights[None]), n))[0]
    u = (np.arange(n) + 0.5) / n
    np.testing.assert_allclose(t, _numpy_inverse_cdf(bins, weights, u), atol=2e-5)
    # Random draws: sorted, within the bins, and a histogram that follows the weights.
    t = np.asarray(
        volume.sample_pdf(jax.random.PRNGKey(3), jnp.asarray(bins[None]), jnp.asarray(weights[None]), 20000)
    )[0]
    assert (np.diff(t) >= 0).all() and t.min() >= bins[0] and t.max() <= bins[-1]
    hist = np.histogram(t, bins=bins)[0] / t.size
    p = (weights + 1e-5) / (weights + 1e-5).sum()
    np.testing.assert_allclose(hist, p, atol=0.015)


def test_sample_pdf_has_no_gradient_to_weights():
    bins = jnp.linspace(0.0, 1.0, 9)[None]

    def f(w):
        return jnp.sum(volume.sample_pdf(None, bins, w, 16) ** 2)

    g = jax.grad(f)(jnp.ones((1, 8)))
    assert np.all(np.asarray(g) == 0.0)


# ---------------------------------------------------------------------------------------------
# jit, vmap and gradients.
# ---------------------------------------------------------------------------------------------


def _render(params, origins, dirs, key):
    """A tiny field (a learned density blob and colour) rendered with coarse + fine samples."""
    t = volume.sample_stratified(key, jnp.full(origins.shape[0], 0.5), jnp.full(origins.shape[0], 3.5), 16)
    p = origins[:, None] + t[..., None] * dirs[:, None]
    dens = jax.nn.softplus(params["a"] - jnp.sum((p - params["c"][None, None]) ** 2, axis=-1) * params["s"])
    col = jax.nn.sigmoid(p @ params["w"])
    coarse = volume.composite(dens, col, t, dirs, white_background=True)
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    tf = volume.sample_pdf(key, mids, coarse["weights"][:, 1:-1], 16)
    tf = jnp.sort(jnp.concatenate([t, tf], axis=-1), axis=-1)
    p = origins[:, None] + tf[..., None] * dirs[:, None]
    dens = jax.nn.softplus(params["a"] - jnp.sum((p - params["c"][None, None]) ** 2, axis=-1) * params["s"])
    fine = volume.composite(dens, jax.nn.sigmoid(p @ params["w"]), tf, dirs, white_background=True)
    return fine["rgb"]


def _params():
    return {"a": jnp.float32(2.0), "c": jnp.zeros(3), "s": jnp.float32(40.0), "w": jnp.eye(3)}


def test_jit_vmap_and_finite_gradient_for_rays_that_miss():
    origins = jnp.asarray([[0.0, 0.0, -2.0], [0.0, 5.0, -2.0], [0.0, 0.0, -2.0]])
    dirs = jnp.asarray([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])  # Hit, miss, away.
    key = jax.random.PRNGKey(0)
    params = _params()
    jitted = jax.jit(_render)(params, origins, dirs, key)
    # vmap over a leading axis of ray batches (under jit) equals each batch alone.
    stacked = jax.jit(jax.vmap(_render, in_axes=(None, 0, 0, None)))(
        params, jnp.stack([origins[::-1], origins]), jnp.stack([dirs[::-1], dirs]), key
    )
    np.testing.assert_allclose(np.asarray(stacked[1]), np.asarray(jitted), atol=1e-5)
    assert float(jitted[1].min()) > 0.999  # The miss is the white background.

    def loss(p, o, d):
        return jnp.sum((_render(p, o, d, key) - 0.5) ** 2)

    grad = jax.jit(jax.grad(loss))
    zero = dict(params, a=jnp.float32(-1e4))  # All-zero densities: nothing to hit at all.
    for p in (params, zero):
        for i in range(3):  # Each ray alone, including the two that hit nothing.
            g = grad(p, origins[i : i + 1], dirs[i : i + 1])
            assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))


def test_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        origins = jnp.asarray([[0.05, 0.02, -2.0], [0.1, -0.05, -2.0]], jnp.float64)
        dirs = jnp.asarray([[0.0, 0.0, 1.0], [0.02, 0.0, 1.0]], jnp.float64)
        t = jnp.tile(jnp.linspace(1.0, 3.0, 24, dtype=jnp.float64)[None], (2, 1))

        def f(a):
            p = origins[:, None] + t[..., None] * dirs[:, None]
            dens = jax.nn.softplus(a - 30.0 * jnp.sum(p**2, axis=-1))
            return jnp.sum(volume.composite(dens, jnp.ones(p.shape) * 0.3, t, dirs)["rgb"])

        a = jnp.float64(2.0)
        g = float(jax.grad(f)(a))
        h = 1e-5
        fd = (float(f(a + h)) - float(f(a - h))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5)
