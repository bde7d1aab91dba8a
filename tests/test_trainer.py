"""The one training loop: resume, NaN stop, debug switches, best checkpoint, lead gating, config checks.

Most tests drive the trainer with a small method of their own (least squares
on random batches), so that each property of the loop is checked in
isolation and fast; the ONet tests run the real method on the tiny config.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_method import W_TRUE, _fake_config

from implicit_fields import checkpointing, config_utils, train_utils, trainer
from implicit_fields.methods import onet


def _jsonl(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------


def test_loop_logs_validates_checkpoints_and_passes_static_settings(fake, tmp_path):
    config = _fake_config()
    workdir = str(tmp_path / "run")
    state = trainer.train_and_evaluate(config, workdir)
    assert int(state.step) == 6
    logged = _jsonl(workdir)
    train = [r for r in logged if "train/loss" in r]
    assert [r["step"] for r in train] == [2, 4, 6]
    # The static setting of the last step of each window is logged, and reached the loss.
    assert [r["train/scale"] for r in train] == [1, 2, 2]
    assert fake.static_calls == list(range(6))
    assert all(r["train/samples_per_second"] > 0 for r in train)
    assert {"train/abs_err", "train/grad_norm"} <= set(train[0])
    evals = [r for r in logged if "eval/score" in r]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert json.load(open(os.path.join(workdir, "config.json")))["method"] == "fake"
    assert checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")).latest_step() == 6
    summary = json.load(open(os.path.join(workdir, "train_summary.json")))
    assert summary["step"] == 6 and summary["best_val_score"] == max(r["eval/score"] for r in evals)
    # Least squares converges towards w_true.
    assert np.abs(np.asarray(state.params["w"]) - W_TRUE).max() < np.abs(W_TRUE).max()


def test_best_checkpoint_holds_the_best_validation_step(fake, tmp_path):
    config = _fake_config()
    config.data.scores = (0.2, 0.7, 0.5)  # validations at steps 2, 4, 6
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(config, workdir)
    best = checkpointing.Checkpointer(os.path.join(workdir, "best"))
    assert best.latest_step() == 4 and best.read_meta()["val_score"] == 0.7
    _, state, meta = trainer.restore(config, workdir, "best")
    assert meta["step"] == 4 and int(state.step) == 4
    _, state, meta = trainer.restore(config, workdir, "latest")
    assert meta["step"] == 6 and meta["best_val_score"] == 0.7


def test_resume_after_a_kill_matches_an_unbroken_run(fake, tmp_path):
    config = _fake_config()
    config.train.num_steps = 8
    unbroken = trainer.train_and_evaluate(config, str(tmp_path / "a"))

    class Killed(Exception):
        pass

    def kill_at_5(step):
        if step == 5:
            raise Killed()

    with pytest.raises(Killed):
        trainer.train_and_evaluate(config, str(tmp_path / "b"), on_step=kill_at_5)
    assert checkpointing.Checkpointer(str(tmp_path / "b" / "checkpoints")).latest_step() == 4
    resumed = trainer.train_and_evaluate(config, str(tmp_path / "b"))
    np.testing.assert_array_equal(np.asarray(unbroken.params["w"]), np.asarray(resumed.params["w"]))
    # The resumed run appended to the logs of the first.
    assert [r["step"] for r in _jsonl(str(tmp_path / "b")) if "train/loss" in r] == [2, 4, 6, 8]


def test_a_nan_loss_stops_the_run_before_anything_non_finite_is_saved(fake, tmp_path):
    config = _fake_config()
    config.data.nan_at = 4  # the batch of step 5
    config.logging.log_every = 3
    workdir = str(tmp_path / "run")
    with pytest.raises(FloatingPointError, match=r"non-finite training loss.*step 4\)"):
        trainer.train_and_evaluate(config, workdir)
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
    assert ckpt.latest_step() == 4  # step 6's checkpoint (after the NaN) was never written
    _, state, _ = trainer.restore(config, workdir, "latest")
    assert np.isfinite(np.asarray(state.params["w"])).all()
    assert all(np.isfinite(r.get("train/loss", 0.0)) for r in _jsonl(workdir))


def test_debug_nans_stops_at_the_operation_and_the_switches_are_reset(fake, tmp_path):
    config = _fake_config()
    config.data.nan_at = 2
    config.debug.nans = True
    assert not jax.config.jax_debug_nans
    with pytest.raises(FloatingPointError) as info:
        trainer.run(config, str(tmp_path / "run"), "train")
    assert "non-finite training" not in str(info.value)  # JAX's own report, not the loop's check
    assert checkpointing.Checkpointer(str(tmp_path / "run" / "checkpoints")).latest_step() == 2
    assert not jax.config.jax_debug_nans
    config = _fake_config()
    config.debug.disable_jit = True
    config.train.num_steps = 2
    trainer.run(config, str(tmp_path / "nojit"), "train")
    assert not jax.config.jax_disable_jit


def test_only_the_lead_process_writes_logs_and_results(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "is_lead_process", lambda: False)
    config = _fake_config()
    workdir = str(tmp_path / "run")
    assert trainer.run(config, workdir, "all") == {}
    assert not fake.generated and not fake.evaluated
    written = sorted(os.listdir(workdir))
    assert written == ["best", "checkpoints"]  # every process takes part in the checkpoints
    assert checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")).latest_step() == 6


def test_run_dispatches_the_modes_to_the_method(fake, tmp_path):
    config = _fake_config()
    workdir = str(tmp_path / "run")
    assert trainer.run(config, workdir, "all") == {"score": 1.0}
    assert fake.generated == [workdir] and fake.evaluated == [workdir]
    trainer.run(config, workdir, "eval")
    assert len(fake.evaluated) == 2 and len(fake.generated) == 1
    with pytest.raises(ValueError, match="unknown mode"):
        trainer.run(config, workdir, "sample")


# ---------------------------------------------------------------------------
# Configs and methods.
# ---------------------------------------------------------------------------


def test_methods_are_found_by_name():
    assert {"onet", "dvr"} <= set(trainer.available_methods())
    assert trainer.load_method("onet") is onet
    with pytest.raises(ValueError, match=r"unknown config.method 'siren'.*available: .*dvr.*onet"):
        trainer.load_method("siren")


def test_every_method_provides_the_protocol():
    for name in trainer.available_methods():
        method = trainer.load_method(name)
        for attr in ("get_config", "create_model", "init_state", "create_task", "generate", "evaluate"):
            assert callable(getattr(method, attr)), f"{name}.{attr}"
        config = method.get_config()
        assert config.method == name
        # The shared sections come from the one common base.
        common = config_utils.common_config(name)
        for section in ("field", "train", "optim", "generate", "logging", "debug"):
            assert set(common[section]) <= set(config[section]), (name, section)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.num_steps", -1, "config.train.num_steps=-1"),
        ("logging.log_every", 0, "config.logging.log_every=0"),
        ("field.threshold", 1.5, r"config.field.threshold=1.5 must be a probability"),
        ("optim.learning_rate", float("nan"), "config.optim.learning_rate=nan"),
        ("optim.schedule", "linear", "config.optim.schedule='linear'"),
        ("optim.milestones", (500, 100), "must be increasing"),
        ("train.batch_size", 0, "config.train.batch_size=0"),
        ("data.input_type", "mesh", "config.data.input_type='mesh' must be one of"),
        ("generate.checkpoint", "newest", "config.generate.checkpoint='newest'"),
    ],
)
def test_config_values_are_checked_before_any_work(key, value, message, tmp_path):
    config = onet.get_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=message):
        trainer.run(config, str(tmp_path / "run"), "train")
    assert not os.path.exists(tmp_path / "run")


def test_unknown_keys_are_checked_against_the_methods_own_schema(tmp_path):
    config = onet.get_config()
    config.rays = {"per_step": 10}  # a DVR section
    with pytest.raises(ValueError, match=r"unknown config key.*'rays.per_step'"):
        trainer.run(config, str(tmp_path / "run"), "train")
    config = onet.get_config()
    config.method = "dvr"
    with pytest.raises(ValueError, match=r"unknown config key.*'model.c_dim'"):
        trainer.check_config(config)


def test_restore_without_a_checkpoint_is_a_clear_error(fake, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        trainer.restore(_fake_config(), str(tmp_path), "best")
    with pytest.raises(ValueError, match="unknown checkpoint"):
        trainer.restore(_fake_config(), str(tmp_path), "newest")


def test_load_run_config_completes_the_stored_config_with_the_method_defaults(tmp_path):
    config = onet.get_config()
    config.train.num_steps = 7
    stored = json.loads(config.to_json())
    del stored["generate"]["subdivision"]  # a run made before the key existed
    (tmp_path / "config.json").write_text(json.dumps(stored))
    loaded = trainer.load_run_config(str(tmp_path))
    assert loaded.train.num_steps == 7 and loaded.generate.subdivision == "cells"


def test_prefetch_yields_in_order_and_reraises():
    out = list(trainer.prefetch(lambda s: {"x": np.full(2, s)}, 3, 7))
    assert [int(b["x"][0]) for b in out] == [3, 4, 5, 6]
    unbuffered = trainer.prefetch(lambda s: {"x": np.full(2, s)}, 0, 3, buffer_size=0)
    assert [int(b["x"][0]) for b in unbuffered] == [0, 1, 2]

    def bad(step):
        if step == 2:
            raise RuntimeError("boom at 2")
        return {"x": np.zeros(1)}

    with pytest.raises(RuntimeError, match="boom at 2"):
        list(trainer.prefetch(bad, 0, 5))


# ---------------------------------------------------------------------------
# ONet through the trainer.
# ---------------------------------------------------------------------------


def test_onet_two_step_smoke_run(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    state = trainer.train_and_evaluate(tiny_config, workdir)
    assert int(state.step) == 2
    lines = _jsonl(workdir)
    losses = [x["train/loss"] for x in lines if "train/loss" in x]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert any("eval/iou" in x for x in lines)
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["num_steps"] == 2
    assert checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")).latest_step() == 2
    assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_onet_resume_after_a_kill_matches_an_unbroken_run(tiny_config, tmp_path):
    tiny_config.train.num_steps = 6
    tiny_config.train.checkpoint_every = 2
    tiny_config.train.eval_every = 3
    unbroken = str(tmp_path / "unbroken")
    trainer.train_and_evaluate(tiny_config, unbroken)
    # The broken run's batches come from two worker processes (grain), restarted at the resume.
    tiny_config.train.workers = 2

    class Killed(Exception):
        pass

    def kill_at_5(step):
        if step == 5:
            raise Killed()

    broken = str(tmp_path / "broken")
    with pytest.raises(Killed):
        trainer.train_and_evaluate(tiny_config, broken, on_step=kill_at_5)
    # The checkpoint written before the kill survives it.
    assert checkpointing.Checkpointer(os.path.join(broken, "checkpoints")).latest_step() == 4
    trainer.train_and_evaluate(tiny_config, broken)

    _, a, _ = trainer.restore(tiny_config, unbroken, "latest")
    _, b, _ = trainer.restore(tiny_config, broken, "latest")
    assert int(a.step) == int(b.step) == 6
    # Bit-exact: the same batches, the same keys, the same compiled step.
    for x, y in zip(jax.tree.leaves((a.params, a.opt_state)), jax.tree.leaves((b.params, b.opt_state))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # And training did move the parameters away from the initial ones.
    model = onet.create_model(tiny_config)
    fresh = onet.init_state(tiny_config, model, train_utils.rng_keys(tiny_config.seed)[0])
    pairs = zip(jax.tree.leaves(fresh.params), jax.tree.leaves(b.params))
    moved = max(float(np.abs(x - y).max()) for x, y in pairs)
    assert moved > 1e-4


def test_abstract_state_matches_the_initialised_one(tiny_config):
    model, abstract = trainer.abstract_state(tiny_config)
    state = onet.init_state(tiny_config, model, train_utils.rng_keys(tiny_config.seed)[0])
    flat = jax.tree_util.tree_flatten_with_path
    expected = [(path, jnp.shape(x), jnp.result_type(x)) for path, x in flat(state)[0]]
    assert [(path, x.shape, x.dtype) for path, x in flat(abstract)[0]] == expected
    assert all(x.sharding is not None for x in jax.tree.leaves(abstract))


def test_modes_without_a_training_run_are_clear_errors(tiny_config, tmp_path):
    for mode in ("generate", "eval"):
        with pytest.raises(FileNotFoundError, match=r"workdir .*missing: does not exist; train first"):
            trainer.run(tiny_config, str(tmp_path / "missing"), mode)
    assert not os.path.exists(tmp_path / "missing")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        trainer.run(tiny_config, str(tmp_path / "empty"), "generate")
    with pytest.raises(FileNotFoundError, match="run --mode generate first"):
        trainer.run(tiny_config, str(tmp_path / "empty"), "eval")
