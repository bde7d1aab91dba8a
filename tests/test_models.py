"""Decoders, encoder and layers: parameter counts, initialisation behaviour, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import decoders, encoders, layers, models


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def test_parameter_counts_match_the_original():
    p, c = jnp.zeros((2, 4, 3)), jnp.zeros((2, 256))
    cbn = decoders.DecoderCBatchNorm().init(jax.random.key(0), p, c)
    assert _count(cbn["params"]) == 2_106_625  # DecoderCBatchNorm(c_dim=256, hidden 256)
    simple = decoders.DecoderSimple().init(jax.random.key(0), p, jnp.zeros((2, 128)))
    assert _count(simple["params"]) == 182_273  # Decoder(c_dim=128, hidden 128)
    enc = encoders.ResnetPointnet().init(jax.random.key(0), jnp.zeros((2, 300, 3)))
    # fc_pos 4,096 + 5 blocks x 1,311,744 + fc_c 262,656
    assert _count(enc["params"]) == 6_825_472


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


def test_eval_mode_decoder_is_pointwise_so_chunking_does_not_matter(key):
    model = models.OccupancyNetwork(c_dim=16, encoder_hidden=16, decoder_hidden=16, decoder_blocks=2)
    pts = jax.random.uniform(key, (2, 30, 3), minval=-0.5, maxval=0.5)
    inputs = jax.random.normal(jax.random.key(3), (2, 20, 3)) * 0.3
    variables = model.init(key, pts, inputs)
    # Take one training step's statistics so the running stats are not trivial.
    _, upd = model.apply(variables, pts, inputs, train=True, mutable=["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
    full = model.apply(variables, pts, inputs)
    c = model.apply(variables, inputs, method=models.OccupancyNetwork.encode)
    fn = jax.jit(models.make_logit_fn(model, variables, c[1], chunk_size=7))
    np.testing.assert_allclose(fn(pts[1]), full[1], rtol=1e-5, atol=1e-5)


def test_encoder_is_permutation_invariant(key):
    enc = encoders.ResnetPointnet(c_dim=8, hidden_dim=16)
    x = jax.random.normal(key, (2, 40, 3))
    variables = enc.init(key, x)
    perm = jax.random.permutation(jax.random.key(5), 40)
    np.testing.assert_allclose(
        enc.apply(variables, x), enc.apply(variables, x[:, perm]), rtol=1e-5, atol=1e-6
    )


def test_unknown_decoder_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown decoder 'cbn'"):
        decoders.create_decoder("cbn")
