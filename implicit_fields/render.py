"""Differentiable surface rendering of occupancy fields (DVR's depth function).

For every ray ``r(d) = origin + d * direction`` the forward pass finds the first
crossing of the occupancy field from outside to inside, as DVR's
`dvr/models/depth_function.py` does:

1. the ray is clipped to the padded unit cube of side ``1 + padding``
   (`intersect_box`: `cameras.intersect_box`, with invalid rays as misses) and
   ``n_steps`` evenly spaced depths are evaluated, ``chunk_steps`` at a time inside a
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
``n_steps``); it exists for comparison and tests. Infinite logits (a field computing
``log(p / (1 - p))`` with p in {0, 1}) are clipped to +-`meshing.LOGIT_LIMIT`; the
analytic gradient only differentiates the field at surface points, so it stays finite
where such a field saturates, but the unrolled one differentiates every sample and
gives NaN wherever the field's own derivative is infinite.

Conventions: directions need not be unit length (DVR uses ``pixel_world - camera``, so
``d`` is camera depth); ``d`` is ``inf`` for rays that miss and ``0`` for rays whose
first sample inside the cube is already occupied. Integer origins and directions are
cast to float32. An invalid ray (a NaN or inf origin or direction, or a zero-length
direction) is a miss (``inf``) with zero gradient, and cannot poison the others: it is
replaced by a harmless ray before the search and its result discarded after (the
"double where"), so no NaN reaches the backward pass of the batch.

``logit_fn(params, points)`` maps a params pytree and float32 points ``(N, 3)`` to
floating-point logits ``(N,)`` and must act pointwise (each logit depends on its own
point only), which holds for our decoders in eval mode. Everything that should receive
a gradient must be passed through ``params``: values closed over by ``logit_fn`` are
treated as constants.
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields import cameras, meshing
from implicit_fields.losses import probability_to_logit

__all__ = [
    "surface_depth",
    "intersect_box",
    "valid_rays",
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
    """f = logit - tau for points of any leading shape [..., 3].

    Logits are clipped to +-`meshing.LOGIT_LIMIT`: an infinite logit (a certain occupancy)
    is legitimate, but a secant step between -inf and a finite value would give NaN.
    """
    lead = points.shape[:-1]
    flat = points.reshape(-1, 3)
    out = jnp.clip(_logits(logit_fn, params, flat), -meshing.LOGIT_LIMIT, meshing.LOGIT_LIMIT)
    return out.reshape(lead) - tau


def _logits(logit_fn, params, points):
    """`logit_fn(params, points)`, checked: floating-point logits of shape (N,)."""
    out = logit_fn(params, points)
    shape = getattr(out, "shape", None)
    if shape != points.shape[:1]:
        raise ValueError(
            f"logit_fn must map points (N, 3) to logits (N,); got shape {shape} for N={points.shape[0]}"
        )
    meshing.check_logit_dtype(out.dtype)
    return out


def _ray_array(name, x):
    """Ray origins or directions as a float jax array (integers cast to float32)."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(jnp.float32)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be float (or integer) coordinates, got dtype {x.dtype}")
    return x


def valid_rays(origins, directions):
    """Rays that can be traced: finite origin and direction, and a direction of non-zero length.

    Args:
      origins, directions: (..., 3) arrays (numpy or jax).

    Returns:
      bool (...,).
    """
    xp = jnp if any(isinstance(a, jax.Array) for a in (origins, directions)) else np
    finite = xp.all(xp.isfinite(origins), axis=-1) & xp.all(xp.isfinite(directions), axis=-1)
    return finite & xp.any(directions != 0, axis=-1)


def _sanitize(origins, directions, valid, anchor=0.0):
    """The first half of the double where: an invalid ray becomes (anchor, 0), a miss whose
    every value is finite."""
    xp = jnp if isinstance(valid, jax.Array) else np
    anchor = xp.asarray(anchor, origins.dtype)
    zero = xp.zeros((), directions.dtype)
    return xp.where(valid[..., None], origins, anchor), xp.where(valid[..., None], directions, zero)


def _anchor(origins, directions, valid, padding):
    """Where an invalid ray is traced: the first sample of the first valid ray.

    A zero direction evaluates the field only at its origin, so the invalid ray adds no
    point the valid rays do not already evaluate (no new place for 0 * inf in the
    backward pass). When no ray is valid, a corner of the padded box (not its centre,
    where fields built from distances to a centre have no gradient).
    """
    k = jnp.argmax(valid)
    near, _, _ = cameras.intersect_box(origins[k], directions[k], padding)
    anchor = origins[k] + near * directions[k]
    corner = jnp.full_like(anchor, 0.5 * (1.0 + padding))
    anchor = jnp.where(valid[k] & jnp.all(jnp.isfinite(anchor)), anchor, corner)
    return jax.lax.stop_gradient(anchor)


def intersect_box(origins, directions, padding=0.1):
    """`cameras.intersect_box` for rays that may be invalid.

    Intersects rays with the axis-aligned cube of side ``1 + padding`` at the origin.
    An invalid ray (see `valid_rays`: NaN or inf in its origin or direction, or a
    zero-length direction) is a miss (``d_near = d_far = 0``, ``hit`` False) with a zero
    gradient, whatever the other rays; `cameras.intersect_box` itself would report an
    infinite direction as a hit of length 0 and give it a NaN gradient.

    Args:
        origins: (..., 3) ray origins (numpy or jax; integers are cast to float).
        directions: (..., 3) ray directions (any length; ``d`` is in their units).
        padding: float >= 0, the cube is [-(1 + padding) / 2, (1 + padding) / 2]^3.

    Returns:
        d_near (...,), d_far (...,) and hit (...,) bool, as `cameras.intersect_box`.
    """
    if any(isinstance(a, jax.Array) for a in (origins, directions)):
        o, w = _ray_array("origins", origins), _ray_array("directions", directions)
    else:
        o, w = np.asarray(origins, np.float64), np.asarray(directions, np.float64)
    if o.shape[-1:] != (3,) or w.shape != o.shape:
        raise ValueError(f"origins and directions must both be (..., 3); got {o.shape} and {w.shape}")
    valid = valid_rays(o, w)
    near, far, hit = cameras.intersect_box(*_sanitize(o, w, valid), meshing.check_padding(padding))
    return near, far, hit & valid


def _march(logit_fn, params, origins, directions, cfg: _Search, early_stop: bool):
    """Finds the bracketing interval of the first outside -> inside crossing.

    Returns ``(d_lo, d_hi, f_lo, f_hi, crossed, inside)``: for crossed rays the last
    free and the first occupied sample; ``inside`` marks rays whose first sample is
    occupied.
    """
    n = origins.shape[0]
    d_near, d_far, hit = cameras.intersect_box(origins, directions, cfg.padding)
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
    points = origins + d_safe[:, None] * directions
    # Rays without a surface point get weight 0, but 0 * J is NaN where the field's
    # Jacobian is not finite (e.g. a camera origin where the field saturates): they are
    # evaluated at the first surface point instead, where the field is regular.
    points = jax.lax.stop_gradient(jnp.where(valid[:, None], points, points[jnp.argmax(valid)]))
    _, vjp = jax.vjp(lambda prm, p: _logits(logit_fn, prm, p), params, points)
    # Pointwise field: the VJP with ones gives df/dp for every point at once.
    _, grad_p = vjp(jnp.ones_like(d))
    slope = jnp.sum(grad_p * directions, axis=-1)  # df/dp . w
    sign = jnp.where(slope < 0.0, -1.0, 1.0)
    slope = sign * jnp.maximum(jnp.abs(slope), GRAZING_EPS)
    weight = jnp.where(valid, -jnp.where(valid, g, 0.0) / slope, 0.0)
    grad_params, _ = vjp(weight.astype(d.dtype))
    # No surface point at all: the gradient is zero (whatever the field did at the origins).
    any_valid = jnp.any(valid)
    grad_params = jax.tree.map(lambda x: jnp.where(any_valid, x, jnp.zeros_like(x)), grad_params)
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
      logit_fn: `logit_fn(params, points (N, 3)) -> logits (N,)`, floating point,
        pointwise and jittable.
      params: any pytree of float arrays (network variables, a condition code, ...).
      origins: float32 [N, 3] ray origins (integers are cast to float32).
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
      misses and for invalid rays (a NaN or inf origin or direction, or a zero
      direction; their gradient is zero and does not affect the other rays'), ``0`` for
      rays whose first sample is inside.

    Raises:
      ValueError: for invalid arguments, or a `logit_fn` that returns another shape
        than (N,) or values that are not floating point.
    """
    origins = _ray_array("origins", origins)
    directions = _ray_array("directions", directions)
    if origins.ndim != 2 or origins.shape[-1] != 3 or directions.shape != origins.shape:
        raise ValueError(
            f"origins and directions must both be (N, 3); got {origins.shape} and {directions.shape}"
        )
    if gradient not in ("analytic", "unrolled"):
        raise ValueError(f"gradient must be 'analytic' or 'unrolled', got {gradient!r}")
    cfg = _Search(
        meshing.check_integer("n_steps", n_steps, 2),
        meshing.check_integer("n_secant", n_secant, 0),
        float(probability_to_logit(threshold)),
        meshing.check_padding(padding),
        meshing.check_integer("chunk_steps", chunk_steps, 1),
    )
    if origins.shape[0] == 0:
        return jnp.zeros((0,), origins.dtype)
    # Double where: invalid rays are traced as harmless misses, then reported as inf. Their
    # cotangent is cut at the outer where, and nothing inside saw a NaN, so the backward pass
    # gives them exactly zero instead of 0 * NaN.
    valid = valid_rays(origins, directions)
    o, w = _sanitize(origins, directions, valid, _anchor(origins, directions, valid, cfg.padding))
    if gradient == "analytic":
        d = _depth_analytic(logit_fn, params, o, w, cfg)
    else:
        d = _search(logit_fn, params, o, w, cfg, early_stop=False)
    return jnp.where(valid, d, jnp.inf)
