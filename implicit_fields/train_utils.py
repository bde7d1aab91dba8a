"""Train state, optimiser, and the jitted, data-parallel train and eval steps.

The steps are pure functions of (state, batch); the train step's randomness
(the VAE's reparameterisation noise) is `fold_in(key(seed), state.step)`, so a
resumed run draws the same noise. `create_train_step` jits them
over a 1-D device mesh with axis 'data': the state is replicated, the batch is
split along its first axis, and XLA inserts the cross-device reductions (the
batch-norm statistics and the gradient mean are over the global batch), so the
same code runs on one CPU, eight GPUs or a TPU slice and gives the same result.
"""

import functools
from typing import Any, Dict, Optional, Tuple

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
from implicit_fields.data import datasets


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


def dummy_inputs(
    batch_size: int,
    num_points: int,
    num_inputs: int,
    input_type: Optional[str] = "pointcloud",
    voxel_resolution: int = 32,
    img_size: int = 224,
):
    """Zero arrays of the right shapes for `model.init`.

    Returns:
      (points [batch, num_points, 3], inputs): inputs are [batch, num_inputs, 3]
      for 'pointcloud', [batch, R, R, R] for 'voxels', [batch, S, S, 3] for
      'img' (S = img_size) and [batch, 0] for None.
    """
    points = jnp.zeros((batch_size, num_points, 3), jnp.float32)
    if input_type == "pointcloud":
        inputs = jnp.zeros((batch_size, num_inputs, 3), jnp.float32)
    elif input_type == "voxels":
        inputs = jnp.zeros((batch_size,) + (voxel_resolution,) * 3, jnp.float32)
    elif input_type == "img":
        inputs = jnp.zeros((batch_size, img_size, img_size, 3), jnp.float32)
    elif input_type is None:
        inputs = jnp.zeros((batch_size, 0), jnp.float32)
    else:
        raise ValueError(f"unknown input type {input_type!r}")
    return points, inputs


def create_train_state(rng, model: nn.Module, config) -> TrainState:
    """Initialises parameters, batch statistics and optimiser state."""
    points, inputs = dummy_inputs(
        2,
        8,
        config.data.pointcloud_n,
        datasets.input_type_of(config.data),
        config.data.get("voxel_resolution", 32),
        config.data.get("img_size", 224),
    )
    variables = model.init(rng, points, inputs, train=False)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", flax.core.FrozenDict()),
        tx=create_optimizer(config.optim, config.train.num_steps),
    )


def train_step(state: TrainState, batch: Dict[str, jax.Array], seed: int = 0):
    """One Adam step on the original loss: sum-over-points BCE (+ KL for a VAE).

    The loss is `mean_b [sum_t BCE(logits_bt, o_bt) + KL(q(z | p_b, o_b) || N(0, I))]`
    (`im2mesh/onet/training.py: compute_loss`); the KL term is zero without a
    latent (z_dim 0), which leaves the conditional models' loss unchanged.

    Args:
      state: the train state.
      batch: 'points' [B, T, 3], 'occupancies' [B, T], 'inputs' [B, ...].
      seed: base seed of the reparameterisation noise (folded with the step).

    Returns:
      (new_state, metrics) with metrics 'loss', 'rec_error' (the BCE term),
      'kl', 'accuracy' and 'grad_norm'.
    """
    rng = jax.random.fold_in(jax.random.key(seed), state.step)

    def loss_fn(params):
        out, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["points"],
            batch["occupancies"],
            batch["inputs"],
            rng,
            train=True,
            mutable=["batch_stats"],
            method="compute_elbo",
        )
        rec = losses.occupancy_bce(out["logits"], batch["occupancies"])
        kl = jnp.mean(out["kl"])
        return rec + kl, (out["logits"], rec, kl, updates)

    (loss, (logits, rec, kl, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    accuracy = jnp.mean((logits >= 0) == (batch["occupancies"] >= 0.5))
    metrics = {
        "loss": loss,
        "rec_error": rec,
        "kl": kl,
        "accuracy": accuracy,
        "grad_norm": optax.tree.norm(grads),
    }
    return new_state, metrics


def eval_step(
    state: TrainState, batch: Dict[str, jax.Array], threshold_logit: float, num_latent_points: int = 0
):
    """Per-object validation metrics on query points (eval-mode batch norm).

    With `num_latent_points > 0` (the unconditional model) the object is
    auto-encoded: z is the posterior mean of q(z | p, o) given its first
    `num_latent_points` query points and their occupancies (the points are a
    random subset of the object's, so this is a uniform subsample). Otherwise a
    model with a latent decodes the prior mean, as the original evaluates
    conditional models.

    Args:
      batch: 'points' [B, T, 3], 'occupancies' [B, T], 'inputs' [B, ...].
      threshold_logit: occupancy threshold in logits.
      num_latent_points: points given to the latent encoder (0: none).

    Returns:
      dict of per-object 'iou' [B], 'loss' [B] (BCE summed over points, plus
      the KL term of the posterior) and 'kl' [B].
    """
    k = num_latent_points
    out = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats},
        batch["points"],
        batch["inputs"],
        batch["points"][:, :k] if k else None,
        batch["occupancies"][:, :k] if k else None,
        train=False,
        method="reconstruct",
    )
    logits = out["logits"]
    occ_pred = logits >= threshold_logit
    occ_gt = batch["occupancies"] >= 0.5
    inter = jnp.sum(occ_pred & occ_gt, axis=-1)
    union = jnp.sum(occ_pred | occ_gt, axis=-1)
    iou = jnp.where(union > 0, inter / jnp.maximum(union, 1), 0.0)
    loss = optax.sigmoid_binary_cross_entropy(logits, batch["occupancies"]).sum(-1) + out["kl"]
    return {"iou": iou, "loss": loss, "kl": out["kl"]}


def create_train_step(mesh: Mesh, seed: int = 0):
    """`train_step` jitted over `mesh`, donating the incoming state."""
    repl, data = shardings(mesh)
    return jax.jit(
        functools.partial(train_step, seed=seed),
        in_shardings=(repl, data),
        out_shardings=(repl, repl),
        donate_argnums=(0,),
    )


def create_eval_step(mesh: Mesh, threshold_logit: float, num_latent_points: int = 0):
    """`eval_step` jitted over `mesh` for a fixed threshold (and latent-encoder point count)."""
    repl, data = shardings(mesh)
    return jax.jit(
        functools.partial(eval_step, threshold_logit=threshold_logit, num_latent_points=num_latent_points),
        in_shardings=(repl, data),
        out_shardings=repl,
    )
