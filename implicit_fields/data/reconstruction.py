"""Reconstruction of an ONet-layout split: mesh each object's field, score the meshes.

Shared by the methods that reconstruct objects of a `ShapesDataset` (ONet,
ConvONet): they differ in how a field is made from an object's input, not in
how it is meshed or measured.

* `extract(config, logit_fn, second_order)`: one field meshed with
  `config.generate` (MISE, the original's, or a dense grid);
* `mesh_split(...)`: every object of a split encoded once and meshed, written
  to `meshes/<category>/<model>.ply` with its input beside it, and the
  comparison picture (input, reconstruction, ground truth);
* `evaluate_meshes(config, workdir, records)`: the metrics of those meshes
  exactly as the original `eval_meshes.py` computes them.

Per object: IoU of the mesh's inside test on the 100k `points.npz` points
against their ground-truth occupancy (only the uniform ones, the first
`num_uniform`, where points.npz says so: `datasets.iou_points`), with the
original's jitter (`config.eval.iou_jitter` * N(0, 1), 1e-4 as the original's
`PointsField` for float16 files; seeded by `config.seed` and the object's
index, so an evaluation is reproducible; 0 turns it off); Chamfer-L1, normal
consistency and F-score@1% between 100k points sampled on the mesh and the
100k `pointcloud.npz` points (with `config.eval.crop_to_gt_bbox`, the
original's room evaluation, the mesh points are first cropped to the GT point
cloud's bounding box: `metrics.crop_to_gt_bbox_mask`).

Values the original leaves undefined (an empty mesh, an F-score with precision
= recall = 0; `implicit_fields.metrics`) follow `config.eval.undefined_metrics`:
'original' (default) scores them as the original, NaN where it has no value,
so they drop out of the means (pandas' mean skips NaN); 'worst' gives them the
worst values. `eval_meshes.csv` (per object) holds both: the chosen
convention's columns plus `<metric>_<other convention>` for IoU, Chamfer-L1,
normal consistency and F-score, and `empty` (1 for an empty mesh); NaN is
written as `nan`. `metrics.json` holds the mean over categories of the per-category means
(as the papers' tables), per-category and per-object means, the number of
empty meshes and of objects each mean left out, and the reported means under
both conventions. Chamfer-L1 is reported x10, as the papers do.

The generation record (`trainer.start_generation` / `finish_generation`) is
the method's: this layer writes meshes with the header comments it is given.
"""

import csv
import io
import json
import logging
import math
import os
import time
from typing import Callable, Dict, List, Optional

import jax
import numpy as np
import tqdm
import trimesh

from implicit_fields import meshing, metrics, mise, summary, vis
from implicit_fields.data import binvox, datasets

logger = logging.getLogger(__name__)


def extract(config, logit_fn, second_order: bool = True):
    """Meshes one field with `config.generate` (MISE or a dense grid).

    Args:
      logit_fn: jitted `points [N, 3] -> logits [N]`.
      second_order: MISE's vertex refinement differentiates through grad f
        (the original's); False holds the target normal fixed (exact for a
        piecewise-linear field, half the cost).

    Returns:
      (vertices float32 [V, 3], faces int64 [F, 3], stats dict).
    """
    gen = config.generate
    common = dict(
        threshold=config.field.threshold,
        padding=config.field.padding,
        batch_points=gen.batch_points or None,
        return_stats=True,
    )
    if gen.method == "mise":
        return mise.extract_mesh(
            logit_fn,
            resolution0=gen.resolution0,
            upsampling_steps=gen.upsampling_steps,
            simplify_nfaces=gen.get("simplify_nfaces", 0) or None,
            refinement_steps=gen.refinement_steps,
            refinement_key=jax.random.key(config.seed),
            refinement_second_order=second_order,
            marching_cubes=gen.get("marching_cubes", "pymcubes"),
            subdivision=gen.get("subdivision", "cells"),
            **common,
        )
    if gen.method == "dense":
        return meshing.extract_mesh_dense(logit_fn, resolution=gen.resolution, **common)
    raise ValueError(f"unknown generate.method {gen.method!r}; use 'mise' or 'dense'")


def extract_batched(config, logit_fn_batched, codes, logit_fns, second_order: bool = True):
    """Meshes several fields at once with MISE (`mise.extract_meshes_batched`), then finishes each.

    Gives the meshes of `extract` one object at a time (the same grids, then the
    same simplification and refinement, `mise.finish_mesh`, with each object's
    own `logit_fns[i]`), with one jitted call per MISE level for the batch.

    Args:
      logit_fn_batched: jitted `(codes, points [B, N, 3]) -> logits [B, N]`.
      codes: pytree of arrays with leading dimension B.
      logit_fns: B jitted `points [N, 3] -> logits [N]`, for the refinement.

    Returns:
      B (vertices, faces, stats), the stats holding the batch's MISE seconds
      divided among its objects.
    """
    gen = config.generate
    meshes, stats = mise.extract_meshes_batched(
        logit_fn_batched,
        codes,
        resolution0=gen.resolution0,
        upsampling_steps=gen.upsampling_steps,
        threshold=config.field.threshold,
        padding=config.field.padding,
        batch_points=gen.batch_points or None,
        return_stats=True,
        subdivision=gen.get("subdivision", "cells"),
        marching_cubes=gen.get("marching_cubes", "pymcubes"),
    )
    out = []
    for (vertices, faces), logit_fn, queries in zip(meshes, logit_fns, stats["num_queries"]):
        vertices, faces, times = mise.finish_mesh(
            logit_fn,
            vertices,
            faces,
            threshold=config.field.threshold,
            simplify_nfaces=gen.get("simplify_nfaces", 0) or None,
            refinement_steps=gen.refinement_steps,
            refinement_key=jax.random.key(config.seed),
            refinement_second_order=second_order,
        )
        out.append((vertices, faces, {"num_queries": int(queries), **times}))
    return out


def mesh_split(
    config,
    workdir: str,
    split: str,
    field_fn: Callable,
    comments=(),
    second_order: bool = True,
    picture_input: Optional[Callable] = None,
    batched_logit_fn: Optional[Callable] = None,
) -> List[Dict]:
    """Meshes every object of `split` (at most `config.generate.max_objects`).

    For each object: its deterministic evaluation input
    (`datasets.eval_inputs`), `field_fn(index, data, inputs) -> (logit_fn,
    extra)` (the method encodes the input once there; `extra` arrays are saved
    beside the input), the mesh by `extract`, written with the PLY header
    `comments`. The first object of each category (up to
    `generate.num_pictures`) goes into `workdir/reconstruction.png`.

    With `batched_logit_fn` (`(codes, points [B, N, 3]) -> logits [B, N]`) and
    `generate.batch_objects` > 1, MISE meshes that many objects at once
    (`extract_batched`: the same meshes, one jitted call per level); then
    `field_fn` must return `(logit_fn, extra, codes)`, the object's codes
    without the batch axis. The last group is padded with copies of its last
    object, so one program serves every group.

    Args:
      picture_input: `(inputs, extra) -> what the picture shows as the input`
        (default: the input itself).

    Returns:
      One record per object: category, model, mesh path, seconds, query count.
    """
    gen = config.generate
    ds = datasets.from_config(config.data, split, cache=False)
    count = len(ds) if not gen.max_objects else min(gen.max_objects, len(ds))
    if gen.method not in ("mise", "dense"):
        raise ValueError(f"unknown generate.method {gen.method!r}; use 'mise' or 'dense'")
    input_type = datasets.input_type_of(config.data)
    group = int(gen.get("batch_objects", 1) or 1)
    if batched_logit_fn is None or gen.method != "mise":
        group = 1
    records, pictures = [], []
    bar = tqdm.tqdm(total=count, desc=f"generate {split}", unit="mesh", disable=not config.logging.progress)
    for start in range(0, count, group):
        indices = list(range(start, min(start + group, count)))
        objects = []
        t0 = time.perf_counter()
        for i in indices:
            data = ds.load(i)
            inputs = datasets.eval_inputs(
                data, i, config.data.pointcloud_n, config.data.pointcloud_noise, config.seed, input_type
            )
            objects.append((i, data, inputs, field_fn(i, data, inputs)))
        if group == 1:
            meshes = [extract(config, objects[0][3][0], second_order)]
        else:
            fields = [o[3] for o in objects] + [objects[-1][3]] * (group - len(objects))
            codes = jax.tree.map(lambda *x: jax.numpy.stack(x), *[f[2] for f in fields])
            meshes = extract_batched(config, batched_logit_fn, codes, [f[0] for f in fields], second_order)
        seconds = (time.perf_counter() - t0) / len(objects)
        for (i, data, inputs, field), (vertices, faces, stats) in zip(objects, meshes):
            extra = field[1]
            item = ds.items[i]
            out_dir = os.path.join(workdir, "meshes", item.category)
            path = os.path.join(out_dir, f"{item.model}.ply")
            meshing.write_mesh(path, vertices, faces, comments=comments)
            np.savez_compressed(os.path.join(out_dir, f"{item.model}_inputs.npz"), inputs=inputs, **extra)
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
                shown_input = picture_input(inputs, extra) if picture_input else inputs
                pictures.append((ds.category_name(item.category), shown_input, vertices, faces, data))
            bar.update(1)
    bar.close()
    if pictures:
        write_comparison_picture(
            os.path.join(workdir, "reconstruction.png"),
            pictures,
            input_label=INPUT_LABELS[input_type],
            input_type=input_type,
        )
    return records


INPUT_LABELS = {"pointcloud": "input", "voxels": "voxels", "img": "image", None: "encoded pts"}


def render_input(inputs, image_size: int = 200, input_type: Optional[str] = None):
    """A picture of a model input: a point cloud [n, 3], a voxel grid [R, R, R]
    or (with input_type 'img') an RGB image [H, W, 3] in [0, 1], scaled up
    (nearest neighbour) to fit `image_size`."""
    inputs = np.asarray(inputs)
    if input_type == "img":
        scale = max(1, image_size // max(inputs.shape[:2]))
        rgb = np.rint(np.clip(inputs, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    if inputs.ndim == 3:
        vertices, faces = binvox.voxels_to_mesh(inputs > 0.5)
        return vis.render_mesh(vertices, faces, image_size=image_size)
    return vis.render_points(inputs.reshape(-1, 3), None, image_size=image_size)


def write_comparison_picture(
    path: str, objects, image_size: int = 200, input_label: str = "input", input_type: Optional[str] = None
) -> None:
    """One row per object: input (points, voxels or image), reconstruction, ground-truth surface."""
    rows, labels = [], []
    for name, inputs, vertices, faces, data in objects:
        rows.append(
            [
                render_input(inputs, image_size=image_size, input_type=input_type),
                vis.render_mesh(vertices, faces, image_size=image_size),
                vis.render_points(data["surface_points"], data["surface_normals"], image_size=image_size),
            ]
        )
        labels.append([f"{name} {input_label}", f"{name} ours", f"{name} truth"])
    vis.write_png(path, vis.image_grid(rows, labels=labels))


REPORTED = ("iou", "chamfer_l1", "normal_consistency", "fscore")
_JITTER_STREAM = 8191  # Keeps the jitter's random stream apart from the surface sampling's.


def load_mesh(path: str):
    """Reads a mesh file, returning (vertices [V,3], faces [F,3]) or raising a clear error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"mesh {path!r} does not exist; run --mode generate first")
    mesh = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def iou_query_points(config, data, index: int):
    """The IoU points of one object with the original's jitter, and their occupancies.

    Returns:
      (points float32 [K, 3], occupancies [K]): `datasets.iou_points(data)`, the
      points jittered by `config.eval.iou_jitter` * N(0, 1) drawn from
      (config.seed, index) (the same on every call).
    """
    points, occ = datasets.iou_points(data)
    rng = np.random.default_rng([config.seed, index, _JITTER_STREAM])
    return metrics.jitter_points(points, config.eval.iou_jitter, rng), occ


def _other(convention: str) -> str:
    return next(c for c in metrics.UNDEFINED_METRICS if c != convention)


def _json_safe(obj):
    """`obj` with every non-finite float replaced by None (JSON null)."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _means(rows: List[Dict], keys) -> Dict[str, float]:
    return {k: metrics.nan_mean([r[k] for r in rows])[0] for k in keys}


def evaluate_meshes(config, workdir: str, records: List[Dict]) -> Dict:
    """Computes metrics for the meshes in `records` (from `mesh_split`).

    Returns:
      The dict written to `workdir/metrics.json` (a mean that no object has a
      value for is None there, and its objects are counted in `left_out`).

    Raises:
      ValueError: a bad `config.eval` value, or no records.
    """
    metrics.check_eval_config(config.eval)
    convention = config.eval.undefined_metrics
    other = _other(convention)
    split = config.generate.split
    ds = datasets.from_config(config.data, split, cache=False)
    index = {(it.category, it.model): i for i, it in enumerate(ds.items)}
    rows = []
    for rec in tqdm.tqdm(records, desc=f"evaluate {split}", unit="mesh", disable=not config.logging.progress):
        i = index[(rec["category"], rec["model"])]
        data = ds.load(i)
        vertices, faces = load_mesh(os.path.join(workdir, rec["mesh"]))
        points_iou, occ_iou = iou_query_points(config, data, i)
        original = metrics.mesh_metrics(
            vertices,
            faces,
            points_iou,
            occ_iou,
            data["surface_points"],
            data["surface_normals"],
            n_samples=config.eval.n_samples,
            rng=np.random.default_rng([config.seed, i]),
            fscore_threshold=config.eval.fscore_threshold,
            undefined="original",
            crop_to_gt_bbox=bool(config.eval.get("crop_to_gt_bbox", False)),
        )
        by_convention = {"original": original, "worst": metrics.worst_case(original)}
        for out in by_convention.values():
            out["chamfer_l1"] = out["chamfer_l1"] * metrics.CHAMFER_REPORT_SCALE
        row = {"category": rec["category"], "category_name": rec["category_name"], "model": rec["model"]}
        row["empty"] = int(metrics.is_empty(original))
        row.update({k: float(v) for k, v in by_convention[convention].items()})
        row.update({f"{k}_{other}": float(by_convention[other][k]) for k in REPORTED})
        rows.append(row)
    if not rows:
        raise ValueError(f"no meshes to evaluate in split {split!r}")
    keys = list(rows[0])
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    summary.write_text(os.path.join(workdir, "eval_meshes.csv"), table.getvalue())
    means = summarize(rows, convention)
    result = {
        **{k: means[k] for k in REPORTED},
        "split": split,
        "iou_jitter": float(config.eval.iou_jitter),
        "crop_to_gt_bbox": bool(config.eval.get("crop_to_gt_bbox", False)),
        **{k: v for k, v in means.items() if k not in REPORTED},
    }
    summary.write_json(os.path.join(workdir, "metrics.json"), result)
    return result


def summarize(rows: List[Dict], convention: str = "original") -> Dict:
    """The means of per-object rows as the original's `eval_meshes.py` takes them.

    Per-category means (pandas' groupby mean), then their mean; NaN skipped at both
    levels (a category with no value for a metric drops out of that mean).

    Args:
      rows: dicts with 'category', 'category_name', 'model', 'empty' (0/1), the
        REPORTED keys in `convention` and `<key>_<other>` in the other one (as
        `evaluate_meshes` makes them; other numeric keys are averaged too).
      convention: the rows' `config.eval.undefined_metrics`.

    Returns:
      dict (JSON-ready: a mean with no value is None) with the REPORTED means,
      'num_objects', 'num_empty', 'left_out' (per REPORTED key, the objects whose
      value is NaN), 'undefined_metrics', 'averaging', 'chamfer_l1_scale',
      'conventions' ({'original': means, 'worst': means}), 'object_mean',
      'per_category' and 'all_metrics_class_mean'.
    """
    metrics.check_undefined(convention, "convention")
    keys = list(rows[0])
    other = _other(convention)
    numeric = [k for k in keys if k not in ("category", "category_name", "model", "empty")]
    per_category = {}
    for cat in sorted({r["category"] for r in rows}):
        sel = [r for r in rows if r["category"] == cat]
        per_category[sel[0]["category_name"]] = dict(
            _means(sel, numeric),
            num_objects=len(sel),
            num_empty=sum(r["empty"] for r in sel),
            left_out={k: metrics.nan_mean([r[k] for r in sel])[1] for k in REPORTED},
        )
    class_mean = {k: metrics.nan_mean([c[k] for c in per_category.values()])[0] for k in numeric}
    conventions = {
        convention: {k: class_mean[k] for k in REPORTED},
        other: {k: class_mean[f"{k}_{other}"] for k in REPORTED},
    }
    result = {
        **{k: class_mean[k] for k in REPORTED},
        "num_objects": len(rows),
        "num_empty": sum(r["empty"] for r in rows),
        "left_out": {k: metrics.nan_mean([r[k] for r in rows])[1] for k in REPORTED},
        "undefined_metrics": convention,
        "averaging": "mean over categories of per-object means, NaN skipped (as the original tables)",
        "chamfer_l1_scale": metrics.CHAMFER_REPORT_SCALE,
        "conventions": {c: conventions[c] for c in metrics.UNDEFINED_METRICS},
        "object_mean": _means(rows, numeric),
        "per_category": per_category,
        "all_metrics_class_mean": class_mean,
    }
    return _json_safe(result)


def evaluate_generation(config, workdir: str, record: Dict) -> Dict:
    """The metrics of a finished generation's meshes (`record`: `trainer.load_generation`).

    Writes `metrics.json` (with the checkpoint and step that made the meshes)
    and `eval_meshes.csv`, and logs the means.
    """
    result = evaluate_meshes(config, workdir, record["objects"])
    # The checkpoint that made the meshes these metrics measure.
    result.update(checkpoint=record["checkpoint"], checkpoint_step=record["checkpoint_step"])
    summary.write_json(os.path.join(workdir, "metrics.json"), result)
    shown = {k: None if result[k] is None else round(result[k], 4) for k in REPORTED}
    left_out = {k: n for k, n in result["left_out"].items() if n}
    logger.info(
        "%s metrics over %d objects (Chamfer-L1 x10; %d empty meshes; left out of the means (%s "
        "convention): %s): %s -> %s",
        result["split"],
        result["num_objects"],
        result["num_empty"],
        result["undefined_metrics"],
        json.dumps(left_out) if left_out else "none",
        json.dumps(shown),
        os.path.join(workdir, "metrics.json"),
    )
    return result
