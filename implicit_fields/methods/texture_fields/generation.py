"""Texture Fields' generation: renderings of held-out objects, and textured meshes.

`generate(config, workdir)` renders every view of `config.eval.views` of each
object of `config.generate.split` at `config.eval.img_size`, conditioned on the
object's first condition view (the original's `generate.py`; the VAE and GAN
draw z from the prior with `config.generate.seed`), and writes

* `WORKDIR/renderings/fake/<category>_<object>_<view>.png` and the truth in
  `real/` (the original compares two folders of PNGs);
* `WORKDIR/texture_fields.png`: per object the condition image, then truth and
  ours for `generate.picture_views` views;
* `WORKDIR/renderings/generation.json`: the checkpoint and step (written before
  the first image, completed after the last), the files, the time per view.

`colour_vertices` colours any mesh with a trained texture field: the shape code
comes from points and normals sampled on the mesh, the image code from one
condition image. With the image-conditioned occupancy model of the `onet`
method for the shape, that is a textured mesh from one image
(`python -m experiments.textured_mesh`).
"""

import logging
import os
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from implicit_fields import image_metrics, meshing, summary, trainer, vis
from implicit_fields.data import mesh_render, textured
from implicit_fields.methods.texture_fields import task

logger = logging.getLogger(__name__)

RENDER_DIR = "renderings"
PICTURE = "texture_fields.png"


def _to_uint8(x):
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _condition_picture(obj, size: int):
    """The object's first condition view at the pictures' row height (nearest resize), uint8."""
    return _to_uint8(textured.resize_nearest(obj["input_images"][0], size))


def _picture_grid(rows, labels, size: int):
    """`vis.image_grid` of square images of side `size`, enlarged (nearest) to at least 128 pixels."""
    scale = max(1, -(-128 // size))
    rows = [[np.repeat(np.repeat(im, scale, 0), scale, 1) for im in row] for row in rows]
    return vis.image_grid(rows, labels)


def object_key(config, index: int) -> Optional[jax.Array]:
    """The prior draw of object `index` for the VAE and GAN (None for the conditional model)."""
    if config.model.kind == "conditional":
        return None
    return jax.random.fold_in(jax.random.PRNGKey(config.generate.seed), index)


def generate(config, workdir: str, model=None, state=None) -> Dict[str, Any]:
    """Renders the held-out objects of the run in `workdir` (restored unless `model` and `state` are given).

    Returns:
      The record written to `renderings/generation.json`.
    """
    g = config.generate
    dataset, count = task.load_split(
        config, g.split, config.eval.img_size, which=config.eval.views, limit=g.num_objects
    )
    if state is None:
        model, state, meta = trainer.restore(config, workdir, g.checkpoint)
    else:
        meta = {"checkpoint": "given", "step": int(jax.device_get(state.step))}
    out = os.path.join(workdir, RENDER_DIR)
    for sub in ("fake", "real"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    record_path = os.path.join(out, "generation.json")
    record = trainer.start_generation(
        record_path, meta, split=g.split, views=config.eval.views, img_size=config.eval.img_size
    )
    variables = task.variables_of(state)
    codes_fn = task.create_codes_fn(config, model)
    colour_fn = task.create_colour_fn(model)
    pairs, rows, labels = [], [], []
    seconds, num_views = 0.0, 0
    for i in tqdm.trange(count, desc="render", unit="object", disable=not config.logging.progress):
        obj = dataset[i]
        name = dataset.names[i].replace("/", "_")
        codes = task.object_codes(config, codes_fn, variables, obj, object_key(config, i))
        views = list(range(obj["images"].shape[0]))
        t0 = time.perf_counter()
        fakes = task.render_object(config, variables, obj, views, codes, colour_fn)
        if i:  # The first object pays the compilation.
            seconds += time.perf_counter() - t0
            num_views += len(views)
        for v in views:
            fake_path = os.path.join(RENDER_DIR, "fake", f"{name}_{v:03d}.png")
            real_path = os.path.join(RENDER_DIR, "real", f"{name}_{v:03d}.png")
            vis.write_png(os.path.join(workdir, fake_path), _to_uint8(fakes[v]))
            vis.write_png(os.path.join(workdir, real_path), _to_uint8(obj["images"][v]))
            pairs.append({"object": dataset.names[i], "view": v, "fake": fake_path, "real": real_path})
        if i < g.picture_objects:
            size = config.eval.img_size
            cond = _condition_picture(obj, size)
            what = "condition" if config.model.kind == "conditional" else "(z from the prior)"
            row, lab = [cond], [f"{dataset.names[i].split('/')[-1][:10]} {what}"]
            for v in views[: g.picture_views]:
                row += [_to_uint8(obj["images"][v]), _to_uint8(fakes[v])]
                lab += [f"view {v} truth", f"view {v} ours"]
            rows.append(row)
            labels.append(lab)
    picture = None
    if rows:
        picture = os.path.join(workdir, PICTURE)
        vis.write_png(picture, _picture_grid(rows, labels, config.eval.img_size))
    pixels = config.eval.img_size**2
    return trainer.finish_generation(
        record_path,
        record,
        images=pairs,
        num_objects=count,
        picture=picture,
        seconds_per_view=seconds / num_views if num_views else None,
        pixels_per_second=pixels * num_views / seconds if seconds else None,
    )


def sample_surface(vertices, faces, n: int, seed: int = 0):
    """`n` area-weighted random points of a triangle mesh and their face normals (unit)."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if len(f) == 0:
        raise ValueError("the mesh has no faces: there is no surface to colour")
    tri = v[f]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise ValueError("the mesh has no surface area (degenerate or non-finite triangles)")
    rng = np.random.default_rng(seed)
    face = rng.choice(len(f), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    points = np.einsum("nk,nkd->nd", w, tri[face])
    normals = cross[face] / np.maximum(area[face], 1e-30)[:, None]
    return points.astype(np.float32), normals.astype(np.float32)


def colour_vertices(
    config, model, state, vertices, faces, condition=None, key=None, batch: int = 65536, fns=None
):
    """Colours a mesh's vertices with a trained texture field.

    The shape code is that of `data.pointcloud_n` points and normals sampled on
    the mesh (area-weighted, seed 0), as the field was trained with points of
    the true surface; the image code is that of `condition`, an RGB image in
    [0, 1] of side `data.input_size` (conditional model), or a prior draw of
    `key` (VAE, GAN; None: the prior mean). `fns`: the jitted
    `(task.create_codes_fn(...), task.create_colour_fn(...))` to reuse across meshes
    (made here when None, which compiles them again).

    Returns:
      float32 [V, 3] RGB in [0, 1].
    """
    variables = task.variables_of(state)
    points, normals = sample_surface(vertices, faces, config.data.pointcloud_n)
    codes_fn, colour_fn = fns or (task.create_codes_fn(config, model), task.create_colour_fn(model))
    if config.model.kind == "conditional":
        if condition is None:
            raise ValueError("the conditional texture field needs a condition image")
        condition = np.asarray(condition, np.float32)
        s = config.data.input_size
        if condition.shape != (s, s, 3):
            raise ValueError(
                f"condition image must be ({s}, {s}, 3) (data.input_size), got {condition.shape}"
            )
    else:
        condition = np.zeros((config.data.input_size,) * 2 + (3,), np.float32)
    c, z = codes_fn(
        variables, jnp.asarray(points)[None], jnp.asarray(normals)[None], jnp.asarray(condition)[None], key
    )
    # A power-of-two chunk (at most `batch`): meshes of similar size share one compilation.
    chunk = int(min(batch, max(1024, 2 ** int(np.ceil(np.log2(max(len(vertices), 1)))))))
    return task.colour_points(colour_fn, variables, vertices, (c, z), chunk)


def render_coloured_mesh(vertices, faces, colors, camera, size: int, background: float = 1.0):
    """A view of a mesh with per-vertex colours, interpolated with the barycentrics (no shading).

    The texture field's colours already hold the lighting of the images it learnt
    from, so they are shown as they are.

    Returns:
      float32 [size, size, 3] in [0, 1] over the background.
    """
    face, _, bary = mesh_render.rasterize(vertices, faces, camera, size, size)
    face, bary = face.reshape(-1), bary.reshape(-1, 3)
    out = np.full((face.size, 3), background, np.float32)
    hit = np.flatnonzero(face >= 0)
    corners = np.asarray(colors, np.float32)[np.asarray(faces)[face[hit]]]  # (n, 3, 3)
    out[hit] = np.einsum("nk,nkc->nc", bary[hit], corners)
    return out.reshape(size, size, 3)


def textured_meshes(config, workdir: str, mesh_fn, out_dir: str, num_objects: int = 4, split: str = "test"):
    """Textured meshes from one image each: a shape model's mesh, coloured by the texture field.

    For each of the first `num_objects` objects of `split`: `mesh_fn(obj)` gives a
    mesh (e.g. an image-conditioned occupancy network meshed with MISE, from the
    object's first condition view), the texture field of the run in `workdir`
    colours its vertices (conditioned on the same image), and the coloured mesh is
    written as `<out_dir>/<category>_<object>.ply`. Its renderings from the
    object's held-out circle views (`visualize/`) are shown beside the truth in
    `<out_dir>/textured_meshes.png`, and their SSIM, PSNR and L1 (which measure
    shape and texture together) go to `<out_dir>/textured_meshes.json`.

    Args:
      mesh_fn: `obj -> (vertices [V, 3], faces [F, 3])`; `obj` is a `TexturedDataset`
        item (the condition images in `obj['input_images']`, view 0 is the one used).

    Returns:
      The record written to `textured_meshes.json`.
    """
    size = config.eval.img_size
    dataset, count = task.load_split(config, split, size, which="visualize", limit=num_objects)
    model, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
    os.makedirs(out_dir, exist_ok=True)
    fns = (task.create_codes_fn(config, model), task.create_colour_fn(model))
    rows, labels, objects = [], [], []
    for i in tqdm.trange(count, desc="textured meshes", unit="mesh", disable=not config.logging.progress):
        obj = dataset[i]
        name = dataset.names[i].replace("/", "_")
        t0 = time.perf_counter()
        vertices, faces = mesh_fn(obj)
        t_shape = time.perf_counter() - t0
        t0 = time.perf_counter()
        colors = colour_vertices(
            config, model, state, vertices, faces, obj["input_images"][0], object_key(config, i), fns=fns
        )
        t_colour = time.perf_counter() - t0
        path = os.path.join(out_dir, f"{name}.ply")
        meshing.write_mesh(path, vertices, faces, colors, comments=trainer.mesh_provenance(meta))
        cond = _condition_picture(obj, size)
        row, lab, scores = [cond], [f"{name.split('_', 1)[-1]} input"], []
        for v in range(obj["images"].shape[0]):
            camera = {"camera_mat": obj["camera_mat"][v], "world_mat": obj["world_mat"][v]}
            ours = render_coloured_mesh(vertices, faces, colors, camera, size)
            truth = np.asarray(obj["images"][v], np.float32)
            scores.append(
                {
                    "ssim": image_metrics.ssim(ours, truth, data_range=config.eval.ssim_data_range),
                    "psnr": image_metrics.psnr(ours, truth),
                    "l1": image_metrics.l1(ours, truth),
                }
            )
            if v < 3:
                row += [_to_uint8(truth), _to_uint8(ours)]
                lab += [f"view {v} truth", f"view {v} ours"]
        rows.append(row)
        labels.append(lab)
        objects.append(
            {
                "object": dataset.names[i],
                "mesh": os.path.relpath(path, out_dir),
                "vertices": int(len(vertices)),
                "faces": int(len(faces)),
                "seconds_shape": t_shape,
                "seconds_colour": t_colour,
                **{k: float(np.mean([s[k] for s in scores])) for k in ("ssim", "psnr", "l1")},
            }
        )
    picture = os.path.join(out_dir, "textured_meshes.png")
    vis.write_png(picture, _picture_grid(rows, labels, size))
    record = {
        "texture_checkpoint": meta.get("checkpoint"),
        "texture_step": meta.get("step"),
        "split": split,
        "img_size": size,
        "picture": picture,
        "objects": objects,
        **{k: float(np.mean([o[k] for o in objects])) for k in ("ssim", "psnr", "l1")},
    }
    summary.write_json(os.path.join(out_dir, "textured_meshes.json"), record)
    return record
