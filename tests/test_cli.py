"""The command-line scripts: one-line errors with exit code 2, and the sampling script on a real run."""

import json
import os
import subprocess
import sys

import numpy as np
import trimesh

import experiment_configs
from implicit_fields import trainer, vis

REPO = experiment_configs.REPO


def _run(*args, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_an_unknown_key_on_the_command_line_is_a_one_line_error(tmp_path):
    proc = _run(
        "experiments.main",
        "--config",
        "experiments/configs/onet.py:tiny",
        "--workdir",
        str(tmp_path / "w"),
        "--config.train.no_such_key=3",
    )
    assert proc.returncode != 0
    assert "no_such_key" in proc.stderr


def test_an_unknown_key_in_a_config_file_is_a_one_line_error(tmp_path):
    cfg = tmp_path / "bad_config.py"
    cfg.write_text(
        "from implicit_fields.methods.onet import config\n"
        "def get_config():\n"
        "    c = config.get_config()\n"
        "    c.model.hiden = 3\n"
        "    return c\n"
    )
    proc = _run("experiments.main", "--config", str(cfg), "--workdir", str(tmp_path / "w"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown config key")
    assert "model.hiden" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "w")


def test_a_value_out_of_range_is_a_one_line_error(tmp_path):
    proc = _run(
        "experiments.main",
        "--config",
        "experiments/configs/dvr.py:tiny",
        "--workdir",
        str(tmp_path / "w"),
        "--config.field.threshold=1.5",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: config.field.threshold=1.5 must be a probability in (0, 1)"
    )


def test_sampling_script_writes_samples_and_an_interpolation(tiny_dataset, tmp_path):
    config = experiment_configs.load("onet.py:unconditional,tiny")
    config.data.path = tiny_dataset
    config.train.num_steps = 30
    config.train.eval_every = 30
    config.train.checkpoint_every = 30
    config.optim.learning_rate = 1e-2
    workdir = str(tmp_path / "run")
    trainer.run(config, workdir, "train")
    proc = _run(
        "experiments.sample",
        "--workdir",
        workdir,
        "--num",
        "3",
        "--interpolate",
        "--pair",
        "0,1",
        "--steps",
        "3",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 3 samples" in proc.stdout
    summary = json.load(open(os.path.join(workdir, "samples", "samples.json")))
    assert len(summary["samples"]) == 3 and summary["checkpoint_step"] == 30
    for s in summary["samples"]:
        mesh = trimesh.load(os.path.join(workdir, s["mesh"]), process=False, force="mesh")
        assert len(mesh.faces) == s["num_faces"]
        assert s["watertight"] or len(mesh.faces) == 0  # a 30-step model may decode to nothing
    latents = np.load(os.path.join(workdir, "samples", "latents.npz"))["z"]
    assert latents.shape == (3, config.model.z_dim)
    assert len(os.listdir(os.path.join(workdir, "interpolation"))) == 3
    for name in ("samples.png", "interpolation.png"):
        assert vis.read_png(os.path.join(workdir, name)).std() > 5, name
    bad = _run("experiments.sample", "--workdir", workdir, "--pair", "0")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --pair")
