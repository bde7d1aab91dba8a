"""Mesh generation from a trained Occupancy Network, for a whole split.

For every object: encode its (deterministic, noisy) input point cloud once,
extract the iso-surface of the eval-mode field, write `meshes/<category>/<model>.ply`
and the input points beside it, and draw a picture comparing inputs,
reconstructions and ground truth.
"""

import functools
import json
import os
import time
from typing import Dict, List

import jax
import numpy as np
import tqdm
import trimesh

from implicit_fields import meshing, mise, models, vis
from implicit_fields.data import datasets


def create_field_fns(model: models.OccupancyNetwork, variables):
    """Jitted `encode(inputs [n,3]) -> c [c_dim]` and `decode(c, points [N,3]) -> logits [N]`.

    Both compile once per input shape; `decode` takes the code as an argument
    so that a new object does not trigger a new compilation.
    """

    @jax.jit
    def encode(inputs):
        return model.apply(variables, inputs[None], method=models.OccupancyNetwork.encode)[0]

    @jax.jit
    def decode(c, points):
        return model.apply(variables, points[None], c[None], method=models.OccupancyNetwork.decode)[0]

    return encode, decode


def write_mesh(path: str, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Writes a binary PLY (atomically: temp file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(trimesh.exchange.ply.export_ply(mesh, encoding="binary"))
    os.replace(tmp, path)


def generate_meshes(config, workdir: str, model, variables, split: str = None) -> List[Dict]:
    """Meshes every object of `split` (default `config.generate.split`).

    Returns:
      One record per object: category, model, mesh path, seconds, query count.
    """
    gen = config.generate
    split = split or gen.split
    ds = datasets.from_config(config.data, split, cache=False)
    count = len(ds) if not gen.max_objects else min(gen.max_objects, len(ds))
    if gen.method not in ("mise", "dense"):
        raise ValueError(f"unknown generate.method {gen.method!r}; use 'mise' or 'dense'")
    encode, decode = create_field_fns(model, variables)
    out_dir = os.path.join(workdir, "meshes")
    records = []
    pictures = []
    bar = tqdm.tqdm(range(count), desc=f"generate {split}", unit="mesh", disable=not config.train.progress)
    for i in bar:
        item = ds.items[i]
        data = ds.load(i)
        inputs = datasets.eval_inputs(
            data, i, config.data.pointcloud_n, config.data.pointcloud_noise, config.seed
        )
        t0 = time.perf_counter()
        c = encode(inputs)
        logit_fn = functools.partial(decode, c)
        common = dict(
            threshold=config.train.threshold,
            padding=gen.padding,
            batch_points=gen.batch_points,
            return_stats=True,
        )
        if gen.method == "mise":
            vertices, faces, stats = mise.extract_mesh(
                logit_fn,
                resolution0=gen.resolution0,
                upsampling_steps=gen.upsampling_steps,
                refinement_steps=gen.refinement_steps,
                simplify_nfaces=gen.simplify_nfaces or None,
                refinement_key=jax.random.key(config.seed),
                **common,
            )
        else:
            vertices, faces, stats = meshing.extract_mesh_dense(logit_fn, resolution=gen.resolution, **common)
        seconds = time.perf_counter() - t0
        path = os.path.join(out_dir, item.category, f"{item.model}.ply")
        write_mesh(path, vertices, faces)
        np.savez(os.path.join(out_dir, item.category, f"{item.model}_inputs.npz"), inputs=inputs)
        records.append(
            {
                "category": item.category,
                "category_name": ds.category_name(item.category),
                "model": item.model,
                "mesh": os.path.relpath(path, workdir),
                "seconds": seconds,
                "num_queries": stats["num_queries"],
                "num_vertices": int(vertices.shape[0]),
                "num_faces": int(faces.shape[0]),
            }
        )
        # The picture shows the first object of each category.
        shown = {p[0] for p in pictures}
        if len(pictures) < gen.num_pictures and ds.category_name(item.category) not in shown:
            pictures.append((ds.category_name(item.category), inputs, vertices, faces, data))
    with open(os.path.join(out_dir, "generation.json"), "w") as f:
        json.dump(records, f, indent=1)
    if pictures:
        write_comparison_picture(os.path.join(workdir, "reconstruction.png"), pictures)
    return records


def write_comparison_picture(path: str, objects, image_size: int = 200) -> None:
    """One row per object: input points, reconstruction, ground-truth surface."""
    rows, labels = [], []
    for name, inputs, vertices, faces, data in objects:
        rows.append(
            [
                vis.render_points(inputs, None, image_size=image_size),
                vis.render_mesh(vertices, faces, image_size=image_size),
                vis.render_points(data["surface_points"], data["surface_normals"], image_size=image_size),
            ]
        )
        labels.append([f"{name} input", f"{name} ours", f"{name} truth"])
    vis.write_png(path, vis.image_grid(rows, labels=labels))
