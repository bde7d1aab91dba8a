"""Losses: the KL term, the occupancy BCE and the probability threshold in logits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from implicit_fields import losses


def test_kl_is_zero_at_the_prior_and_matches_the_closed_form(key):
    zeros = jnp.zeros((3, 5))
    np.testing.assert_array_equal(losses.kl_normal_std(zeros, zeros), 0.0)
    grad = jax.grad(lambda m, s: losses.kl_normal_std(m, s).sum(), argnums=(0, 1))(zeros, zeros)
    np.testing.assert_array_equal(grad[0], 0.0)
    np.testing.assert_array_equal(grad[1], 0.0)
    mean = jax.random.normal(key, (4, 6))
    logstd = 0.5 * jax.random.normal(jax.random.key(1), (4, 6))
    std = np.exp(np.asarray(logstd, np.float64))
    closed = np.sum(np.log(1.0 / std) + (std**2 + np.asarray(mean, np.float64) ** 2) / 2 - 0.5, axis=-1)
    np.testing.assert_allclose(losses.kl_normal_std(mean, logstd), closed, rtol=1e-5)
    assert (np.asarray(losses.kl_normal_std(mean, logstd)) > 0).all()
    # Monte Carlo: E_q[log q(z) - log p(z)] for one row.
    z = np.asarray(mean[0], np.float64) + std[0] * np.random.default_rng(0).standard_normal((200_000, 6))
    log_q = -0.5 * ((z - np.asarray(mean[0])) / std[0]) ** 2 - np.log(std[0])
    log_p = -0.5 * z**2
    assert np.mean(np.sum(log_q - log_p, axis=1)) == pytest.approx(closed[0], rel=0.02)


def test_occupancy_bce_sums_over_points_and_averages_over_the_batch():
    logits = jnp.array([[0.0, 2.0, -1.0], [3.0, -3.0, 0.5]])
    occ = jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    per_point = -(occ * jax.nn.log_sigmoid(logits) + (1 - occ) * jax.nn.log_sigmoid(-logits))
    expected = float(jnp.mean(jnp.sum(per_point, axis=-1)))
    assert float(losses.occupancy_bce(logits, occ)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.occupancy_bce(logits, occ)) == pytest.approx(
        float(optax.sigmoid_binary_cross_entropy(logits, occ).sum(-1).mean()), rel=1e-6
    )


def test_probability_to_logit_is_the_inverse_of_the_sigmoid():
    for t in (0.2, 0.5, 0.9):
        assert float(jax.nn.sigmoid(losses.probability_to_logit(t))) == pytest.approx(t, rel=1e-6)
    assert losses.probability_to_logit(0.5) == 0.0
    assert losses.probability_to_logit(0.2) == pytest.approx(math.log(0.25))
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="probability in \\(0, 1\\)"):
            losses.probability_to_logit(bad)


def test_occupancy_iou_counts_the_thresholded_field_per_object():
    logits = jnp.asarray([[2.0, -1.0, 0.5, -3.0], [-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    occupancies = jnp.asarray([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    # Object 0: predicted {0, 2}, true {0, 1}: 1 / 3. Object 1: both empty: 0. Object 2: equal: 1.
    np.testing.assert_allclose(losses.occupancy_iou(logits, occupancies, 0.0), [1 / 3, 0.0, 1.0])
    # A higher iso-level drops point 2 from object 0: {0} against {0, 1}.
    np.testing.assert_allclose(losses.occupancy_iou(logits, occupancies, 1.0)[0], 0.5)
