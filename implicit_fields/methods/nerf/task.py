"""NeRF's training task: the scene, the state, the rays of a step, the loss and held-out views.

The scene is a folder in DVR's multi-view layout or NeRF's Blender layout
(`data.scenes`); with `data.builtin` the built-in object is rendered there first,
the same scene DVR fits by default. Each step takes `rays.per_step` random pixels
of one random training image (`rays.single_image`, the original's Blender
setting) or of all of them, as a pure function of the seed and the step, so a
resumed run matches an unbroken one. Validation renders the held-out views with
the fine network (PSNR, SSIM, mask IoU from the opacity); the best model by PSNR
is kept.
"""

import functools
from typing import Dict

import jax
import numpy as np
from jax.sharding import Mesh

from implicit_fields import config_utils, image_metrics, train_utils, trainer
from implicit_fields.data import multiview, scenes, shapes
from implicit_fields.methods.nerf import config as nerf_config
from implicit_fields.methods.nerf import model as nerf_model


def create_model(config) -> nerf_model.NeRF:
    """The coarse and fine MLPs of `config.model` (coarse only when `rays.num_fine` is 0)."""
    m = config.model
    mlp = {
        "net_depth": m.net_depth,
        "net_width": m.net_width,
        "skip_layer": m.skip_layer,
        "net_depth_condition": m.net_depth_condition,
        "net_width_condition": m.net_width_condition,
        "deg_point": m.deg_point,
        "deg_view": m.deg_view,
        "use_viewdirs": m.use_viewdirs,
    }
    return nerf_model.NeRF(**mlp, fine=config.rays.num_fine > 0)


def init_state(config, model: nerf_model.NeRF, key) -> train_utils.TrainState:
    """Both networks' parameters (Glorot-uniform, as jaxnerf) and the Adam state."""
    return train_utils.TrainState.create(
        apply_fn=model.apply,
        params=model.init_all(key)["params"],
        tx=train_utils.create_optimizer(config.optim, config.train.num_steps),
        batch_stats={},
    )


def render_kwargs(config) -> Dict:
    """The sampling settings of `model.render_rays` from the config."""
    return {
        "num_coarse": config.rays.num_coarse,
        "num_fine": config.rays.num_fine,
        "padding": config.field.padding,
        "near": float(config.data.near),
        "far": float(config.data.far),
        "white_background": bool(config.data.white_background),
    }


def loss_fn(model: nerf_model.NeRF, config, params, batch_stats, batch, rng):
    """MSE(coarse) + MSE(fine) on one batch of rays (`model.nerf_loss`)."""
    del batch_stats
    loss, metrics = nerf_model.nerf_loss(model, params, batch, rng, **render_kwargs(config))
    return loss, (metrics, None)


def make_batch(
    config, data, step: int, process_index: int = 0, process_count: int = 1
) -> Dict[str, np.ndarray]:
    """The rays of step `step`, or this process's share of them.

    `rays.per_step` random pixels (of one random training image with
    `rays.single_image`, else of all), drawn from `rng([seed, step])`; with several
    processes each takes its slice, so the union is the single-process batch.

    Returns:
      'origins', 'directions', 'rgb' [n, 3] and 'mask' [n].
    """
    n = config.rays.per_step
    if n % process_count:
        raise ValueError(f"config.rays.per_step={n} is not divisible by {process_count} processes")
    rng = np.random.default_rng([int(config.seed), int(step)])
    views = [int(rng.integers(data.num_views))] if config.rays.single_image else None
    rays = multiview.sample_rays(data, rng, n, views=views)
    local = slice(process_index * n // process_count, (process_index + 1) * n // process_count)
    return {k: np.asarray(rays[k])[local] for k in ("origins", "directions", "rgb", "mask")}


def create_renderer(config, model: nerf_model.NeRF):
    """`model.create_renderer` with the config's sampling settings."""
    return nerf_model.create_renderer(model, chunk=config.rays.chunk, **render_kwargs(config))


def view_metrics(rgb, opacity, image, mask) -> Dict[str, float]:
    """PSNR and SSIM of the whole view (on its background), PSNR inside the true mask, and mask IoU
    (predicted mask: opacity >= 0.5)."""
    pred = opacity >= 0.5
    inter, union = np.sum(pred & mask), np.sum(pred | mask)
    mse = float(np.mean((rgb - image) ** 2))
    mse_in = float(np.mean((rgb[mask] - image[mask]) ** 2)) if mask.any() else float("nan")
    return {
        "psnr": float(-10.0 * np.log10(max(mse, 1e-10))),
        "ssim": float(image_metrics.ssim(np.clip(rgb, 0.0, 1.0), image)),
        "psnr_in_mask": float(-10.0 * np.log10(max(mse_in, 1e-10))) if mask.any() else float("nan"),
        "mask_iou": float(inter / max(union, 1)),
    }


def render_views(renderer, params, data, views):
    """Renders `views` of `data`: a list of (rgb [H, W, 3], depth [H, W], opacity [H, W], metrics)."""
    out = []
    for v in views:
        rays = multiview.view_rays(data, int(v))
        res = renderer(params, rays["origins"], rays["directions"])
        h, w = data.height, data.width
        rgb = res["rgb"].reshape(h, w, 3)
        acc = res["opacity"].reshape(h, w)
        out.append(
            (rgb, res["depth"].reshape(h, w), acc, view_metrics(rgb, acc, data.images[v], data.masks[v]))
        )
    return out


def check_config(config) -> None:
    """Checks NeRF's own values (the trainer checks the shared sections)."""
    config_utils.check_values(config, nerf_config.CHECKS)
    d = config.data
    if d.builtin:
        try:
            shapes.category_synset(d.builtin_category)
        except ValueError as e:
            raise ValueError(f"config.data.builtin_category: {e}") from None
    if (d.near == 0.0) != (d.far == 0.0) or (d.far and not d.far > d.near):
        raise ValueError(
            f"config.data.near={d.near}, config.data.far={d.far}: give both as 0 (each ray's "
            f"intersection with the padded cube) or 0 < near < far"
        )
    if not 1 <= d.val_views < d.n_views:
        raise ValueError(
            f"config.data.val_views={d.val_views} must be in [1, {d.n_views}) for data.n_views={d.n_views} "
            f"views (held-out views for validation and evaluation)"
        )
    if d.layout == "blender" and d.material != "diffuse" and not d.builtin:
        raise ValueError("config.data.material: only used to render the built-in scene (data.builtin=True)")


def load_scene(config, split: str, progress: bool = False):
    """The views of one split ('train', 'val', 'test') of the configured scene (rendered first if missing)."""
    folder = scenes.ensure_scene(config.data, progress=progress)
    return scenes.load_split(config.data, folder, split)


def create_task(config, workdir: str, model: nerf_model.NeRF, mesh: Mesh) -> trainer.Task:
    """The training task of one scene; renders the built-in scene first if it is missing."""
    del workdir
    num_devices = mesh.devices.size
    if config.rays.per_step % num_devices:
        raise ValueError(
            f"config.rays.per_step={config.rays.per_step} must be a multiple of the "
            f"{num_devices} devices the rays are split over"
        )
    # One process renders a missing built-in scene; the others wait, then find it.
    trainer.lead_first("scene", scenes.ensure_scene, config.data, progress=config.logging.progress)
    train_data = load_scene(config, "train", progress=config.logging.progress)
    val_data = load_scene(config, "val")
    val_images = range(min(config.train.val_images or val_data.num_views, val_data.num_views))
    renderer = create_renderer(config, model)

    def evaluate(state):
        views = render_views(renderer, state.params, val_data, val_images)
        return {k: float(np.mean([m[k] for *_, m in views])) for k in ("psnr", "ssim", "mask_iou")}

    batch_fn = functools.partial(
        make_batch, config, train_data, process_index=jax.process_index(), process_count=jax.process_count()
    )
    return trainer.Task(
        loss_fn=functools.partial(loss_fn, model, config),
        batch_fn=batch_fn,
        eval_fn=evaluate,
        best_metric="psnr",
        items_per_step=config.rays.per_step,
        items_name="rays",
        progress_keys=("psnr_fine" if config.rays.num_fine else "psnr_coarse",),
    )
