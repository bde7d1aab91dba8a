"""Layers: PyTorch batch-norm statistics, and the im2col convolutions against XLA's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import layers


def test_batch_norm_running_statistics_follow_pytorch(key):
    x = jax.random.normal(key, (4, 25, 6)) * 3.0 + 1.0
    bn = layers.BatchNorm()
    variables = bn.init(key, x)
    y, upd = bn.apply(variables, x, mutable=["batch_stats"])
    flat = np.asarray(x).reshape(-1, 6)
    np.testing.assert_allclose(y.reshape(-1, 6).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * flat.mean(0), rtol=1e-5)
    # PyTorch stores the unbiased variance in the running estimate.
    np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
    # Eval mode uses the running statistics.
    eval_bn = layers.BatchNorm(use_running_average=True)
    y_eval = eval_bn.apply({"batch_stats": upd["batch_stats"]}, x)
    expected = (flat - 0.1 * flat.mean(0)) / np.sqrt(0.9 + 0.1 * flat.var(0, ddof=1) + 1e-5)
    np.testing.assert_allclose(np.asarray(y_eval).reshape(-1, 6), expected, rtol=1e-4, atol=1e-5)


def test_conv3d_im2col_matches_xla_for_both_strides(key):
    x = (jax.random.uniform(key, (2, 8, 8, 8, 1)) < 0.3).astype(jnp.float32)
    for stride in (1, 2):
        conv = layers.Conv3d(5, stride=stride)
        v = conv.init(key, x)
        a = jax.jit(conv.apply)(v, x)
        b = jax.jit(layers.Conv3d(5, stride=stride, impl="xla").apply)(v, x)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        assert a.shape == (2,) + (8 // stride,) * 3 + (5,)


@pytest.mark.parametrize(
    "kernel_size, stride, padding, size",
    [(7, 2, 3, (13, 10)), (3, 1, 1, (7, 6)), (3, 2, 1, (9, 8)), (3, 2, 1, (4, 5)), (1, 2, 0, (7, 6))],
)
def test_conv2d_im2col_matches_xla_values_and_gradients(kernel_size, stride, padding, size):
    # ResNet-18's convolutions: the 7x7/2 stem, 3x3/1 and 3x3/2 blocks, 1x1/2 shortcuts; odd sizes too.
    rng = np.random.default_rng(kernel_size + 10 * stride + size[0])  # numpy: no per-shape RNG compiles
    x = rng.normal(size=(2, *size, 3)).astype(np.float32)
    kernel = rng.normal(size=(kernel_size, kernel_size, 3, 5)).astype(np.float32)
    expected = tuple((n + 2 * padding - kernel_size) // stride + 1 for n in size)
    cotangent = rng.normal(size=(2, *expected, 5)).astype(np.float32)

    @jax.jit
    def values_and_grads(x, kernel):
        out = {}
        for impl in ("xla", "im2col"):
            y, vjp = jax.vjp(lambda x, w, impl=impl: layers.conv2d(x, w, stride, padding, impl), x, kernel)
            out[impl] = (y, *vjp(cotangent))
        return out

    out = values_and_grads(x, kernel)
    assert out["im2col"][0].shape == out["xla"][0].shape == (2, *expected, 5)
    for a, b in zip(out["im2col"], out["xla"]):  # y, d/dx, d/dkernel
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown Conv2d impl"):
        layers.conv2d(x, kernel, stride, padding, impl="fft")


def test_conv2d_auto_picks_im2col_for_small_outputs_and_1x1_on_cpu():
    assert jax.default_backend() == "cpu"
    pick = layers._auto_conv2d_impl
    assert pick((8, 64, 64, 3), (7, 7, 3, 64), 2, 3) == "xla"  # stem: 32 x 32 output
    assert pick((8, 16, 16, 64), (3, 3, 64, 64), 1, 1) == "xla"
    assert pick((8, 4, 4, 256), (3, 3, 256, 256), 1, 1) == "im2col"  # 16 pixels
    assert pick((8, 2, 2, 512), (3, 3, 512, 512), 1, 1) == "im2col"
    assert pick((8, 56, 56, 64), (1, 1, 64, 128), 2, 0) == "im2col"  # 1x1: a matmul


def _plain_cbn(x, gamma, beta, relu):
    # The textbook conditional batch norm, left to autodiff.
    mean = jnp.mean(x, axis=(0, 1), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1), keepdims=True)
    out = gamma[:, None, :] * (x - mean) / jnp.sqrt(var + 1e-5) + beta[:, None, :]
    return jax.nn.relu(out) if relu else out


@pytest.mark.parametrize("relu", [False, True])
def test_cond_batch_norm_values_and_gradients_match_autodiff(relu):
    k = jax.random.split(jax.random.key(3), 4)
    x = 1.5 + 2.0 * jax.random.normal(k[0], (3, 40, 8))
    gamma = 1.0 + 0.5 * jax.random.normal(k[1], (3, 8))
    beta = 0.3 * jax.random.normal(k[2], (3, 8))
    w = jax.random.normal(k[3], (3, 40, 8))
    fused = layers.cond_batch_norm(x, gamma, beta, 1e-5, relu)
    np.testing.assert_allclose(fused, _plain_cbn(x, gamma, beta, relu), rtol=1e-5, atol=1e-5)

    def loss(fn):
        return lambda *a: jnp.sum(jnp.sin(fn(*a)) * w)

    g_fused = jax.grad(loss(lambda *a: layers.cond_batch_norm(*a, 1e-5, relu)), argnums=(0, 1, 2))(
        x, gamma, beta
    )
    g_plain = jax.grad(loss(lambda *a: _plain_cbn(*a, relu)), argnums=(0, 1, 2))(x, gamma, beta)
    for a, b in zip(g_fused, g_plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # A directional finite difference of the fused op itself (float64 would need x64; step 1e-2 in float32).
    d = jax.random.normal(jax.random.key(9), x.shape)
    f = loss(lambda x: layers.cond_batch_norm(x, gamma, beta, 1e-5, relu))
    fd = (f(x + 1e-2 * d) - f(x - 1e-2 * d)) / 2e-2
    np.testing.assert_allclose(jnp.vdot(g_fused[0], d), fd, rtol=2e-2)


def test_cond_batch_norm_keeps_bfloat16_inputs_bfloat16_and_rejects_bad_shapes():
    x = jax.random.normal(jax.random.key(0), (2, 16, 4)).astype(jnp.bfloat16)
    gamma, beta = jnp.ones((2, 4)), jnp.zeros((2, 4))
    out, grad = jax.value_and_grad(lambda x: jnp.sum(layers.cond_batch_norm(x, gamma, beta) ** 2))(x)
    assert grad.dtype == jnp.bfloat16 and jnp.all(jnp.isfinite(grad.astype(jnp.float32)))
    with pytest.raises(ValueError, match=r"gamma, beta \[batch, f\]"):
        layers.cond_batch_norm(x, jnp.ones((4,)), jnp.zeros((4,)))


def test_dense_on_a_pair_is_dense_on_the_concatenation():
    # PointNet's [per-point, pooled] input computed without the concatenation: same values, gradients.
    per_point = jax.random.normal(jax.random.key(0), (2, 30, 6))
    shared = jax.random.normal(jax.random.key(1), (2, 1, 4))
    block = layers.ResnetBlockFC(size_out=5)
    params = block.init(jax.random.key(2), (per_point, shared))
    cat = jnp.concatenate([per_point, jnp.broadcast_to(shared, (2, 30, 4))], axis=-1)
    assert params["params"]["fc_0"]["kernel"].shape == (10, 5)
    # Nonzero fc_1 so every layer matters.
    params = jax.tree.map(lambda p: p + 0.1, params)
    np.testing.assert_allclose(block.apply(params, (per_point, shared)), block.apply(params, cat), atol=1e-5)
    g_pair = jax.grad(lambda p: jnp.sum(jnp.tanh(block.apply(p, (per_point, shared)))))(params)
    g_cat = jax.grad(lambda p: jnp.sum(jnp.tanh(block.apply(p, cat))))(params)
    for a, b in zip(jax.tree.leaves(g_pair), jax.tree.leaves(g_cat)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="shortcut"):
        layers.ResnetBlockFC(size_out=10).init(jax.random.key(2), (per_point, shared))
    with pytest.raises(ValueError, match=r"shared \[batch, 1, b\]"):
        layers.Dense(3).init(jax.random.key(2), (per_point, shared[:, 0]))


def test_linear_with_one_output_has_the_exact_weight_gradient():
    x = jax.random.normal(jax.random.key(0), (4, 50, 7))
    k = jax.random.normal(jax.random.key(1), (7, 1))
    b = jnp.array([0.2])
    grads = jax.grad(lambda *a: jnp.sum(jnp.cos(layers.linear(*a))), argnums=(0, 1, 2))(x, k, b)
    ref = jax.grad(lambda x, k, b: jnp.sum(jnp.cos(x @ k + b[None, None, :])), argnums=(0, 1, 2))(x, k, b)
    for a, r in zip(grads, ref):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)


def test_cresnet_block_training_cancels_the_fc_0_bias_into_the_running_mean():
    # Training adds fc_0's bias to bn_1's running mean instead of to every point: the same block.
    x = jax.random.normal(jax.random.key(0), (3, 20, 8))
    c = jax.random.normal(jax.random.key(1), (3, 5))
    block = layers.CResnetBlock()
    variables = block.init(jax.random.key(2), x, c)
    params = jax.tree.map(
        lambda p: p + 0.05 * jnp.arange(p.size).reshape(p.shape) / p.size, variables["params"]
    )
    out, upd = block.apply(
        {"params": params, "batch_stats": variables["batch_stats"]}, x, c, mutable=["batch_stats"]
    )

    def reference(p):  # the block written out with the bias added, as the original computes it
        def cbn(name, h):
            g = c @ p[name]["conv_gamma"]["kernel"] + p[name]["conv_gamma"]["bias"][None, :]
            bt = c @ p[name]["conv_beta"]["kernel"] + p[name]["conv_beta"]["bias"][None, :]
            return _plain_cbn(h, g, bt, relu=True), jnp.mean(h, axis=(0, 1))

        a0, _ = cbn("bn_0", x)
        h = a0 @ p["fc_0"]["kernel"] + p["fc_0"]["bias"][None, None, :]
        a1, mean1 = cbn("bn_1", h)
        return x + a1 @ p["fc_1"]["kernel"] + p["fc_1"]["bias"][None, None, :], mean1

    ref, mean1 = reference(params)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["bn_1"]["bn"]["mean"], 0.1 * mean1, rtol=1e-5, atol=1e-6)
    g = jax.grad(
        lambda p: jnp.sum(
            block.apply(
                {"params": p, "batch_stats": variables["batch_stats"]}, x, c, mutable=["batch_stats"]
            )[0]
            ** 2
        )
    )(params)
    assert np.all(np.asarray(g["fc_0"]["bias"]) == 0.0)
    g_ref = jax.grad(lambda p: jnp.sum(reference(p)[0] ** 2))(params)
    np.testing.assert_allclose(g["fc_0"]["kernel"], g_ref["fc_0"]["kernel"], rtol=1e-3, atol=1e-4)
    # Evaluation with the running statistics sees the bias as before.
    ev = layers.CResnetBlock(use_running_average=True)
    stats = upd["batch_stats"]
    e1 = ev.apply({"params": params, "batch_stats": stats}, x, c)
    shifted = jax.tree.map(lambda a: a, params)
    shifted["fc_0"] = dict(params["fc_0"], bias=params["fc_0"]["bias"] + 1.0)
    stats2 = jax.tree.map(lambda a: a, stats)
    stats2["bn_1"] = {"bn": dict(stats["bn_1"]["bn"], mean=stats["bn_1"]["bn"]["mean"] + 1.0)}
    np.testing.assert_allclose(ev.apply({"params": shifted, "batch_stats": stats2}, x, c), e1, atol=1e-5)


def test_linear_with_few_inputs_matches_the_matmul_and_its_gradients():
    # 3-D points take the broadcast multiply-add path: the same values and gradients as x @ k + b.
    x = jax.random.normal(jax.random.key(0), (2, 64, 3))
    k = jax.random.normal(jax.random.key(1), (3, 16))
    b = jax.random.normal(jax.random.key(2), (16,))
    assert x.shape[-1] <= layers.SMALL_FAN_IN
    np.testing.assert_allclose(layers.linear(x, k, b), x @ k + b[None, None, :], rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda *a: jnp.sum(jnp.tanh(layers.linear(*a))), argnums=(0, 1, 2))(x, k, b)
    ref = jax.grad(lambda x, k, b: jnp.sum(jnp.tanh(x @ k + b[None, None, :])), argnums=(0, 1, 2))(x, k, b)
    for a, r in zip(grads, ref):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5)


def test_batch_norm_offset_normalises_x_plus_offset_without_forming_it():
    x = 2.0 + jax.random.normal(jax.random.key(0), (4, 30, 6))
    offset = jnp.linspace(-3.0, 3.0, 6)
    bn = layers.BatchNorm()
    variables = bn.init(jax.random.key(1), x)
    out, upd = bn.apply(variables, x, offset, mutable=["batch_stats"])
    ref, ref_upd = bn.apply(variables, x + offset[None, None, :], mutable=["batch_stats"])
    np.testing.assert_allclose(out, ref, atol=1e-5)
    for name in ("mean", "var"):
        np.testing.assert_allclose(
            upd["batch_stats"][name], ref_upd["batch_stats"][name], rtol=1e-5, atol=1e-6
        )
    ev = layers.BatchNorm(use_running_average=True)
    np.testing.assert_allclose(
        ev.apply(upd, x, offset), ev.apply(ref_upd, x + offset[None, None, :]), rtol=1e-5, atol=1e-5
    )
