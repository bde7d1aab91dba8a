"""ONet's training task: state, loss, batches and validation IoU.

The loss is the original's (`im2mesh/onet/training.py: compute_loss`):
`mean_b [sum_t BCE(logits_bt, o_bt) + KL(q(z | p_b, o_b) || N(0, I))]`; the
KL term is zero without a latent (z_dim 0), which leaves the conditional
models' loss unchanged. The batch of step `s` is a pure function of (seed, s)
(`data.pipeline.make_train_batch`). Validation measures the IoU of the
thresholded field on fixed query points of the validation objects. The
pixel-aligned image model also reads the chosen view's cameras, the batch
entries 'inputs.world_mat' and 'inputs.camera_mat' (`batch_cameras`).
"""

import functools
from typing import Dict, Optional

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from implicit_fields import config_utils, losses, train_utils, trainer
from implicit_fields.data import builtin, datasets, pipeline
from implicit_fields.methods.onet import config as onet_config
from implicit_fields.methods.onet import model as onet_model


def create_model(config) -> onet_model.OccupancyNetwork:
    """The Occupancy Network of `config.model`."""
    return onet_model.create_model(config.model)


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


def dummy_cameras(batch_size: int) -> Dict[str, jnp.ndarray]:
    """Cameras for `model.init` of the pixel-aligned model: 2 units in front of the origin, focal 2."""
    world_mat = jnp.eye(4, dtype=jnp.float32).at[2, 3].set(2.0)
    camera_mat = jnp.diag(jnp.asarray([2.0, 2.0, 1.0, 1.0], jnp.float32))
    return {
        "world_mat": jnp.broadcast_to(world_mat, (batch_size, 4, 4)),
        "camera_mat": jnp.broadcast_to(camera_mat, (batch_size, 4, 4)),
    }


def batch_cameras(batch: Dict[str, jax.Array]) -> Optional[Dict[str, jax.Array]]:
    """The views' cameras {'world_mat', 'camera_mat'} of a batch with `datasets.CAMERA_KEYS`, else None."""
    if "inputs.world_mat" not in batch:
        return None
    return {"world_mat": batch["inputs.world_mat"], "camera_mat": batch["inputs.camera_mat"]}


def init_variables(config, model: onet_model.OccupancyNetwork, key):
    """{'params', 'batch_stats'} of a fresh model, initialised on dummy inputs of the config's shapes."""
    points, inputs = dummy_inputs(
        2,
        8,
        config.data.pointcloud_n,
        datasets.input_type_of(config.data),
        config.data.voxel_resolution,
        config.data.img_size,
    )
    if onet_model.needs_cameras(model.encoder):
        return model.init(key, points, inputs, train=False, cameras=dummy_cameras(2))
    return model.init(key, points, inputs, train=False)


def init_state(config, model: onet_model.OccupancyNetwork, key) -> train_utils.TrainState:
    """Parameters, batch statistics and Adam state of a fresh model."""
    variables = init_variables(config, model, key)
    return train_utils.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", flax.core.FrozenDict()),
        tx=train_utils.create_optimizer(config.optim, config.train.num_steps),
    )


def loss_fn(model: onet_model.OccupancyNetwork, params, batch_stats, batch: Dict[str, jax.Array], rng):
    """The original loss of one batch (train-mode batch norm).

    Args:
      model: the network.
      params, batch_stats: its variables.
      batch: 'points' [B, T, 3], 'occupancies' [B, T], 'inputs' [B, ...]
        (and the cameras 'inputs.world_mat', 'inputs.camera_mat' [B, 4, 4]
        with `data.img_with_camera`).
      rng: the key of the VAE's reparameterisation noise.

    Returns:
      (loss, (metrics, new_batch_stats)); metrics 'accuracy' and, with a
      latent, 'rec_error' (the BCE term) and 'kl'.
    """
    out, updates = model.apply(
        {"params": params, "batch_stats": batch_stats},
        batch["points"],
        batch["occupancies"],
        batch["inputs"],
        rng,
        train=True,
        cameras=batch_cameras(batch),
        mutable=["batch_stats"],
        method="compute_elbo",
    )
    rec = losses.occupancy_bce(out["logits"], batch["occupancies"])
    kl = jnp.mean(out["kl"])
    metrics = {"accuracy": jnp.mean((out["logits"] >= 0) == (batch["occupancies"] >= 0.5))}
    if model.z_dim > 0:
        metrics.update(rec_error=rec, kl=kl)
    return rec + kl, (metrics, updates["batch_stats"])


def eval_step(state, batch: Dict[str, jax.Array], threshold_logit: float, num_latent_points: int = 0):
    """Per-object validation metrics on query points (eval-mode batch norm).

    With `num_latent_points > 0` (the unconditional model) the object is
    auto-encoded: z is the posterior mean of q(z | p, o) given its first
    `num_latent_points` query points and their occupancies (the points are a
    random subset of the object's, so this is a uniform subsample). Otherwise a
    model with a latent decodes the prior mean, as the original evaluates
    conditional models.

    Args:
      batch: 'points' [B, T, 3], 'occupancies' [B, T], 'inputs' [B, ...]
        (and the cameras, as `loss_fn`).
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
        cameras=batch_cameras(batch),
        method="reconstruct",
    )
    logits = out["logits"]
    iou = losses.occupancy_iou(logits, batch["occupancies"], threshold_logit)
    loss = optax.sigmoid_binary_cross_entropy(logits, batch["occupancies"]).sum(-1) + out["kl"]
    return {"iou": iou, "loss": loss, "kl": out["kl"]}


def create_eval_step(mesh: Mesh, threshold_logit: float, num_latent_points: int = 0):
    """`eval_step` jitted over `mesh` for a fixed threshold (and latent-encoder point count)."""
    repl, data = train_utils.shardings(mesh)
    return jax.jit(
        functools.partial(eval_step, threshold_logit=threshold_logit, num_latent_points=num_latent_points),
        in_shardings=(repl, data),
        out_shardings=repl,
    )


val_batches = pipeline.val_batches


def evaluate_iou(eval_step_fn, state, batches) -> Dict[str, float]:
    """Mean validation IoU, loss and KL over the fixed validation batches."""
    return pipeline.mean_over_batches(eval_step_fn, state, batches, ("iou", "loss", "kl"))


def check_config(config) -> None:
    """Checks ONet's own values (the trainer checks the shared sections)."""
    config_utils.check_values(config, onet_config.CHECKS)
    encoder, input_type = config.model.encoder, config.data.input_type
    if onet_config.ENCODER_INPUTS[encoder] != input_type:
        raise ValueError(
            f"config.model.encoder={encoder!r} reads {onet_config.ENCODER_INPUTS[encoder]!r} inputs, but "
            f"config.data.input_type={input_type!r}"
        )
    if encoder and not config.model.c_dim:
        raise ValueError(f"config.model.c_dim=0: the {encoder!r} encoder needs a code size >= 1")
    decoder, pixel_decoder = config.model.decoder, onet_model.PIXEL_ENCODERS.get(encoder)
    if pixel_decoder and decoder != pixel_decoder:
        raise ValueError(
            f"config.model.decoder={decoder!r}: the {encoder!r} encoder returns a feature map, which only "
            f"the {pixel_decoder!r} decoder reads"
        )
    if decoder in onet_model.PIXEL_ENCODERS.values() and not pixel_decoder:
        raise ValueError(
            f"config.model.decoder={decoder!r} reads a pixel-aligned feature map: use "
            f"config.model.encoder='resnet18_pixel' (not {encoder!r})"
        )
    if pixel_decoder and not config.data.img_with_camera:
        raise ValueError(
            f"config.data.img_with_camera=False: the {encoder!r} encoder projects the query points with "
            f"the view's cameras; set data.img_with_camera=True"
        )
    if pixel_decoder and config.model.z_dim:
        raise ValueError(
            f"config.model.z_dim={config.model.z_dim}: the {encoder!r} model has no latent; use 0"
        )
    if not encoder and not config.model.z_dim and config.model.c_dim:
        raise ValueError(
            f"config.model.c_dim={config.model.c_dim} without an encoder: use c_dim=0 (and z_dim > 0 "
            f"for the unconditional model)"
        )


def create_task(config, workdir: str, model: onet_model.OccupancyNetwork, mesh: Mesh) -> trainer.Task:
    """The training task of an Occupancy Network; generates the built-in dataset if it is missing."""
    del workdir
    num_devices = mesh.devices.size
    if config.train.batch_size % num_devices:
        raise ValueError(
            f"config.train.batch_size={config.train.batch_size} must be a multiple of the "
            f"{num_devices} devices the batch is split over"
        )
    trainer.lead_first("dataset", builtin.ensure_dataset, config.data, progress=config.logging.progress)
    train_ds = datasets.from_config(config.data, config.data.train_split)
    val_ds = datasets.from_config(config.data, config.data.val_split)
    if len(train_ds) == 0:
        raise ValueError(f"the {config.data.train_split!r} split of {config.data.path!r} is empty")

    has_latent = model.z_dim > 0
    # An unconditional model is evaluated by auto-encoding each object through q(z | p, o).
    autoencode = has_latent and model.encoder is None
    eval_step_fn = create_eval_step(
        mesh,
        losses.probability_to_logit(config.field.threshold),
        config.data.points_subsample if autoencode else 0,
    )
    batches, num_val = val_batches(config, val_ds, num_devices)
    # The validation batches are fixed: transfer them to the devices once.
    _, data_sharding = train_utils.shardings(mesh)
    batches = [(jax.device_put(b, data_sharding), valid) for b, valid in batches]

    def evaluate(state):
        val = evaluate_iou(eval_step_fn, state, batches)
        return val if has_latent else {"iou": val["iou"], "loss": val["loss"]}

    input_type = datasets.input_type_of(config.data)

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
        input_type=input_type,
        with_camera=config.data.img_with_camera,
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
