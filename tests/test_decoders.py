"""Decoders: parameter counts of the original, zero-initialised blocks, names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import decoders


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def test_parameter_counts_match_the_original():
    p, c = jnp.zeros((2, 4, 3)), jnp.zeros((2, 256))
    cbn = decoders.DecoderCBatchNorm().init(jax.random.key(0), p, c)
    assert _count(cbn["params"]) == 2_106_625  # DecoderCBatchNorm(c_dim=256, hidden 256)
    simple = decoders.DecoderSimple().init(jax.random.key(0), p, jnp.zeros((2, 128)))
    assert _count(simple["params"]) == 182_273  # Decoder(c_dim=128, hidden 128)


def test_cbn_decoder_zero_init_blocks_are_identity_and_ignore_the_code(key):
    dec = decoders.DecoderCBatchNorm(hidden_size=32, n_blocks=3)
    p = jax.random.normal(key, (3, 50, 3))
    c1 = jax.random.normal(jax.random.key(1), (3, 8))
    c2 = jax.random.normal(jax.random.key(2), (3, 8))
    variables = dec.init(key, p, c1)
    params = variables["params"]
    # Zero-initialised weights of the original.
    for i in range(3):
        np.testing.assert_array_equal(params[f"block{i}"]["fc_1"]["kernel"], 0.0)
        for bn in ("bn_0", "bn_1"):
            g = params[f"block{i}"][bn]["conv_gamma"]
            b = params[f"block{i}"][bn]["conv_beta"]
            np.testing.assert_array_equal(g["kernel"], 0.0)
            np.testing.assert_array_equal(g["bias"], 1.0)
            np.testing.assert_array_equal(b["kernel"], 0.0)
            np.testing.assert_array_equal(b["bias"], 0.0)
    out1, _ = dec.apply(variables, p, c1, train=True, mutable=["batch_stats"])
    out2, _ = dec.apply(variables, p, c2, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out1, out2, atol=1e-6)
    # With identity blocks and gamma=1, beta=0 the decoder is fc_out(relu(BN(fc_p(p)))).
    w = params["fc_p"]
    net = np.asarray(p) @ np.asarray(w["kernel"]) + np.asarray(w["bias"])
    net = (net - net.mean(axis=(0, 1))) / np.sqrt(net.var(axis=(0, 1)) + 1e-5)
    wo = params["fc_out"]
    expected = (np.maximum(net, 0) @ np.asarray(wo["kernel"]) + np.asarray(wo["bias"]))[..., 0]
    np.testing.assert_allclose(out1, expected, rtol=1e-4, atol=1e-4)


def test_unknown_decoder_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown decoder 'cbn'"):
        decoders.create_decoder("cbn")
