"""Volume rendering along rays, as pure functions: encoding, sampling and compositing.

The rendering of NeRF (Mildenhall et al., ECCV 2020; the JAX anchors jaxnerf
`nerf/model_utils.py` and multinerf `internal/render.py`, mirrored here, not
copied) and the unified surface-and-volume rendering of an occupancy field
(alpha = the occupancy probability, as UNISURF). Every function is jittable and
vmappable; arrays are `(rays, samples, ...)` and the distances `t` along a ray are
in units of its direction's length, so `origins + t[..., None] * directions` are
the sample points whatever the directions' norm (our cameras' directions have
camera depth 1, `implicit_fields.cameras`).

* `positional_encoding(x, num_freqs, include_input=True)`: x, sin(2^i x), cos(2^i x).
* `sample_stratified(key, near, far, num_samples)`: one depth per equal bin of
  [near, far], at a random place in it (`key`) or at its middle (`key=None`).
* `sample_pdf(key, bins, weights, num_samples)`: inverse-CDF resampling of the
  piecewise-constant density of `weights` over `bins` (NeRF's fine samples);
  no gradient flows to the weights.
* `composite(densities, colors, t, directions, white_background=False)`: NeRF's
  quadrature, alpha_i = 1 - exp(-sigma_i delta_i |d|).
* `composite_occupancy(occupancies, colors, t, white_background=False)`: the same
  with alpha_i = the occupancy probability o_i.

Both composites return `{'rgb', 'depth', 'opacity', 'weights'}`: weights
w_i = alpha_i T_i with the transmittance T_i = prod_{j<i} (1 - alpha_j) (the exclusive
cumulative product), rgb = sum_i w_i c_i, depth = sum_i w_i t_i (the expected
distance; it is pulled towards 0 by the transparent part of a ray, as in
jaxnerf: divide by the opacity for the depth of the visible part) and
opacity = sum_i w_i <= 1. A white background adds 1 - opacity to each channel.
"""

from typing import Dict, Optional

import jax
import jax.numpy as jnp

__all__ = [
    "LAST_INTERVAL",
    "positional_encoding",
    "encoding_dim",
    "sample_stratified",
    "sample_pdf",
    "composite",
    "composite_occupancy",
]

LAST_INTERVAL = 1e10
"""Length given to the last interval of a ray: its sample absorbs everything behind it."""

_PDF_EPS = 1e-5  # Added to every weight before resampling (jaxnerf's `weights + 1e-5`).


def encoding_dim(d: int, num_freqs: int, include_input: bool = True) -> int:
    """Size of `positional_encoding` of a d-dimensional input: d * (2 * num_freqs + include_input)."""
    return int(d) * (2 * int(num_freqs) + int(bool(include_input)))


def positional_encoding(x: jax.Array, num_freqs: int, include_input: bool = True) -> jax.Array:
    """NeRF's positional encoding, per coordinate.

    The output is `[x, sin(2^0 x), ..., sin(2^(L-1) x), cos(2^0 x), ..., cos(2^(L-1) x)]`
    with each block holding all d coordinates (jaxnerf's `posenc` order; its cosines
    are written sin(. + pi/2)); there is no factor pi, as in jaxnerf.

    Args:
      x: float [..., d].
      num_freqs: L >= 0, the number of octaves.
      include_input: keep x itself in front.

    Returns:
      float [..., d * (2 L + include_input)].
    """
    num_freqs = int(num_freqs)
    if num_freqs < 0:
        raise ValueError(f"positional_encoding: num_freqs must be >= 0, got {num_freqs}")
    x = jnp.asarray(x)
    parts = [x] if include_input else []
    if num_freqs:
        scales = 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)
        xb = (x[..., None, :] * scales.reshape((1,) * (x.ndim - 1) + (num_freqs, 1))).reshape(
            x.shape[:-1] + (num_freqs * x.shape[-1],)
        )
        parts += [jnp.sin(xb), jnp.cos(xb)]
    if not parts:
        return jnp.zeros(x.shape[:-1] + (0,), x.dtype)
    return jnp.concatenate(parts, axis=-1)


def sample_stratified(key: Optional[jax.Array], near, far, num_samples: int) -> jax.Array:
    """Stratified depths along rays: one sample in each of `num_samples` equal bins of [near, far].

    Args:
      key: PRNG key for a uniformly random place in each bin (NeRF's `randomized`
        training samples), or None for the bins' midpoints (rendering).
      near, far: float [rays] (or one of them a scalar) with far >= near.
      num_samples: S >= 1.

    Returns:
      t: float [rays, S], increasing along each ray, within [near, far].
    """
    num_samples = int(num_samples)
    if num_samples < 1:
        raise ValueError(f"sample_stratified: num_samples must be >= 1, got {num_samples}")
    near, far = jnp.asarray(near), jnp.asarray(far)
    if near.ndim > 1 or far.ndim > 1 or (near.ndim == 0 and far.ndim == 0):
        raise ValueError(
            f"sample_stratified: near and far must be [rays] arrays (or one a scalar), got shapes "
            f"{near.shape} and {far.shape}"
        )
    near, far = jnp.broadcast_arrays(near, far)
    dtype = jnp.result_type(near.dtype, jnp.float32)
    if key is None:
        u = jnp.broadcast_to(
            (jnp.arange(num_samples, dtype=dtype) + 0.5) / num_samples, near.shape + (num_samples,)
        )
    else:
        jitter = jax.random.uniform(key, near.shape + (num_samples,), dtype=dtype)
        u = (jnp.arange(num_samples, dtype=dtype)[None, :] + jitter) / num_samples
    return near[:, None] + (far - near)[:, None] * u


def sample_pdf(key: Optional[jax.Array], bins: jax.Array, weights: jax.Array, num_samples: int) -> jax.Array:
    """Inverse-CDF samples of the piecewise-constant density of `weights` over `bins`.

    Bin i spans [bins[i], bins[i + 1]] and holds probability proportional to
    `weights[i] + 1e-5` (jaxnerf's floor, so that a ray with zero weights samples
    uniformly), spread uniformly within it. The weights are treated as constants:
    `jax.lax.stop_gradient`, as in NeRF, so no gradient flows to them (nor to
    `bins`).

    Args:
      key: PRNG key for uniform u (sorted), or None for u = (k + 0.5) / num_samples,
        the quantile midpoints.
      bins: float [rays, B + 1], non-decreasing edges.
      weights: float [rays, B], >= 0.
      num_samples: N >= 1.

    Returns:
      t: float [rays, N], sorted along each ray, within [bins[0], bins[-1]].
    """
    num_samples = int(num_samples)
    if num_samples < 1:
        raise ValueError(f"sample_pdf: num_samples must be >= 1, got {num_samples}")
    bins = jax.lax.stop_gradient(jnp.asarray(bins))
    weights = jax.lax.stop_gradient(jnp.asarray(weights))
    if bins.ndim != 2 or weights.ndim != 2 or bins.shape != (weights.shape[0], weights.shape[1] + 1):
        raise ValueError(
            f"sample_pdf: bins [rays, B + 1] and weights [rays, B] expected, got {bins.shape} and "
            f"{weights.shape}"
        )
    dtype = jnp.result_type(bins.dtype, jnp.float32)
    w = jnp.maximum(weights.astype(dtype), 0.0) + _PDF_EPS
    pdf = w / jnp.sum(w, axis=-1, keepdims=True)
    cdf = jnp.concatenate(
        [jnp.zeros_like(pdf[:, :1]), jnp.minimum(jnp.cumsum(pdf, axis=-1), 1.0)], axis=-1
    )  # [rays, B + 1], cdf[:, 0] = 0.
    cdf = cdf.at[:, -1].set(1.0)
    rays = bins.shape[0]
    if key is None:
        u = jnp.broadcast_to((jnp.arange(num_samples, dtype=dtype) + 0.5) / num_samples, (rays, num_samples))
    else:
        u = jnp.sort(jax.random.uniform(key, (rays, num_samples), dtype=dtype), axis=-1)
    # The bin k with cdf[k] <= u < cdf[k + 1], clipped to the B bins.
    num_bins = weights.shape[1]
    k = jax.vmap(lambda c, q: jnp.searchsorted(c, q, side="right"))(cdf, u) - 1
    k = jnp.clip(k, 0, num_bins - 1)
    c0 = jnp.take_along_axis(cdf, k, axis=-1)
    c1 = jnp.take_along_axis(cdf, k + 1, axis=-1)
    b0 = jnp.take_along_axis(bins, k, axis=-1)
    b1 = jnp.take_along_axis(bins, k + 1, axis=-1)
    frac = jnp.clip((u - c0) / jnp.maximum(c1 - c0, 1e-12), 0.0, 1.0)
    return jnp.sort(b0 + frac * (b1 - b0), axis=-1)


def _check(name, arrays):
    shapes = {k: jnp.shape(v) for k, v in arrays.items()}
    rays, samples = shapes["t"] if len(shapes["t"]) == 2 else (None, None)
    if rays is None:
        raise ValueError(f"{name}: t must be [rays, samples], got {shapes['t']}")
    want = {
        "t": (rays, samples),
        "densities": (rays, samples),
        "occupancies": (rays, samples),
        "colors": (rays, samples, 3),
        "directions": (rays, 3),
    }
    for k, s in shapes.items():
        if s != want[k]:
            raise ValueError(f"{name}: {k} must be {want[k]} for t {shapes['t']}, got {s}")


def _accumulate(alpha, colors, t, white_background) -> Dict[str, jax.Array]:
    trans = jnp.cumprod(1.0 - alpha, axis=-1)
    trans = jnp.concatenate([jnp.ones_like(trans[:, :1]), trans[:, :-1]], axis=-1)  # Exclusive.
    weights = alpha * trans
    opacity = jnp.sum(weights, axis=-1)
    rgb = jnp.sum(weights[..., None] * colors, axis=-2)
    if white_background:
        rgb = rgb + (1.0 - opacity)[:, None]
    return {"rgb": rgb, "depth": jnp.sum(weights * t, axis=-1), "opacity": opacity, "weights": weights}


def composite(densities, colors, t, directions, white_background: bool = False) -> Dict[str, jax.Array]:
    """NeRF's volume rendering quadrature.

    Sample i's density holds over [t_i, t_{i+1}) (the last interval is
    `LAST_INTERVAL`), so alpha_i = 1 - exp(-sigma_i (t_{i+1} - t_i) |d|).

    Args:
      densities: float [rays, S], >= 0 (sigma, per unit of world length).
      colors: float [rays, S, 3].
      t: float [rays, S], increasing distances along the rays in units of |d|.
      directions: float [rays, 3], the rays' directions (only their norms are used).
      white_background: add 1 - opacity to rgb.

    Returns:
      dict: `rgb` [rays, 3], `depth` [rays] (sum_i w_i t_i), `opacity` [rays]
      (sum_i w_i) and `weights` [rays, S].
    """
    _check("composite", {"densities": densities, "colors": colors, "t": t, "directions": directions})
    delta = jnp.concatenate([t[:, 1:] - t[:, :-1], jnp.full_like(t[:, :1], LAST_INTERVAL)], axis=-1)
    delta = delta * jnp.linalg.norm(directions, axis=-1, keepdims=True)
    alpha = 1.0 - jnp.exp(-densities * delta)
    return _accumulate(alpha, colors, t, white_background)


def composite_occupancy(occupancies, colors, t, white_background: bool = False) -> Dict[str, jax.Array]:
    """Volume rendering of an occupancy field: alpha_i = o_i, the occupancy probability at sample i.

    A ray's first occupied sample (o = 1) takes all remaining weight, so for a
    binary field this is surface rendering; in between it is a volume (UNISURF's
    unified formulation).

    Args:
      occupancies: float [rays, S] in [0, 1].
      colors: float [rays, S, 3].
      t: float [rays, S], increasing distances along the rays.
      white_background: add 1 - opacity to rgb.

    Returns:
      dict as `composite`.
    """
    _check("composite_occupancy", {"occupancies": occupancies, "colors": colors, "t": t})
    return _accumulate(occupancies, colors, t, white_background)
