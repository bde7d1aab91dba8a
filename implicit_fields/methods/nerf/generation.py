"""NeRF's generation: held-out renderings and a mesh of the radiance field.

Writes `WORKDIR/renderings.png` (each held-out view: the truth, the fine network's
rendering, the absolute error and the opacity; then the mesh from two sides),
`WORKDIR/views/view_NNNN.png` (each rendering alone, and `_truth.png`, for
`experiments.side_by_side`),
`WORKDIR/mesh.ply` (MISE on the fine network's density, the level set
sigma = `generate.density_threshold`; vertex colours are the radiance seen
head-on, along the inward normal) and `WORKDIR/generation.json` (paths, timings,
per-view PSNR, SSIM and mask IoU).
"""

import logging
import os
import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import trimesh

from implicit_fields import meshing, mise, trainer, vis
from implicit_fields.methods.nerf import model as nerf_model
from implicit_fields.methods.nerf import task

logger = logging.getLogger(__name__)


def _to_uint8(img):
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def extract_mesh(config, model, params):
    """(vertices, faces, colours, MISE stats) of the density's level set `generate.density_threshold`."""
    level = "fine" if config.rays.num_fine else "coarse"
    sigma = nerf_model.density_fn(model, params, level)
    threshold = float(config.generate.density_threshold)
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
    vertices, faces, colors, stats = extract_mesh(config, model, params)
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
        per_view.append({"view": int(v), **m})
        vis.write_png(os.path.join(view_dir, f"view_{int(v):04d}.png"), _to_uint8(rgb))
        vis.write_png(os.path.join(view_dir, f"view_{int(v):04d}_truth.png"), _to_uint8(gt))
        grey = _to_uint8(np.repeat(acc[..., None], 3, axis=-1))
        rows.append([up(_to_uint8(gt)), up(_to_uint8(rgb)), up(_to_uint8(np.abs(rgb - gt))), up(grey)])
        labels.append([f"view {int(v)} truth", f"NeRF  {m['psnr']:.1f} dB", "abs. error", "opacity"])
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
        mesh_queries=stats["num_queries"],
        render_seconds=t_render,
        seconds_per_view=t_render / max(len(views), 1),
        held_out_views=per_view,
    )
    logger.info("wrote %s (%s faces, %.1f s) and %s", mesh_path, f"{len(faces):,}", t_mesh, picture)
    return record
