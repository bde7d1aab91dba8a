"""Training: smoke run, end-to-end CLI run, kill-and-resume, 8-device data parallelism."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from implicit_fields import checkpointing, train_utils, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _params(workdir, config):
    _, state, _ = training.restore_for_inference(config, workdir, "latest")
    return jax.device_get(state.params), int(state.step)


def test_two_step_smoke_run(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    state = training.train_and_evaluate(tiny_config, workdir)
    assert int(state.step) == 2
    lines = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    losses = [x["train/loss"] for x in lines if "train/loss" in x]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert any("eval/iou" in x for x in lines)
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["num_steps"] == 2
    assert checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")).latest_step() == 2
    assert os.listdir(os.path.join(workdir, "tensorboard"))


class _Killed(Exception):
    pass


def test_resume_after_a_kill_matches_an_unbroken_run(tiny_config, tmp_path):
    tiny_config.train.num_steps = 6
    tiny_config.train.checkpoint_every = 2
    tiny_config.train.eval_every = 3
    unbroken = str(tmp_path / "unbroken")
    training.train_and_evaluate(tiny_config, unbroken)

    broken = str(tmp_path / "broken")

    def kill_at_5(step):
        if step == 5:
            raise _Killed()

    with pytest.raises(_Killed):
        training.train_and_evaluate(tiny_config, broken, on_step=kill_at_5)
    # The checkpoint written before the kill survives it.
    assert checkpointing.Checkpointer(os.path.join(broken, "checkpoints")).latest_step() == 4
    training.train_and_evaluate(tiny_config, broken)

    p_unbroken, s1 = _params(unbroken, tiny_config)
    p_resumed, s2 = _params(broken, tiny_config)
    assert s1 == s2 == 6
    for a, b in zip(jax.tree.leaves(p_unbroken), jax.tree.leaves(p_resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # And training did move the parameters.
    fresh = jax.device_get(training.create_state(tiny_config, train_utils.create_mesh())[1].params)
    moved = max(
        float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(p_resumed))
    )
    assert moved > 1e-4


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np, optax
    sys.path.insert(0, {repo!r})
    from experiments.configs import tiny
    from implicit_fields import models, train_utils
    assert len(jax.devices()) == 8, jax.devices()
    config = tiny.get_config()
    model = models.create_model(config.model)
    rng = np.random.default_rng(0)
    batches = [{{
        "points": rng.uniform(-0.55, 0.55, (8, 64, 3)).astype(np.float32),
        "occupancies": (rng.uniform(size=(8, 64)) > 0.5).astype(np.float32),
        "inputs": rng.normal(size=(8, 32, 3)).astype(np.float32) * 0.3,
    }} for _ in range(3)]
    out = {{}}
    for opt in ("adam", "sgd"):
        for name, devices in (("one", jax.devices()[:1]), ("eight", jax.devices())):
            mesh = train_utils.create_mesh(devices)
            repl, data = train_utils.shardings(mesh)
            state = train_utils.create_train_state(jax.random.key(0), model, config)
            if opt == "sgd":
                state = train_utils.TrainState.create(
                    apply_fn=state.apply_fn, params=state.params, batch_stats=state.batch_stats,
                    tx=optax.sgd(0.05))
            state = jax.device_put(state, repl)
            step = train_utils.create_train_step(mesh)
            losses = []
            for b in batches:
                b = jax.device_put(b, data)
                if name == "eight":
                    assert len(b["points"].sharding.device_set) == 8
                state, m = step(state, b)
                losses.append(float(m["loss"]))
            flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
            params = {{jax.tree_util.keystr(k): np.asarray(x).tolist() for k, x in flat}}
            flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state.batch_stats))[0]
            stats = {{jax.tree_util.keystr(k): np.asarray(x).tolist() for k, x in flat}}
            out[opt + "_" + name] = {{"losses": losses, "params": params, "stats": stats}}
    print("RESULT" + json.dumps(out))
    """
)


def _cancelled_by_batch_norm(name):
    """Decoder biases whose output is normalised by a (conditional) batch norm."""
    if "decoder_net" not in name or "bias" not in name:
        return False
    return any(f"['{layer}']" in name for layer in ("fc_p", "fc_0", "fc_1"))


def test_sharded_step_on_8_devices_matches_one_device():
    """The batch split over 8 simulated devices gives the one-device loss, parameters and stats."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT.format(repo=REPO)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    for opt in ("adam", "sgd"):
        one, eight = out[opt + "_one"], out[opt + "_eight"]
        np.testing.assert_allclose(one["losses"], eight["losses"], rtol=1e-5)
        assert one["params"].keys() == eight["params"].keys()
        for name in one["params"]:
            a, b = np.asarray(one["params"][name]), np.asarray(eight["params"][name])
            if opt == "adam" and _cancelled_by_batch_norm(name):
                # These biases feed a batch norm, so their true gradient is exactly zero
                # and Adam turns float rounding noise into steps of up to
                # lr * (1 - b1) / sqrt(1 - b2) (about 3.2 lr) in either run; the function
                # does not depend on them. SGD below checks them exactly.
                assert np.abs(a - b).max() <= 2 * 3.2 * 1e-3 * 3, name
            else:
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=f"{opt} {name}")
        if opt == "sgd":
            for name in one["stats"]:
                np.testing.assert_allclose(
                    np.asarray(one["stats"][name]), np.asarray(eight["stats"][name]),
                    rtol=1e-4, atol=1e-6, err_msg=name,
                )
