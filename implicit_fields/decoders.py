"""Occupancy decoders f(p, c[, z]) -> logit, as in `im2mesh/onet/models/decoder.py`.

Every decoder maps query points [batch, points, 3] and a per-object condition
c [batch, c_dim] (and optionally a latent z [batch, z_dim]) to occupancy
logits [batch, points]. With `train=False` batch norm uses its running
statistics, so the decoder is a pointwise function of (p, c) and can be
vmapped or chunked over points freely.

`LocalDecoder` (ConvONet, `src/conv_onet/models/decoder.py`) is conditioned
on feature planes / grids instead of one code per object: c is the dict that
`encoders.LocalPoolPointnet` returns. It is not in `DECODERS`, whose decoders
take c [batch, c_dim].
"""

from typing import Dict, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp

from implicit_fields import layers, local_features


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


class LocalDecoder(nn.Module):
    """The ConvONet decoder: an FC ResNet conditioned on features read from planes / a grid.

    The features of each query point are read from every given plane / grid
    (`local_features.sample_plane` / `sample_grid`: bilinear / trilinear,
    align_corners=True, border padding, at the point's normalised
    coordinates) and summed. Then `fc_p` (3 -> hidden), `n_blocks` times
    [`net += fc_c_i(c)`, `blocks_i` = `ResnetBlockFC(hidden)`], ReLU (leaky,
    slope 0.2, with `leaky`) and `fc_out` (hidden -> 1). No batch norm. The
    original's objects config: hidden 32 with c_dim 32 (16,001 parameters).

    Attributes:
      hidden_size: width (original: 256 by default, 32 in the ConvONet configs).
      n_blocks: number of ResNet blocks (original: 5).
      padding: the ONet padding of the unit cube (original: 0.1); must match the encoder's.
      leaky: leaky ReLU before `fc_out`.
      sample_mode: 'bilinear' (original) or 'nearest'.
    """

    hidden_size: int = 256
    n_blocks: int = 5
    padding: float = 0.1
    leaky: bool = False
    sample_mode: str = "bilinear"

    @nn.compact
    def __call__(self, p, c: Optional[Dict[str, jnp.ndarray]], z=None, train: bool = False):
        """Args:
          p: query points, float32 [batch, points, 3].
          c: {'xz' | 'xy' | 'yz': [batch, R, R, c_dim], 'grid': [batch, R, R, R, c_dim]},
            as `LocalPoolPointnet` returns (all with the same c_dim); None or
            {} for an unconditioned decoder (the original's c_dim 0).
          z: must be None (ConvONet has no latent code); kept for the decoders' signature.
          train: unused (no batch norm).

        Returns:
          Occupancy logits, float32 [batch, points].
        """
        del train
        if z is not None and z.shape[-1] > 0:
            raise ValueError("LocalDecoder takes no latent code z")
        assert p.ndim == 3 and p.shape[-1] == 3, p.shape
        p = p.astype(jnp.float32)
        if c is not None and not isinstance(c, Mapping):
            raise ValueError(f"LocalDecoder reads a dict of feature planes / grids, got {type(c).__name__}")
        features = self.sample_features(p, c) if c else None
        net = layers.Dense(self.hidden_size, name="fc_p")(p)
        for i in range(self.n_blocks):
            if features is not None:
                net = net + layers.Dense(self.hidden_size, name=f"fc_c_{i}")(features)
            net = layers.ResnetBlockFC(name=f"blocks_{i}")(net)
        act = (lambda x: nn.leaky_relu(x, 0.2)) if self.leaky else nn.relu
        out = layers.Dense(1, name="fc_out")(act(net))
        return out[..., 0]

    def sample_features(self, p, c: Dict[str, jnp.ndarray]):
        """The sum over the planes / grid of c of their features at p: [batch, points, c_dim]."""
        known = ("grid",) + local_features.PLANES
        unknown = sorted(set(c) - set(known))
        if unknown:
            raise ValueError(f"unknown feature types {unknown}; expected some of {list(known)}")
        total = 0
        for t in known:  # the original's order: grid, xz, xy, yz
            if t not in c:
                continue
            if c[t].shape[0] != p.shape[0]:
                raise ValueError(f"features {t!r} have batch {c[t].shape[0]}, the points {p.shape[0]}")
            if t == "grid":
                xyz = local_features.normalize_3d_coordinate(p, self.padding)
                total = total + local_features.sample_grid(c[t], xyz, self.sample_mode)
            else:
                uv = local_features.normalize_coordinate(p, self.padding, t)
                total = total + local_features.sample_plane(c[t], uv, self.sample_mode)
        return total


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
