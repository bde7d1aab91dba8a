"""Mesh evaluation over a split, exactly as the original `eval_meshes.py`.

Per object: IoU of the mesh's inside test on the 100k `points.npz` points
against their ground-truth occupancy (only the uniform ones, the first
`num_uniform`, where points.npz says so: `datasets.iou_points`); Chamfer-L1, normal consistency and
F-score@1% between 100k points sampled on the mesh and the 100k
`pointcloud.npz` points. Results go to `eval_meshes.csv` (per object) and
`metrics.json` (mean over categories, as the papers' tables, plus per-category
and per-object means). Chamfer-L1 is reported x10, as the papers do.
"""

import csv
import io
import json
import logging
import os
from typing import Dict, List

import numpy as np
import tqdm
import trimesh

from implicit_fields import metrics, summary
from implicit_fields.data import datasets

logger = logging.getLogger(__name__)

REPORTED = ("iou", "chamfer_l1", "normal_consistency", "fscore")


def load_mesh(path: str):
    """Reads a mesh file, returning (vertices [V,3], faces [F,3]) or raising a clear error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"mesh {path!r} does not exist; run --mode generate first")
    mesh = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def evaluate_meshes(config, workdir: str, records: List[Dict]) -> Dict:
    """Computes metrics for the meshes in `records` (from `generation.generate_meshes`).

    Returns:
      The dict written to `workdir/metrics.json`.
    """
    split = config.generate.split
    ds = datasets.from_config(config.data, split, cache=False)
    index = {(it.category, it.model): i for i, it in enumerate(ds.items)}
    rows = []
    for rec in tqdm.tqdm(records, desc=f"evaluate {split}", unit="mesh", disable=not config.logging.progress):
        i = index[(rec["category"], rec["model"])]
        data = ds.load(i)
        vertices, faces = load_mesh(os.path.join(workdir, rec["mesh"]))
        points_iou, occ_iou = datasets.iou_points(data)
        out = metrics.mesh_metrics(
            vertices,
            faces,
            points_iou,
            occ_iou,
            data["surface_points"],
            data["surface_normals"],
            n_samples=config.eval.n_samples,
            rng=np.random.default_rng([config.seed, i]),
            fscore_threshold=config.eval.fscore_threshold,
        )
        row = {"category": rec["category"], "category_name": rec["category_name"], "model": rec["model"]}
        row.update({k: float(v) for k, v in out.items()})
        row["chamfer_l1"] = row["chamfer_l1"] * metrics.CHAMFER_REPORT_SCALE
        rows.append(row)
    if not rows:
        raise ValueError(f"no meshes to evaluate in split {split!r}")
    keys = list(rows[0])
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    summary.write_text(os.path.join(workdir, "eval_meshes.csv"), table.getvalue())
    numeric = [k for k in keys if k not in ("category", "category_name", "model")]
    per_category = {}
    for cat in sorted({r["category"] for r in rows}):
        sel = [r for r in rows if r["category"] == cat]
        per_category[sel[0]["category_name"]] = dict(
            {k: float(np.mean([r[k] for r in sel])) for k in numeric}, num_objects=len(sel)
        )
    result = {k: float(np.mean([c[k] for c in per_category.values()])) for k in numeric}
    result = {
        **{k: result[k] for k in REPORTED},
        "split": split,
        "num_objects": len(rows),
        "averaging": "mean over categories of per-object means (as the original tables)",
        "chamfer_l1_scale": metrics.CHAMFER_REPORT_SCALE,
        "object_mean": {k: float(np.mean([r[k] for r in rows])) for k in numeric},
        "per_category": per_category,
        "all_metrics_class_mean": result,
    }
    summary.write_json(os.path.join(workdir, "metrics.json"), result)
    return result


def evaluate(config, workdir: str) -> Dict:
    """ONet's eval mode: the metrics of the meshes `generate` wrote (`metrics.json`, `eval_meshes.csv`)."""
    result = evaluate_meshes(config, workdir, load_generation_records(workdir))
    shown = {k: round(result[k], 4) for k in REPORTED}
    logger.info(
        "%s metrics over %d objects (Chamfer-L1 x10): %s -> %s",
        result["split"],
        result["num_objects"],
        json.dumps(shown),
        os.path.join(workdir, "metrics.json"),
    )
    return result


def load_generation_records(workdir: str) -> List[Dict]:
    """The records `generation.generate_meshes` wrote to `workdir/meshes/generation.json`."""
    path = os.path.join(workdir, "meshes", "generation.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist; run --mode generate first")
    with open(path) as f:
        return json.load(f)
