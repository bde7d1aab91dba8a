"""Occupancy decoders f(p, c[, z]) -> logit, as in `im2mesh/onet/models/decoder.py`.

Every decoder maps query points [batch, points, 3] and a per-object condition
c [batch, c_dim] (and optionally a latent z [batch, z_dim]) to occupancy
logits [batch, points]. With `train=False` batch norm uses its running
statistics, so the decoder is a pointwise function of (p, c) and can be
vmapped or chunked over points freely.
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from implicit_fields import layers


class DecoderCBatchNorm(nn.Module):
    """The main ONet decoder: conditional-batch-norm ResNet (`cbatchnorm`).

    `fc_p` (3 -> hidden) [+ `fc_z`], then `n_blocks` `CResnetBlock`s, then
    CBN -> ReLU -> `fc_out` (hidden -> 1).

    Attributes:
      hidden_size: width of the point features (original: 256).
      n_blocks: number of conditional ResNet blocks (original: 5).
    """

    hidden_size: int = 256
    n_blocks: int = 5

    @nn.compact
    def __call__(self, p, c, z=None, train: bool = False):
        """Args:
          p: query points, float32 [batch, points, 3].
          c: condition code, float32 [batch, c_dim].
          z: optional latent code, float32 [batch, z_dim].
          train: use batch statistics (and update the running ones).

        Returns:
          Occupancy logits, float32 [batch, points].
        """
        assert p.ndim == 3 and p.shape[-1] == 3, p.shape
        assert c.ndim == 2 and c.shape[0] == p.shape[0], (c.shape, p.shape)
        net = layers.Dense(self.hidden_size, name="fc_p")(p)
        if z is not None and z.shape[-1] > 0:
            net = net + layers.Dense(self.hidden_size, name="fc_z")(z)[:, None, :]
        for i in range(self.n_blocks):
            net = layers.CResnetBlock(use_running_average=not train, name=f"block{i}")(net, c)
        net = layers.CBatchNorm(use_running_average=not train, name="bn")(net, c)
        out = layers.Dense(1, name="fc_out")(nn.relu(net))
        return out[..., 0]


class DecoderSimple(nn.Module):
    """The `simple` decoder: FC ResNet with the code added once at the input.

    `fc_p(p) + fc_z(z) + fc_c(c)`, then `n_blocks` `ResnetBlockFC`s, ReLU,
    `fc_out`. No batch norm, so `train` has no effect.

    Attributes:
      hidden_size: width (original: 128).
      n_blocks: number of ResNet blocks (original: 5).
    """

    hidden_size: int = 128
    n_blocks: int = 5

    @nn.compact
    def __call__(self, p, c: Optional[jnp.ndarray] = None, z=None, train: bool = False):
        """Same signature and shapes as `DecoderCBatchNorm.__call__`; c may be None."""
        del train
        assert p.ndim == 3 and p.shape[-1] == 3, p.shape
        net = layers.Dense(self.hidden_size, name="fc_p")(p)
        if z is not None and z.shape[-1] > 0:
            net = net + layers.Dense(self.hidden_size, name="fc_z")(z)[:, None, :]
        if c is not None and c.shape[-1] > 0:
            net = net + layers.Dense(self.hidden_size, name="fc_c")(c)[:, None, :]
        for i in range(self.n_blocks):
            net = layers.ResnetBlockFC(name=f"block{i}")(net)
        out = layers.Dense(1, name="fc_out")(nn.relu(net))
        return out[..., 0]


DECODERS = {
    "cbatchnorm": DecoderCBatchNorm,
    "simple": DecoderSimple,
}


# Decoders whose logit is piecewise linear in the point p (for fixed c, z): linear
# layers, ReLU and batch norm with running statistics. Their Hessian in p is zero
# almost everywhere, so the normal term of mesh refinement needs no second-order
# gradient (`mise.refine_mesh(second_order=False)` is exact for them).
PIECEWISE_LINEAR = frozenset({"cbatchnorm", "simple"})


def is_piecewise_linear(name: str) -> bool:
    """Whether the decoder `name` is piecewise linear in the query point (eval mode)."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose one of {sorted(DECODERS)}")
    return name in PIECEWISE_LINEAR


def create_decoder(name: str, **kwargs) -> nn.Module:
    """Builds a decoder by its config name ('cbatchnorm' or 'simple')."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose one of {sorted(DECODERS)}")
    return DECODERS[name](**kwargs)
