"""Occupancy Flow's evaluation: IoU and Chamfer-L1 per frame, and the correspondence error.

For each window of the finished generation (`meshes/generation.json`), as the
original's `eval.py` with `eval_mesh_iou` and `eval_mesh_correspondences`:

* per frame, the mesh's IoU on the frame's `points_seq` points (the first
  `eval.iou_points`, jittered by 1e-4 as the original's float16 loader) and its
  Chamfer-L1 against the frame's `pcl_seq` surface points (the first
  `eval.surface_points`), with `eval.n_samples` points on the mesh
  (`metrics.mesh_metrics`, ONet's definitions; Chamfer-L1 reported x10);
* the correspondence error of each frame (`metrics.correspondence_errors`, the
  original's `eval_correspondences_mesh`): each frame-0 vertex matched to its
  nearest ground-truth point at frame 0, then the mean distance between the
  vertex and that point at every frame, in the data's units (not scaled);
* the baseline's meshes (MISE at every frame), where generated, by IoU and
  Chamfer-L1 alike; they have no correspondences.

Writes `metrics.json` (means over windows, per frame and overall, with the
checkpoint) and `eval_frames.csv` (one row per window and frame).
"""

import csv
import logging
import os
from typing import Dict, List

import numpy as np

from implicit_fields import metrics, summary, trainer
from implicit_fields.methods.oflow import generation, task

logger = logging.getLogger(__name__)


def _frame_metrics(config, vertices, faces, points, occ, surface, seed: int) -> Dict[str, float]:
    m = metrics.mesh_metrics(
        vertices,
        faces,
        points,
        occ,
        surface,
        None,
        n_samples=config.eval.n_samples,
        rng=seed,
        undefined=config.eval.undefined_metrics,
    )
    return {"iou": m["iou"], "chamfer_l1": m["chamfer_l1"] * metrics.CHAMFER_REPORT_SCALE}


def _truth(config, store, index: int):
    """Per frame: IoU points [T, N, 3] (jittered), occupancies [T, N] and surface points [T, M, 3]."""
    seq, start = store.sequence(index)
    rng = np.random.default_rng([int(config.seed), int(index), 20])
    pts, occ = [], []
    for i in range(config.data.length):
        n = seq.points(start + i)[0].shape[0]
        k = min(config.eval.iou_points, n) if config.eval.iou_points else n
        p, o = task.window_points(seq, start, i, np.arange(k))
        pts.append(p + np.float32(task.EVAL_JITTER) * rng.standard_normal(p.shape).astype(np.float32))
        occ.append(o >= 0.5)
    m = seq.num_pcl
    k = min(config.eval.surface_points, m) if config.eval.surface_points else m
    surface = task.window_pcl(seq, start, config.data.length, np.arange(k))
    return pts, occ, surface


def _nan_mean(values):
    values = np.asarray(values, np.float64)
    return None if not np.isfinite(values).any() else float(np.nanmean(values))


def evaluate(config, workdir: str) -> Dict:
    """Occupancy Flow's eval mode: the metrics of the meshes `generate` wrote (`metrics.json`)."""
    path = os.path.join(workdir, "meshes", "generation.json")
    record = trainer.read_generation(path)
    windows = record.get("windows")
    if not isinstance(windows, list) or not windows:
        raise ValueError(f"{path}: lists no meshes; rerun --mode generate")
    paths = [os.path.join(workdir, p) for w in windows for p in w["meshes"] + (w["baseline"] or [])]
    trainer.check_meshes(record, paths, path)
    dataset = task.load_split(config, record["split"], points=True)
    store = task.SequenceStore(dataset, points=True, windows=[w["window"] for w in windows])
    length = config.data.length
    rows: List[Dict] = []
    iou, cd, corr, b_iou, b_cd = [], [], [], [], []
    for w in windows:
        pts, occ, surface = _truth(config, store, w["window"])
        seed = int(w["window"])
        if w["num_faces"]:
            trajectory, faces = generation.load_trajectory(workdir, w["meshes"])
            errors = metrics.correspondence_errors(trajectory, surface)
        else:
            trajectory, faces = np.zeros((length, 0, 3)), np.zeros((0, 3), np.int64)
            errors = np.full(length, np.nan)
        baseline = None
        if w["baseline"]:
            baseline = [generation.load_trajectory(workdir, [p]) for p in w["baseline"]]
        w_iou, w_cd, w_biou, w_bcd = [], [], [], []
        for i in range(length):
            m = _frame_metrics(config, trajectory[i], faces, pts[i], occ[i], surface[i], seed)
            row = {
                "category": w["category"],
                "sequence": w["sequence"],
                "start_idx": w["start_idx"],
                "frame": i,
            }
            row.update(iou=m["iou"], chamfer_l1=m["chamfer_l1"], correspondence=float(errors[i]))
            w_iou.append(m["iou"])
            w_cd.append(m["chamfer_l1"])
            if baseline is not None:
                bv, bf = baseline[i]
                bm = _frame_metrics(config, bv[0], bf, pts[i], occ[i], surface[i], seed)
                row.update(baseline_iou=bm["iou"], baseline_chamfer_l1=bm["chamfer_l1"])
                w_biou.append(bm["iou"])
                w_bcd.append(bm["chamfer_l1"])
            rows.append(row)
        iou.append(w_iou)
        cd.append(w_cd)
        corr.append(errors)
        if baseline is not None:
            b_iou.append(w_biou)
            b_cd.append(w_bcd)

    def per_frame(values):
        if not values:
            return None
        a = np.asarray(values, np.float64)
        return [_nan_mean(a[:, i]) for i in range(a.shape[1])]

    result = {
        "iou": _nan_mean(iou),
        "chamfer_l1": _nan_mean(cd),
        "correspondence": _nan_mean(corr),
        "iou_frames": per_frame(iou),
        "chamfer_l1_frames": per_frame(cd),
        "correspondence_frames": per_frame(corr),
        "baseline_iou": _nan_mean(b_iou) if b_iou else None,
        # Occupancy Flow on the baseline's windows only (the like-for-like comparison).
        "iou_baseline_windows": _nan_mean(iou[: len(b_iou)]) if b_iou else None,
        "chamfer_l1_baseline_windows": _nan_mean(cd[: len(b_cd)]) if b_cd else None,
        "baseline_chamfer_l1": _nan_mean(b_cd) if b_cd else None,
        "baseline_iou_frames": per_frame(b_iou),
        "baseline_chamfer_l1_frames": per_frame(b_cd),
        "num_windows": len(windows),
        "num_baseline_windows": len(b_iou),
        "split": record["split"],
        "seconds_oflow_per_window": record.get("seconds_oflow_per_window"),
        "seconds_baseline_per_window": record.get("seconds_baseline_per_window"),
        "chamfer_l1_scale": metrics.CHAMFER_REPORT_SCALE,
        "correspondence_unit": "the data's units (the unit cube with padding), not scaled",
        "undefined_metrics": config.eval.undefined_metrics,
        "checkpoint": record["checkpoint"],
        "checkpoint_step": record["checkpoint_step"],
    }
    summary.write_json(os.path.join(workdir, "metrics.json"), result)
    with open(os.path.join(workdir, "eval_frames.csv.tmp"), "w", newline="", encoding="utf-8") as f:
        keys = list(rows[0])
        for r in rows:
            keys += [k for k in r if k not in keys]
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(os.path.join(workdir, "eval_frames.csv.tmp"), os.path.join(workdir, "eval_frames.csv"))
    logger.info(
        "%s: IoU %.4f, Chamfer-L1 x10 %.4f, correspondence %.4f over %d windows (baseline IoU %s)",
        record["split"],
        result["iou"] or float("nan"),
        result["chamfer_l1"] or float("nan"),
        result["correspondence"] or float("nan"),
        len(windows),
        "n/a" if result["baseline_iou"] is None else f"{result['baseline_iou']:.4f}",
    )
    return result
