"""Training losses."""

import math

import jax.numpy as jnp
import optax


def occupancy_bce(logits: jnp.ndarray, occupancies: jnp.ndarray) -> jnp.ndarray:
    """BCE with logits summed over points and averaged over the batch (ONet, ConvONet).

    Args:
      logits: [batch, points].
      occupancies: targets in {0, 1} (or soft), [batch, points].

    Returns:
      Scalar loss.
    """
    assert logits.shape == occupancies.shape, (logits.shape, occupancies.shape)
    return optax.sigmoid_binary_cross_entropy(logits, occupancies).sum(-1).mean()


def probability_to_logit(threshold: float) -> float:
    """`log(t) - log(1 - t)`: the original's conversion of a probability threshold."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")
    return math.log(threshold) - math.log1p(-threshold)
