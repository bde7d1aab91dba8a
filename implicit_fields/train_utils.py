"""Train state, optimiser, device mesh, and the one jitted train step every method uses.

`create_train_step(loss_fn, mesh, loop_key)` turns a method's loss into the
data-parallel step: the state is replicated over a 1-D device mesh with axis
'data', the batch is split along its first axis, and XLA inserts the
cross-device reductions (batch-norm statistics and the gradient mean are over
the global batch), so the same code runs on one CPU, eight GPUs or a TPU slice
and gives the same result. The step's randomness is
`fold_in(loop_key, state.step)`, so a resumed run draws what an unbroken one
would have drawn.

Mixed precision (`config.train.compute_dtype='bfloat16'`): the state stays
float32 (parameters, optimiser state, batch-norm statistics); inside the
differentiated function the step hands the loss bfloat16 copies of the
parameters, the layers compute in their parameters' dtype
(`implicit_fields.layers`), batch norm and the losses compute their
reductions in float32, and the loss comes back as float32. The gradient
reaches the float32 parameters through the cast, in float32.
"""

import dataclasses
import functools
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from implicit_fields import config_utils

# A method's loss: (params, batch_stats, batch, rng, **static) -> (loss, (metrics, new_batch_stats)).
LossFn = Callable[..., Tuple[jax.Array, Tuple[Dict[str, jax.Array], Any]]]

# Streams folded into the seed's key: the initial parameters and the training loop never share a key.
INIT_STREAM = 0
LOOP_STREAM = 1


class TrainState(train_state.TrainState):
    """Flax TrainState plus the batch-norm running statistics (an empty dict without batch norm)."""

    batch_stats: Any = None


def rng_keys(seed: int) -> Tuple[jax.Array, jax.Array]:
    """(init_key, loop_key) of `seed`: `fold_in(key(seed), 0)` and `fold_in(key(seed), 1)`.

    The initial parameters come from `init_key`; the step `s` draws from
    `fold_in(loop_key, s)`, so no step reuses the initialisation's key.
    """
    base = jax.random.key(int(seed))
    return jax.random.fold_in(base, INIT_STREAM), jax.random.fold_in(base, LOOP_STREAM)


def create_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all (or the given) devices with axis name 'data'."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def shardings(mesh: Mesh) -> Tuple[NamedSharding, NamedSharding]:
    """(replicated, split-along-batch) shardings on `mesh`."""
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


SCHEDULES = ("constant", "cosine", "multistep", "exponential")


def learning_rate_schedule(optim_config, num_steps: int):
    """The learning rate as a function of the step.

    'constant' (ONet), 'cosine' (decay from `learning_rate` to
    `learning_rate * final_lr_fraction` over `num_steps`, which helps short
    runs) or 'multistep' (times `gamma` at each of `milestones`: PyTorch's
    MultiStepLR, as DVR) or 'exponential' (log-linear from `learning_rate` to
    `learning_rate * final_lr_fraction` at `num_steps`: jaxnerf's
    `learning_rate_decay`, NeRF's 5e-4 to 5e-6).
    """
    lr = optim_config.learning_rate
    if optim_config.schedule == "constant":
        return optax.constant_schedule(lr)
    if optim_config.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, max(int(num_steps), 1), alpha=optim_config.final_lr_fraction)
    if optim_config.schedule == "multistep":
        return optax.piecewise_constant_schedule(
            lr, {int(m): optim_config.gamma for m in optim_config.milestones}
        )
    if optim_config.schedule == "exponential":
        fraction = optim_config.final_lr_fraction
        if not fraction > 0.0:
            raise ValueError(
                f"config.optim.final_lr_fraction={fraction}: must be > 0 with the 'exponential' schedule "
                f"(the learning rate decays log-linearly to learning_rate * final_lr_fraction)"
            )
        return optax.exponential_decay(lr, max(int(num_steps), 1), fraction)
    raise ValueError(f"unknown optim.schedule {optim_config.schedule!r}; use one of {SCHEDULES}")


OPTIMIZERS = ("adam", "rmsprop")


def create_optimizer(optim_config, num_steps: int = 1) -> optax.GradientTransformation:
    """The configured optimiser with its learning-rate schedule and optional gradient clipping.

    'adam' is PyTorch's Adam (the originals of ONet, DVR, ConvONet, Occupancy Flow);
    'rmsprop' is PyTorch's RMSprop defaults (alpha 0.99, eps 1e-8 added outside the square
    root, no momentum), which Texture Fields trains with.
    """
    lr = learning_rate_schedule(optim_config, num_steps)
    if optim_config.optimizer == "adam":
        tx = optax.adam(lr)
    elif optim_config.optimizer == "rmsprop":
        tx = optax.rmsprop(lr, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    else:
        raise ValueError(f"unknown optim.optimizer {optim_config.optimizer!r}; use one of {OPTIMIZERS}")
    if optim_config.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), tx)
    return tx


COMPUTE_DTYPES = ("float32", "bfloat16")
"""The dtypes a train step may compute in (`config.train.compute_dtype`)."""


def compute_dtype_of(compute_dtype) -> np.dtype:
    """The numpy dtype of a compute dtype given by name ('float32', 'bfloat16') or as a dtype.

    Raises:
      ValueError: for any other dtype (float16 would need loss scaling; float64 is not a speed-up).
    """
    try:
        dtype = jnp.dtype(compute_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute dtype {compute_dtype!r} (config.train.compute_dtype): use one of {COMPUTE_DTYPES}"
        )
    return dtype


@dataclasses.dataclass(frozen=True)
class Float32Only(config_utils.Choice):
    """The check of `config.train.compute_dtype` for a method that trains in float32 only.

    A method whose loss needs float32 (root finding, an adaptive ODE solver,
    volume compositing) lists it in its `CHECKS`, so that 'bfloat16' is refused
    before any work with the reason, rather than silently training on noise.

    Attributes:
      method: the method's name, for the message.
      reason: why bfloat16 does not work for it.
    """

    choices: Sequence[Any] = ("float32",)
    method: str = ""
    reason: str = ""

    def check(self, name: str, value) -> None:
        if isinstance(value, bool) or value not in tuple(self.choices):
            raise ValueError(
                f"{name}={value!r}: {self.method} trains in float32 only ({self.reason}); use 'float32'"
            )


def cast_floating(tree, dtype):
    """`tree` with its floating-point array leaves cast to `dtype`; other leaves (integers,
    booleans, PRNG keys, None) as they are."""

    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    static: Tuple[Tuple[str, Any], ...] = (),
    *,
    loss_fn: LossFn,
    loop_key: jax.Array,
    compute_dtype="float32",
):
    """One optimiser step on `loss_fn`.

    Args:
      state: the train state.
      batch: the step's batch (any pytree of arrays with the batch on axis 0).
      static: (name, value) pairs passed to `loss_fn` as keyword arguments;
        compile-time settings of the step (e.g. DVR's marching steps).
      loss_fn: `(params, batch_stats, batch, rng, **static) -> (loss,
        (metrics, new_batch_stats))`; `new_batch_stats` None keeps the state's.
      loop_key: the run's loop key; the step draws from `fold_in(loop_key, state.step)`.
      compute_dtype: 'float32' (the loss sees the state's parameters, nothing
        is cast) or 'bfloat16': the loss sees bfloat16 copies of the floating
        parameters (the batch and the batch-norm statistics are passed as
        they are: geometry such as points, depths and cameras keeps float32,
        and the layers cast their inputs to their parameters' dtype); its
        loss, floating metrics and new batch statistics are cast to float32,
        so the state keeps float32 everywhere and the gradient, taken with
        respect to the float32 parameters through the cast, is float32.

    Returns:
      (new_state, metrics): the loss function's metrics plus 'loss' and
      'grad_norm' (global norm of the gradient).
    """
    rng = jax.random.fold_in(loop_key, state.step)
    dtype = compute_dtype_of(compute_dtype)

    def objective(params):
        if dtype == jnp.float32:  # No cast at all: the float32 step is unchanged.
            return loss_fn(params, state.batch_stats, batch, rng, **dict(static))
        loss, (metrics, batch_stats) = loss_fn(
            cast_floating(params, dtype), state.batch_stats, batch, rng, **dict(static)
        )
        if batch_stats is not None:
            batch_stats = cast_floating(batch_stats, jnp.float32)
        return loss.astype(jnp.float32), (cast_floating(metrics, jnp.float32), batch_stats)

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    if batch_stats is None:
        batch_stats = state.batch_stats
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return new_state, metrics


# XLA:CPU hands each dot to YNNPACK by default (its fusion types INDIVIDUAL_DOT and
# REDUCE). For the [points, 256] x [256, 256] matmuls of the decoders its Eigen dot is
# faster on x86 (about 215 against 185 GFLOPS in float32), so the train step keeps
# YNNPACK for its reductions only. Measured on the 2-core CPU: the default ONet step
# at 64 x 2048 is 1.11-1.15x faster (bfloat16: 1.07x), the ConvONet cpu step 1.21x, DVR
# 1.06x; NeRF, Occupancy Flow and Texture Fields are unchanged.
# `benchmarks/train_throughput.py` measures the step both ways.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.lru_cache(maxsize=None)
def _cpu_options_accepted() -> bool:
    """Whether this jaxlib's CPU compiler knows `CPU_COMPILER_OPTIONS` (one tiny compile)."""
    try:
        cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
        x = jax.ShapeDtypeStruct((2, 2), jnp.float32, sharding=cpu)
        jax.jit(jnp.dot).lower(x, x).compile(dict(CPU_COMPILER_OPTIONS))
    except Exception:  # noqa: BLE001 - an XLA without the option: keep its defaults.
        return False
    return True


def default_compiler_options(mesh: Optional[Mesh] = None) -> Dict[str, Any]:
    """The XLA options `create_train_step` compiles with: `CPU_COMPILER_OPTIONS` or {}.

    They apply on CPU devices only, and not when XLA_FLAGS already chooses the
    YNN fusion types or this jaxlib does not know the option.
    """
    devices = mesh.devices.flat if mesh is not None else jax.devices()
    if any(d.platform != "cpu" for d in devices):
        return {}
    if "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return {}
    return dict(CPU_COMPILER_OPTIONS) if _cpu_options_accepted() else {}


def create_train_step(
    loss_fn: LossFn,
    mesh: Optional[Mesh] = None,
    loop_key: Optional[jax.Array] = None,
    compute_dtype="float32",
    compiler_options: Optional[Mapping[str, Any]] = None,
):
    """`train_step` for `loss_fn`, jitted over `mesh` (default: all devices), donating the state.

    The returned function is `step(state, batch, static=()) -> (state, metrics)`;
    `static` is hashable and recompiles the step when it changes.
    `compute_dtype` ('float32' or 'bfloat16', `config.train.compute_dtype`): with
    'bfloat16' the forward and backward passes run on bfloat16 copies of the
    parameters while the state (parameters, optimiser state, batch-norm
    statistics) and the loss stay float32 (see `train_step`); 'float32' is the
    plain step, without a single cast.
    `compiler_options`: XLA options of the step; None takes
    `default_compiler_options(mesh)`, {} XLA's own defaults.

    Raises:
      ValueError: for a compute dtype not in `COMPUTE_DTYPES`.
    """
    compute_dtype = compute_dtype_of(compute_dtype)
    mesh = create_mesh() if mesh is None else mesh
    loop_key = rng_keys(0)[1] if loop_key is None else loop_key
    repl, data = shardings(mesh)
    if compiler_options is None:
        compiler_options = default_compiler_options(mesh)
    return jax.jit(
        functools.partial(train_step, loss_fn=loss_fn, loop_key=loop_key, compute_dtype=compute_dtype),
        in_shardings=(repl, data),
        out_shardings=(repl, repl),
        static_argnums=(2,),
        donate_argnums=(0,),
        compiler_options=dict(compiler_options) or None,
    )


def epoch_indices(seed: int, step: int, batch_size: int, count: int, stream: int = 0) -> np.ndarray:
    """Items of step `step`: positions step*B ... of the concatenated epoch permutations of `seed`.

    Every item is seen once per epoch, and the items of a step are a pure function of
    (seed, step, stream), so a resumed run draws the items of an unbroken one.

    Args:
      count: items to draw from (>= 1); stream: separates the draws of different methods.

    Returns:
      int64 [batch_size] indices in [0, count).
    """
    pos = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    out = np.empty(batch_size, np.int64)
    for epoch in np.unique(pos // count):
        perm = np.random.default_rng([int(seed), int(epoch), int(stream)]).permutation(count)
        sel = pos // count == epoch
        out[sel] = perm[pos[sel] % count]
    return out
