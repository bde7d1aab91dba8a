"""DVR's evaluation against the exact shape: the metrics, their file, and its order of work."""

import json
import os

import numpy as np
import pytest

from implicit_fields.methods.dvr import evaluation, generation


def test_evaluation_needs_the_generated_mesh(dvr_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="run --mode generate first"):
        evaluation.evaluate(dvr_config, str(tmp_path))


def test_metrics_of_the_trained_scene(dvr_run):
    config, workdir, _ = dvr_run
    generation.generate(config, workdir)
    result = evaluation.evaluate(config, workdir)
    stored = json.load(open(os.path.join(workdir, "metrics.json")))
    assert stored == json.loads(json.dumps(result))
    for key in ("field_iou", "mesh_iou", "fscore", "held_out_mask_iou"):
        assert 0.0 <= stored[key] <= 1.0, key
    assert np.isfinite(stored["chamfer_l1"]) and stored["chamfer_scale"] == 10.0
    held_out = json.load(open(os.path.join(workdir, "generation.json")))["held_out_views"]
    assert stored["held_out_mask_iou"] == pytest.approx(np.mean([v["mask_iou"] for v in held_out]))
