"""Train state, optimiser, and the jitted, data-parallel train and eval steps.

The steps are pure functions of (state, batch). `create_train_step` jits them
over a 1-D device mesh with axis 'data': the state is replicated, the batch is
split along its first axis, and XLA inserts the cross-device reductions (the
batch-norm statistics and the gradient mean are over the global batch), so the
same code runs on one CPU, eight GPUs or a TPU slice and gives the same result.
"""

import functools
from typing import Any, Dict, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from implicit_fields import losses


class TrainState(train_state.TrainState):
    """Flax TrainState plus the batch-norm running statistics."""

    batch_stats: Any = None


def create_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all (or the given) devices with axis name 'data'."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def shardings(mesh: Mesh) -> Tuple[NamedSharding, NamedSharding]:
    """(replicated, split-along-batch) shardings on `mesh`."""
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def learning_rate_schedule(optim_config, num_steps: int):
    """The learning rate as a function of the step.

    'constant' (the original) or 'cosine': cosine decay from `learning_rate`
    to `learning_rate * final_lr_fraction` over `num_steps`, which helps short runs.
    """
    lr = optim_config.learning_rate
    if optim_config.schedule == "constant":
        return optax.constant_schedule(lr)
    if optim_config.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, max(int(num_steps), 1), alpha=optim_config.final_lr_fraction)
    raise ValueError(f"unknown optim.schedule {optim_config.schedule!r}; use 'constant' or 'cosine'")


def create_optimizer(optim_config, num_steps: int = 1) -> optax.GradientTransformation:
    """Adam with the configured learning rate schedule (original: constant 1e-4)."""
    if optim_config.optimizer != "adam":
        raise ValueError(f"unknown optimizer {optim_config.optimizer!r}; only 'adam' is supported")
    tx = optax.adam(learning_rate_schedule(optim_config, num_steps))
    if optim_config.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(optim_config.grad_clip_norm), tx)
    return tx


def dummy_inputs(batch_size: int, num_points: int, num_inputs: int):
    """Zero arrays of the right shapes for `model.init`."""
    return (
        jnp.zeros((batch_size, num_points, 3), jnp.float32),
        jnp.zeros((batch_size, num_inputs, 3), jnp.float32),
    )


def create_train_state(rng, model: nn.Module, config) -> TrainState:
    """Initialises parameters, batch statistics and optimiser state."""
    points, inputs = dummy_inputs(2, 8, config.data.pointcloud_n)
    variables = model.init(rng, points, inputs, train=False)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", flax.core.FrozenDict()),
        tx=create_optimizer(config.optim, config.train.num_steps),
    )


def train_step(state: TrainState, batch: Dict[str, jax.Array]):
    """One Adam step on the summed-over-points BCE.

    Args:
      state: the train state.
      batch: 'points' [B, T, 3], 'occupancies' [B, T], 'inputs' [B, n, 3].

    Returns:
      (new_state, metrics) with metrics 'loss', 'accuracy' and 'grad_norm'.
    """

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["points"],
            batch["inputs"],
            train=True,
            mutable=["batch_stats"],
        )
        loss = losses.occupancy_bce(logits, batch["occupancies"])
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    accuracy = jnp.mean((logits >= 0) == (batch["occupancies"] >= 0.5))
    metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": optax.tree.norm(grads)}
    return new_state, metrics


def eval_step(state: TrainState, batch: Dict[str, jax.Array], threshold_logit: float):
    """Per-object validation metrics on query points (eval-mode batch norm).

    Args:
      batch: 'points' [B, T, 3], 'occupancies' [B, T], 'inputs' [B, n, 3].
      threshold_logit: occupancy threshold in logits.

    Returns:
      dict of per-object 'iou' [B] and 'loss' [B] (BCE summed over points).
    """
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats},
        batch["points"],
        batch["inputs"],
        train=False,
    )
    occ_pred = logits >= threshold_logit
    occ_gt = batch["occupancies"] >= 0.5
    inter = jnp.sum(occ_pred & occ_gt, axis=-1)
    union = jnp.sum(occ_pred | occ_gt, axis=-1)
    iou = jnp.where(union > 0, inter / jnp.maximum(union, 1), 0.0)
    loss = optax.sigmoid_binary_cross_entropy(logits, batch["occupancies"]).sum(-1)
    return {"iou": iou, "loss": loss}


def create_train_step(mesh: Mesh):
    """`train_step` jitted over `mesh`, donating the incoming state."""
    repl, data = shardings(mesh)
    return jax.jit(
        train_step,
        in_shardings=(repl, data),
        out_shardings=(repl, repl),
        donate_argnums=(0,),
    )


def create_eval_step(mesh: Mesh, threshold_logit: float):
    """`eval_step` jitted over `mesh` for a fixed threshold."""
    repl, data = shardings(mesh)
    return jax.jit(
        functools.partial(eval_step, threshold_logit=threshold_logit),
        in_shardings=(repl, data),
        out_shardings=repl,
    )
