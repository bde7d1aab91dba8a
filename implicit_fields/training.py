"""The training loop: `train_and_evaluate(config, workdir)`.

Restores the latest checkpoint in `workdir` if there is one (so a killed job
resumes by running the same command again, and reaches the same parameters as
an unbroken run), trains with the data-parallel jitted step, logs metrics to
JSON lines and TensorBoard, measures validation IoU every `eval_every` steps
and keeps the best model in `workdir/best`.
"""

import json
import logging
import math
import os
import time
from typing import Callable, Dict, Optional

import jax
import numpy as np
import tqdm

from implicit_fields import checkpointing, losses, models, summary, train_utils
from implicit_fields.data import datasets, pipeline

logger = logging.getLogger(__name__)


def ensure_dataset(data_config, progress: bool = True) -> str:
    """Returns the dataset path, generating the built-in dataset there if it is missing.

    With voxel inputs (`data.input_type='voxels'`) and `data.builtin`, objects
    without a `model.binvox` get one, computed from their exact shape; with image
    inputs ('img'), objects without `img_choy2016/` renders get them.
    """
    path = data_config.path
    voxels = datasets.input_type_of(data_config) == "voxels"
    images = datasets.input_type_of(data_config) == "img"
    if os.path.exists(os.path.join(path, "metadata.yaml")):
        if voxels and data_config.builtin:
            from implicit_fields.data import builtin

            added = builtin.add_voxels(
                path,
                data_config.voxel_resolution,
                categories=list(data_config.categories) or None,
                progress=progress,
            )
            if added:
                logger.info("added %d voxelisations to %s", added, path)
        if images and data_config.builtin:
            _add_builtin_images(data_config, progress)
        return path
    if not data_config.builtin:
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"dataset {path!r} does not exist (set data.builtin=True to generate the built-in one)"
            )
        return path
    from implicit_fields.data import builtin

    logger.info("generating the built-in dataset at %s", path)
    builtin.generate_dataset(
        path,
        categories=list(data_config.builtin_categories) or None,
        objects_per_category=data_config.builtin_objects_per_category,
        seed=0,
        num_points=data_config.builtin_num_points,
        num_surface_points=data_config.builtin_num_surface_points,
        progress=progress,
        voxel_resolution=data_config.voxel_resolution if voxels else 0,
    )
    if images:
        _add_builtin_images(data_config, progress)
    return path


def _add_builtin_images(data_config, progress: bool) -> None:
    """Renders the built-in objects' missing `img_choy2016/` views (see `builtin.add_images`)."""
    from implicit_fields.data import builtin

    if data_config.get("img_folder", builtin.IMAGES_DIR) != builtin.IMAGES_DIR:
        raise ValueError(f"built-in renders are written to {builtin.IMAGES_DIR!r}, not data.img_folder")
    added = builtin.add_images(
        data_config.path,
        data_config.img_n_views,
        data_config.builtin_img_resolution,
        categories=list(data_config.categories) or None,
        progress=progress,
    )
    if added:
        logger.info("rendered the views of %d objects in %s", added, data_config.path)


def _model_and_init(config):
    """The model and a function initialising its train state (seeded by `config.seed`)."""
    model = models.create_model(config.model)
    init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)
    return model, lambda: train_utils.create_train_state(init_rng, model, config)


def create_state(config, mesh):
    """Model and freshly initialised, replicated train state."""
    model, init = _model_and_init(config)
    repl, _ = train_utils.shardings(mesh)
    return model, jax.device_put(init(), repl)


def abstract_state(config, mesh):
    """Model and the shapes, dtypes and shardings of its train state, without initialising it.

    A restore target: `Checkpointer.restore` fills in every array, so
    inference skips the parameter initialisation (7 s for the image model on
    our CPU, 0.5 s to trace it).
    """
    model, init = _model_and_init(config)
    shapes = jax.eval_shape(init)
    repl, _ = train_utils.shardings(mesh)
    return model, jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def restore_for_inference(config, workdir: str, which: str = "best"):
    """The model and the state of `workdir`'s best (or latest) checkpoint.

    Falls back to the latest checkpoint when no best model was saved.

    Raises:
      FileNotFoundError: when `workdir` holds no checkpoint.
    """
    mesh = train_utils.create_mesh()
    model, state = abstract_state(config, mesh)
    candidates = ["best", "checkpoints"] if which == "best" else ["checkpoints"]
    for sub in candidates:
        directory = os.path.join(workdir, sub)
        if os.path.isdir(directory):
            ckpt = checkpointing.Checkpointer(directory)
            if ckpt.latest_step() is not None:
                state, meta = ckpt.restore(state)
                ckpt.close()
                return model, state, meta
            ckpt.close()
    raise FileNotFoundError(f"no checkpoint in {workdir!r} (looked in {candidates}); train first")


def _val_batches(config, val_ds: datasets.ShapesDataset, num_devices: int):
    """Fixed validation batches: deterministic query points and inputs per object."""
    count = len(val_ds) if not config.train.val_objects else min(config.train.val_objects, len(val_ds))
    if count == 0:
        return [], 0
    eb = config.train.eval_batch_size
    eb = max(num_devices, (eb // num_devices) * num_devices)
    objects = []
    for i in range(count):
        data = val_ds.load(i)
        points, occupancies = datasets.eval_query_points(data, i, config.train.val_points, config.seed)
        objects.append(
            {
                "points": points,
                "occupancies": occupancies,
                "inputs": datasets.eval_inputs(
                    data,
                    i,
                    config.data.pointcloud_n,
                    config.data.pointcloud_noise,
                    config.seed,
                    datasets.input_type_of(config.data),
                ),
            }
        )
        if config.data.get("img_with_camera", False):
            objects[-1].update(datasets.view_cameras(data, datasets.image_view(data, None, train=False)))
    batches = []
    for start in range(0, count, eb):
        chunk = objects[start : start + eb]
        valid = len(chunk)
        chunk = chunk + [chunk[-1]] * (eb - valid)
        batch = {k: np.stack([o[k] for o in chunk]) for k in chunk[0]}
        batches.append((batch, valid))
    return batches, count


def evaluate_iou(eval_step, state, val_batches) -> Dict[str, float]:
    """Mean validation IoU, loss and KL over the fixed validation batches."""
    outs = [(jax.device_get(eval_step(state, batch)), valid) for batch, valid in val_batches]
    return {
        k: float(np.mean(np.concatenate([out[k][:valid] for out, valid in outs])))
        for k in ("iou", "loss", "kl")
    }


def train_and_evaluate(
    config,
    workdir: str,
    on_step: Optional[Callable[[int], None]] = None,
):
    """Trains (or resumes training of) an Occupancy Network in `workdir`.

    Args:
      config: the ConfigDict (see experiments/configs/default.py).
      workdir: output folder: config.json, checkpoints/, best/, metrics.jsonl,
        tensorboard/.
      on_step: optional callback called with the step number after each step
        (and after that step's checkpoint, if any).

    Returns:
      The final train state.
    """
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    if config.debug.nans:
        jax.config.update("jax_debug_nans", True)

    ensure_dataset(config.data, progress=config.train.progress)
    train_ds = datasets.from_config(config.data, config.data.train_split)
    val_ds = datasets.from_config(config.data, config.data.val_split)
    if len(train_ds) == 0:
        raise ValueError(f"the {config.data.train_split!r} split of {config.data.path!r} is empty")

    mesh = train_utils.create_mesh()
    num_devices = mesh.devices.size
    if config.train.batch_size % num_devices:
        raise ValueError(
            f"train.batch_size={config.train.batch_size} must be a multiple of the "
            f"{num_devices} devices the batch is split over"
        )
    repl, data_sharding = train_utils.shardings(mesh)
    _, state = create_state(config, mesh)

    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), config.train.max_to_keep)
    best_ckpt = checkpointing.Checkpointer(os.path.join(workdir, "best"), max_to_keep=1)
    state, meta = ckpt.restore(state)
    start_step = int(jax.device_get(state.step))
    best_iou = -1.0
    if best_ckpt.latest_step() is not None:
        _, best_meta = best_ckpt.restore(state)
        best_iou = float(best_meta.get("val_iou", -1.0))
    if start_step:
        logger.info("resumed from step %d (best val IoU %.4f)", start_step, best_iou)

    train_step = train_utils.create_train_step(mesh, config.seed)
    threshold_logit = losses.probability_to_logit(config.train.threshold)
    has_latent = config.model.get("z_dim", 0) > 0
    # An unconditional model is evaluated by auto-encoding each object through q(z | p, o).
    autoencode = has_latent and not config.model.encoder
    eval_step = train_utils.create_eval_step(
        mesh, threshold_logit, config.data.points_subsample if autoencode else 0
    )
    val_batches, num_val = _val_batches(config, val_ds, num_devices)
    # The validation batches are fixed: transfer them to the devices once.
    val_batches = [(jax.device_put(b, data_sharding), valid) for b, valid in val_batches]

    def batch_fn(step):
        return pipeline.make_train_batch(
            train_ds,
            step,
            config.train.batch_size,
            config.seed,
            config.data.points_subsample,
            config.data.pointcloud_n,
            config.data.pointcloud_noise,
            config.data.points_jitter,
            jax.process_index(),
            jax.process_count(),
            datasets.input_type_of(config.data),
            config.data.get("img_with_camera", False),
        )

    lead = jax.process_index() == 0  # only the first process writes logs
    writer = summary.SummaryWriter(workdir, tensorboard=config.train.tensorboard) if lead else None
    num_steps = config.train.num_steps
    points_per_step = config.train.batch_size * config.data.points_subsample
    bar = tqdm.tqdm(
        total=num_steps,
        initial=start_step,
        desc="train",
        unit="step",
        disable=not (config.train.progress and lead),
        dynamic_ncols=True,
    )
    t_last, step_last = time.perf_counter(), start_step
    pending = []
    try:
        batches = pipeline.prefetch(batch_fn, start_step, num_steps, data_sharding, config.data.prefetch)
        for step, batch in zip(range(start_step + 1, num_steps + 1), batches):
            state, metrics = train_step(state, batch)
            pending.append(metrics)
            bar.update(1)
            last = step == num_steps
            if step % config.train.log_every == 0 or last:
                host = jax.device_get(pending)
                pending = []
                loss = float(np.mean([m["loss"] for m in host]))
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite training loss {loss} at step {step}; the last good "
                        f"checkpoint is in {ckpt.directory}"
                    )
                now = time.perf_counter()
                rate = (step - step_last) * points_per_step / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                scalars = {
                    "train/loss": loss,
                    "train/accuracy": float(np.mean([m["accuracy"] for m in host])),
                    "train/grad_norm": float(np.mean([m["grad_norm"] for m in host])),
                    "train/points_per_second": rate,
                }
                if has_latent:
                    scalars["train/rec_error"] = float(np.mean([m["rec_error"] for m in host]))
                    scalars["train/kl"] = float(np.mean([m["kl"] for m in host]))
                if writer:
                    writer.write_scalars(step, scalars)
                bar.set_postfix(loss=f"{loss:.1f}", pts_s=f"{rate:,.0f}", refresh=False)
            if num_val and (step % config.train.eval_every == 0 or last):
                val = evaluate_iou(eval_step, state, val_batches)
                if writer:
                    eval_scalars = {"eval/iou": val["iou"], "eval/loss": val["loss"]}
                    if has_latent:
                        eval_scalars["eval/kl"] = val["kl"]
                    writer.write_scalars(step, eval_scalars)
                bar.write(f"step {step}: val IoU {val['iou']:.4f} (best {max(best_iou, val['iou']):.4f})")
                if val["iou"] > best_iou:
                    best_iou = val["iou"]
                    best_ckpt.save(state, {"val_iou": best_iou}, wait=True)
            if step % config.train.checkpoint_every == 0 or last:
                ckpt.save(state, {"best_val_iou": best_iou})
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
        ckpt.wait()
        best_ckpt.wait()
        ckpt.close()
        best_ckpt.close()
        if writer:
            writer.close()
    if lead:
        with open(os.path.join(workdir, "train_summary.json"), "w") as f:
            summary_record = {"step": int(jax.device_get(state.step)), "best_val_iou": best_iou}
            json.dump(dict(summary_record, num_val=num_val), f)
    return state
