"""Training losses.

Each loss computes in float32 (or wider) whatever its inputs' dtype: under
`config.train.compute_dtype='bfloat16'` the network's logits arrive in
bfloat16, and a bfloat16 sum over thousands of points, or the log-sigmoid of
a bfloat16 logit, would keep about three significant digits. Float32 inputs
are used as they are.
"""

import math

import jax.numpy as jnp
import optax


def at_least_float32(x: jnp.ndarray) -> jnp.ndarray:
    """`x` with at least float32 precision: bfloat16, float16, integers and booleans become float32.

    Float32 (and float64) arrays are returned as they are, so float32 losses are unchanged.
    """
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def occupancy_bce(logits: jnp.ndarray, occupancies: jnp.ndarray) -> jnp.ndarray:
    """BCE with logits summed over points and averaged over the batch (ONet, ConvONet).

    Args:
      logits: [batch, points].
      occupancies: targets in {0, 1} (or soft), [batch, points].

    Returns:
      Scalar loss.
    """
    assert logits.shape == occupancies.shape, (logits.shape, occupancies.shape)
    logits, occupancies = at_least_float32(logits), at_least_float32(occupancies)
    return optax.sigmoid_binary_cross_entropy(logits, occupancies).sum(-1).mean()


def occupancy_iou(logits: jnp.ndarray, occupancies: jnp.ndarray, threshold_logit: float) -> jnp.ndarray:
    """Per-object IoU of the thresholded field against the occupancies (0 when both are empty).

    Args:
      logits: [batch, points].
      occupancies: [batch, points], occupied where >= 0.5.
      threshold_logit: the iso-level in logits.

    Returns:
      [batch].
    """
    pred = logits >= threshold_logit
    truth = occupancies >= 0.5
    inter = jnp.sum(pred & truth, axis=-1)
    union = jnp.sum(pred | truth, axis=-1)
    return jnp.where(union > 0, inter / jnp.maximum(union, 1), 0.0)


def kl_normal_std(mean: jnp.ndarray, logstd: jnp.ndarray) -> jnp.ndarray:
    """KL(N(mean, exp(logstd)^2) || N(0, I)), summed over the last axis.

    The KL term of the Occupancy Network VAE (`dist.kl_divergence(q_z, p0_z).sum(-1)`):
    `sum(0.5 * (exp(2 logstd) + mean^2 - 1) - logstd)`. Zero exactly when
    q is the prior (mean 0, logstd 0).

    Args:
      mean: [..., z_dim].
      logstd: [..., z_dim].

    Returns:
      [...].
    """
    assert mean.shape == logstd.shape, (mean.shape, logstd.shape)
    mean, logstd = at_least_float32(mean), at_least_float32(logstd)
    return jnp.sum(0.5 * (jnp.exp(2.0 * logstd) + jnp.square(mean) - 1.0) - logstd, axis=-1)


def correspondence_l2(predicted: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """Occupancy Flow's L_corr: the mean Euclidean distance of predicted points to their correspondences.

    `torch.norm(pred - gt, 2, dim=-1).mean()` over every point of every frame and sample. A
    point exactly on its correspondence contributes 0 with a zero gradient (not the NaN of
    the square root's derivative at 0).

    Args:
      predicted, target: [..., 3] corresponding points.
    """
    d2 = jnp.sum((at_least_float32(predicted) - at_least_float32(target)) ** 2, axis=-1)
    positive = d2 > 0
    return jnp.mean(jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0))


def probability_to_logit(threshold: float) -> float:
    """`log(t) - log(1 - t)`: the original's conversion of a probability threshold."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")
    return math.log(threshold) - math.log1p(-threshold)
