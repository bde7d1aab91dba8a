"""DVR's evaluation against the exact shape of a built-in scene.

The field's IoU on uniform points of the padded cube; the mesh's IoU,
Chamfer-L1 (x10), normal consistency and F-score against the exact surface
(`metrics.mesh_metrics`); the held-out views' mask IoU and PSNR inside the
mask (from `generation.json`). Written to `WORKDIR/metrics.json`.

Mesh metrics the original leaves undefined (an empty mesh, an F-score with
precision = recall = 0; see `implicit_fields.metrics`) follow
`config.eval.undefined_metrics` ('original': null in metrics.json, normal
consistency -1 for an empty mesh; 'worst': the worst values); metrics.json
also holds the other convention's as `<metric>_<other>` and `empty_mesh`.
A value that cannot be computed (no held-out views) is null too.
"""

import json
import logging
import math
import os
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import trimesh

from implicit_fields import losses, metrics, summary, trainer
from implicit_fields.data import onet_format
from implicit_fields.methods.dvr import model as dvr_model
from implicit_fields.methods.dvr import task

logger = logging.getLogger(__name__)


def evaluate(config, workdir: str, model=None, state=None) -> Dict[str, Any]:
    """Field and mesh metrics against the exact shape, plus the held-out views; writes metrics.json.

    Without `model` and `state`, the run's checkpoint is restored, and the
    generation must be finished and made from that same checkpoint (else a
    ValueError says to generate again), so that the mesh and the field measured
    here are one model. With them, `mesh.ply` is measured as it is.
    """
    metrics.check_eval_config(config.eval)
    mesh_path = os.path.join(workdir, "mesh.ply")
    gen_path = os.path.join(workdir, "generation.json")
    record = None
    if state is None:
        record = trainer.read_generation(gen_path)
        trainer.check_meshes(record, [mesh_path], gen_path)
        model, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
        if meta.get("step") != record["checkpoint_step"]:
            raise ValueError(
                f"{gen_path}: the mesh was made from the checkpoint of step {record['checkpoint_step']}, "
                f"but the run's {config.generate.checkpoint} checkpoint is now step {meta.get('step')}; "
                f"rerun --mode generate"
            )
    elif not os.path.exists(mesh_path):
        raise FileNotFoundError(f"{mesh_path}: does not exist; run --mode generate first")
    folder = task.ensure_scene(config.data, progress=False)
    shape = onet_format.load_shape(folder)
    logit_fn, _ = dvr_model.make_field_fns(model)
    rng = np.random.default_rng(config.seed)
    half = 0.5 * (1.0 + config.field.padding)
    points = rng.uniform(-half, half, size=(config.eval.n_points, 3))
    occ_gt = shape.contains(points)
    fn = jax.jit(lambda p: logit_fn(state.params, p))
    logits = np.concatenate(
        [
            np.asarray(fn(jnp.asarray(points[i : i + 50_000], jnp.float32)))
            for i in range(0, len(points), 50_000)
        ]
    )
    occ_pred = logits >= losses.probability_to_logit(config.field.threshold)
    field_iou = metrics.occupancy_iou(occ_pred, occ_gt)
    mesh = trimesh.load(mesh_path, force="mesh", process=False)
    surface_rng = np.random.default_rng(config.seed + 1)
    gt_points, gt_normals = shape.sample_surface(config.eval.n_samples, surface_rng)
    convention = config.eval.undefined_metrics
    other = next(c for c in metrics.UNDEFINED_METRICS if c != convention)
    original = metrics.mesh_metrics(
        np.asarray(mesh.vertices),
        np.asarray(mesh.faces),
        points,
        occ_gt,
        gt_points,
        gt_normals,
        n_samples=config.eval.n_samples,
        rng=config.seed,
        fscore_threshold=config.eval.fscore_threshold,
        undefined="original",
    )
    by_convention = {"original": original, "worst": metrics.worst_case(original)}
    for out in by_convention.values():
        out["chamfer_l1"] = out["chamfer_l1"] * metrics.CHAMFER_REPORT_SCALE
    m = by_convention[convention]
    held_out = []
    if record is None and os.path.exists(gen_path):
        try:
            record = trainer.read_generation(gen_path)
        except ValueError as e:
            logger.warning("held-out views left out: %s", e)
    if record is not None:
        held_out = record.get("held_out_views", [])

    def mean(key):
        values = [v[key] for v in held_out if v.get(key) is not None]
        return float(np.mean(values)) if values else float("nan")

    result = {
        "field_iou": float(field_iou),
        "mesh_iou": m["iou"],
        "chamfer_l1": m["chamfer_l1"],
        "normal_consistency": m["normal_consistency"],
        "fscore": m["fscore"],
        "held_out_mask_iou": mean("mask_iou"),
        "held_out_psnr_in_mask": mean("psnr_in_mask"),
        "held_out_psnr": mean("psnr"),
        "held_out_ssim": mean("ssim"),
        "step": int(jax.device_get(state.step)),
        "chamfer_scale": metrics.CHAMFER_REPORT_SCALE,
        "empty_mesh": metrics.is_empty(original),
        "undefined_metrics": convention,
        f"mesh_iou_{other}": by_convention[other]["iou"],
        **{f"{k}_{other}": by_convention[other][k] for k in ("chamfer_l1", "normal_consistency", "fscore")},
    }
    # JSON has no NaN: a value with no definition is null.
    result = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.items()}
    path = os.path.join(workdir, "metrics.json")
    summary.write_json(path, result)
    if result["empty_mesh"]:
        logger.warning("the mesh %s is empty (%s convention for its metrics)", mesh_path, convention)
    shown = {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}
    logger.info("DVR metrics against the exact shape (Chamfer-L1 x10): %s -> %s", json.dumps(shown), path)
    return result
