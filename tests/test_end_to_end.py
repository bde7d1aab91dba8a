"""The whole job for every method's tiny config: train -> meshes (PLY) + picture (PNG) -> metrics.json.

One parametrised test over `experiment_configs.TINY`: `trainer.run(config,
workdir, 'all')`, as `python -m experiments.main --config ...:tiny` runs it.
"""

import json
import os

import numpy as np
import pytest
import trimesh

import experiment_configs
import run_probes
from implicit_fields import checkpointing, meshing, trainer, vis

# The files each method's run leaves: (meshes, picture, metrics keys that must be finite).
OUTPUTS = {
    "onet": (
        "meshes/generation.json",
        "reconstruction.png",
        ("iou", "chamfer_l1", "normal_consistency", "fscore"),
    ),
    "convonet": (
        "meshes/generation.json",
        "reconstruction.png",
        ("iou", "chamfer_l1", "normal_consistency", "fscore"),
    ),
    "dvr": ("mesh.ply", "renderings.png", ("field_iou", "mesh_iou", "chamfer_l1", "held_out_mask_iou")),
}


def _meshes(workdir, method):
    if method == "dvr":
        return [trimesh.load(os.path.join(workdir, "mesh.ply"), process=False, force="mesh")]
    record = json.load(open(os.path.join(workdir, "meshes", "generation.json")))
    assert record["complete"] and record["checkpoint"] in ("best", "checkpoints")
    records = record["objects"]
    for r in records:  # Each mesh names the checkpoint that made it.
        comment = f"implicit_fields checkpoint {record['checkpoint']} step {record['checkpoint_step']}"
        assert comment in meshing.read_ply_comments(os.path.join(workdir, r["mesh"]))
    meshes = [trimesh.load(os.path.join(workdir, r["mesh"]), process=False, force="mesh") for r in records]
    assert [len(m.faces) for m in meshes] == [r["num_faces"] for r in records]
    return meshes


@pytest.mark.parametrize("spec", experiment_configs.TINY)
def test_every_methods_tiny_config_trains_meshes_and_evaluates(spec, tiny_dataset, tmp_path):
    config = experiment_configs.load(spec)
    if config.method in ("onet", "convonet"):
        config.data.path = tiny_dataset
        if config.data.get("input_type") == "img":  # the shared dataset gets small renders
            config.data.img_n_views = 3
            config.data.builtin_img_resolution = 12
    else:
        config.data.path = str(tmp_path / "scene")
    workdir = str(tmp_path / "run")
    with run_probes.recording_lead_first() as prepared:
        result = trainer.run(config, workdir, "all")
    # The data is prepared by one process first (multi-host runs), before anything else waits.
    assert prepared[:1] == (["scene"] if config.method == "dvr" else ["dataset"])

    mesh_file, picture, keys = OUTPUTS[config.method]
    with open(os.path.join(workdir, "metrics.json")) as f:
        stored = json.load(f)
    for key in keys:
        # Every object left out, as the original's NaN.
        if stored[key] is None and config.method in ("onet", "convonet"):
            assert stored["left_out"][key] == stored["num_objects"] and result[key] is None, key
            continue
        assert np.isfinite(stored[key]), key
        assert stored[key] == pytest.approx(result[key])
    for key in [k for k in keys if "iou" in k] + (["fscore"] if "fscore" in keys else []):
        assert stored[key] is None or 0.0 <= stored[key] <= 1.0, key
    assert os.path.exists(os.path.join(workdir, mesh_file))
    for mesh in _meshes(workdir, config.method):
        if len(mesh.vertices):
            assert np.abs(mesh.vertices).max() <= 0.5 * (1 + config.field.padding) + 1e-5
    image = vis.read_png(os.path.join(workdir, picture))
    assert image.ndim == 3 and image.shape[0] > 32 and image.std() > 5  # not a blank canvas
    logged = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in logged if "train/loss" in r][-1] == config.train.num_steps
    assert any(k.startswith("eval/") for r in logged for k in r)
    assert json.load(open(os.path.join(workdir, "config.json")))["method"] == config.method
    if config.method in ("onet", "convonet"):
        assert stored["split"] == "val" and stored["num_objects"] == 2
        assert set(stored["per_category"]) == {"chair", "mug"}
        rows = open(os.path.join(workdir, "eval_meshes.csv")).read().strip().splitlines()
        assert len(rows) == 1 + 2 and rows[0].startswith("category,category_name,model,")
    else:
        # Generated and evaluated from the best held-out model, as config.generate.checkpoint says.
        best = checkpointing.Checkpointer(os.path.join(workdir, "best")).latest_step()
        assert stored["step"] == best and 0 < best <= config.train.num_steps
