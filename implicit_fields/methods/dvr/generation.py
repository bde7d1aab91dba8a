"""DVR's generation: the mesh of the scene (MISE, coloured by the texture field) and held-out renderings.

Writes `WORKDIR/mesh.ply`, `WORKDIR/renderings.png` (each held-out view: the
truth, our rendering and the absolute error, then the mesh from two sides)
and `WORKDIR/generation.json` (paths, timings, per-view mask IoU and PSNR).
The mesh is the field's threshold surface in either `rays.mode`; the views are
rendered as the model was trained (surface or volume).
"""

import logging
import os
import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields import meshing, mise, trainer, vis
from implicit_fields.data import multiview
from implicit_fields.methods.dvr import model as dvr_model
from implicit_fields.methods.dvr import task

logger = logging.getLogger(__name__)


def _to_uint8(img):
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def vertex_colors(model, params, vertices, batch: int = 65_536) -> np.ndarray:
    """The colour field at mesh vertices (N, 3) in [0, 1], in batches.

    A view-dependent colour (`ViewDependentDecoder`) is taken looking straight at the
    surface: the view direction at a vertex is minus the field's outward normal there
    (`model.autodiff_normals`), the colour of a camera facing the surface head-on.
    """
    if not len(vertices):
        return np.zeros((0, 3))
    logit_fn, rgb_fn = dvr_model.make_field_fns(model)

    if isinstance(model, dvr_model.ViewDependentDecoder):

        def colors(p):
            return rgb_fn(params, p, -dvr_model.autodiff_normals(logit_fn, params, p))
    else:

        def colors(p):
            return rgb_fn(params, p)

    colors = jax.jit(colors)
    v = jnp.asarray(vertices, jnp.float32)
    return np.concatenate([np.asarray(colors(v[i : i + batch])) for i in range(0, len(v), batch)])


def generate(config, workdir: str, model=None, state=None) -> Dict[str, Any]:
    """Meshes and renders the trained scene in `workdir` (restored unless `model` and `state` are given).

    Returns:
      The record written to `generation.json`.
    """
    folder = task.ensure_scene(config.data, progress=config.logging.progress)
    data = multiview.load_multiview(folder)
    _, val_views = task.split_views(data.num_views, config.data.val_views)
    if state is None:
        model, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
    else:
        meta = {"checkpoint": "given", "step": int(jax.device_get(state.step))}
    # The record names the checkpoint before the mesh is written (complete only at the end).
    path = os.path.join(workdir, "generation.json")
    started = trainer.start_generation(path, meta, settings=config.generate.to_dict())
    params = state.params
    logit_fn, _ = dvr_model.make_field_fns(model)
    t0 = time.perf_counter()
    vertices, faces, stats = mise.extract_mesh(
        jax.jit(lambda p: logit_fn(params, p)),
        resolution0=config.generate.resolution0,
        upsampling_steps=config.generate.upsampling_steps,
        threshold=config.field.threshold,
        padding=config.field.padding,
        batch_points=config.generate.batch_points or None,
        return_stats=True,
    )
    t_mesh = time.perf_counter() - t0
    colors = vertex_colors(model, params, vertices)
    mesh_path = os.path.join(workdir, "mesh.ply")
    meshing.write_mesh(mesh_path, vertices, faces, colors, comments=trainer.mesh_provenance(meta))

    views = val_views[: config.generate.num_views]
    if not len(views):
        views = np.arange(min(config.generate.num_views, data.num_views))
    t0 = time.perf_counter()
    renderer = task.create_renderer(config, model)
    rendered = task.render_views(renderer, params, data, views, config.rays.render_steps)
    t_render = time.perf_counter() - t0
    rows, labels, per_view = [], [], []
    h, w = data.height, data.width
    scale = max(1, 128 // max(h, w))

    def up(im):
        return np.repeat(np.repeat(im, scale, 0), scale, 1)

    view_dir = os.path.join(workdir, "views")  # Each rendering alone, for experiments.side_by_side.
    os.makedirs(view_dir, exist_ok=True)
    for v, (rgb, _, m) in zip(views, rendered):
        gt = data.images[v]
        per_view.append({"view": int(v), **m})
        vis.write_png(os.path.join(view_dir, f"view_{int(v):04d}.png"), _to_uint8(rgb))
        vis.write_png(os.path.join(view_dir, f"view_{int(v):04d}_truth.png"), _to_uint8(gt))
        rows.append([up(_to_uint8(gt)), up(_to_uint8(rgb)), up(_to_uint8(np.abs(rgb - gt)))])
        labels.append([f"view {int(v)} truth", f"ours  mask IoU {m['mask_iou']:.2f}", "abs. error"])
    # Last row: the extracted mesh from two sides.
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
    record = {
        "mesh": mesh_path,
        "picture": picture,
        "num_faces": int(len(faces)),
        "num_vertices": int(len(vertices)),
        "mesh_seconds": t_mesh,
        "mesh_queries": stats["num_queries"],
        "render_seconds": t_render,
        "held_out_views": per_view,
    }
    record = trainer.finish_generation(path, started, **record)
    logger.info("wrote %s (%s faces, %.1f s) and %s", mesh_path, f"{len(faces):,}", t_mesh, picture)
    return record
