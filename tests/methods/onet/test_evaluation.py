"""ONet's evaluation: the metrics of a split's meshes (IoU on the uniform points only, with the
original's jitter), the edge cases the original leaves undefined, and the means that skip them."""

import csv
import json
import math
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


def _config(out, **eval_options):
    config = experiment_configs.load("onet.py:tiny")
    config.data.path, config.data.categories, config.data.input_type = str(out), (), "pointcloud"
    config.generate.split = "train"
    config.logging.progress = False
    config.eval.n_samples = 3000
    for k, v in eval_options.items():
        config.eval[k] = v
    return config


def test_iou_uses_the_uniform_points_only(prepared, tmp_path):
    out, report = prepared
    config = _config(out, iou_jitter=0.0)  # The jitter has its own test.
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


# Meshes standing for a generated object: a rough guess, nothing, and a guess far away.
MESHES = {
    "guess": trimesh.creation.icosphere(subdivisions=2, radius=0.3),
    "empty": trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), int), process=False),
    "far": trimesh.creation.icosphere(subdivisions=1, radius=0.05).apply_translation([3.0, 0, 0]),
}
REPORTED = ["iou", "chamfer_l1", "normal_consistency", "fscore"]


def _write_records(ds, tmp_path, kinds):
    records = []
    for item, kind in zip(ds.items, kinds):
        path = tmp_path / "meshes" / f"{item.model}.ply"
        path.parent.mkdir(exist_ok=True)
        MESHES[kind].export(path)
        records.append(
            {
                "category": item.category,
                "category_name": "real",
                "model": item.model,
                "mesh": f"meshes/{path.name}",
            }
        )
    return records


def _read_csv(path):
    with open(path) as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.mark.parametrize("convention", ["original", "worst"])
@pytest.mark.parametrize(
    "kinds", [("guess", "empty"), ("far", "guess"), ("empty", "far"), ("guess", "guess")]
)
def test_undefined_values_in_the_csv_and_the_means(prepared, tmp_path, convention, kinds):
    out, _ = prepared
    # A loose F-score threshold, so that the rough guess has P, R > 0 and the far one not.
    config = _config(out, undefined_metrics=convention, fscore_threshold=0.2)
    ds = datasets.from_config(config.data, "train", cache=False)
    assert len(ds) == len(kinds)
    result = evaluation.evaluate_meshes(config, str(tmp_path), _write_records(ds, tmp_path, kinds))
    other = "worst" if convention == "original" else "original"
    fields, rows = _read_csv(tmp_path / "eval_meshes.csv")
    assert fields == [
        "category", "category_name", "model", "empty", "iou", "accuracy", "completeness", "chamfer_l1",
        "chamfer_l2", "normal_consistency", "precision", "recall", "fscore",
    ] + [f"{k}_{other}" for k in REPORTED]  # fmt: skip
    by_convention = {c: {k: [float(r[k if c == convention else f"{k}_{c}"]) for r in rows] for k in REPORTED}
                     for c in ("original", "worst")}  # fmt: skip
    for kind, row, i in zip(kinds, rows, range(len(rows))):
        assert row["empty"] == str(int(kind == "empty"))
        orig = {k: by_convention["original"][k][i] for k in REPORTED}
        worst = {k: by_convention["worst"][k][i] for k in REPORTED}
        if kind == "empty":  # The original: IoU 0, normals -1, no Chamfer-L1 or F-score.
            assert orig["iou"] == 0.0 and orig["normal_consistency"] == -1.0
            assert math.isnan(orig["chamfer_l1"]) and math.isnan(orig["fscore"])
            expected = {"iou": 0.0, "chamfer_l1": 10 * 3**0.5, "normal_consistency": 0.0, "fscore": 0.0}
            assert worst == pytest.approx(expected)
        elif kind == "far":  # P = R = 0: the original's F-score is 0 / 0.
            assert math.isnan(orig["fscore"]) and worst["fscore"] == 0.0
            assert orig["chamfer_l1"] == worst["chamfer_l1"] > 10 * 2.0
        else:
            assert orig == worst and all(math.isfinite(v) for v in orig.values())
    # The means skip NaN (pandas), the counts say how many were left out.
    for c in ("original", "worst"):
        for k in REPORTED:
            values = [v for v in by_convention[c][k] if not math.isnan(v)]
            mean = result["conventions"][c][k]
            assert (mean is None) if not values else mean == pytest.approx(np.mean(values)), (c, k)
    for k in REPORTED:
        assert result[k] == result["conventions"][convention][k]
        assert result["left_out"][k] == sum(math.isnan(v) for v in by_convention[convention][k])
    assert result["num_empty"] == kinds.count("empty") and result["undefined_metrics"] == convention
    if convention == "original":
        assert result["left_out"]["fscore"] == kinds.count("empty") + kinds.count("far")
        assert result["left_out"]["chamfer_l1"] == kinds.count("empty")
    else:
        assert not any(result["left_out"].values())
    text = (tmp_path / "metrics.json").read_text()

    def no_constants(name):
        raise AssertionError(f"{name} in metrics.json")

    assert json.loads(text, parse_constant=no_constants) == result  # Standard JSON: null, not NaN.


@pytest.mark.parametrize("jitter", [1e-4, 1e-2])
def test_the_iou_jitter_is_seeded(prepared, jitter):
    out, _ = prepared
    config = _config(out, iou_jitter=jitter)
    ds = datasets.from_config(config.data, "train", cache=False)
    data = ds.load(0)
    points, occ = datasets.iou_points(data)
    a, occ_a = evaluation.iou_query_points(config, data, 0)
    b, _ = evaluation.iou_query_points(config, data, 0)
    np.testing.assert_array_equal(a, b)  # Reproducible.
    np.testing.assert_array_equal(occ_a, occ)  # The labels of the unjittered points, as the original.
    noise = a - points
    assert abs(noise.std() / jitter - 1) < 0.05
    other_object, _ = evaluation.iou_query_points(config, ds.load(1), 1)
    assert not np.allclose(other_object[: len(a)] - datasets.iou_points(ds.load(1))[0][: len(a)], noise)
    config.seed += 1
    assert not np.array_equal(evaluation.iou_query_points(config, data, 0)[0], a)
    config.eval.iou_jitter = 0.0
    np.testing.assert_array_equal(evaluation.iou_query_points(config, data, 0)[0], points)


def test_a_repeated_evaluation_gives_the_same_file(prepared, tmp_path):
    out, _ = prepared
    config = _config(out, iou_jitter=1e-2)
    ds = datasets.from_config(config.data, "train", cache=False)
    records = _write_records(ds, tmp_path, ("guess", "guess"))
    evaluation.evaluate_meshes(config, str(tmp_path), records)
    first = (tmp_path / "eval_meshes.csv").read_text()
    evaluation.evaluate_meshes(config, str(tmp_path), records)
    assert (tmp_path / "eval_meshes.csv").read_text() == first


def _row(cat, model, iou, cd, nc, f, empty=0):
    row = {"category": cat, "category_name": f"name_{cat}", "model": model, "empty": empty}
    row.update(iou=iou, chamfer_l1=cd, normal_consistency=nc, fscore=f)
    row.update(iou_worst=iou, chamfer_l1_worst=cd if cd == cd else 17.32, normal_consistency_worst=max(nc, 0))
    row["fscore_worst"] = f if f == f else 0.0
    return row


NAN = float("nan")


@pytest.mark.parametrize("order", [0, 1])
def test_summarize_takes_the_original_means(order):
    rows = [
        _row("a", "1", 0.5, 1.0, 0.9, 0.6),
        _row("a", "2", 0.0, NAN, -1.0, NAN, empty=1),
        _row("a", "3", 0.7, 3.0, 0.8, NAN),  # P = R = 0
        _row("b", "4", 0.9, 2.0, 0.7, NAN),
    ]
    if order:
        rows = rows[::-1]
    result = evaluation.summarize(rows, "original")
    a, b = result["per_category"]["name_a"], result["per_category"]["name_b"]
    assert a["iou"] == pytest.approx(0.4) and a["chamfer_l1"] == pytest.approx(2.0)
    assert a["normal_consistency"] == pytest.approx(0.7 / 3) and a["fscore"] == pytest.approx(0.6)
    assert a["left_out"] == {"iou": 0, "chamfer_l1": 1, "normal_consistency": 0, "fscore": 2}
    assert a["num_objects"] == 3 and a["num_empty"] == 1
    assert b["fscore"] is None and b["left_out"]["fscore"] == 1
    # Mean over categories; a category without a value drops out.
    assert result["iou"] == pytest.approx((0.4 + 0.9) / 2)
    assert result["chamfer_l1"] == pytest.approx((2.0 + 2.0) / 2)
    assert result["fscore"] == pytest.approx(0.6)
    assert result["left_out"] == {"iou": 0, "chamfer_l1": 1, "normal_consistency": 0, "fscore": 3}
    assert result["num_empty"] == 1 and result["num_objects"] == 4
    worst = result["conventions"]["worst"]
    assert worst["fscore"] == pytest.approx((0.6 / 3 + 0.0) / 2)
    assert worst["chamfer_l1"] == pytest.approx(((1.0 + 17.32 + 3.0) / 3 + 2.0) / 2)
    assert result["object_mean"]["fscore"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    "key,value", [("undefined_metrics", "zero"), ("iou_jitter", -1.0), ("undefined_metrics", "")]
)
def test_a_bad_eval_option_names_its_key(prepared, tmp_path, key, value):
    out, _ = prepared
    config = _config(out, **{key: value})
    with pytest.raises(ValueError, match=f"config.eval.{key}="):
        evaluation.evaluate_meshes(config, str(tmp_path), [])
