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
  one and `beta` to zero (weights zero, biases one / zero). In training it is
  one op with a hand-written gradient (`cond_batch_norm`, the ReLU after it
  folded in), which XLA's CPU backend runs in two passes instead of seven.
* `CResnetBlock` is the conditional-batch-norm ResNet block of the decoder.
  In training, fc_0's bias (which bn_1 cancels) goes to bn_1's running mean
  rather than onto every point.
* `Dense` / `ResnetBlockFC` also take a pair (per-point, shared) for
  PointNet's [features, pooled] input: the shared half once per object.
* `Conv3d` (PyTorch's `nn.Conv3d` init, 3^3 kernel, padding 1), `Conv2d` /
  `conv2d` (bias-free, as torchvision's ResNet) and `BatchNorm2d`: the
  convolutions of the voxel and image encoders. On the CPU they run as strided
  slices and one matmul (im2col) where XLA's CPU convolution gradients are slow.

Mixed precision (`config.train.compute_dtype='bfloat16'`, see
`train_utils.create_train_step`): the linear layers and convolutions compute in
the dtype of their parameters (the train step hands them bfloat16 copies of the
float32 parameters) and cast their input to it, so a float32 input (points,
images) still enters a bfloat16 network. Batch norm computes its statistics and
the normalisation in float32 whatever the input, keeps its running statistics
in float32 and returns the input's dtype. With float32 parameters and inputs
none of these casts does anything.
"""

import functools
import math
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
    lead = (1,) * (x.ndim - 1)
    if x.shape[-1] <= SMALL_FAN_IN:
        # A few inputs (3-D points): broadcast multiply-adds, which XLA fuses with the bias into one
        # pass over the output; a matmul with K = 3 runs at a fraction of its rate and the bias is a
        # second pass. The same sum, in another rounding order.
        out = bias.reshape(lead + bias.shape)
        for i in range(x.shape[-1]):
            out = out + x[..., i : i + 1] * kernel[i].reshape(lead + bias.shape)
        return out
    return x @ kernel + bias.reshape(lead + bias.shape)


SMALL_FAN_IN = 4
"""`linear` with at most this many inputs computes with broadcast multiply-adds, not a matmul."""


def _linear_fwd(x, kernel, bias):
    # Residuals: the input, the kernel and the bias (for its dtype).
    return linear(x, kernel, bias), (x, kernel, bias)


def _linear_bwd(res, g):
    x, kernel, bias = res
    x, g = jax.lax.optimization_barrier((x, g))
    x2 = x.reshape(-1, x.shape[-1])
    g2 = g.reshape(-1, g.shape[-1])
    if kernel.shape[-1] == 1:
        # One output (a logit head): the weight gradient as a column sum, not a matrix-vector product
        # for which XLA's CPU backend first writes a transposed copy of x.
        g_kernel = jnp.sum(x2 * g2, axis=0)[:, None]
    else:
        g_kernel = x2.T @ g2
    # Each cotangent in its primal's dtype (no-ops when the three share one).
    return (g @ kernel.T).astype(x.dtype), g_kernel.astype(kernel.dtype), g2.sum(0).astype(bias.dtype)


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
    def __call__(self, x, add_bias: bool = True):
        """Applies the layer to `x` of shape [..., in] and returns [..., features], in the kernel's dtype.

        With `add_bias=False` the bias parameter exists as usual but is not added (for a caller that
        accounts for it itself, as `CResnetBlock` does before batch norm).

        `x` may also be a pair (per_point [batch, n, a], shared [batch, 1, b]) that stands for their
        concatenation [batch, n, a + b] with the shared part repeated over the n points (PointNet's
        pooled-feature skip). The kernel is the one of the concatenation ([a + b, features]); the
        shared part's product is computed once per object instead of n times.
        """
        parts = x if isinstance(x, tuple) else (x,)
        fan_in = sum(p.shape[-1] for p in parts)
        kernel_init = nn.initializers.zeros if self.zero_init else torch_uniform_init(fan_in)
        if self.bias_value is None:
            bias_init = torch_uniform_init(fan_in)
        else:
            bias_init = nn.initializers.constant(self.bias_value)
        kernel = self.param("kernel", kernel_init, (fan_in, self.features))
        bias = self.param("bias", bias_init, (self.features,)) if self.use_bias else None
        if bias is None or not add_bias:
            bias = jnp.zeros((self.features,), kernel.dtype)
        bias = bias.astype(kernel.dtype)
        if len(parts) == 1:
            return linear(x.astype(kernel.dtype), kernel, bias)
        if (
            len(parts) != 2
            or parts[0].ndim != 3
            or parts[1].shape != (parts[0].shape[0], 1, parts[1].shape[-1])
        ):
            raise ValueError(
                f"Dense takes x or a pair (per_point [batch, n, a], shared [batch, 1, b]); got shapes "
                f"{[p.shape for p in parts]}"
            )
        a = parts[0].shape[-1]
        per_point = linear(parts[0].astype(kernel.dtype), kernel[:a], bias)
        shared = linear(parts[1].astype(kernel.dtype), kernel[a:], jnp.zeros_like(bias))
        return per_point + shared


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
        """Maps x of shape [..., in] to [..., size_out].

        `x` may be a pair (per_point [batch, n, a], shared [batch, 1, b]) standing for their
        concatenation (see `Dense`); the block then needs a shortcut (a + b != size_out).
        """
        parts = x if isinstance(x, tuple) else (x,)
        size_in = sum(p.shape[-1] for p in parts)
        size_out = self.size_out or size_in
        size_h = self.size_h or min(size_in, size_out)
        if isinstance(x, tuple) and size_in == size_out:
            raise ValueError(f"ResnetBlockFC on a pair needs size_out != {size_in} (a shortcut layer)")
        relu_x = tuple(nn.relu(p) for p in parts) if isinstance(x, tuple) else nn.relu(x)
        net = Dense(size_h, name="fc_0")(relu_x)
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
    Mean, variance and the normalisation are computed in float32 for any input
    dtype (a bfloat16 mean over 131k points would keep 3 digits); the running
    statistics stay float32 and the output has the input's dtype.

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
    def __call__(self, x, offset=None):
        """Normalises x of shape [..., features].

        `offset` ([features], optional) stands for normalising x + offset without forming it: the
        batch statistics are those of x with the offset added to the mean (the normalised values are
        the same), and the running statistics are the running ones of x + offset.
        """
        features = x.shape[-1]
        if offset is None:
            offset = jnp.zeros((features,), jnp.float32)
        if self.affine:
            scale = self.param("scale", nn.initializers.ones, (features,))
            bias = self.param("bias", nn.initializers.zeros, (features,))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        # Statistics and normalisation in float32 (or wider) whatever the input; out in its dtype.
        dtype = x.dtype
        x = x.astype(jnp.promote_types(dtype, jnp.float32))
        offset = offset.astype(x.dtype)
        if self.use_running_average:
            mean, var = ra_mean.value - offset, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean.reshape((1,) * (x.ndim - 1) + (features,))), axis=axes)
            if not self.is_initializing():
                n = x.size // features
                unbiased = var * (n / max(n - 1, 1))
                ra_mean.value = (1.0 - self.momentum) * ra_mean.value + self.momentum * (mean + offset)
                ra_var.value = (1.0 - self.momentum) * ra_var.value + self.momentum * unbiased
        shape = (1,) * (x.ndim - 1) + (features,)
        if not self.affine:
            return ((x - mean.reshape(shape)) * jax.lax.rsqrt(var + self.epsilon).reshape(shape)).astype(
                dtype
            )
        mul = (jax.lax.rsqrt(var + self.epsilon) * scale).reshape(shape)
        return ((x - mean.reshape(shape)) * mul + bias.reshape(shape)).astype(dtype)


def _cbn_scale_shift(x, gamma, beta, epsilon):
    # Per-object scale and shift of the normalised x (out = x * scale + shift), [B, 1, F] each, and
    # the statistics mean and 1 / std, [F].
    mean = jnp.mean(x, axis=(0, 1))
    var = jnp.mean(jnp.square(x - mean[None, None, :]), axis=(0, 1))
    rstd = jax.lax.rsqrt(var + epsilon)
    scale = gamma * rstd[None, :]
    return scale[:, None, :], (beta - mean[None, :] * scale)[:, None, :], mean, rstd


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def cond_batch_norm(x, gamma, beta, epsilon: float = 1e-5, relu: bool = False):
    """Training-mode conditional batch norm `gamma * (x - mean) / std + beta`, optionally then ReLU.

    The statistics are the biased mean and variance of x over its batch and
    point axes; gamma and beta are per object. Computed in float32 (or wider)
    for any input dtype; the output has x's dtype.

    The gradient is the exact one, written out so that the backward pass reads
    the incoming cotangent and x twice (one pass of per-object sums, one pass
    that writes the input's cotangent) and saves nothing but x and the
    statistics; with `relu` the mask is recomputed from x. Left to autodiff,
    XLA's CPU backend materialises about seven full-size intermediates per
    layer, which made the point-cloud ONet decoder's backward twice as slow.
    Differentiable again (the backward rule is plain jnp); no forward mode.

    Args:
      x: [batch, points, features].
      gamma: [batch, features] scales.
      beta: [batch, features] shifts.
      epsilon: added to the variance.
      relu: apply a ReLU to the result.

    Returns:
      [batch, points, features], x's dtype.
    """
    if x.ndim != 3 or gamma.shape != (x.shape[0], x.shape[2]) or beta.shape != gamma.shape:
        raise ValueError(
            f"cond_batch_norm takes x [batch, points, f] and gamma, beta [batch, f]; got {x.shape}, "
            f"{gamma.shape}, {beta.shape}"
        )
    return _cond_batch_norm_fwd(x, gamma, beta, epsilon, relu)[0]


def _cond_batch_norm_fwd(x, gamma, beta, epsilon, relu):
    dtype = x.dtype
    ftype = jnp.promote_types(dtype, jnp.float32)
    xf = x.astype(ftype)
    scale, shift, mean, rstd = _cbn_scale_shift(xf, gamma.astype(ftype), beta.astype(ftype), epsilon)
    out = xf * scale + shift
    if relu:
        out = jnp.maximum(out, 0.0)
    return out.astype(dtype), (x, gamma, beta, mean, rstd)


def _cond_batch_norm_bwd(epsilon, relu, res, g):
    x, gamma, beta, mean, rstd = res
    ftype = jnp.promote_types(x.dtype, jnp.float32)
    xf, gf = x.astype(ftype), g.astype(ftype)
    gam = gamma.astype(ftype)
    scale = (gam * rstd[None, :])[:, None, :]
    g_y = gf * scale
    if relu:
        keep = xf * scale + (beta.astype(ftype) - mean[None, :] * scale[:, 0, :])[:, None, :] > 0.0
        # The masked cotangent is formed in each pass that reads it (where(keep, g, 0) for the sums,
        # where(keep, g * scale, 0) for g_x): as one shared value XLA would write it out in full.
        gf, g_y = jnp.where(keep, gf, 0.0), jnp.where(keep, g_y, 0.0)
    # Written as x * rstd - mean * rstd, not (x - mean) * rstd: XLA would otherwise share x - mean with
    # the forward's variance and materialise it, a full-size write per layer.
    xhat = xf * rstd[None, None, :] - (mean * rstd)[None, None, :]
    # Per-object sums over the points: the cotangents of beta and gamma.
    g_beta = jnp.sum(gf, axis=1)
    g_gamma = jnp.sum(gf * xhat, axis=1)
    n = x.shape[0] * x.shape[1]
    # mean(g_y) and mean(g_y * xhat) over batch and points.
    m1 = jnp.sum(gam * g_beta, axis=0) / n
    m2 = jnp.sum(gam * g_gamma, axis=0) / n
    # g_x = rstd * (g_y - m1 - xhat * m2) = g_y + x * u + v.
    u = -(rstd * rstd) * m2
    v = rstd * (mean * rstd * m2 - m1)
    g_x = g_y + (xf * u[None, None, :] + v[None, None, :])
    return g_x.astype(x.dtype), g_gamma.astype(gamma.dtype), g_beta.astype(beta.dtype)


cond_batch_norm.defvjp(_cond_batch_norm_fwd, _cond_batch_norm_bwd)


class CBatchNorm(nn.Module):
    """Conditional batch norm: `gamma(c) * BN(x) + beta(c)`, optionally then ReLU.

    Training uses `cond_batch_norm` (one fused op with a hand-written
    gradient); evaluation the running statistics, as `BatchNorm`.

    Attributes:
      use_running_average: evaluate with the running statistics.
      relu: apply a ReLU to the result (the decoder always does next).
    """

    use_running_average: bool = False
    relu: bool = False

    @nn.compact
    def __call__(self, x, c, offset=None):
        """Args:
          x: features, [batch, points, f].
          c: condition, [batch, c_dim].
          offset: optional [f]: normalise x + offset (a per-feature constant, such as the bias of the
            layer before, which the normalisation cancels). In training only the running mean sees it.

        Returns:
          [batch, points, f].
        """
        features = x.shape[-1]
        gamma = Dense(features, zero_init=True, bias_value=1.0, name="conv_gamma")(c)
        beta = Dense(features, zero_init=True, bias_value=0.0, name="conv_beta")(c)
        if self.use_running_average or self.is_initializing():
            net = BatchNorm(use_running_average=self.use_running_average, name="bn")(x, offset)
            net = gamma[:, None, :] * net + beta[:, None, :]
            return nn.relu(net) if self.relu else net
        # The running statistics, updated by BatchNorm (its output is not used: x + offset is never
        # formed); the output from the fused op, where the offset cancels exactly.
        BatchNorm(name="bn")(jax.lax.stop_gradient(x), offset)
        return cond_batch_norm(x, gamma, beta, 1e-5, self.relu)


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
        net = CBatchNorm(ura, relu=True, name="bn_0")(x, c)
        fc_0 = Dense(size_h, name="fc_0")
        if ura or self.is_initializing():
            net = CBatchNorm(ura, relu=True, name="bn_1")(fc_0(net), c)
        else:
            # Training: bn_1 subtracts the batch mean, which cancels fc_0's bias exactly, so the bias
            # goes to bn_1's running mean instead of being added to every point (a full-size pass).
            # Its gradient is then exactly zero rather than rounding noise.
            net = fc_0(net, add_bias=False)
            net = CBatchNorm(ura, relu=True, name="bn_1")(net, c, offset=fc_0.variables["params"]["bias"])
        dx = Dense(size_out, zero_init=True, name="fc_1")(net)
        if size_in != size_out:
            x = Dense(size_out, use_bias=False, name="shortcut")(x)
        return x + dx


class Conv3d(nn.Module):
    """A 3^3 convolution with padding 1, initialised as PyTorch's `nn.Conv3d`.

    Parameters are 'kernel' [3, 3, 3, in, out] and 'bias' [out], both uniform in
    +-1/sqrt(27 in) at init. On the CPU backend the convolution is computed as
    27 strided slices and one matmul (im2col): XLA's CPU kernels for the
    gradient of a strided 3-D convolution are about 15x slower than that;
    elsewhere `lax.conv_general_dilated` is used. Both give the same result up
    to float rounding.

    Attributes:
      features: output channels.
      stride: stride along every spatial axis.
      impl: 'auto' (im2col on CPU, XLA's convolution elsewhere), 'im2col' or 'xla'.
    """

    features: int
    stride: int = 1
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        """Maps x [batch, D, H, W, in] to [batch, D', H', W', features], D' = (D - 1) // stride + 1."""
        in_features = x.shape[-1]
        init = torch_uniform_init(27 * in_features)

        def kernel_init(key, shape, dtype=jnp.float32):
            # Drawn flat: XLA's CPU compiler is slow on 5-D random-bit programs.
            return init(key, (math.prod(shape),), dtype).reshape(shape)

        kernel = self.param("kernel", kernel_init, (3, 3, 3, in_features, self.features))
        bias = self.param("bias", init, (self.features,))
        return conv3d(x, kernel, self.stride, self.impl) + bias.reshape((1, 1, 1, 1, self.features))


def conv3d(x, kernel, stride: int = 1, impl: str = "auto"):
    """A bias-free 3^3 (padding 1) or 1^3 (no padding) convolution, NDHWC.

    Args:
      x: [batch, D, H, W, in].
      kernel: [k, k, k, in, out], k 3 or 1.
      stride: stride along every spatial axis (k = 3).
      impl: 'auto' (im2col on CPU, whose kernels for the gradient of a 3-D
        convolution are slow, XLA's convolution elsewhere), 'im2col' or 'xla'.

    Returns:
      [batch, D', H', W', out] with D' = (D - 1) // stride + 1, in the kernel's dtype (x is cast to it).
    """
    x = x.astype(kernel.dtype)  # Computes in the kernel's dtype (a no-op when they match).
    k = kernel.shape[0]
    if k == 1:  # a 1^3 convolution is a matmul over the channels
        if stride != 1:
            raise ValueError(f"a 1x1x1 convolution takes stride 1, got {stride}")
        return x @ kernel.reshape(kernel.shape[-2:])
    if k != 3:
        raise ValueError(f"conv3d takes 3x3x3 or 1x1x1 kernels, got {kernel.shape}")
    if impl == "auto":
        impl = "im2col" if jax.default_backend() == "cpu" else "xla"
    if impl == "xla":
        s = stride
        return jax.lax.conv_general_dilated(
            x, kernel, (s, s, s), ((1, 1),) * 3, dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
        )
    if impl == "im2col":
        return _conv3d_im2col(x, kernel, stride)
    raise ValueError(f"unknown Conv3d impl {impl!r}; use 'auto', 'im2col' or 'xla'")


@functools.partial(jax.jit, static_argnames=("stride",))
def _conv3d_im2col(x, kernel, stride: int):
    """3^3 convolution with padding 1 as 27 strided slices and one matmul.

    Jitted so that eager calls (e.g. `model.init`) compile it once instead of
    dispatching the 27 slices one by one.

    Args:
      x: [batch, D, H, W, in].
      kernel: [3, 3, 3, in, out].
      stride: stride along every spatial axis.

    Returns:
      [batch, D', H', W', out] with D' = (D - 1) // stride + 1.
    """
    s, in_features = stride, x.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
    out = [(n - 1) // s + 1 for n in x.shape[1:4]]
    cols = [
        jax.lax.slice(
            xp,
            (0, a, b, c, 0),
            (
                x.shape[0],
                a + s * (out[0] - 1) + 1,
                b + s * (out[1] - 1) + 1,
                c + s * (out[2] - 1) + 1,
                in_features,
            ),
            (1, s, s, s, 1),
        )
        for a in range(3)
        for b in range(3)
        for c in range(3)
    ]
    # Column (a, b, c, i) of the patches matches kernel[a, b, c, i] in C order.
    return jnp.concatenate(cols, axis=-1) @ kernel.reshape(27 * in_features, kernel.shape[-1])


class BatchNorm2d(BatchNorm):
    """`torch.nn.BatchNorm2d` on NHWC features: affine, PyTorch statistics.

    Training normalises with the batch mean and biased variance over
    (batch, H, W) and updates the running statistics with momentum 0.1 and the
    unbiased variance; evaluation uses the running statistics. Parameters
    'scale' (init 1) and 'bias' (init 0); batch stats 'mean' and 'var'
    (PyTorch's weight, bias, running_mean, running_var).

    Attributes:
      use_running_average: evaluate with the running statistics.
      momentum: weight of the new batch statistic.
      epsilon: added to the variance.
    """

    affine: bool = True


class Conv2d(nn.Module):
    """A bias-free 2-D convolution as torchvision's ResNet uses, on NHWC inputs.

    Parameter 'kernel' [k, k, in, out] (PyTorch's weight transposed by
    (2, 3, 1, 0)), initialised as torchvision's ResNet: Kaiming normal with
    fan_out and gain sqrt(2). Padding is symmetric, as PyTorch's. On the CPU
    backend 1x1 convolutions and those with outputs under 64 pixels are
    computed as k^2 strided slices and one matmul (im2col, as `Conv3d`):
    XLA's CPU kernels for the gradient of a convolution with few pixels and
    many channels (ResNet-18's layer3 and layer4) are up to ~30x slower than
    that; larger ones, and all of them elsewhere, use
    `lax.conv_general_dilated`. Both give the same result up to float rounding.

    Attributes:
      features: output channels.
      kernel_size: k.
      stride: stride along both spatial axes.
      padding: zeros added on each side.
      impl: 'auto' (see `conv2d`), 'im2col' or 'xla'.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        """Maps x [batch, H, W, in] to [batch, H', W', features], H' = (H + 2 padding - k) // stride + 1."""
        k = self.kernel_size
        std = math.sqrt(2.0 / (self.features * k * k))

        def kernel_init(key, shape, dtype=jnp.float32):
            # Drawn flat: XLA's CPU compiler is slow on high-rank random-bit programs.
            return std * jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)

        kernel = self.param("kernel", kernel_init, (k, k, x.shape[-1], self.features))
        return conv2d(x, kernel, self.stride, self.padding, self.impl)


def conv2d(x, kernel, stride: int = 1, padding: int = 0, impl: str = "auto"):
    """A bias-free 2-D convolution with symmetric zero padding (PyTorch's `F.conv2d`), NHWC.

    Args:
      x: [batch, H, W, in].
      kernel: [kh, kw, in, out].
      stride: stride along both spatial axes.
      padding: zeros added on each side of both spatial axes.
      impl: 'auto' (XLA's convolution off CPU; on CPU im2col for 1x1 kernels
        and small outputs, XLA's convolution for large ones), 'im2col' or 'xla'.

    Returns:
      [batch, H', W', out] with H' = (H + 2 padding - kh) // stride + 1 (W' alike), in the
      kernel's dtype (x is cast to it).
    """
    x = x.astype(kernel.dtype)  # Computes in the kernel's dtype (a no-op when they match).
    if impl == "auto":
        impl = _auto_conv2d_impl(x.shape, kernel.shape, stride, padding)
    if impl == "xla":
        p = padding
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            (stride, stride),
            ((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
    if impl == "im2col":
        return _conv2d_im2col(x, kernel, stride, padding)
    raise ValueError(f"unknown Conv2d impl {impl!r}; use 'auto', 'im2col' or 'xla'")


_IM2COL_MAX_PIXELS = 64
"""On CPU, im2col computes a k x k convolution whose output has fewer pixels than
this per image; XLA's convolution the larger ones (see `_auto_conv2d_impl`)."""


def _auto_conv2d_impl(x_shape, kernel_shape, stride: int, padding: int) -> str:
    """What `conv2d(impl='auto')` runs: 'xla' off CPU; on CPU the faster path for the shape.

    Forward+backward on CPU (benchmarks/conv2d.py): XLA's convolution is up to
    ~2x faster on large feature maps (ResNet-18's stem and layer1 at 64^2 or
    224^2 inputs), but its gradient kernels slow down badly on small maps with
    many channels (~10-40x slower than im2col at 4x4 and 2x2 with 256-512
    channels); a 1x1 convolution is a strided slice and a plain matmul,
    slightly faster than XLA's at every size.
    """
    if jax.default_backend() != "cpu":
        return "xla"
    kh, kw = kernel_shape[:2]
    oh = (x_shape[1] + 2 * padding - kh) // stride + 1
    ow = (x_shape[2] + 2 * padding - kw) // stride + 1
    if kh * kw == 1 or oh * ow < _IM2COL_MAX_PIXELS:
        return "im2col"
    return "xla"


@functools.partial(jax.jit, static_argnames=("stride", "padding"))
def _conv2d_im2col(x, kernel, stride: int, padding: int):
    """`conv2d` as kh kw strided slices of the padded input and one matmul.

    Jitted so that eager calls (e.g. `model.init`) compile it once. A 1x1
    convolution is one strided slice and a matmul.

    Args:
      x: [batch, H, W, in].
      kernel: [kh, kw, in, out].
      stride: stride along both spatial axes.
      padding: zeros added on each side of both spatial axes.

    Returns:
      [batch, H', W', out] with H' = (H + 2 padding - kh) // stride + 1.
    """
    kh, kw, in_features, out_features = kernel.shape
    assert x.shape[-1] == in_features, (x.shape, kernel.shape)
    s, p = stride, padding
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    oh = (x.shape[1] + 2 * p - kh) // s + 1
    ow = (x.shape[2] + 2 * p - kw) // s + 1
    cols = [
        jax.lax.slice(
            xp,
            (0, a, b, 0),
            (x.shape[0], a + s * (oh - 1) + 1, b + s * (ow - 1) + 1, in_features),
            (1, s, s, 1),
        )
        for a in range(kh)
        for b in range(kw)
    ]
    # Column (a, b, i) of the patches matches kernel[a, b, i] in C order.
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    return patches @ kernel.reshape(kh * kw * in_features, out_features)
