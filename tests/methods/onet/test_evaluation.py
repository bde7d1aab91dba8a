"""ONet's evaluation: the metrics of a split's meshes, with IoU on the uniform points only."""

import csv
import os

import numpy as np
import pytest
import trimesh

import experiment_configs
import prepared_meshes
from implicit_fields import inside_mesh, metrics
from implicit_fields.data import datasets, onet_format
from implicit_fields.methods.onet import evaluation


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_meshes.build(tmp_path_factory.mktemp("prepare"))


def test_iou_uses_the_uniform_points_only(prepared, tmp_path):
    out, report = prepared
    config = experiment_configs.load("onet.py:tiny")
    config.data.path, config.data.categories, config.data.input_type = str(out), (), "pointcloud"
    config.generate.split = "train"
    config.logging.progress = False
    ds = datasets.from_config(config.data, "train", cache=False)
    guess = trimesh.creation.icosphere(subdivisions=2, radius=0.3)  # The same guess for every object.
    records, expected, mixed = [], {}, {}
    for i, item in enumerate(ds.items):
        path = tmp_path / "meshes" / f"{item.model}.ply"
        path.parent.mkdir(exist_ok=True)
        guess.export(path)
        records.append(
            {
                "category": "real",
                "category_name": "real",
                "model": item.model,
                "mesh": os.path.relpath(path, tmp_path),
            }
        )
        with np.load(out / "real" / item.model / onet_format.POINTS_FILE) as f:
            n = int(f["num_uniform"])
        data = ds.load(i)
        assert data["num_uniform"] == n == 3000
        inside = inside_mesh.contains(guess.vertices, guess.faces, data["points"])
        expected[item.model] = metrics.occupancy_iou(inside[:n], data["occupancies"][:n])
        mixed[item.model] = metrics.occupancy_iou(inside, data["occupancies"])
        # The validation IoU points are drawn from the uniform ones too.
        pts, _ = datasets.eval_query_points(data, i, 500)
        uniform = {tuple(p) for p in data["points"][:n].tolist()}
        assert all(tuple(p) in uniform for p in pts.tolist())
    evaluation.evaluate_meshes(config, str(tmp_path), records)
    with open(tmp_path / "eval_meshes.csv") as f:
        rows = {r["model"]: float(r["iou"]) for r in csv.DictReader(f)}
    for model, iou in expected.items():
        assert rows[model] == pytest.approx(iou, abs=1e-9)
    assert any(abs(expected[m] - mixed[m]) > 0.01 for m in expected)  # The restriction matters.
