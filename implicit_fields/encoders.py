"""Condition encoders, as in `im2mesh/encoder/`.

For now the point-cloud encoder of Occupancy Networks (`ResnetPointnet`).
"""

import flax.linen as nn
import jax.numpy as jnp

from implicit_fields import layers


class ResnetPointnet(nn.Module):
    """PointNet with ResNet blocks and global max-pool skip connections.

    `fc_pos` (dim -> 2h), then 5 `ResnetBlockFC(2h -> h)`; before blocks 1-4
    the global max-pool of the features is concatenated to every point; a final
    max-pool, ReLU and `fc_c` (h -> c_dim).

    Attributes:
      c_dim: output code size (original: 512).
      hidden_dim: h (original: 512).
    """

    c_dim: int = 512
    hidden_dim: int = 512

    @nn.compact
    def __call__(self, points, train: bool = False):
        """Args:
          points: input point cloud, float32 [batch, n, 3].
          train: unused (no batch norm); kept for a uniform encoder signature.

        Returns:
          Codes c, float32 [batch, c_dim].
        """
        del train
        assert points.ndim == 3, points.shape
        h = self.hidden_dim
        net = layers.Dense(2 * h, name="fc_pos")(points)
        net = layers.ResnetBlockFC(size_out=h, name="block_0")(net)
        for i in range(1, 5):
            pooled = jnp.max(net, axis=1, keepdims=True)
            net = jnp.concatenate([net, jnp.broadcast_to(pooled, net.shape)], axis=-1)
            net = layers.ResnetBlockFC(size_out=h, name=f"block_{i}")(net)
        net = jnp.max(net, axis=1)
        return layers.Dense(self.c_dim, name="fc_c")(nn.relu(net))


ENCODERS = {
    "pointnet_resnet": ResnetPointnet,
}


def create_encoder(name: str, **kwargs) -> nn.Module:
    """Builds an encoder by its config name."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)
