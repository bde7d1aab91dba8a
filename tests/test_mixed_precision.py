"""Mixed precision (`config.train.compute_dtype='bfloat16'`): bfloat16 compute, float32 state and loss.

A tiny point-cloud ONet (conditional batch norm, so batch statistics too) takes the same
steps in float32 and in bfloat16 from the same initialisation: the loss trajectories stay
close and fall, the state stays float32, the step really computes in bfloat16, and the
float32 option is the plain step bit for bit. The layers and losses keep their precision
where it matters, and the methods that need float32 refuse bfloat16 before any work.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import experiment_configs
from implicit_fields import layers, losses, train_utils, trainer
from implicit_fields.methods import onet
from implicit_fields.methods.convonet import config as convonet_config
from implicit_fields.methods.dvr import config as dvr_config
from implicit_fields.methods.nerf import config as nerf_config
from implicit_fields.methods.oflow import config as oflow_config
from implicit_fields.methods.onet import config as onet_config
from implicit_fields.methods.onet import task as onet_task
from implicit_fields.methods.texture_fields import config as texture_fields_config

STEPS = 20


@pytest.fixture(scope="module")
def tiny_onet():
    """(fresh state, loss_fn, batches) of the tiny point-cloud ONet on a sphere."""
    config = experiment_configs.load("onet.py:pointcloud,tiny")
    model = onet.create_model(config)
    state = onet.init_state(config, model, jax.random.key(0))
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        points = rng.uniform(-0.55, 0.55, (8, 256, 3)).astype(np.float32)
        surface = rng.normal(size=(8, 32, 3))
        surface = 0.35 * surface / np.linalg.norm(surface, axis=-1, keepdims=True)
        batches.append(
            {
                "points": points,
                "occupancies": (np.linalg.norm(points, axis=-1) < 0.35).astype(np.float32),
                "inputs": surface.astype(np.float32),
            }
        )
    return state, functools.partial(onet_task.loss_fn, model), batches


def _train(tiny_onet, compute_dtype):
    """STEPS steps from the fresh state: (state, [metrics])."""
    state, loss_fn, batches = tiny_onet
    step = train_utils.create_train_step(loss_fn, compute_dtype=compute_dtype)
    state = jax.tree.map(jnp.copy, state)  # The step donates its state.
    history = []
    for s in range(STEPS):
        state, metrics = step(state, batches[s % len(batches)])
        history.append(metrics)
    return state, jax.device_get(history)


def test_bfloat16_training_tracks_float32_and_keeps_the_state_float32(tiny_onet):
    (state32, history32), (state16, history16) = (_train(tiny_onet, d) for d in ("float32", "bfloat16"))
    loss32 = np.array([m["loss"] for m in history32])
    loss16 = np.array([m["loss"] for m in history16])
    assert np.isfinite(loss16).all()
    rel = np.abs(loss16 - loss32) / loss32
    # bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9, 0.2%); the losses themselves are
    # float32 sums. Measured on the CPU: 0.02% at the first step (same parameters) and at most
    # 0.25% over the run, while the loss falls by 30%; the bounds leave a factor 8 for other
    # backends' bfloat16 matmuls.
    assert rel[0] < 0.005, rel[0]
    assert rel.max() < 0.02, rel
    assert rel[-1] < 0.02, rel[-1]
    assert loss16[-1] < 0.8 * loss16[0], loss16
    assert loss32[-1] < 0.8 * loss32[0], loss32

    # Parameters, optimiser state and batch statistics: the same leaves with the same dtypes as
    # the float32 run (float32, and Adam's integer count), and float32 metrics.
    flat = jax.tree_util.tree_flatten_with_path
    dtypes32 = [
        (path, x.dtype) for path, x in flat((state32.params, state32.opt_state, state32.batch_stats))[0]
    ]
    dtypes16 = [
        (path, x.dtype) for path, x in flat((state16.params, state16.opt_state, state16.batch_stats))[0]
    ]
    assert dtypes16 == dtypes32
    floating = [dtype for _, dtype in dtypes16 if jnp.issubdtype(dtype, jnp.floating)]
    assert floating and all(dtype == jnp.float32 for dtype in floating)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(history16[-1]))
    # The running statistics of the conditional batch norms moved (from 0 and 1) and stay close
    # to float32's: within 10% of each statistic's scale (measured: 4% for the means, which
    # follow parameters that drift apart).
    assert jax.tree.leaves(state16.batch_stats)
    for a, b in zip(jax.tree.leaves(state32.batch_stats), jax.tree.leaves(state16.batch_stats)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(b - a).max() < 0.1 * np.abs(a).max()
    means = [x for path, x in flat(state16.batch_stats)[0] if "mean" in jax.tree_util.keystr(path)]
    assert max(float(np.abs(x).max()) for x in means) > 0.1


def test_the_bfloat16_step_computes_its_matmuls_in_bfloat16(tiny_onet):
    state, loss_fn, batches = tiny_onet

    def text(compute_dtype):
        step = train_utils.create_train_step(loss_fn, compute_dtype=compute_dtype)
        return step.lower(state, batches[0]).as_text()

    dots = re.findall(r"stablehlo\.dot_general.*", text("bfloat16"))
    bf16 = [d for d in dots if re.search(r"tensor<[0-9x]*bf16>.*->\s*tensor<[0-9x]*bf16>", d)]
    # Every matmul of the forward and backward passes: encoder, decoder, batch-norm projections.
    assert len(dots) > 20 and len(bf16) == len(dots), [d for d in dots if d not in bf16][:3]
    assert "bf16" not in text("float32")


def _step_without_the_option(state, batch, static=(), *, loss_fn, loop_key):
    """`train_utils.train_step` as it was before `compute_dtype` existed."""
    rng = jax.random.fold_in(loop_key, state.step)

    def objective(params):
        return loss_fn(params, state.batch_stats, batch, rng, **dict(static))

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    if batch_stats is None:
        batch_stats = state.batch_stats
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return new_state, metrics


def test_float32_option_is_the_plain_step_op_for_op(tiny_onet):
    """'float32' adds no cast: the program of the step without the option, so the same bits."""
    state, loss_fn, batches = tiny_onet
    loop_key = train_utils.rng_keys(0)[1]
    plain = functools.partial(_step_without_the_option, loss_fn=loss_fn, loop_key=loop_key)
    expected = str(jax.make_jaxpr(plain)(state, batches[0]))
    for option in ("float32", jnp.float32, np.dtype("float32")):
        step = functools.partial(
            train_utils.train_step, loss_fn=loss_fn, loop_key=loop_key, compute_dtype=option
        )
        assert str(jax.make_jaxpr(step)(state, batches[0])) == expected
    assert "bf16" not in expected
    # The jitted step made without the option is the 'float32' one.
    lowered = [
        train_utils.create_train_step(loss_fn, None, loop_key, *option).lower(state, batches[0]).as_text()
        for option in ((), ("float32",))
    ]
    assert lowered[0] == lowered[1]


@pytest.mark.parametrize("value", ["float16", "float64", "bf16", None, 3])
def test_a_compute_dtype_that_is_not_offered_is_refused(value):
    with pytest.raises(
        ValueError, match=r"config\.train\.compute_dtype\): use one of \('float32', 'bfloat16'\)"
    ):
        train_utils.create_train_step(lambda *a: None, compute_dtype=value)


@pytest.mark.parametrize(
    "name, module",
    [("dvr", dvr_config), ("nerf", nerf_config), ("oflow", oflow_config)],
)
def test_methods_that_need_float32_refuse_bfloat16_before_any_work(name, module, tmp_path):
    config = module.get_config()
    trainer.check_config(config)  # float32, the default, passes.
    config.train.compute_dtype = "bfloat16"
    config.data.path = str(tmp_path / "data")
    with pytest.raises(
        ValueError, match=r"config\.train\.compute_dtype='bfloat16': .* trains in float32 only \("
    ):
        trainer.run(config, str(tmp_path / "run"), "train")
    assert list(tmp_path.iterdir()) == []  # No workdir, no data.


@pytest.mark.parametrize("module", [onet_config, convonet_config, texture_fields_config])
def test_the_other_methods_accept_bfloat16(module):
    config = module.get_config()
    config.train.compute_dtype = "bfloat16"
    trainer.check_config(config)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("use_running_average", [False, True])
@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_batch_norm_computes_in_float32_and_returns_the_input_dtype(affine, use_running_average, offset):
    """Statistics of a bfloat16 input are those of its float32 values; the running ones stay float32."""
    x = (jax.random.normal(jax.random.key(1), (4, 300, 6)) * 3.0 + offset).astype(jnp.bfloat16)
    x32 = x.astype(jnp.float32)
    bn = layers.BatchNorm(affine=affine)
    variables = bn.init(jax.random.key(0), x32)
    if affine:
        variables = {**variables, "params": {"scale": jnp.full(6, 2.0), "bias": jnp.full(6, -1.0)}}
    if use_running_average:
        stats = {"mean": jnp.full(6, offset + 0.5), "var": jnp.full(6, 8.0)}
        variables = {**variables, "batch_stats": stats}
        bn = layers.BatchNorm(use_running_average=True, affine=affine)
    y16, upd16 = bn.apply(variables, x, mutable=["batch_stats"])
    y32, upd32 = bn.apply(variables, x32, mutable=["batch_stats"])
    assert y16.dtype == jnp.bfloat16 and y32.dtype == jnp.float32
    # The bfloat16 output is the float32 computation on the same values, rounded once.
    np.testing.assert_array_equal(np.asarray(y16), np.asarray(y32.astype(jnp.bfloat16)))
    for key in ("mean", "var"):
        assert upd16["batch_stats"][key].dtype == jnp.float32
        np.testing.assert_array_equal(
            np.asarray(upd16["batch_stats"][key]), np.asarray(upd32["batch_stats"][key])
        )


@pytest.mark.parametrize(
    "loss, args",
    [
        (losses.occupancy_bce, ((8, 4096), (8, 4096))),
        (losses.kl_normal_std, ((8, 64), (8, 64))),
        (losses.correspondence_l2, ((8, 4096, 3), (8, 4096, 3))),
    ],
)
def test_losses_compute_in_float32_from_bfloat16_inputs(loss, args):
    """A bfloat16 input gives the float32 loss of its values, to the bit (not a bfloat16 sum of 3 digits)."""
    keys = jax.random.split(jax.random.key(2), len(args))
    arrays = [jax.random.normal(k, shape) for k, shape in zip(keys, args)]
    if loss is losses.occupancy_bce:
        arrays[1] = (arrays[1] > 0).astype(jnp.float32)
    low = [a.astype(jnp.bfloat16) for a in arrays]
    out = loss(*low)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), np.asarray(loss(*[a.astype(jnp.float32) for a in low])))


@pytest.mark.parametrize("kernel_dtype", [jnp.float32, jnp.bfloat16])
def test_dense_and_convolutions_compute_in_their_kernels_dtype(kernel_dtype):
    """A float32 input (a batch) enters a layer whose parameters are bfloat16 in bfloat16; each
    gradient comes back in the dtype of what it differentiates."""
    x = jax.ShapeDtypeStruct((2, 6, 6, 3), jnp.float32)
    dense = layers.Dense(5)
    params = jax.eval_shape(lambda x: dense.init(jax.random.key(0), x)["params"], x)
    params = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, kernel_dtype), params)
    out = jax.eval_shape(lambda p, x: dense.apply({"params": p}, x), params, x)
    grads = jax.eval_shape(
        jax.grad(lambda p, x: dense.apply({"params": p}, x).astype(jnp.float32).sum(), argnums=(0, 1)),
        params,
        x,
    )
    assert out.dtype == kernel_dtype
    assert all(g.dtype == kernel_dtype for g in jax.tree.leaves(grads[0])) and grads[1].dtype == jnp.float32
    x3 = jax.ShapeDtypeStruct((2, 6, 6, 6, 3), jnp.float32)
    for impl in ("im2col", "xla"):
        k2 = jax.ShapeDtypeStruct((3, 3, 3, 4), kernel_dtype)
        k3 = jax.ShapeDtypeStruct((3, 3, 3, 3, 4), kernel_dtype)
        conv2d = functools.partial(layers.conv2d, stride=1, padding=1, impl=impl)
        conv3d = functools.partial(layers.conv3d, stride=1, impl=impl)
        assert jax.eval_shape(conv2d, x, k2).dtype == kernel_dtype
        assert jax.eval_shape(conv3d, x3, k3).dtype == kernel_dtype


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_the_trainer_trains_in_the_configured_dtype(fake, compute_dtype, tmp_path, monkeypatch):
    """`config.train.compute_dtype` reaches the step: the loss sees parameters of that dtype, and
    the state the run ends with (and saves) is float32."""
    import fake_method

    seen = []

    def loss(params, *args, **kwargs):
        seen.append(params["w"].dtype)
        return real(params, *args, **kwargs)

    real = fake_method._loss
    monkeypatch.setattr(fake_method, "_loss", loss)
    config = fake.get_config()
    config.train.compute_dtype = compute_dtype
    workdir = str(tmp_path / "run")
    state = trainer.train_and_evaluate(config, workdir)
    assert int(state.step) == config.train.num_steps
    assert seen and set(seen) == {jnp.dtype(compute_dtype)}
    assert state.params["w"].dtype == jnp.float32
    # It moved towards the least-squares weights (as test_trainer's float32 run).
    assert np.abs(np.asarray(state.params["w"]) - fake_method.W_TRUE).max() < np.abs(fake_method.W_TRUE).max()
    _, restored, _ = trainer.restore(config, workdir, "latest")
    assert restored.params["w"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.asarray(state.params["w"]))
