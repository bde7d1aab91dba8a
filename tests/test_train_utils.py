"""The shared train step, optimiser, schedules and keys; data parallelism over 8 simulated devices."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import experiment_configs
from implicit_fields import train_utils
from implicit_fields.methods import onet
from implicit_fields.methods.onet import task

TESTS = os.path.dirname(os.path.abspath(__file__))


def _optim(**kw):
    config = ml_collections.ConfigDict(
        dict(
            optimizer="adam",
            learning_rate=1e-3,
            schedule="constant",
            final_lr_fraction=0.0,
            milestones=(),
            gamma=0.1,
            grad_clip_norm=0.0,
        )
    )
    config.update(kw)
    return config


def test_schedules():
    constant = train_utils.learning_rate_schedule(_optim(), 100)
    assert float(constant(0)) == float(constant(99)) == pytest.approx(1e-3)
    cosine = train_utils.learning_rate_schedule(_optim(schedule="cosine", final_lr_fraction=0.1), 100)
    assert float(cosine(0)) == pytest.approx(1e-3) and float(cosine(100)) == pytest.approx(1e-4)
    assert float(cosine(50)) == pytest.approx(0.55e-3, rel=1e-5)
    multistep = train_utils.learning_rate_schedule(
        _optim(schedule="multistep", milestones=(10, 20), gamma=0.5), 30
    )
    # PyTorch's MultiStepLR: the rate of step s (0-based) is lr * gamma^(milestones <= s).
    assert [float(multistep(s)) for s in (0, 9, 10, 19, 20, 29)] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]
    )
    with pytest.raises(ValueError, match="unknown optim.schedule 'linear'"):
        train_utils.learning_rate_schedule(_optim(schedule="linear"), 10)
    with pytest.raises(ValueError, match="unknown optim.optimizer 'sgd'"):
        train_utils.create_optimizer(_optim(optimizer="sgd"))


def test_rmsprop_is_pytorchs():
    """PyTorch's RMSprop (alpha 0.99, eps outside the root), written out for three steps."""
    params = {"w": jnp.zeros(3)}
    tx = train_utils.create_optimizer(_optim(optimizer="rmsprop", learning_rate=0.1))
    state, v, p = tx.init(params), np.zeros(3), np.zeros(3)
    for g in ([1.0, -2.0, 0.5], [0.3, 0.0, -4.0], [2.0, 1.0, 1.0]):
        g = np.asarray(g)
        v = 0.99 * v + 0.01 * g * g
        p = p - 0.1 * g / (np.sqrt(v) + 1e-8)
        u, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, u)
    np.testing.assert_allclose(np.asarray(params["w"]), p, rtol=1e-5)


def test_gradient_clipping_acts_before_adam():
    params = {"w": jnp.zeros(4)}
    g1, g2 = {"w": jnp.full(4, 100.0)}, {"w": jnp.full(4, 0.5)}
    tx = train_utils.create_optimizer(_optim(grad_clip_norm=1.0, learning_rate=1.0))
    adam = optax.adam(1.0)
    state, ref = tx.init(params), adam.init(params)
    for g in (g1, g2):
        factor = min(1.0, 1.0 / float(optax.tree.norm(g)))
        clipped = {"w": g["w"] * factor}
        u, state = tx.update(g, state, params)
        v, ref = adam.update(clipped, ref, params)
        np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(v["w"]), rtol=1e-6)
    # Unclipped, the first gradient would dominate Adam's moments and shrink the second step.
    w, s = adam.update(g1, adam.init(params), params)
    w, s = adam.update(g2, s, params)
    assert float(jnp.abs(w["w"]).max()) < 0.8 * float(jnp.abs(u["w"]).max())


def test_init_and_loop_keys_never_coincide():
    init_key, loop_key = train_utils.rng_keys(3)
    base = jax.random.key(3)
    # The initial parameters keep the key they always had: fold_in(key(seed), 0).
    assert (jax.random.key_data(init_key) == jax.random.key_data(jax.random.fold_in(base, 0))).all()
    data = lambda k: tuple(np.asarray(jax.random.key_data(k)).tolist())  # noqa: E731
    step_keys = {data(jax.random.fold_in(loop_key, s)) for s in range(2000)}
    assert data(init_key) not in step_keys and data(loop_key) != data(init_key)
    assert len(step_keys) == 2000
    other_init, _ = train_utils.rng_keys(4)
    assert data(other_init) != data(init_key)


def test_train_step_draws_fold_in_loop_key_step_and_applies_the_gradient():
    seen = []

    def loss_fn(params, batch_stats, batch, rng, scale=1.0):
        noise = jax.random.normal(rng, ())
        return scale * jnp.sum((params["w"] - batch["t"]) ** 2), ({"noise": noise}, None)

    _, loop_key = train_utils.rng_keys(0)
    state = train_utils.TrainState.create(
        apply_fn=None, params={"w": jnp.zeros(2)}, tx=optax.sgd(0.1), batch_stats={}
    )
    step = train_utils.create_train_step(loss_fn, loop_key=loop_key)
    for s in range(3):
        state, metrics = step(state, {"t": np.ones(2, np.float32)}, (("scale", 2.0),))
        seen.append(float(metrics["noise"]))
        expected = float(jax.random.normal(jax.random.fold_in(loop_key, s), ()))
        assert seen[-1] == pytest.approx(expected)
    assert int(state.step) == 3
    # d/dw 2 (w - 1)^2 = 4 (w - 1); three SGD steps of 0.1 from 0: w = 1 - 0.6^3.
    np.testing.assert_allclose(np.asarray(state.params["w"]), 1 - 0.6**3, rtol=1e-6)
    assert float(metrics["grad_norm"]) == pytest.approx(4 * 0.6**2 * np.sqrt(2), rel=1e-5)
    assert float(metrics["loss"]) == pytest.approx(2 * 2 * 0.6**4, rel=1e-5)


SHARDED_SCRIPT = textwrap.dedent(
    """
    import functools, json, sys
    import jax, numpy as np, optax
    from implicit_fields import train_utils
    from implicit_fields.methods import onet
    from implicit_fields.methods.onet import task
    sys.path.insert(0, {tests!r})
    import experiment_configs
    assert len(jax.devices()) == 8, jax.devices()
    config = experiment_configs.load("onet.py:tiny")
    model = onet.create_model(config)
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
            state = onet.init_state(config, model, jax.random.key(0))
            if opt == "sgd":
                state = train_utils.TrainState.create(
                    apply_fn=state.apply_fn, params=state.params, batch_stats=state.batch_stats,
                    tx=optax.sgd(0.05))
            state = jax.device_put(state, repl)
            step = train_utils.create_train_step(functools.partial(task.loss_fn, model), mesh)
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
        [sys.executable, "-c", SHARDED_SCRIPT.format(tests=TESTS)],
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
                    np.asarray(one["stats"][name]),
                    np.asarray(eight["stats"][name]),
                    rtol=1e-4,
                    atol=1e-6,
                    err_msg=name,
                )


def test_cpu_compiler_options_give_xla_defaults_step(monkeypatch):
    """The step compiled with Eigen dots (the CPU default here) matches XLA's own defaults."""
    options = train_utils.default_compiler_options()
    assert options in ({}, train_utils.CPU_COMPILER_OPTIONS)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-dot")
    assert train_utils.default_compiler_options() == {}  # the user's XLA_FLAGS choose
    if not options:
        pytest.skip("this jaxlib does not know the YNN fusion option")

    # With the options a matmul is XLA's own dot, not a YNNPACK fusion.
    x = jax.ShapeDtypeStruct((512, 256), jnp.float32)
    text = jax.jit(jnp.matmul, compiler_options=options).lower(x, x.update(shape=(256, 256))).compile()
    assert "ynn" not in text.as_text()

    config = experiment_configs.load("onet.py:tiny")
    model = onet.create_model(config)
    rng = np.random.default_rng(0)
    batch = {
        "points": rng.uniform(-0.55, 0.55, (4, 96, 3)).astype(np.float32),
        "occupancies": (rng.uniform(size=(4, 96)) > 0.5).astype(np.float32),
        "inputs": rng.normal(size=(4, 40, 3)).astype(np.float32) * 0.3,
    }
    state0 = jax.device_get(onet.init_state(config, model, jax.random.key(0)))
    results = []
    for opts in (options, {}):
        step = train_utils.create_train_step(functools.partial(task.loss_fn, model), compiler_options=opts)
        state = jax.device_put(state0)
        losses = []
        for _ in range(3):
            state, m = step(state, batch, ())
            losses.append(float(m["loss"]))
        flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
        results.append((losses, {jax.tree_util.keystr(k): np.asarray(x) for k, x in flat}))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for name, a in results[0][1].items():
        b = results[1][1][name]
        if _cancelled_by_batch_norm(name):  # Adam steps on rounding noise: see the sharded test
            assert np.abs(a - b).max() <= 2 * 3.2 * 1e-3 * 3, name
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5, err_msg=name)
