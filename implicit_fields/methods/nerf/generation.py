"""NeRF's generation: held-out renderings and a mesh of the radiance field.

Writes `WORKDIR/renderings.png` (each held-out view: the truth, the fine network's
rendering, the absolute error and the opacity; then the mesh from two sides),
`WORKDIR/views/view_NNNN.png` (each rendering alone, and `_truth.png`, for
`experiments.side_by_side`),
`WORKDIR/mesh.ply` (MISE on the fine network's density, the level set
sigma = `generate.density_threshold`, or with 0 the level whose silhouettes best
match the training masks; vertex colours are the radiance seen head-on, along
the inward normal) and `WORKDIR/generation.json` (paths, timings,
per-view PSNR, SSIM and mask IoU).
"""

import logging
import os
import time
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import trimesh

from implicit_fields import meshing, mise, trainer, vis
from implicit_fields.data import multiview
from implicit_fields.methods.nerf import model as nerf_model
from implicit_fields.methods.nerf import task

logger = logging.getLogger(__name__)


def _to_uint8(img):
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def auto_threshold(config, model, params, num_rays: int = 16384) -> Tuple[float, float]:
    """The density level whose silhouettes best match the training masks: (threshold, mask IoU).

    A ray crosses {sigma > s} when the largest density along it exceeds s
    (`model.ray_max_density`), so the silhouette IoU of every level s against the
    training masks comes from one pass over `num_rays` random training pixels; the
    level of the highest IoU is taken (training data only: neither the held-out views
    nor the exact shape).

    Raises:
      ValueError: when the training views have no masks (every pixel foreground).
    """
    data = task.load_scene(config, "train")
    if data.masks.all():
        raise ValueError(
            "config.generate.density_threshold=0 (automatic) needs object masks in the training views "
            f"({data.folder} has none: every pixel is foreground); set a density threshold"
        )
    rays = multiview.sample_rays(data, np.random.default_rng([int(config.seed), 7]), num_rays)
    kw = task.render_kwargs(config)
    fn = jax.jit(lambda p, o, d: nerf_model.ray_max_density(model, p, o, d, **kw))
    chunk = config.rays.chunk
    maxima = np.concatenate(
        [
            np.asarray(fn(params, rays["origins"][i : i + chunk], rays["directions"][i : i + chunk]))
            for i in range(0, num_rays, chunk)
        ]
    )
    return threshold_from_maxima(maxima, np.asarray(rays["mask"]))


def threshold_from_maxima(maxima, mask) -> Tuple[float, float]:
    """The level s whose silhouette `maxima > s` has the highest IoU with `mask`: (s, IoU).

    Exact over all levels: the silhouettes change only at the values of `maxima`, so
    every level between two consecutive sorted values is one candidate, scored from
    cumulative counts; s is the midpoint of the best such interval (the one of the
    lowest levels on ties).
    """
    maxima, mask = np.asarray(maxima, np.float64), np.asarray(mask, bool)
    if not (maxima > 0).any():
        raise ValueError("the density is 0 along every training ray sampled: no level set to mesh")
    order = np.argsort(maxima, kind="stable")
    v, m = maxima[order], mask[order]
    # Level between v[i] and v[i + 1] (i = -1: below everything): predicted = the rays above.
    in_mask_above = np.concatenate([[m.sum()], m.sum() - np.cumsum(m)])  # i = -1 .. n-1
    predicted = len(v) - np.arange(len(v) + 1)
    iou = in_mask_above / np.maximum(predicted + m.sum() - in_mask_above, 1)
    distinct = np.concatenate([v[1:] > v[:-1], [True]])  # Levels strictly between distinct values.
    iou[1:][~distinct] = -1.0
    k = int(np.argmax(iou))  # k = i + 1.
    lower = v[k - 1] if k > 0 else 0.0
    upper = v[k] if k < len(v) else v[-1] + 1.0
    return float(0.5 * (lower + upper)), float(iou[k])


def extract_mesh(config, model, params, threshold: float = None):
    """(vertices, faces, colours, MISE stats) of the density's level set sigma = `threshold`
    (default `generate.density_threshold`)."""
    level = "fine" if config.rays.num_fine else "coarse"
    sigma = nerf_model.density_fn(model, params, level)
    threshold = float(config.generate.density_threshold if threshold is None else threshold)
    vertices, faces, stats = mise.extract_mesh(
        jax.jit(lambda p: sigma(p) - threshold),  # > 0 inside: the 'logit' of probability 0.5.
        resolution0=config.generate.resolution0,
        upsampling_steps=config.generate.upsampling_steps,
        threshold=0.5,
        padding=config.field.padding,
        batch_points=config.generate.batch_points or None,
        return_stats=True,
    )
    colors = np.zeros((len(vertices), 3))
    if len(faces):
        normals = np.asarray(trimesh.Trimesh(vertices, faces, process=False).vertex_normals, np.float32)
        v = jnp.asarray(vertices, jnp.float32)
        rgb, _ = model.apply({"params": params}, v, -jnp.asarray(normals), level)
        colors = np.asarray(rgb)
    return vertices, faces, colors, stats


def generate(config, workdir: str, model=None, state=None) -> Dict[str, Any]:
    """Renders the held-out views and meshes the field of the run in `workdir`.

    Returns:
      The record written to `generation.json`.
    """
    data = task.load_scene(config, "test", progress=config.logging.progress)
    if state is None:
        model, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
    else:
        meta = {"checkpoint": "given", "step": int(jax.device_get(state.step))}
    path = os.path.join(workdir, "generation.json")
    started = trainer.start_generation(path, meta, settings=config.generate.to_dict())
    params = state.params

    t0 = time.perf_counter()
    threshold, threshold_iou = float(config.generate.density_threshold), None
    if threshold == 0.0:
        threshold, threshold_iou = auto_threshold(config, model, params)
        logger.info("density threshold %.3g: training-mask silhouette IoU %.3f", threshold, threshold_iou)
    vertices, faces, colors, stats = extract_mesh(config, model, params, threshold)
    t_mesh = time.perf_counter() - t0
    mesh_path = os.path.join(workdir, "mesh.ply")
    meshing.write_mesh(mesh_path, vertices, faces, colors, comments=trainer.mesh_provenance(meta))

    views = np.arange(min(config.generate.num_views or data.num_views, data.num_views))
    t0 = time.perf_counter()
    rendered = task.render_views(task.create_renderer(config, model), params, data, views)
    t_render = time.perf_counter() - t0
    scale = max(1, 128 // max(data.height, data.width))

    def up(im):
        return np.repeat(np.repeat(im, scale, 0), scale, 1)

    rows, labels, per_view = [], [], []
    view_dir = os.path.join(workdir, "views")
    os.makedirs(view_dir, exist_ok=True)
    for v, (rgb, _, acc, m) in zip(views, rendered):
        gt = data.images[v]
        view_id = int(data.view_ids[v])  # The view's number in the scene (the multi-view layout's 20-23).
        per_view.append({"view": view_id, **m})
        vis.write_png(os.path.join(view_dir, f"view_{view_id:04d}.png"), _to_uint8(rgb))
        vis.write_png(os.path.join(view_dir, f"view_{view_id:04d}_truth.png"), _to_uint8(gt))
        grey = _to_uint8(np.repeat(acc[..., None], 3, axis=-1))
        rows.append([up(_to_uint8(gt)), up(_to_uint8(rgb)), up(_to_uint8(np.abs(rgb - gt))), up(grey)])
        labels.append([f"view {view_id} truth", f"NeRF  {m['psnr']:.1f} dB", "abs. error", "opacity"])
    if len(faces):
        size = rows[0][0].shape[0] if rows else 128
        rows.append(
            [
                vis.render_mesh(vertices, faces, image_size=size, azimuth_deg=a, elevation_deg=25)
                for a in (45, 225)
            ]
        )
        labels.append([f"mesh {len(faces):,} faces", "mesh (back)"])
    picture = os.path.join(workdir, "renderings.png")
    vis.write_png(picture, vis.image_grid(rows, labels))
    record = trainer.finish_generation(
        path,
        started,
        mesh=mesh_path,
        picture=picture,
        num_faces=int(len(faces)),
        num_vertices=int(len(vertices)),
        mesh_seconds=t_mesh,
        density_threshold=threshold,
        density_threshold_mask_iou=threshold_iou,
        mesh_queries=stats["num_queries"],
        render_seconds=t_render,
        seconds_per_view=t_render / max(len(views), 1),
        held_out_views=per_view,
    )
    logger.info("wrote %s (%s faces, %.1f s) and %s", mesh_path, f"{len(faces):,}", t_mesh, picture)
    return record
