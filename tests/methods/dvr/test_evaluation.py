"""DVR's evaluation against the exact shape: the metrics, their file, its order of work and the
values the original leaves undefined (an empty mesh, an F-score with precision = recall = 0)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
import trimesh

from implicit_fields import trainer
from implicit_fields.methods.dvr import evaluation, generation, task


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


MESHES = {
    "empty": trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), int), process=False),
    "far": trimesh.creation.icosphere(subdivisions=1, radius=0.05).apply_translation([3.0, 0, 0]),
}


@pytest.mark.parametrize("convention", ["original", "worst"])
@pytest.mark.parametrize("kind", sorted(MESHES))
def test_undefined_mesh_metrics_follow_the_convention(dvr_config, tmp_path, convention, kind):
    config = dvr_config
    config.eval.undefined_metrics = convention
    config.eval.n_points, config.eval.n_samples = 2000, 2000
    MESHES[kind].export(tmp_path / "mesh.ply")
    model = task.create_model(config)
    state = task.init_state(config, model, jax.random.key(0))  # Untrained: only the mesh matters here.
    result = evaluation.evaluate(config, str(tmp_path), model=model, state=state)
    text = (tmp_path / "metrics.json").read_text()

    def no_constants(name):
        raise AssertionError(f"{name} in metrics.json")

    assert json.loads(text, parse_constant=no_constants) == result  # Standard JSON: null, not NaN.
    other = "worst" if convention == "original" else "original"
    keys = ("mesh_iou", "chamfer_l1", "normal_consistency", "fscore")
    by = {convention: {k: result[k] for k in keys}, other: {k: result[f"{k}_{other}"] for k in keys}}
    assert result["empty_mesh"] == (kind == "empty") and result["undefined_metrics"] == convention
    assert by["original"]["mesh_iou"] == by["worst"]["mesh_iou"] == 0.0
    assert by["original"]["fscore"] is None and by["worst"]["fscore"] == 0.0  # 0 / 0 in the original
    if kind == "empty":  # The original's EMPTY_PCL_DICT: no Chamfer-L1, normals -1.
        assert by["original"]["chamfer_l1"] is None and by["original"]["normal_consistency"] == -1.0
        assert (
            by["worst"]["chamfer_l1"] == pytest.approx(10 * np.sqrt(3))
            and by["worst"]["normal_consistency"] == 0
        )
    else:
        assert by["original"]["chamfer_l1"] == by["worst"]["chamfer_l1"] > 20.0
    assert result["held_out_mask_iou"] is None  # No generation.json: nothing to average.


@pytest.mark.parametrize("value", ["zero", "", None])
def test_a_bad_convention_names_its_key(dvr_config, tmp_path, value):
    dvr_config.eval.undefined_metrics = value
    MESHES["far"].export(tmp_path / "mesh.ply")
    with pytest.raises(ValueError, match="config.eval.undefined_metrics="):
        evaluation.evaluate(dvr_config, str(tmp_path))


def test_dvr_eval_needs_a_finished_generation_of_its_own_checkpoint(dvr_run, tmp_path):
    config, trained_workdir, _ = dvr_run
    workdir = str(tmp_path / "copy")
    shutil.copytree(trained_workdir, workdir)
    config.eval.n_points, config.eval.n_samples = 2000, 2000
    generation.generate(config, workdir)
    path = os.path.join(workdir, "generation.json")
    record = json.load(open(path))
    _, _, meta = trainer.restore(config, workdir, config.generate.checkpoint)
    assert record["complete"] and record["checkpoint_step"] == meta["step"]
    assert evaluation.evaluate(config, workdir)["step"] == meta["step"]
    with open(path, "w") as f:
        json.dump(dict(record, complete=False), f)
    with pytest.raises(ValueError, match="did not finish"):
        evaluation.evaluate(config, workdir)
    with open(path, "w") as f:
        json.dump(dict(record, checkpoint_step=meta["step"] + 1), f)
    with pytest.raises(ValueError, match="made from another checkpoint"):
        evaluation.evaluate(config, workdir)
