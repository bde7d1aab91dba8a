"""The whole job on the tiny config: train -> meshes (PLY) + picture (PNG) -> metrics.json."""

import json
import os

import numpy as np
import pytest
import trimesh

from experiments import main
from implicit_fields import vis


def test_train_generate_eval_writes_mesh_picture_and_metrics(tiny_config, tmp_path):
    tiny_config.train.num_steps = 4
    workdir = str(tmp_path / "run")
    result = main.run(tiny_config, workdir, "all")
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    for key in ("iou", "chamfer_l1", "normal_consistency", "fscore"):
        assert key in metrics and np.isfinite(metrics[key]), key
        assert metrics[key] == pytest.approx(result[key])
    assert 0.0 <= metrics["iou"] <= 1.0 and 0.0 <= metrics["fscore"] <= 1.0
    assert metrics["split"] == "val" and metrics["num_objects"] == 2
    assert set(metrics["per_category"]) == {"chair", "mug"}
    records = json.load(open(os.path.join(workdir, "meshes", "generation.json")))
    assert len(records) == 2
    for rec in records:
        mesh = trimesh.load(os.path.join(workdir, rec["mesh"]), process=False)
        assert len(mesh.faces) == rec["num_faces"]
        if len(mesh.vertices):
            assert np.abs(mesh.vertices).max() <= 0.55 + 1e-5
    image = vis.read_png(os.path.join(workdir, "reconstruction.png"))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 3 * 100
    assert image.std() > 5  # not a blank canvas
    rows = open(os.path.join(workdir, "eval_meshes.csv")).read().strip().splitlines()
    assert len(rows) == 1 + 2 and rows[0].startswith("category,category_name,model,")


def test_generate_without_a_checkpoint_is_a_clear_error(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main.run(tiny_config, str(tmp_path / "empty"), "generate")
    with pytest.raises(FileNotFoundError, match="run --mode generate first"):
        main.run(tiny_config, str(tmp_path / "empty"), "eval")
