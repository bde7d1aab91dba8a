"""Differentiable surface rendering of occupancy fields (DVR's depth function).

For every ray ``r(d) = origin + d * direction`` the forward pass finds the first
crossing of the occupancy field from outside to inside, as DVR's
`dvr/models/depth_function.py` does:

1. the ray is clipped to the padded unit cube of side ``1 + padding``
   (`cameras.intersect_box`, re-exported here) and ``n_steps`` evenly spaced depths
   are evaluated, ``chunk_steps`` at a time inside a
   `lax.while_loop` that stops once every ray has its answer, so temporary memory is
   bounded by ``rays x chunk_steps`` whatever ``n_steps`` is;
2. the first outside -> inside sign change of ``f = logit - logit(threshold)`` is refined
   with ``n_secant`` secant steps.

The backward pass (``gradient="analytic"``) does not differentiate through the search.
At the surface point ``p = o + d w`` we have ``f(p, theta) = 0``; implicit
differentiation gives

    dd/dtheta = -(df/dtheta) / (df/dp . w),

so one extra evaluation of the field at the surface points (and its VJP) gives the
gradient for any parameter pytree, and nothing from the search is stored. Misses and
rays starting inside get zero gradient; ``|df/dp . w|`` is clamped from below (1e-3,
as in the original) so grazing rays cannot produce inf or NaN. ``gradient="unrolled"``
differentiates through the marching and secant steps instead (memory then grows with
``n_steps``); it exists for comparison and tests.

Conventions: directions need not be unit length (DVR uses ``pixel_world - camera``, so
``d`` is camera depth); ``d`` is ``inf`` for rays that miss and ``0`` for rays whose
first sample inside the cube is already occupied. ``logit_fn(params, points)`` maps a
params pytree and float32 points ``(N, 3)`` to logits ``(N,)`` and must act pointwise
(each logit depends on its own point only), which holds for our decoders in eval mode.
Everything that should receive a gradient must be passed through ``params``: values
closed over by ``logit_fn`` are treated as constants.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from implicit_fields.cameras import intersect_box
from implicit_fields.losses import probability_to_logit

__all__ = [
    "surface_depth",
    "intersect_box",
    "GRAZING_EPS",
]

LogitFn = Callable[[Any, jax.Array], jax.Array]

# Lower bound on |df/dp . w| in the implicit gradient (the original's value).
GRAZING_EPS = 1e-3


class _Search(NamedTuple):
    """Static settings of the ray search (hashable, so usable as a static argument)."""

    n_steps: int
    n_secant: int
    tau: float
    padding: float
    chunk_steps: int


def _eval(logit_fn, params, points, tau):
    """f = logit - tau for points of any leading shape [..., 3]."""
    lead = points.shape[:-1]
    flat = points.reshape(-1, 3)
    out = logit_fn(params, flat)
    return out.reshape(lead) - tau


def _march(logit_fn, params, origins, directions, cfg: _Search, early_stop: bool):
    """Finds the bracketing interval of the first outside -> inside crossing.

    Returns ``(d_lo, d_hi, f_lo, f_hi, crossed, inside)``: for crossed rays the last
    free and the first occupied sample; ``inside`` marks rays whose first sample is
    occupied.
    """
    n = origins.shape[0]
    d_near, d_far, hit = intersect_box(origins, directions, cfg.padding)
    k = min(cfg.chunk_steps, cfg.n_steps)
    n_chunks = -(-cfg.n_steps // k)
    denom = max(cfg.n_steps - 1, 1)

    def depths(step_index):
        frac = step_index.astype(origins.dtype) / denom
        return d_near[:, None] + frac[None, :] * (d_far - d_near)[:, None]

    # First sample: decides "starts inside"; it also seeds the running previous value.
    d0 = d_near
    f0 = _eval(logit_fn, params, origins + d0[:, None] * directions, cfg.tau)
    inside = hit & (f0 >= 0.0)
    done0 = ~hit | inside

    zeros = jnp.zeros((n,), origins.dtype)
    init = dict(
        chunk=jnp.zeros((), jnp.int32),
        d_prev=d0,
        f_prev=f0,
        done=done0,
        crossed=jnp.zeros((n,), bool),
        d_lo=zeros,
        d_hi=zeros,
        f_lo=zeros,
        f_hi=zeros,
    )
    offsets = jnp.arange(k, dtype=jnp.int32)

    def body(carry):
        idx = 1 + carry["chunk"] * k + offsets  # samples 1..n_steps-1 (0 is done above)
        valid_step = idx < cfg.n_steps
        d = depths(idx)  # [n, k]
        pts = origins[:, None, :] + d[:, :, None] * directions[:, None, :]
        f = _eval(logit_fn, params, pts, cfg.tau)
        f_all = jnp.concatenate([carry["f_prev"][:, None], f], axis=1)
        d_all = jnp.concatenate([carry["d_prev"][:, None], d], axis=1)
        cross = (f_all[:, :-1] < 0.0) & (f_all[:, 1:] >= 0.0) & valid_step[None, :]
        has = jnp.any(cross, axis=1) & ~carry["done"]
        j = jnp.argmax(cross, axis=1)
        take = lambda a, i: jnp.take_along_axis(a, i[:, None], axis=1)[:, 0]  # noqa: E731
        new = dict(
            d_lo=jnp.where(has, take(d_all, j), carry["d_lo"]),
            d_hi=jnp.where(has, take(d_all, j + 1), carry["d_hi"]),
            f_lo=jnp.where(has, take(f_all, j), carry["f_lo"]),
            f_hi=jnp.where(has, take(f_all, j + 1), carry["f_hi"]),
        )
        last = jnp.maximum(jnp.sum(valid_step.astype(jnp.int32)) - 1, 0)
        return dict(
            chunk=carry["chunk"] + 1,
            d_prev=d[:, last],
            f_prev=f[:, last],
            done=carry["done"] | has,
            crossed=carry["crossed"] | has,
            **new,
        )

    if cfg.n_steps <= 1:
        out = init
    elif early_stop:
        cond = lambda c: (c["chunk"] < n_chunks) & ~jnp.all(c["done"])  # noqa: E731
        out = jax.lax.while_loop(cond, body, init)
    else:
        out = jax.lax.fori_loop(0, n_chunks, lambda _, c: body(c), init)
    return out["d_lo"], out["d_hi"], out["f_lo"], out["f_hi"], out["crossed"], inside


def _secant(logit_fn, params, origins, directions, d_lo, d_hi, f_lo, f_hi, cfg: _Search):
    """`n_secant` secant steps on the bracket; returns the refined depth."""

    def pred(d_lo, d_hi, f_lo, f_hi):
        df = f_hi - f_lo
        safe = jnp.where(jnp.abs(df) > 1e-12, df, 1.0)
        d = d_lo - f_lo * (d_hi - d_lo) / safe
        return jnp.where(jnp.abs(df) > 1e-12, d, 0.5 * (d_lo + d_hi))

    def step(_, c):
        d_lo, d_hi, f_lo, f_hi = c
        d = pred(d_lo, d_hi, f_lo, f_hi)
        f = _eval(logit_fn, params, origins + d[:, None] * directions, cfg.tau)
        free = f < 0.0
        return (
            jnp.where(free, d, d_lo),
            jnp.where(free, d_hi, d),
            jnp.where(free, f, f_lo),
            jnp.where(free, f_hi, f),
        )

    c = jax.lax.fori_loop(0, cfg.n_secant, step, (d_lo, d_hi, f_lo, f_hi))
    return pred(*c)


def _search(logit_fn, params, origins, directions, cfg: _Search, early_stop: bool):
    d_lo, d_hi, f_lo, f_hi, crossed, inside = _march(logit_fn, params, origins, directions, cfg, early_stop)
    d = _secant(logit_fn, params, origins, directions, d_lo, d_hi, f_lo, f_hi, cfg)
    d = jnp.where(crossed, d, jnp.inf)
    return jnp.where(inside, 0.0, d)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 4))
def _depth_analytic(logit_fn, params, origins, directions, cfg):
    return _search(logit_fn, params, origins, directions, cfg, early_stop=True)


def _depth_analytic_fwd(logit_fn, params, origins, directions, cfg):
    d = _search(logit_fn, params, origins, directions, cfg, early_stop=True)
    return d, (params, origins, directions, d)


def _depth_analytic_bwd(logit_fn, cfg, res, g):
    params, origins, directions, d = res
    valid = jnp.isfinite(d) & (d > 0.0)
    d_safe = jnp.where(valid, d, 0.0)
    points = jax.lax.stop_gradient(origins + d_safe[:, None] * directions)
    _, vjp = jax.vjp(lambda prm, p: logit_fn(prm, p), params, points)
    # Pointwise field: the VJP with ones gives df/dp for every point at once.
    _, grad_p = vjp(jnp.ones_like(d))
    slope = jnp.sum(grad_p * directions, axis=-1)  # df/dp . w
    sign = jnp.where(slope < 0.0, -1.0, 1.0)
    slope = sign * jnp.maximum(jnp.abs(slope), GRAZING_EPS)
    weight = jnp.where(valid, -jnp.where(valid, g, 0.0) / slope, 0.0)
    grad_params, _ = vjp(weight.astype(d.dtype))
    return grad_params, jnp.zeros_like(origins), jnp.zeros_like(directions)


_depth_analytic.defvjp(_depth_analytic_fwd, _depth_analytic_bwd)


def surface_depth(
    logit_fn: LogitFn,
    params: Any,
    origins: jax.Array,
    directions: jax.Array,
    *,
    n_steps: int = 128,
    n_secant: int = 8,
    threshold: float = 0.5,
    padding: float = 0.1,
    gradient: str = "analytic",
    chunk_steps: int = 16,
) -> jax.Array:
    """Depth of the first surface crossing along each ray, differentiable in `params`.

    Args:
      logit_fn: `logit_fn(params, points (N, 3)) -> logits (N,)`, pointwise and jittable.
      params: any pytree of float arrays (network variables, a condition code, ...).
      origins: float32 [N, 3] ray origins.
      directions: float32 [N, 3] ray directions (not necessarily unit length).
      n_steps: evenly spaced samples inside the ray's intersection with the padded cube.
      n_secant: secant refinement steps.
      threshold: occupancy probability of the surface (0.5 in DVR).
      padding: the padded cube has side ``1 + padding``.
      gradient: ``"analytic"`` (implicit differentiation, constant memory) or
        ``"unrolled"`` (autodiff through the search, for comparison).
      chunk_steps: marching samples evaluated per loop iteration; bounds the
        temporary memory at ``N * chunk_steps`` points.

    Returns:
      float32 [N]: ``d`` with the surface at ``origins + d * directions``; ``inf`` for
      misses, ``0`` for rays whose first sample is inside.
    """
    origins = jnp.asarray(origins)
    directions = jnp.asarray(directions)
    if origins.ndim != 2 or origins.shape[-1] != 3 or directions.shape != origins.shape:
        raise ValueError(
            f"origins and directions must both be (N, 3); got {origins.shape} and {directions.shape}"
        )
    if n_steps < 2:
        raise ValueError(f"n_steps must be >= 2, got {n_steps}")
    if n_secant < 0 or chunk_steps < 1:
        raise ValueError(f"need n_secant >= 0 and chunk_steps >= 1, got {n_secant}, {chunk_steps}")
    cfg = _Search(
        int(n_steps), int(n_secant), float(probability_to_logit(threshold)), float(padding), int(chunk_steps)
    )
    if gradient == "analytic":
        return _depth_analytic(logit_fn, params, origins, directions, cfg)
    if gradient == "unrolled":
        return _search(logit_fn, params, origins, directions, cfg, early_stop=False)
    raise ValueError(f"gradient must be 'analytic' or 'unrolled', got {gradient!r}")
