"""Real multi-process training: two processes joined by `jax.distributed` over 127.0.0.1.

Each process is `python -m experiments.main ... --distributed --coordinator_address 127.0.0.1:PORT
--num_processes 2 --process_id I` with one CPU device (cross-process collectives over gloo, JAX's
default on CPU); together they train the tiny point-cloud ONet on a global batch of 8 (4 built by
each) and must reach the state of one process that trains on the same 8 items. Also: the launch
flags' checks.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import experiment_configs
from implicit_fields import trainer

REPO = experiment_configs.REPO
STEPS = 3
# A short run: a validation and a checkpoint at the last step only (both go through every process).
OVERRIDES = {
    "train.num_steps": STEPS,
    "train.eval_every": STEPS,
    "train.checkpoint_every": STEPS,
    "logging.tensorboard": False,
}
TIMEOUT_S = 240  # For the two processes together (about 30 s on two cores); then both are killed.


def _config(data_path: str):
    config = experiment_configs.load("onet.py:tiny")
    for key, value in OVERRIDES.items():
        section, name = key.split(".")
        config[section][name] = value
    config.data.path = data_path
    return config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(port: int) -> dict:
    """CPU only, one device per process, the coordinator listening on 127.0.0.1 alone."""
    xla_flags = os.environ.get("XLA_FLAGS", "").split()
    xla_flags = [f for f in xla_flags if not f.startswith("--xla_force_host_platform_device_count")]
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=" ".join(xla_flags),
        JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}",
        PYTHONUNBUFFERED="1",
    )


def _launch(workdir: str, data_path: str, logs) -> list:
    port = _free_port()
    procs = []
    for index, log in enumerate(logs):
        command = [
            sys.executable,
            "-m",
            "experiments.main",
            "--config",
            "experiments/configs/onet.py:tiny",
            "--workdir",
            workdir,
            "--mode",
            "train",
            f"--config.data.path={data_path}",
            *[f"--config.{k}={v}" for k, v in OVERRIDES.items()],
            "--distributed",
            "--coordinator_address",
            f"127.0.0.1:{port}",
            "--num_processes",
            str(len(logs)),
            "--process_id",
            str(index),
        ]
        with open(log, "w") as out:
            procs.append(
                subprocess.Popen(command, cwd=REPO, env=_env(port), stdout=out, stderr=subprocess.STDOUT)
            )
    return procs


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _finish(procs, logs, deadline: float) -> list:
    """Waits for every process (killing them all as soon as one fails, or at the deadline); their logs."""
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.returncode not in (None, 0) for p in procs):
                break  # The other one would wait for its partner until JAX's heartbeat gives up.
            time.sleep(0.2)
    finally:
        _stop(procs)
    texts = [open(log).read() for log in logs]
    for index, (p, text) in enumerate(zip(procs, texts)):
        assert p.returncode == 0, f"process {index} exited with {p.returncode}:\n{text[-4000:]}"
    return texts


def _losses(workdir: str) -> list:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [r["train/loss"] for r in records if "train/loss" in r]


def _leaves(tree) -> dict:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_two_processes_train_to_the_state_of_one(tiny_dataset, tmp_path):
    two_dir, one_dir = str(tmp_path / "two"), str(tmp_path / "one")
    # A fresh data folder: the lead process generates the built-in dataset while the other waits.
    fresh_data = str(tmp_path / "data")
    logs = [str(tmp_path / f"process{i}.log") for i in range(2)]
    procs = _launch(two_dir, fresh_data, logs)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # The reference, in this process while the two start: one process, the same global batch.
        config = _config(tiny_dataset)
        trainer.train_and_evaluate(config, one_dir)
    except BaseException:
        _stop(procs)
        raise
    texts = _finish(procs, logs, deadline)

    # Two processes, each with one of the two devices; only the lead generated the dataset.
    for index, text in enumerate(texts):
        assert f"process {index} of 2, with 1 of the 2 devices" in text, text[-4000:]
    assert "generating the built-in dataset" in texts[0]
    assert "generating the built-in dataset" not in texts[1]
    with open(os.path.join(two_dir, "train_summary.json")) as f:
        assert json.load(f)["step"] == STEPS

    # The loss of each step (the mean over the global batch, with batch norm over the global batch).
    np.testing.assert_allclose(_losses(two_dir), _losses(one_dir), rtol=1e-5)
    assert len(_losses(one_dir)) == STEPS

    _, one, meta_one = trainer.restore(config, one_dir, "latest")
    _, two, meta_two = trainer.restore(trainer.load_run_config(two_dir), two_dir, "latest")
    assert meta_one["step"] == meta_two["step"] == STEPS
    params = (_leaves(one.params), _leaves(two.params))
    mu = (_leaves(one.opt_state[0].mu), _leaves(two.opt_state[0].mu))
    nu = (_leaves(one.opt_state[0].nu), _leaves(two.opt_state[0].nu))
    stats = (_leaves(one.batch_stats), _leaves(two.batch_stats))

    # Not bitwise equal: the two processes sum the batch (the gradient mean and the batch-norm
    # statistics) in another order, which changes the last bits of float32 values. The gradients
    # agree to ~1e-7 of their size (Adam's moments mu and nu are running means of them and of their
    # squares), and so do the parameters they move (by 1e-7 at most): 1e-5 / 1e-6 leave a margin of
    # ~10 over what a float32 reordering gives, while a wrong batch, a per-process batch norm or a
    # per-process gradient changes the gradients by their own size and moves most parameters by
    # ~lr = 1e-3 a step.
    # Except: the biases whose every path to the output runs through a batch norm (the decoder's
    # fc_p and its blocks' fc_0 / fc_1: the norm subtracts any constant) have a zero gradient in
    # exact arithmetic. fc_0's is exactly zero (training adds that bias to bn_1's running mean, not to
    # the points: `layers.CResnetBlock`), so those biases keep their initial values in both runs. For
    # fc_p and fc_1 what is computed is float noise (|mu| far below the same layer's kernel's), which
    # Adam divides by its own size into steps of about +-lr: those parameters drift apart by up to a
    # few lr in any two runs that sum in another order (the training loss above does not see them).
    zero = {f"['decoder_net']['block{b}']['fc_0']['bias']" for b in range(2)}
    for name in sorted(zero):
        assert not mu[0][name].any() and not mu[1][name].any(), name
        np.testing.assert_array_equal(params[1][name], params[0][name], err_msg=name)
    fed_to_norms = ["fc_p"] + [f"block{b}']['fc_1" for b in range(2)]
    null = {f"['decoder_net']['{layer}']['bias']" for layer in fed_to_norms}
    for name in sorted(null):  # Float noise in both runs.
        kernel = name.replace("['bias']", "['kernel']")
        for run in mu:
            assert np.abs(run[name]).max() < 1e-3 * np.abs(run[kernel]).max(), name
    # A gradient element is a sum of terms of either sign: its float error is relative to the size
    # of its leaf, not its own, hence an absolute tolerance of 1e-5 of the leaf's largest value.
    for a, b in (mu, nu):
        for name in sorted(set(a) - null - zero):
            atol = 1e-5 * np.abs(a[name]).max()
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=atol, err_msg=name)
    # In its first steps Adam moves a parameter by at most ~1.01 lr (Cauchy-Schwarz on the weights of
    # its two moments), so two runs part by at most 2.02 lr a step.
    drift = 2.1 * config.optim.learning_rate * STEPS
    for name in params[0]:
        atol = drift if name in null else 1e-6
        np.testing.assert_allclose(params[1][name], params[0][name], rtol=1e-5, atol=atol, err_msg=name)
    # Batch-norm statistics: the running variances agree; the running means also follow the null
    # biases upstream of each norm (at most all of them), of which they hold 1 - 0.9^STEPS
    # (momentum 0.1: the rest is the initial 0).
    for name in stats[0]:
        atol = (1 - 0.9**STEPS) * len(null) * drift if name.endswith("['mean']") else 1e-6
        np.testing.assert_allclose(stats[1][name], stats[0][name], rtol=1e-5, atol=atol, err_msg=name)

    # Resumed with an unreadable best model: both processes find it so; the lead moves it aside while
    # the other waits, then both reopen the folder and go on (the lead alone used to, and waited
    # alone for the other at the folder's barrier).
    best_dir = os.path.join(two_dir, "best")
    (best_step,) = [d for d in os.listdir(best_dir) if d.isdigit()]
    state_dir = os.path.join(best_dir, best_step, "state")
    for root, _, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                f.write(b"\x5a" * 256)
    logs = [str(tmp_path / f"resume{i}.log") for i in range(2)]
    texts = _finish(_launch(two_dir, fresh_data, logs), logs, time.monotonic() + TIMEOUT_S)
    assert "the next validation saves a new best model" in texts[0], texts[0][-4000:]
    moved = os.listdir(best_dir + ".corrupt")
    assert len(moved) == 1 and moved[0].startswith(f"{best_step}_"), moved
    assert not os.path.exists(os.path.join(best_dir, best_step))


@pytest.mark.parametrize(
    "args, message",
    [
        ((False, None, 2, None), "--num_processes: only means something with --distributed"),
        ((False, "127.0.0.1:1234", None, None), "--coordinator_address: only means something"),
        ((True, None, 2, 0), "--coordinator_address: missing"),
        ((True, "127.0.0.1:1234", 2, None), "--process_id: missing"),
        ((True, "127.0.0.1:1234", None, None), "--num_processes, --process_id: missing"),
        ((True, "127.0.0.1:1234", 2, 2), "--process_id=2: must be in 0 ... 1"),
        ((True, "127.0.0.1:1234", 2, -1), "--process_id=-1: must be in 0 ... 1"),
        ((True, "127.0.0.1:1234", 0, 0), "--num_processes=0: must be at least 1"),
        ((True, "127.0.0.1", 2, 0), "--coordinator_address=127.0.0.1: must be HOST:PORT"),
        ((True, ":1234", 2, 0), "--coordinator_address=:1234: must be HOST:PORT"),
        ((True, "host:http", 2, 0), "--coordinator_address=host:http: must be HOST:PORT"),
        ((True, "127.0.0.1:70000", 2, 1), "--coordinator_address=127.0.0.1:70000: must be HOST:PORT"),
    ],
)
def test_bad_launch_flags_are_named(args, message):
    from experiments import main

    with pytest.raises(ValueError) as error:
        main.distributed_args(*args)
    assert str(error.value).startswith(message), str(error.value)


@pytest.mark.parametrize(
    "args, expected",
    [
        ((False, None, None, None), {}),
        ((True, None, None, None), {}),  # From the cluster environment.
        (
            (True, "[::1]:8476", 4, 3),
            {"coordinator_address": "[::1]:8476", "num_processes": 4, "process_id": 3},
        ),
        (
            (True, "10.0.0.1:1", 1, 0),
            {"coordinator_address": "10.0.0.1:1", "num_processes": 1, "process_id": 0},
        ),
    ],
)
def test_launch_flags_become_the_arguments_of_initialize(args, expected):
    from experiments import main

    assert main.distributed_args(*args) == expected
