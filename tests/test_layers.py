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
