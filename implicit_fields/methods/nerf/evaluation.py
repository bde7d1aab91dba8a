"""NeRF's evaluation: held-out views and, for a scene with its exact shape, the mesh.

Held-out PSNR and SSIM of whole views (on the white background), PSNR inside
the true mask and mask IoU (predicted mask: opacity >= 0.5), from
`generation.json`; the mesh's IoU, Chamfer-L1 (x10), normal consistency and
F-score against the exact shape when the scene folder has `shape.json` (the
built-in scenes), as DVR's evaluation. Written to `WORKDIR/metrics.json`;
values with no definition are null.
"""

import json
import logging
import math
import os
from typing import Any, Dict

import jax
import numpy as np
import trimesh

from implicit_fields import metrics, summary, trainer
from implicit_fields.data import onet_format, scenes

logger = logging.getLogger(__name__)


def evaluate(config, workdir: str, model=None, state=None) -> Dict[str, Any]:
    """Held-out view metrics and mesh metrics against the exact shape; writes metrics.json.

    The generation must be finished (`--mode generate`); without `state` it must have
    been made from the run's current checkpoint.
    """
    del model
    metrics.check_eval_config(config.eval)
    mesh_path = os.path.join(workdir, "mesh.ply")
    gen_path = os.path.join(workdir, "generation.json")
    record = trainer.read_generation(gen_path)
    trainer.check_meshes(record, [mesh_path], gen_path)
    if state is None:
        _, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
        if meta.get("step") != record["checkpoint_step"]:
            raise ValueError(
                f"{gen_path}: made from the checkpoint of step {record['checkpoint_step']}, but the run's "
                f"{config.generate.checkpoint} checkpoint is now step {meta.get('step')}; "
                "rerun --mode generate"
            )
    held_out = record.get("held_out_views", [])

    def mean(key):
        vals = [v[key] for v in held_out if v.get(key) is not None]
        return float(np.mean(vals)) if vals else float("nan")

    result = {
        "held_out_psnr": mean("psnr"),
        "held_out_ssim": mean("ssim"),
        "held_out_psnr_in_mask": mean("psnr_in_mask"),
        "held_out_mask_iou": mean("mask_iou"),
        "held_out_views": len(held_out),
        "step": int(jax.device_get(state.step)),
        "chamfer_scale": metrics.CHAMFER_REPORT_SCALE,
    }
    folder = scenes.ensure_scene(config.data, progress=False)
    if os.path.exists(os.path.join(folder, "shape.json")):
        shape = onet_format.load_shape(folder)
        rng = np.random.default_rng(config.seed)
        half = 0.5 * (1.0 + config.field.padding)
        points = rng.uniform(-half, half, size=(config.eval.n_points, 3))
        gt_points, gt_normals = shape.sample_surface(
            config.eval.n_samples, np.random.default_rng(config.seed + 1)
        )
        mesh = trimesh.load(mesh_path, force="mesh", process=False)
        m = metrics.mesh_metrics(
            np.asarray(mesh.vertices),
            np.asarray(mesh.faces),
            points,
            shape.contains(points),
            gt_points,
            gt_normals,
            n_samples=config.eval.n_samples,
            rng=config.seed,
            fscore_threshold=config.eval.fscore_threshold,
            undefined="original",
        )
        if config.eval.undefined_metrics == "worst":
            m = metrics.worst_case(m)
        result.update(
            mesh_iou=m["iou"],
            chamfer_l1=m["chamfer_l1"] * metrics.CHAMFER_REPORT_SCALE,
            normal_consistency=m["normal_consistency"],
            fscore=m["fscore"],
            empty_mesh=metrics.is_empty(m),
            undefined_metrics=config.eval.undefined_metrics,
        )
    else:
        logger.info("%s has no shape.json (exact shape): mesh metrics left out", folder)
    result = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.items()}
    path = os.path.join(workdir, "metrics.json")
    summary.write_json(path, result)
    shown = {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}
    logger.info("NeRF metrics (Chamfer-L1 x10): %s -> %s", json.dumps(shown), path)
    return result
