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


def _popen(command):
    return subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_bad_command_lines_are_one_line_errors(tmp_path):
    """Each ends in one `error:` line naming the flag, key or file, with exit code 2, no traceback,
    and nothing written (the cases run side by side)."""
    (tmp_path / "file").write_text("a file")
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    tiny = ["--config", "experiments/configs/onet.py:tiny"]
    cases = {
        "unknown key": (
            [*tiny, "--config.train.no_such_key=3"],
            "error: --config.train.no_such_key=3: unknown config key 'train.no_such_key'",
        ),
        "unknown section": ([*tiny, "--config.trian.num_steps=3"], "unknown config key 'trian.num_steps'"),
        "bad type": ([*tiny, "--config.train.num_steps=abc"], "--config.train.num_steps=abc"),
        "zero steps": ([*tiny, "--config.train.num_steps=0"], "config.train.num_steps=0 must be an integer"),
        "no points": ([*tiny, "--config.data.points_subsample=0"], "config.data.points_subsample=0 must be"),
        "zero log_every": ([*tiny, "--config.logging.log_every=0"], "config.logging.log_every=0 must be"),
        "missing config": (["--config", str(tmp_path / "none.py")], "none.py: no such config file"),
        "config syntax": (["--config", str(tmp_path / "syntax.py")], "syntax.py:1: "),
        "bad mode": ([*tiny, "--mode", "fly"], "--mode"),
        "process id out of range": (
            [
                *tiny,
                "--distributed",
                "--coordinator_address=127.0.0.1:1234",
                "--num_processes=2",
                "--process_id=2",
            ],
            "error: --process_id=2: must be in 0 ... 1 (--num_processes=2)",
        ),
    }
    procs = {}
    for name, (args, _) in cases.items():
        workdir = str(tmp_path / name.replace(" ", "_"))
        command = [sys.executable, "-m", "experiments.main", *args, "--workdir", workdir]
        procs[name] = subprocess.Popen(
            command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    file_workdir = [sys.executable, "-m", "experiments.main", *tiny, "--workdir", str(tmp_path / "file")]
    procs["workdir is a file"] = subprocess.Popen(
        file_workdir, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    cases["workdir is a file"] = (None, f"error: workdir {tmp_path / 'file'}: is a file, not a folder")
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=240)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, err[-2000:])
        assert "Traceback" not in err, (name, err[-2000:])
        assert lines[-1].startswith("error: ") and cases[name][1] in lines[-1], (name, lines[-1])
    assert sorted(os.listdir(tmp_path)) == ["file", "syntax.py"]
    assert (tmp_path / "file").read_text() == "a file"


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
