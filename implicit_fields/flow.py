"""Trajectories of points in a velocity field: the ODE of Occupancy Flow, solved with diffrax.

A velocity field `v(s, t)` moves each point along `ds/dt = v(s(t), t)`. Occupancy
Flow (Niemeyer et al., ICCV 2019) keeps a shape at t = 0 and represents its motion
this way, so correspondences between times come out of the model. The original
solves the ODE with torchdiffeq's `dopri5` (rtol 1e-3, atol 1e-5) and its
continuous adjoint (`odeint_adjoint`). Here the same solver, step-size control
and adjoint are diffrax's, the maintained JAX library of differential equation
solvers: `Dopri5`, `PIDController` (an integral controller with the default
coefficients, as torchdiffeq's) and `BacksolveAdjoint` (the continuous adjoint:
the gradient integrates the adjoint ODE backwards, memory independent of the
number of steps) or `RecursiveCheckpointAdjoint` (differentiates through the
solver's steps with recursive checkpointing: exact for the discretisation,
memory logarithmic in the steps).

* `integrate(velocity_fn, params, points, times)`: the trajectories of one point
  set at every entry of `times` (increasing, or decreasing to integrate backwards,
  e.g. to pull points at time t back to t = 0).
* `integrate_samples(velocity_fn, params, points, t_start, t_end)`: a batch of point
  sets, each with its own start and end time, in ONE solve. Each sample's time is
  reparametrised, `t = t_start + u (t_end - t_start)` with `u` from 0 to 1, so its
  ODE becomes `ds/du = (t_end - t_start) v(s, t(u))` and all samples share the
  interval [0, 1]: one adaptive solve with one step-size sequence (chosen for the
  hardest sample) for the whole batch. A `vmap` of separate solves would run a
  batched while-loop that steps every sample until the slowest has finished, with
  per-sample bookkeeping; the reparametrised solve is one plain solve of the
  stacked states, which is what a training batch whose samples pull points back
  from different frames needs. The substitution is exact: the same trajectory,
  traversed at another speed.

Both are pure functions of arrays, jittable, vmappable and differentiable with
respect to `params` (any pytree) and `points`.
"""

from typing import Any, Callable, Optional

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ADJOINTS", "integrate", "integrate_samples", "num_function_evaluations"]

ADJOINTS = ("backsolve", "checkpoint")

VelocityFn = Callable[..., jnp.ndarray]


def _adjoint(adjoint: str):
    if adjoint == "backsolve":
        return diffrax.BacksolveAdjoint()
    if adjoint == "checkpoint":
        return diffrax.RecursiveCheckpointAdjoint()
    raise ValueError(f"adjoint={adjoint!r}: must be one of {ADJOINTS}")


def _check_tolerances(rtol, atol):
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, (int, float)) and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value!r}: must be a finite number > 0")


def _check_points(points, what="points"):
    if points.ndim < 2 or points.shape[-1] != 3:
        raise ValueError(f"{what} must be (..., N, 3), got shape {points.shape}")


def _solve(field, y0, args, t0, t1, saveat, rtol, atol, adjoint, max_steps):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Dopri5(),
        t0=t0,
        t1=t1,
        dt0=None,
        y0=y0,
        args=args,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=_adjoint(adjoint),
        max_steps=max_steps,
    )


def integrate(
    velocity_fn: VelocityFn,
    params: Any,
    points,
    times,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    adjoint: str = "backsolve",
    max_steps: int = 4096,
):
    """Trajectories of `points` in the velocity field, at every entry of `times`.

    Args:
      velocity_fn: `velocity_fn(params, points (N, 3), t) -> velocities (N, 3)`, t a scalar.
      params: any pytree (the field's parameters, codes, ...); gradients flow to it.
      points: (N, 3) states at `times[0]`.
      times: 1-D, strictly increasing or strictly decreasing (backwards in time).
      rtol, atol: the adaptive step's tolerances (the original's: 1e-3, 1e-5).
      adjoint: 'backsolve' (the continuous adjoint, as the original) or 'checkpoint'.
      max_steps: the solver's step budget (an error beyond it, never a silent stop).

    Returns:
      (len(times), N, 3): the states at each time; the first is `points`.
    """
    points = jnp.asarray(points)
    times = jnp.asarray(times, dtype=points.dtype if jnp.issubdtype(points.dtype, jnp.floating) else None)
    _check_points(points)
    _check_tolerances(rtol, atol)
    _adjoint(adjoint)
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"times must be a non-empty 1-D array, got shape {times.shape}")
    if not isinstance(times, jax.core.Tracer):
        d = np.diff(np.asarray(times))
        if len(d) and not (np.all(d > 0) or np.all(d < 0)):
            raise ValueError(
                f"times must be strictly increasing or strictly decreasing, got {np.asarray(times)}"
            )
    out_shape = jax.eval_shape(lambda p, x, t: velocity_fn(p, x, t), params, points, times[0])
    if out_shape.shape != points.shape:
        raise ValueError(f"velocity_fn returned shape {out_shape.shape} for points of shape {points.shape}")
    if times.shape[0] == 1:
        return points[None]

    def field(t, y, args):
        return velocity_fn(args, y, t)

    sol = _solve(
        field, points, params, times[0], times[-1], diffrax.SaveAt(ts=times), rtol, atol, adjoint, max_steps
    )
    # The first saved state is y0 up to the solver's interpolation; return it exactly.
    return jnp.concatenate([points[None], sol.ys[1:]], axis=0)


def integrate_samples(
    velocity_fn: VelocityFn,
    params: Any,
    points,
    t_start,
    t_end,
    *,
    sample_args: Optional[Any] = None,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    adjoint: str = "backsolve",
    max_steps: int = 4096,
):
    """Each sample's points moved from its own start time to its own end time, in one solve.

    Args:
      velocity_fn: `velocity_fn(params, points (N, 3), t)`, or with `sample_args`
        `velocity_fn(params, points (N, 3), t, sample_arg)` (e.g. a sample's temporal code).
      params: pytree shared by the samples.
      points: (B, N, 3) states at `t_start`.
      t_start, t_end: (B,) (or scalars) times; t_end < t_start integrates backwards.
      sample_args: optional pytree with leading axis B, one entry per sample.

    Returns:
      (B, N, 3): the states at `t_end` (equal to `points` where t_end == t_start).
    """
    points = jnp.asarray(points)
    _check_points(points)
    if points.ndim != 3:
        raise ValueError(f"points must be (B, N, 3), got shape {points.shape}")
    _check_tolerances(rtol, atol)
    b = points.shape[0]
    t_start = jnp.broadcast_to(jnp.asarray(t_start, points.dtype), (b,))
    t_end = jnp.broadcast_to(jnp.asarray(t_end, points.dtype), (b,))
    span = t_end - t_start

    if sample_args is None:

        def one(p, x, t, _):
            return velocity_fn(p, x, t)

    else:
        one = velocity_fn

    batched = jax.vmap(one, in_axes=(None, 0, 0, 0))

    # Every array the field reads travels in `args`: the continuous adjoint cannot close over
    # traced values (the start and end times are often traced, e.g. a batch's frames).
    def field(u, y, args):
        p, extra, t0, dt = args
        t = t0 + u * dt
        return dt[:, None, None] * batched(p, y, t, extra)

    dummy = jnp.zeros((b,), points.dtype) if sample_args is None else sample_args
    sol = _solve(
        field,
        points,
        (params, dummy, t_start, span),
        jnp.zeros((), points.dtype),
        jnp.ones((), points.dtype),
        diffrax.SaveAt(t1=True),
        rtol,
        atol,
        adjoint,
        max_steps,
    )
    return sol.ys[0]


def num_function_evaluations(
    velocity_fn: VelocityFn, params: Any, points, times, *, rtol=1e-3, atol=1e-5
) -> int:
    """How many times the solver evaluates the field integrating `points` over `times` (forward only).

    Counted, not estimated: each evaluation of the field during the solve calls back to the
    host (`jax.debug.callback`), so call this outside `jit`.
    """
    count = [0]

    def counted(p, x, t):
        jax.debug.callback(lambda: count.__setitem__(0, count[0] + 1))
        return velocity_fn(p, x, t)

    jax.block_until_ready(
        integrate(counted, params, points, times, rtol=rtol, atol=atol, adjoint="checkpoint")
    )
    return count[0]
