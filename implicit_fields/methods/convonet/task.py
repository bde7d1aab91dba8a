"""ConvONet's training task: state, loss, batches and validation IoU.

The loss is the original's (`src/conv_onet/training.py: compute_loss`): BCE
with logits summed over the query points, averaged over the batch. The batch of
step `s` is a pure function of (seed, s) (`data.pipeline.make_train_batch`):
3,000 input points with N(0, 0.005^2) noise and 2,048 query points per object
in the original's config. Validation measures the IoU of the thresholded field
on fixed query points of the validation objects, as ONet's.
"""

import functools
from typing import Dict

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from implicit_fields import config_utils, losses, train_utils, trainer
from implicit_fields.data import builtin, datasets, pipeline, rooms
from implicit_fields.methods.convonet import config as convonet_config
from implicit_fields.methods.convonet import model as convonet_model


def ensure_data(config) -> None:
    """Generates the built-in objects or rooms (`data.builtin_kind`) at `data.path` if they are missing."""
    if config.data.builtin_kind == "rooms":
        rooms.ensure_rooms(config.data, progress=config.logging.progress)
    else:
        builtin.ensure_dataset(config.data, progress=config.logging.progress)


def create_model(config) -> convonet_model.ConvolutionalOccupancyNetwork:
    """The network of `config.model`, in the field's cube (`config.field.padding`)."""
    return convonet_model.create_model(config.model, padding=config.field.padding)


def init_variables(config, model, key):
    """{'params'} of a fresh model, initialised on zero inputs of the config's shapes."""
    points = jnp.zeros((1, 8, 3), jnp.float32)
    inputs = jnp.zeros((1, config.data.pointcloud_n, 3), jnp.float32)
    return model.init(key, points, inputs, train=False)


def init_state(config, model, key) -> train_utils.TrainState:
    """Parameters and Adam state of a fresh model (no batch norm: empty batch statistics)."""
    variables = init_variables(config, model, key)
    return train_utils.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats={},
        tx=train_utils.create_optimizer(config.optim, config.train.num_steps),
    )


def loss_fn(model, params, batch_stats, batch: Dict[str, jax.Array], rng):
    """The original loss of one batch: BCE summed over points, mean over objects.

    Returns:
      (loss, (metrics {'accuracy'}, batch_stats unchanged)).
    """
    del rng
    logits = model.apply({"params": params}, batch["points"], batch["inputs"], train=True)
    loss = losses.occupancy_bce(logits, batch["occupancies"])
    accuracy = jnp.mean((logits >= 0) == (batch["occupancies"] >= 0.5))
    return loss, ({"accuracy": accuracy}, batch_stats)


def eval_step(state, batch: Dict[str, jax.Array], threshold_logit: float):
    """Per-object validation IoU and loss (BCE summed over the points), each [B]."""
    logits = state.apply_fn({"params": state.params}, batch["points"], batch["inputs"])
    iou = losses.occupancy_iou(logits, batch["occupancies"], threshold_logit)
    loss = optax.sigmoid_binary_cross_entropy(logits, batch["occupancies"]).sum(-1)
    return {"iou": iou, "loss": loss}


def create_eval_step(mesh: Mesh, threshold_logit: float):
    """`eval_step` jitted over `mesh` for a fixed threshold."""
    repl, data = train_utils.shardings(mesh)
    return jax.jit(
        functools.partial(eval_step, threshold_logit=threshold_logit),
        in_shardings=(repl, data),
        out_shardings=repl,
    )


def check_config(config) -> None:
    """Checks ConvONet's own values (the trainer checks the shared sections)."""
    config_utils.check_values(config, convonet_config.CHECKS)
    types = tuple(config.model.plane_type)
    unknown = [t for t in types if t not in convonet_config.FEATURE_TYPES]
    if unknown or not types or len(set(types)) != len(types):
        raise ValueError(
            f"config.model.plane_type={list(types)}: must name each of {list(convonet_config.FEATURE_TYPES)} "
            f"at most once, and at least one"
        )
    if any(t != "grid" for t in types) and config.model.unet:
        depth = config.model.unet_depth
        if config.model.plane_resolution % 2 ** (depth - 1):
            raise ValueError(
                f"config.model.plane_resolution={config.model.plane_resolution}: the U-Net of depth {depth} "
                f"halves it {depth - 1} times, so it must be a multiple of {2 ** (depth - 1)}"
            )
    if "grid" in types and config.model.unet3d:
        levels = config.model.unet3d_levels
        if config.model.grid_resolution % 2 ** (levels - 1):
            raise ValueError(
                f"config.model.grid_resolution={config.model.grid_resolution}: the 3D U-Net of {levels} "
                f"levels halves it {levels - 1} times, so it must be a multiple of {2 ** (levels - 1)}"
            )
        if config.model.unet3d_f_maps % 8:
            raise ValueError(
                f"config.model.unet3d_f_maps={config.model.unet3d_f_maps}: the 3D U-Net's GroupNorm "
                f"has 8 groups, so its widths must be multiples of 8"
            )


def create_task(config, workdir: str, model, mesh: Mesh) -> trainer.Task:
    """The training task of a ConvONet; generates the built-in dataset if it is missing."""
    del workdir
    num_devices = mesh.devices.size
    if config.train.batch_size % num_devices:
        raise ValueError(
            f"config.train.batch_size={config.train.batch_size} must be a multiple of the "
            f"{num_devices} devices the batch is split over"
        )
    trainer.lead_first("dataset", ensure_data, config)  # one process writes it (multi-host runs)
    train_ds = datasets.from_config(config.data, config.data.train_split)
    val_ds = datasets.from_config(config.data, config.data.val_split)
    if len(train_ds) == 0:
        raise ValueError(f"the {config.data.train_split!r} split of {config.data.path!r} is empty")

    eval_step_fn = create_eval_step(mesh, losses.probability_to_logit(config.field.threshold))
    batches, num_val = pipeline.val_batches(config, val_ds, num_devices)
    _, data_sharding = train_utils.shardings(mesh)
    batches = [(jax.device_put(b, data_sharding), valid) for b, valid in batches]

    def evaluate(state):
        return pipeline.mean_over_batches(eval_step_fn, state, batches, ("iou", "loss"))

    # A partial of module-level code, so that worker processes (train.workers) can be sent it;
    # the process's place in the job is read here, not in a worker.
    batch_fn = functools.partial(
        pipeline.make_train_batch,
        train_ds,
        batch_size=config.train.batch_size,
        seed=config.seed,
        num_points=config.data.points_subsample,
        num_inputs=config.data.pointcloud_n,
        input_noise=config.data.pointcloud_noise,
        points_jitter=config.data.points_jitter,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        input_type="pointcloud",
    )

    return trainer.Task(
        loss_fn=functools.partial(loss_fn, model),
        batch_fn=batch_fn,
        eval_fn=evaluate if num_val else None,
        best_metric="iou",
        items_per_step=config.train.batch_size * config.data.points_subsample,
        items_name="points",
        progress_keys=("accuracy",),
    )
