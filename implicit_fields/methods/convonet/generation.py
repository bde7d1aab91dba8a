"""Meshes from a trained ConvONet: each object encoded once, MISE decoding only.

For every object of the split its deterministic noisy point cloud is encoded
once into feature planes / a grid (the U-Nets run once per object); MISE then
calls only the local decoder at its query points, with the features as an
argument, so a new object does not compile anything new. Meshes, their inputs,
`meshes/generation.json` and `reconstruction.png` are written as ONet's are
(`data.reconstruction.mesh_split`).
"""

import functools
import logging
import multiprocessing
import os
import resource
from typing import Dict, List, Optional

import jax
import numpy as np

from implicit_fields import losses, meshing, summary, trainer, vis
from implicit_fields.data import datasets, reconstruction
from implicit_fields.methods.convonet import model as convonet_model
from implicit_fields.methods.convonet import sliding_window, task

logger = logging.getLogger(__name__)


def create_field_fns(model: convonet_model.ConvolutionalOccupancyNetwork, variables):
    """Jitted `encode(points [n, 3]) -> features` and `decode(features, points [N, 3]) -> logits [N]`."""

    @jax.jit
    def encode(inputs):
        c = model.apply(variables, inputs[None], method=convonet_model.ConvolutionalOccupancyNetwork.encode)
        return jax.tree_util.tree_map(lambda x: x[0], c)

    @jax.jit
    def decode(c, points):
        cb = jax.tree_util.tree_map(lambda x: x[None], c)
        return model.apply(
            variables, points[None], cb, method=convonet_model.ConvolutionalOccupancyNetwork.decode
        )[0]

    return encode, decode


def generate_meshes(config, workdir: str, model, variables, split: str = None, meta: Optional[Dict] = None):
    """Meshes every object of `split` (default `config.generate.split`), recorded as ONet's.

    Returns:
      One record per object: category, model, mesh path, seconds, query count.
    """
    meta = dict(meta or {})
    gen = config.generate
    split = split or gen.split
    ds = datasets.from_config(config.data, split, cache=False)
    count = len(ds) if not gen.max_objects else min(gen.max_objects, len(ds))
    encode, decode = create_field_fns(model, variables)

    def field_fn(i, data, inputs):
        del i, data
        return functools.partial(decode, encode(inputs)), {}

    out_dir = os.path.join(workdir, "meshes")
    record_path = os.path.join(out_dir, "generation.json")
    os.makedirs(out_dir, exist_ok=True)
    record = trainer.start_generation(
        record_path, meta, split=split, num_objects=count, settings=gen.to_dict()
    )
    # Bilinear feature sampling makes the field curved inside a cell: refinement is second order.
    records = reconstruction.mesh_split(
        config, workdir, split, field_fn, comments=trainer.mesh_provenance(meta), second_order=True
    )
    trainer.finish_generation(record_path, record, objects=records)
    return records


def generate(config, workdir: str) -> Dict:
    """Meshes `config.generate.split` with the run's `config.generate.checkpoint` (ConvONet's generate mode).

    Returns:
      {'meshes': the records, 'checkpoint_step': the step of the checkpoint used}.
    """
    task.ensure_data(config)
    model, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
    records: List[Dict] = generate_meshes(config, workdir, model, {"params": state.params}, meta=meta)
    logger.info(
        "wrote %d meshes to %s (checkpoint step %s), picture %s",
        len(records),
        os.path.join(workdir, "meshes"),
        meta.get("step"),
        os.path.join(workdir, "reconstruction.png"),
    )
    return {"meshes": records, "checkpoint_step": meta.get("step")}


def evaluate(config, workdir: str) -> Dict:
    """ConvONet's eval mode: the metrics of the meshes `generate` wrote, exactly as ONet's."""
    return reconstruction.evaluate_generation(config, workdir, trainer.load_generation(workdir))


def tiled_scene(config, split: str, tiles=(2, 2), spacing: float = 1.0):
    """A scene larger than a training cube: rooms of `split` side by side on a tiles[0] x tiles[1] grid in xz.

    Each room keeps its unit-cube coordinates, shifted by `spacing` per tile
    (1.0: the floors' cube sides touch), so the scene's floor spans
    tiles[0] x tiles[1] training cubes. The input is each room's deterministic
    noisy point cloud (`datasets.eval_inputs`, `data.pointcloud_n` points per
    room); the ground truth, each room's IoU points and occupancies.

    Returns:
      dict 'inputs' [N, 3], 'points' [M, 3], 'occupancies' [M], 'rooms' (model
      ids), 'offsets' [T, 3], 'bounds' (lo [3], hi [3]: the tiled cubes).
    """
    ds = datasets.from_config(config.data, split, cache=False)
    count = int(np.prod(tiles))
    if len(ds) < count:
        raise ValueError(
            f"split {split!r} of {config.data.path!r} has {len(ds)} scenes; {tiles} tiles need {count}"
        )
    inputs, points, occupancies, offsets = [], [], [], []
    for t in range(count):
        data = ds.load(t)
        offset = np.asarray([t % tiles[0], 0.0, t // tiles[0]], np.float32) * spacing
        x = datasets.eval_inputs(
            data, t, config.data.pointcloud_n, config.data.pointcloud_noise, config.seed, "pointcloud"
        )
        p, occ = datasets.iou_points(data)
        inputs.append(x + offset)
        points.append(p + offset)
        occupancies.append(occ)
        offsets.append(offset)
    half = 0.5 * (1.0 + config.field.padding)
    lo = np.asarray([-half, -half, -half])
    hi = lo + np.asarray([tiles[0] - 1, 0, tiles[1] - 1]) * spacing + 2 * half
    return {
        "inputs": np.concatenate(inputs).astype(np.float32),
        "points": np.concatenate(points).astype(np.float32),
        "occupancies": np.concatenate(occupancies),
        "rooms": [ds.items[t].model for t in range(count)],
        "offsets": np.stack(offsets),
        "bounds": (lo, hi),
    }


def _decode_in_child(kind, model, params, inputs, query_voxels, samples_per_voxel, bounds, queue):
    """Runs one decode in a fresh process and reports its peak resident memory (for `peak_memory`)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn = sliding_window.decode_sliding if kind == "sliding" else sliding_window.decode_whole
    fn(model, {"params": params}, inputs, query_voxels, samples_per_voxel=samples_per_voxel, bounds=bounds)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"peak_rss_mib": after / 1024.0, "before_decode_mib": before / 1024.0})


def peak_memory(kind: str, model, variables, inputs, query_voxels, samples_per_voxel, bounds) -> Dict:
    """Peak resident memory (MiB) of one 'sliding' or 'whole' decode, measured in a fresh process.

    Returns:
      {'peak_rss_mib', 'before_decode_mib' (the process with JAX, model and
      points loaded), 'decode_mib' (their difference: what the decode added)}.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    params = jax.device_get(variables["params"])
    args = (kind, model, params, np.asarray(inputs), query_voxels, samples_per_voxel, bounds, queue)
    proc = ctx.Process(target=_decode_in_child, args=args)
    proc.start()
    out = queue.get()
    proc.join()
    out["decode_mib"] = out["peak_rss_mib"] - out["before_decode_mib"]
    return out


def generate_sliding(
    config,
    workdir: str,
    tiles=(2, 2),
    split: Optional[str] = None,
    query_voxels: int = 0,
    samples_per_voxel: int = 2,
    measure_memory: bool = True,
) -> Dict:
    """A sliding-window mesh of built-in rooms tiled into a larger scene, from a trained lattice model.

    Writes `sliding/scene.ply` (marching cubes once over the stitched grid),
    `sliding/scene_inputs.npz`, `sliding.png` and `sliding/sliding.json`: the
    crops, seconds, the IoU of the stitched field against the rooms' exact
    occupancy, and (with `measure_memory`) the peak memory of the sliding
    window against one decode of the whole scene, each in a fresh process.

    Args:
      tiles: rooms along x and z (2, 2: four times a training cube's floor).
      split: the rooms' split (default `config.generate.split`).
      query_voxels: the query crop's side in voxels; 0: half the training grid.
      samples_per_voxel: field samples per voxel and axis.
    """
    if not config.model.local_coord:
        raise ValueError(
            "config.model.local_coord=False: the sliding window needs a model trained on the voxel lattice "
            "(experiments/configs/convonet.py:rooms_sliding)"
        )
    if len(tiles) != 2 or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in tiles):
        raise ValueError(f"--tiles={tiles!r}: must be two integers >= 1")
    task.ensure_data(config)
    model, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
    variables = {"params": state.params}
    query_voxels = query_voxels or config.model.grid_resolution // 2
    scene = tiled_scene(config, split or config.generate.split, tuple(tiles))
    values, lattice, stats = sliding_window.decode_sliding(
        model,
        variables,
        scene["inputs"],
        query_voxels,
        samples_per_voxel=samples_per_voxel,
        bounds=scene["bounds"],
        progress=config.logging.progress,
    )
    threshold = float(losses.probability_to_logit(config.field.threshold))
    vertices, faces = sliding_window.mesh_lattice(values, lattice, threshold)
    inside = sliding_window.interpolate(values, lattice, scene["points"]) >= threshold
    truth = scene["occupancies"] >= 0.5
    iou = float(np.sum(inside & truth) / max(np.sum(inside | truth), 1))
    out_dir = os.path.join(workdir, "sliding")
    os.makedirs(out_dir, exist_ok=True)
    mesh_path = os.path.join(out_dir, "scene.ply")
    meshing.write_mesh(mesh_path, vertices, faces, comments=trainer.mesh_provenance(meta))
    np.savez_compressed(os.path.join(out_dir, "scene_inputs.npz"), inputs=scene["inputs"])
    lo, hi = scene["bounds"]
    record = {
        "checkpoint": meta.get("checkpoint"),
        "checkpoint_step": meta.get("step"),
        "rooms": scene["rooms"],
        "tiles": list(tiles),
        "scene_size": (hi - lo).tolist(),
        "training_cube": 1.0 + config.field.padding,
        "area_ratio": float((hi - lo)[0] * (hi - lo)[2] / (1.0 + config.field.padding) ** 2),
        "voxel": lattice.voxel,
        "lattice_voxels": list(lattice.counts),
        "samples_per_voxel": samples_per_voxel,
        "field_iou": iou,
        "num_vertices": int(len(vertices)),
        "num_faces": int(len(faces)),
        **stats,
    }
    if measure_memory:
        args = (model, variables, scene["inputs"], query_voxels, samples_per_voxel, scene["bounds"])
        record["memory_sliding"] = peak_memory("sliding", *args)
        record["memory_whole"] = peak_memory("whole", *args)
    summary.write_json(os.path.join(out_dir, "sliding.json"), record)
    centre = 0.5 * (lo + hi)
    extent = 0.5 * float(np.max(hi - lo))
    view = dict(image_size=480, extent=extent, elevation_deg=40.0)
    picture = vis.image_grid(
        [
            [
                vis.render_points(scene["inputs"] - centre, **view),
                vis.render_mesh(vertices - centre, faces, **view)
                if len(faces)
                else np.full((480, 480, 3), 255, np.uint8),
            ]
        ],
        labels=[[f"input: {len(scene['inputs'])} noisy points", f"sliding window: {stats['crops']} crops"]],
    )
    vis.write_png(os.path.join(workdir, "sliding.png"), picture)
    logger.info(
        "sliding-window mesh %s (%d crops, field IoU %.3f), picture %s",
        mesh_path,
        stats["crops"],
        iou,
        os.path.join(workdir, "sliding.png"),
    )
    return record
