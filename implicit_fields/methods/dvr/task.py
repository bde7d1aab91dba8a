"""DVR's training task: the scene, the state, the loss, the rays of a step and the held-out views.

The scene is a folder in the multi-view layout (`data.multiview`); with
`data.builtin` a built-in object is rendered there first (exact renders,
masks, depths, cameras) together with its exact shape (`shape.json`, for
evaluation). Each step samples `rays.per_step` random pixels of the training
views (a pure function of the seed and the step, so a resumed run matches an
unbroken one) and minimises DVR's losses (`model.dvr_losses`); the marching
steps follow the original's doubling schedule (a compile-time setting of the
step). With `rays.mode` 'volume' the field is rendered as a volume instead
(`model.dvr_volume_losses`), and with `model.view_dependent` the colour depends
on the view (IDR's rendering network). Validation renders the held-out views
and measures their mask IoU and PSNR; the best model by mask IoU is kept.
"""

import functools
import logging
import os
from typing import Dict

import jax
import numpy as np
from jax.sharding import Mesh

from implicit_fields import cameras, config_utils, train_utils, trainer
from implicit_fields.data import multiview, onet_format, scenes, shapes, visual_hull
from implicit_fields.methods.dvr import config as dvr_config
from implicit_fields.methods.dvr import model as dvr_model

logger = logging.getLogger(__name__)


def ensure_scene(data_config, progress: bool = True) -> str:
    """Returns the scene folder, rendering the built-in object there if it is missing
    (`data.scenes.ensure_scene`: a scene rendered with other settings is refused)."""
    return scenes.ensure_scene(data_config, progress=progress)


def split_views(num_views: int, val_views: int):
    """(train view positions, held-out view positions): the last `val_views` are held out."""
    if not 0 <= val_views < num_views:
        raise ValueError(
            f"config.data.val_views={val_views} must be in [0, {num_views}) for {num_views} views"
        )
    return np.arange(num_views - val_views), np.arange(num_views - val_views, num_views)


def create_model(config):
    """The decoder of `config.model` (occupancy logit and colour; no encoder, per-scene): a
    `DVRDecoder`, or with `model.view_dependent` a `ViewDependentDecoder` (IDR's colour)."""
    m = config.model
    if m.view_dependent:
        return dvr_model.ViewDependentDecoder(
            hidden_dim=m.hidden_dim,
            n_blocks=m.n_blocks,
            feature_dim=m.feature_dim,
            render_hidden=m.render_hidden,
            render_layers=m.render_layers,
            view_freqs=m.view_freqs,
        )
    return dvr_model.DVRDecoder(hidden_dim=m.hidden_dim, n_blocks=m.n_blocks)


def init_state(config, model: dvr_model.DVRDecoder, key) -> train_utils.TrainState:
    """The decoder's parameters (PyTorch-style init, as the original) and the Adam state."""
    return train_utils.TrainState.create(
        apply_fn=model.apply,
        params=dvr_model.init_decoder(key, model),
        tx=train_utils.create_optimizer(config.optim, config.train.num_steps),
        batch_stats={},
    )


def ray_steps(config, step: int) -> int:
    """Marching steps of the (0-based) step `step`: `rays.steps_start`, doubled at each milestone."""
    r = config.rays
    return dvr_model.ray_steps(step, r.steps_start, tuple(r.steps_milestones), r.steps_max)


def loss_fn(model, config, params, batch_stats, batch, rng, ray_steps: int):
    """DVR's losses on one batch of rays (`model.dvr_losses`, or `model.dvr_volume_losses` with
    `rays.mode` 'volume'; the sums divided by one image).

    Returns:
      (loss, (the loss terms and mask diagnostics, None)).
    """
    del batch_stats
    logit_fn, rgb_fn = dvr_model.make_field_fns(model)
    lo = config.loss
    if config.rays.mode == "volume":
        total, stats = dvr_model.dvr_volume_losses(
            logit_fn,
            rgb_fn,
            params,
            batch,
            rng,
            num_samples=config.rays.volume_samples,
            num_images=1,
            threshold=config.field.threshold,
            padding=config.field.padding,
            lambda_rgb=lo.lambda_rgb,
            lambda_mask=lo.lambda_mask,
            lambda_depth=lo.lambda_depth,
            lambda_normal=lo.lambda_normal,
        )
        stats.pop("loss")
        return total, (stats, None)
    total, stats = dvr_model.dvr_losses(
        logit_fn,
        rgb_fn,
        params,
        batch,
        rng,
        n_steps=ray_steps,
        num_images=1,
        n_secant=lo.n_secant,
        threshold=config.field.threshold,
        padding=config.field.padding,
        lambda_rgb=lo.lambda_rgb,
        lambda_depth=lo.lambda_depth,
        lambda_freespace=lo.lambda_freespace,
        lambda_occupied=lo.lambda_occupied,
        lambda_normal=lo.lambda_normal,
    )
    stats.pop("loss")
    return total, (stats, None)


def hull_depths(config, data, train_views, workdir=None):
    """Visual-hull depth maps from the training views' masks (cached in the workdir), or None.

    None without `data.visual_hull_depth` and in volume mode (`rays.mode='volume'`, whose
    loss has no occupancy term at a depth). The cache `workdir/visual_hull_depth.npy` is
    written by the lead process only.
    """
    if not config.data.visual_hull_depth or config.rays.mode == "volume":
        return None
    path = os.path.join(workdir, "visual_hull_depth.npy") if workdir else None
    if path and os.path.exists(path):
        try:
            depths = onet_format.load_npy(path)
        except ValueError as e:  # A cache: made again.
            logger.warning("visual-hull cache unreadable, carving it again: %s", e)
            depths = None
        if depths is not None and depths.shape == data.masks.shape:
            return depths
    padding = config.field.padding
    grid = visual_hull.carve(data, config.data.visual_hull_resolution, padding, views=train_views)
    depths = visual_hull.hull_depth_maps(data, grid, padding)
    if path and trainer.is_lead_process():
        os.makedirs(workdir, exist_ok=True)
        np.save(path + ".tmp.npy", depths)
        os.replace(path + ".tmp.npy", path)
    return depths


def make_batch(
    config, data, step: int, train_views, occ_depths=None, process_index: int = 0, process_count: int = 1
) -> Dict[str, np.ndarray]:
    """The rays of step `step`, or this process's share of them.

    `rays.per_step` random pixels of the training views, drawn from
    `rng([seed, step])`; with several processes each takes its slice
    `[i * N / P, (i + 1) * N / P)`, so the union is the single-process batch.

    Returns:
      'origins', 'directions' [n, 3], 'rgb' [n, 3], 'mask' [n], 'depth' [n]
      and, with visual-hull depths, 'occ_depth' [n].
    """
    n = config.rays.per_step
    if n % process_count:
        raise ValueError(f"config.rays.per_step={n} is not divisible by {process_count} processes")
    rng = np.random.default_rng([int(config.seed), int(step)])
    rays = multiview.sample_rays(data, rng, n, views=train_views)
    local = slice(process_index * n // process_count, (process_index + 1) * n // process_count)
    batch = {k: np.asarray(rays[k])[local] for k in ("origins", "directions", "rgb", "mask", "depth")}
    if occ_depths is not None:
        rows, cols = cameras.pixel_to_index(rays["pixels"][local], data.height, data.width)
        batch["occ_depth"] = np.asarray(occ_depths[rays["view"][local], rows, cols])
    return batch


def render_views(renderer, params, data, views, n_steps: int):
    """Renders `views` of the scene: a list of (rgb [H, W, 3], depth [H, W], metrics) per view."""
    out = []
    for v in views:
        rays = multiview.view_rays(data, int(v))
        rgb, depth = renderer(params, rays["origins"], rays["directions"], n_steps)
        rgb = rgb.reshape(data.height, data.width, 3)
        depth = depth.reshape(data.height, data.width)
        out.append((rgb, depth, dvr_model.view_metrics(rgb, depth, data.images[v], data.masks[v])))
    return out


def create_renderer(config, model):
    """`model.create_renderer` with the config's surface, secant and volume settings."""
    return dvr_model.create_renderer(
        model,
        n_secant=config.loss.n_secant,
        threshold=config.field.threshold,
        padding=config.field.padding,
        mode=config.rays.mode,
        volume_samples=config.rays.volume_samples,
    )


def check_config(config) -> None:
    """Checks DVR's own values (the trainer checks the shared sections)."""
    config_utils.check_values(config, dvr_config.CHECKS)
    if config.data.builtin:
        try:
            shapes.category_synset(config.data.builtin_category)
        except ValueError as e:
            raise ValueError(f"config.data.builtin_category: {e}") from None
    if config.rays.steps_max < config.rays.steps_start:
        raise ValueError(
            f"config.rays.steps_max={config.rays.steps_max} must be >= "
            f"config.rays.steps_start={config.rays.steps_start}"
        )
    if config.loss.lambda_mask and config.rays.mode != "volume":
        raise ValueError(
            f"config.loss.lambda_mask={config.loss.lambda_mask} is used only with config.rays.mode='volume' "
            f"(surface mode uses lambda_freespace and lambda_occupied); set it to 0"
        )
    if not 0 <= config.data.val_views < config.data.n_views:
        raise ValueError(
            f"config.data.val_views={config.data.val_views} must be in [0, {config.data.n_views}) "
            f"for data.n_views={config.data.n_views} views"
        )


def create_task(config, workdir: str, model, mesh: Mesh) -> trainer.Task:
    """The training task of one scene; renders the built-in scene first if it is missing."""
    num_devices = mesh.devices.size
    if config.rays.per_step % num_devices:
        raise ValueError(
            f"config.rays.per_step={config.rays.per_step} must be a multiple of the "
            f"{num_devices} devices the rays are split over"
        )
    # One process renders a missing built-in scene; the others wait, then find it.
    folder = trainer.lead_first("scene", ensure_scene, config.data, progress=config.logging.progress)
    data = multiview.load_multiview(folder)
    train_views, val_views = split_views(data.num_views, config.data.val_views)
    occ_depths = hull_depths(config, data, train_views, workdir)
    renderer = create_renderer(config, model)

    def evaluate(state):
        # The held-out views, marched with the training schedule's current step count.
        n_steps = ray_steps(config, max(int(jax.device_get(state.step)) - 1, 0))
        views = render_views(renderer, state.params, data, val_views, n_steps)
        return {k: float(np.mean([m[k] for _, _, m in views])) for k in ("mask_iou", "psnr_in_mask")}

    batch_fn = functools.partial(
        make_batch,
        config,
        data,
        train_views=train_views,
        occ_depths=occ_depths,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return trainer.Task(
        loss_fn=functools.partial(loss_fn, model, config),
        batch_fn=batch_fn,
        static_fn=lambda step: {"ray_steps": ray_steps(config, step)},
        eval_fn=evaluate if len(val_views) else None,
        best_metric="mask_iou",
        items_per_step=config.rays.per_step,
        items_name="rays",
        progress_keys=("mask_iou",),
    )
