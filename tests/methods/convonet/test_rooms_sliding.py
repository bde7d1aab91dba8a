"""The rooms configs end to end, and the sliding-window mesh of tiled built-in rooms."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import experiment_configs
from implicit_fields import meshing, trainer, vis
from implicit_fields.methods.convonet import generation

REPO = experiment_configs.REPO


@pytest.fixture(scope="module")
def rooms_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rooms")
    config = experiment_configs.load("convonet.py:rooms_sliding,tiny")
    config.data.path = str(root / "data")
    workdir = str(root / "run")
    trainer.run(config, workdir, "train")
    return config, workdir


def test_tiled_rooms_are_meshed_by_the_sliding_window(rooms_run):
    config, workdir = rooms_run
    record = generation.generate_sliding(
        config,
        workdir,
        tiles=(2, 1),
        split="train",
        query_voxels=4,
        samples_per_voxel=1,
        measure_memory=False,
    )
    pad = config.field.padding
    assert record["crops"] >= 4 and record["area_ratio"] == pytest.approx((2.0 + pad) / (1.0 + pad))
    assert 0.0 <= record["field_iou"] <= 1.0
    stored = json.load(open(os.path.join(workdir, "sliding", "sliding.json")))
    assert stored["crops"] == record["crops"] and stored["checkpoint_step"] == config.train.num_steps
    path = os.path.join(workdir, "sliding", "scene.ply")
    comment = f"implicit_fields checkpoint {record['checkpoint']} step {record['checkpoint_step']}"
    assert comment in meshing.read_ply_comments(path)
    scene = generation.tiled_scene(config, "train", (2, 1))
    lo, hi = scene["bounds"]
    assert hi[0] - lo[0] == pytest.approx(2.0 + config.field.padding) and hi[2] - lo[2] == pytest.approx(1.1)
    # The second room sits one cube to the right, exactly.
    n = config.data.pointcloud_n
    assert np.all(scene["inputs"][n:, 0] > scene["inputs"][:n, 0].min() + 0.4)
    image = vis.read_png(os.path.join(workdir, "sliding.png"))
    assert image.std() > 5


def test_a_unit_cube_model_gets_a_clear_error(rooms_run):
    config, workdir = rooms_run
    config = config.copy_and_resolve_references()
    config.model.local_coord = False
    with pytest.raises(ValueError, match="local_coord"):
        generation.generate_sliding(config, workdir, tiles=(2, 1))


@pytest.mark.parametrize("tiles,match", [("a,b", "two counts")])
def test_cli_errors_are_one_line(rooms_run, tiles, match):
    _, workdir = rooms_run
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.sliding_window", "--workdir", workdir, "--tiles", tiles],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0]
