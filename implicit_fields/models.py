"""Composite models: the (conditional) Occupancy Network.

`OccupancyNetwork` exposes `encode`, `decode` and `__call__`, so research code
can call each part through `model.apply(variables, ..., method=...)`.
`make_logit_fn` turns trained variables and one object's code into the plain
function `points (N, 3) -> logits (N,)` that mesh extraction consumes.
"""

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from implicit_fields import decoders, encoders


class OccupancyNetwork(nn.Module):
    """f(p, x) -> occupancy logit, with x encoded to a code c.

    Attributes:
      encoder: config name of the encoder ('pointnet_resnet'), or None for an
        unconditional decoder.
      decoder: config name of the decoder ('cbatchnorm' or 'simple').
      c_dim: code size.
      encoder_hidden: encoder width.
      decoder_hidden: decoder width.
      decoder_blocks: number of decoder ResNet blocks.
    """

    encoder: Optional[str] = "pointnet_resnet"
    decoder: str = "cbatchnorm"
    c_dim: int = 512
    encoder_hidden: int = 512
    decoder_hidden: int = 256
    decoder_blocks: int = 5

    def setup(self):
        if self.encoder is not None:
            self.encoder_net = encoders.create_encoder(
                self.encoder, c_dim=self.c_dim, hidden_dim=self.encoder_hidden
            )
        self.decoder_net = decoders.create_decoder(
            self.decoder, hidden_size=self.decoder_hidden, n_blocks=self.decoder_blocks
        )

    def encode(self, inputs, train: bool = False):
        """Encodes the conditioning input (e.g. a point cloud [batch, n, 3]) to c [batch, c_dim]."""
        if self.encoder is None:
            return jnp.zeros((inputs.shape[0], 0), jnp.float32)
        return self.encoder_net(inputs, train=train)

    def decode(self, points, c, train: bool = False):
        """Decodes query points [batch, points, 3] with codes c [batch, c_dim] to logits [batch, points]."""
        return self.decoder_net(points, c, train=train)

    def __call__(self, points, inputs, train: bool = False):
        """Logits [batch, points] for query points [batch, points, 3] given inputs [batch, ...]."""
        return self.decode(points, self.encode(inputs, train=train), train=train)


def create_model(model_config) -> OccupancyNetwork:
    """Builds the model from the `config.model` ConfigDict."""
    return OccupancyNetwork(
        encoder=model_config.encoder or None,
        decoder=model_config.decoder,
        c_dim=model_config.c_dim,
        encoder_hidden=model_config.encoder_hidden,
        decoder_hidden=model_config.decoder_hidden,
        decoder_blocks=model_config.decoder_blocks,
    )


def make_logit_fn(
    model: OccupancyNetwork, variables, c: jnp.ndarray, chunk_size: int = 65536
) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """The eval-mode field of one object as a jittable `points (N,3) -> logits (N,)`.

    Args:
      model: the network.
      variables: its variables ({'params', 'batch_stats'}).
      c: the object's code, [c_dim].
      chunk_size: points per decoder call inside the function (bounds memory;
        the chunks run in a `lax.map`).

    Returns:
      A pure function of a float32 [N, 3] array.
    """

    def logits(points):
        out = model.apply(variables, points[None], c[None], method=OccupancyNetwork.decode)
        return out[0]

    def fn(points):
        n = points.shape[0]
        if n <= chunk_size:
            return logits(points)
        num_chunks = -(-n // chunk_size)
        padded = jnp.pad(points, ((0, num_chunks * chunk_size - n), (0, 0)))
        out = jax.lax.map(logits, padded.reshape(num_chunks, chunk_size, 3))
        return out.reshape(-1)[:n]

    return fn
