"""Building blocks shared by encoders and decoders.

The layers follow the original PyTorch code (`im2mesh/layers.py`) so that its
initialisations and, later, its checkpoints carry over:

* `Dense` initialises like `torch.nn.Linear` / kernel-1 `Conv1d`
  (weight and bias uniform in +-1/sqrt(fan_in)), with an option to zero the
  weight (the original zero-initialises `fc_1` of every ResNet block and the
  weights of the conditional batch-norm projections).
* `ResnetBlockFC` is the pre-activation block `x + fc_1(relu(fc_0(relu(x))))`.
* `BatchNorm` normalises over every axis but the last, with PyTorch's
  conventions: momentum 0.1 for the running statistics, eps 1e-5, biased
  variance to normalise and unbiased variance in the running estimate.
* `CBatchNorm` is `gamma(c) * BN(x) + beta(c)`, with `gamma` initialised to
  one and `beta` to zero (weights zero, biases one / zero).
* `CResnetBlock` is the conditional-batch-norm ResNet block of the decoder.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_uniform_init(fan_in: int):
    """Returns an initialiser drawing from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    This is PyTorch's default for `nn.Linear` and `nn.Conv1d` weights (Kaiming
    uniform with a=sqrt(5)) and biases.
    """
    bound = 1.0 / float(max(fan_in, 1)) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


@jax.custom_vjp
def linear(x, kernel, bias):
    """`x @ kernel + bias` with a backward pass that is fast on XLA's CPU backend.

    The gradient is the usual one. The backward pass first materialises the
    incoming cotangent and the saved input (`lax.optimization_barrier`):
    without that, XLA's CPU backend fuses the whole elementwise chain of the
    batch-norm backward into the transposing copy that feeds the weight-gradient
    matmul and recomputes it there, which made a conditional-batch-norm decoder
    step twice as slow. The rule is differentiable again (the MISE refinement
    needs gradients of gradients); forward-mode (`jax.jvp`) is not available
    through a custom VJP.

    Args:
      x: [..., in].
      kernel: [in, out].
      bias: [out].

    Returns:
      [..., out].
    """
    return x @ kernel + bias.reshape((1,) * (x.ndim - 1) + bias.shape)


def _linear_fwd(x, kernel, bias):
    # Residuals: the input and the kernel.
    return linear(x, kernel, bias), (x, kernel)


def _linear_bwd(res, g):
    x, kernel = res
    x, g = jax.lax.optimization_barrier((x, g))
    x2 = x.reshape(-1, x.shape[-1])
    g2 = g.reshape(-1, g.shape[-1])
    return g @ kernel.T, x2.T @ g2, g2.sum(0)


linear.defvjp(_linear_fwd, _linear_bwd)


class Dense(nn.Module):
    """A linear layer initialised as PyTorch's `nn.Linear`.

    Parameters are 'kernel' [in, out] (the transpose of PyTorch's weight) and
    'bias' [out].

    Attributes:
      features: output width.
      use_bias: whether the layer has a bias.
      zero_init: if True the weight starts at zero (the bias keeps the default).
      bias_value: if set, the bias starts at this constant instead.
    """

    features: int
    use_bias: bool = True
    zero_init: bool = False
    bias_value: Optional[float] = None

    @nn.compact
    def __call__(self, x):
        """Applies the layer to `x` of shape [..., in] and returns [..., features]."""
        fan_in = x.shape[-1]
        kernel_init = nn.initializers.zeros if self.zero_init else torch_uniform_init(fan_in)
        if self.bias_value is None:
            bias_init = torch_uniform_init(fan_in)
        else:
            bias_init = nn.initializers.constant(self.bias_value)
        kernel = self.param("kernel", kernel_init, (fan_in, self.features))
        if self.use_bias:
            bias = self.param("bias", bias_init, (self.features,))
        else:
            bias = jnp.zeros((self.features,), kernel.dtype)
        return linear(x, kernel, bias)


class ResnetBlockFC(nn.Module):
    """Pre-activation fully connected ResNet block of the original code.

    `out = shortcut(x) + fc_1(relu(fc_0(relu(x))))`; `fc_1` starts at zero, so
    a freshly initialised block is the identity (or its linear shortcut).

    Attributes:
      size_out: output width (defaults to the input width).
      size_h: hidden width (defaults to min(in, out)).
    """

    size_out: Optional[int] = None
    size_h: Optional[int] = None

    @nn.compact
    def __call__(self, x):
        """Maps x of shape [..., in] to [..., size_out]."""
        size_in = x.shape[-1]
        size_out = self.size_out or size_in
        size_h = self.size_h or min(size_in, size_out)
        net = Dense(size_h, name="fc_0")(nn.relu(x))
        dx = Dense(size_out, zero_init=True, name="fc_1")(nn.relu(net))
        if size_in != size_out:
            x = Dense(size_out, use_bias=False, name="shortcut")(x)
        return x + dx


class BatchNorm(nn.Module):
    """Batch norm over all axes but the last, affine parameters optional.

    Matches `torch.nn.BatchNorm1d(affine=False)` applied to [batch, features,
    points] (or, with `affine`, `BatchNorm2d` on NHWC features, parameters
    'scale' = weight, init 1, and 'bias', init 0): training uses the batch mean
    and biased variance over batch and points; the running statistics are
    updated with momentum `momentum` and the unbiased variance; evaluation uses
    the running statistics.

    Under `jax.jit` with the batch sharded over devices the reduction runs over
    the global batch, so the statistics do not depend on the device count.

    Attributes:
      use_running_average: evaluate with the running statistics.
      momentum: PyTorch-style momentum (weight of the new batch statistic).
      epsilon: added to the variance.
      affine: learn a per-feature scale and bias (PyTorch's `affine=True`).
    """

    use_running_average: bool = False
    momentum: float = 0.1
    epsilon: float = 1e-5
    affine: bool = False

    @nn.compact
    def __call__(self, x):
        """Normalises x of shape [..., features]."""
        features = x.shape[-1]
        if self.affine:
            scale = self.param("scale", nn.initializers.ones, (features,))
            bias = self.param("bias", nn.initializers.zeros, (features,))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean.reshape((1,) * (x.ndim - 1) + (features,))), axis=axes)
            if not self.is_initializing():
                n = x.size // features
                unbiased = var * (n / max(n - 1, 1))
                ra_mean.value = (1.0 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1.0 - self.momentum) * ra_var.value + self.momentum * unbiased
        shape = (1,) * (x.ndim - 1) + (features,)
        if not self.affine:
            return (x - mean.reshape(shape)) * jax.lax.rsqrt(var + self.epsilon).reshape(shape)
        mul = (jax.lax.rsqrt(var + self.epsilon) * scale).reshape(shape)
        return (x - mean.reshape(shape)) * mul + bias.reshape(shape)


class CBatchNorm(nn.Module):
    """Conditional batch norm: `gamma(c) * BN(x) + beta(c)`.

    Attributes:
      use_running_average: evaluate with the running statistics.
    """

    use_running_average: bool = False

    @nn.compact
    def __call__(self, x, c):
        """Args:
          x: features, [batch, points, f].
          c: condition, [batch, c_dim].

        Returns:
          [batch, points, f].
        """
        features = x.shape[-1]
        gamma = Dense(features, zero_init=True, bias_value=1.0, name="conv_gamma")(c)
        beta = Dense(features, zero_init=True, bias_value=0.0, name="conv_beta")(c)
        net = BatchNorm(use_running_average=self.use_running_average, name="bn")(x)
        return gamma[:, None, :] * net + beta[:, None, :]


class CResnetBlock(nn.Module):
    """Conditional-batch-norm ResNet block (`CResnetBlockConv1d` of the original).

    `out = x + fc_1(relu(bn_1(fc_0(relu(bn_0(x, c))), c)))` with `fc_1` zero.

    Attributes:
      size_out: output width (defaults to the input width).
      use_running_average: evaluate batch norm with the running statistics.
    """

    size_out: Optional[int] = None
    use_running_average: bool = False

    @nn.compact
    def __call__(self, x, c):
        """Maps x [batch, points, in] with c [batch, c_dim] to [batch, points, out]."""
        size_in = x.shape[-1]
        size_out = self.size_out or size_in
        size_h = min(size_in, size_out)
        ura = self.use_running_average
        net = CBatchNorm(ura, name="bn_0")(x, c)
        net = Dense(size_h, name="fc_0")(nn.relu(net))
        net = CBatchNorm(ura, name="bn_1")(net, c)
        dx = Dense(size_out, zero_init=True, name="fc_1")(nn.relu(net))
        if size_in != size_out:
            x = Dense(size_out, use_bias=False, name="shortcut")(x)
        return x + dx
