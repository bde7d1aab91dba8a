"""Composite models: the (conditional and/or latent-variable) Occupancy Network.

`OccupancyNetwork` exposes `encode`, `infer_z`, `decode`, `compute_elbo` and
`__call__`, so research code can call each part through
`model.apply(variables, ..., method=...)`, as `im2mesh/onet/models/__init__.py`
does. With `z_dim > 0` it is the original's VAE: a latent encoder
q(z | p, o[, c]) = N(mean, diag(exp(logstd)^2)), the prior p0(z) = N(0, I), and
the loss KL(q || p0) + sum-over-points BCE (see `compute_elbo`); with no encoder
it is the unconditional generative model, whose shapes are sampled from the
prior (`sample_prior`) and whose codes can be interpolated (`interpolate_codes`).

`make_logit_fn` turns trained variables and one object's code(s) into the plain
function `points (N, 3) -> logits (N,)` that mesh extraction consumes.

The pixel-aligned image model (encoder 'resnet18_pixel', decoder
'pixel_aligned'; PIFu's idea) has a dict for its code: the image's feature map
and the view's cameras, {'features' [batch, h, w, C], 'world_mat',
'camera_mat' [batch, 4, 4]}; its methods take the cameras as `cameras`
({'world_mat', 'camera_mat'}), which every other model ignores.
"""

from typing import Callable, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from implicit_fields import decoders, encoders, losses

PIXEL_ENCODERS = {"resnet18_pixel": "pixel_aligned"}
"""Encoders whose code is a pixel-aligned feature map, and the decoder that reads it."""


def needs_cameras(encoder: Optional[str]) -> bool:
    """Whether the model of `encoder` projects query points with the view's cameras."""
    return encoder in PIXEL_ENCODERS


class OccupancyNetwork(nn.Module):
    """f(p, x[, z]) -> occupancy logit, with x encoded to a code c.

    Attributes:
      encoder: config name of the encoder ('pointnet_resnet', 'voxel_simple',
        'resnet18' or 'resnet18_pixel'), or None for an unconditional model (c is empty).
      decoder: config name of the decoder ('cbatchnorm', 'simple' or, with
        'resnet18_pixel' and only with it, 'pixel_aligned').
      c_dim: code size (the channels of the feature map of 'resnet18_pixel').
      encoder_hidden: encoder width (ResnetPointnet hidden size; VoxelEncoder
        and Resnet18 channels of their first convolution).
      decoder_hidden: decoder width.
      decoder_blocks: number of decoder ResNet blocks.
      z_dim: latent size; 0 (the conditional models) disables the latent
        encoder and the KL term.
      encoder_latent: config name of the latent encoder ('simple'), used when
        z_dim > 0.
      encoder_latent_hidden: latent encoder width (original: 128).
    """

    encoder: Optional[str] = "pointnet_resnet"
    decoder: str = "cbatchnorm"
    c_dim: int = 512
    encoder_hidden: int = 512
    decoder_hidden: int = 256
    decoder_blocks: int = 5
    z_dim: int = 0
    encoder_latent: str = "simple"
    encoder_latent_hidden: int = 128

    def setup(self):
        pixel_decoder = PIXEL_ENCODERS.get(self.encoder)
        if (pixel_decoder or self.decoder == "pixel_aligned") and self.decoder != pixel_decoder:
            raise ValueError(
                f"decoder {self.decoder!r} with encoder {self.encoder!r}: the pixel-aligned image "
                f"model pairs encoder 'resnet18_pixel' with decoder 'pixel_aligned'"
            )
        if pixel_decoder and self.z_dim > 0:
            raise ValueError(f"the pixel-aligned image model has no latent (z_dim={self.z_dim}); use 0")
        if self.encoder is not None:
            self.encoder_net = encoders.create_encoder(
                self.encoder, c_dim=self.c_dim, hidden_dim=self.encoder_hidden
            )
        if self.z_dim > 0:
            self.encoder_latent_net = encoders.create_latent_encoder(
                self.encoder_latent, z_dim=self.z_dim, hidden_size=self.encoder_latent_hidden
            )
        self.decoder_net = decoders.create_decoder(
            self.decoder, hidden_size=self.decoder_hidden, n_blocks=self.decoder_blocks
        )

    def encode(self, inputs, train: bool = False, cameras: Optional[Mapping[str, jnp.ndarray]] = None):
        """Encodes the conditioning input to c [batch, c_dim].

        Args:
          inputs: point cloud [batch, n, 3], voxels [batch, R, R, R], RGB
            images [batch, H, W, 3] in [0, 1], or
            anything with a batch axis for an unconditional model (then c is
            the empty [batch, 0]).
          train: batch-norm mode.
          cameras: {'world_mat', 'camera_mat'} [batch, 4, 4] of the images'
            views; needed by the pixel-aligned model, whose c is then the dict
            {'features' [batch, h, w, c_dim], 'world_mat', 'camera_mat'};
            ignored by the others.

        Raises:
          ValueError: the pixel-aligned model without cameras.
        """
        if self.encoder is None:
            return jnp.zeros((inputs.shape[0], 0), jnp.float32)
        if not needs_cameras(self.encoder):
            return self.encoder_net(inputs, train=train)
        if cameras is None or any(k not in cameras for k in ("world_mat", "camera_mat")):
            raise ValueError(
                f"the {self.encoder!r} encoder projects query points into the image and needs its view's "
                f"cameras {{'world_mat', 'camera_mat'}} (data.img_with_camera=True), got "
                f"{None if cameras is None else sorted(cameras)}"
            )
        c = self.encoder_net(inputs, train=train)
        return {**c, "world_mat": cameras["world_mat"], "camera_mat": cameras["camera_mat"]}

    def infer_z(self, points, occupancies, c, train: bool = False) -> Tuple[jnp.ndarray, jnp.ndarray]:
        """The posterior q(z | p, o, c) as (mean, logstd), each [batch, z_dim].

        Args:
          points: [batch, T, 3].
          occupancies: [batch, T] in {0, 1}.
          c: [batch, c_dim] (may be empty; z_dim is 0 for a dict c).

        Returns:
          Empty [batch, 0] arrays when z_dim is 0.
        """
        del train
        if self.z_dim == 0:
            empty = jnp.zeros((points.shape[0], 0), jnp.float32)
            return empty, empty
        return self.encoder_latent_net(points, occupancies, c)

    def decode(self, points, c, z=None, train: bool = False):
        """Decodes query points [batch, points, 3] with codes c [batch, c_dim]
        (the pixel-aligned model: the dict of `encode`) and, for z_dim > 0,
        latents z [batch, z_dim] (default: the prior mean 0) to logits [batch, points]."""
        if self.z_dim > 0 and z is None:
            z = jnp.zeros((points.shape[0], self.z_dim), jnp.float32)
        return self.decoder_net(points, c, z=z, train=train)

    def compute_elbo(
        self, points, occupancies, inputs, rng, train: bool = False, cameras=None
    ) -> Dict[str, jnp.ndarray]:
        """The terms of the training loss (the original's `compute_loss` / `compute_elbo`).

        c = encode(inputs); z = mean + exp(logstd) * eps with eps ~ N(0, I)
        drawn from `rng` (the reparameterisation `q_z.rsample()`); logits =
        decode(points, c, z). Without a latent (z_dim 0) z is absent, `rng` is
        unused and kl is zero.

        Args:
          points: [batch, T, 3].
          occupancies: [batch, T].
          inputs: conditioning input [batch, ...].
          rng: PRNG key (or None when z_dim is 0).
          train: batch-norm mode.
          cameras: the views' cameras (see `encode`).

        Returns:
          dict 'logits' [batch, T], 'kl' [batch] (KL(q || N(0, I)) summed over
          z), 'mean' and 'logstd' [batch, z_dim].
        """
        c = self.encode(inputs, train=train, cameras=cameras)
        mean, logstd = self.infer_z(points, occupancies, c, train=train)
        if self.z_dim > 0:
            # Drawn in float32 whatever the compute dtype (bfloat16 normals take 128 values, |eps| < 2.9).
            eps = jax.random.normal(rng, mean.shape, jnp.float32)
            z = mean + jnp.exp(logstd) * eps
            kl = losses.kl_normal_std(mean, logstd)
        else:
            z = None
            kl = jnp.zeros((points.shape[0],), jnp.float32)
        logits = self.decode(points, c, z=z, train=train)
        return {"logits": logits, "kl": kl, "mean": mean, "logstd": logstd}

    def reconstruct(
        self, points, inputs, latent_points=None, latent_occupancies=None, train: bool = False, cameras=None
    ):
        """Deterministic logits of an object's query points, for evaluation.

        c = encode(inputs). With z_dim > 0 and `latent_points` given, z is the
        posterior mean of q(z | latent_points, latent_occupancies, c) (an
        auto-encoding of the object's known occupancies: the evaluation of an
        unconditional model); without them z is the prior mean 0 (the original's
        evaluation of a conditional model, `forward(..., sample=False)`).

        Args:
          points: query points [batch, T, 3].
          inputs: conditioning input [batch, ...].
          latent_points: optional [batch, T', 3].
          latent_occupancies: optional [batch, T'].
          train: batch-norm mode.
          cameras: the views' cameras (see `encode`).

        Returns:
          dict 'logits' [batch, T] and 'kl' [batch] (KL of the posterior; zero
          without one).
        """
        c = self.encode(inputs, train=train, cameras=cameras)
        if self.z_dim > 0 and latent_points is not None:
            mean, logstd = self.infer_z(latent_points, latent_occupancies, c, train=train)
            z, kl = mean, losses.kl_normal_std(mean, logstd)
        else:
            z, kl = None, jnp.zeros((points.shape[0],), jnp.float32)
        return {"logits": self.decode(points, c, z=z, train=train), "kl": kl}

    def __call__(self, points, inputs, train: bool = False, z=None, cameras=None):
        """Logits [batch, points] for query points [batch, points, 3] given inputs [batch, ...].

        With z_dim > 0 and no `z`, decodes the prior mean (the original's
        `forward(..., sample=False)`). `cameras`: see `encode`.
        """
        c = self.encode(inputs, train=train, cameras=cameras)
        if self.z_dim > 0 and self.is_initializing():
            # Create the latent encoder's parameters too.
            self.infer_z(points, jnp.zeros(points.shape[:2], jnp.float32), c)
        return self.decode(points, c, z=z, train=train)


def create_model(model_config) -> OccupancyNetwork:
    """Builds the model from the `config.model` ConfigDict."""
    return OccupancyNetwork(
        encoder=model_config.encoder or None,
        decoder=model_config.decoder,
        c_dim=model_config.c_dim,
        encoder_hidden=model_config.encoder_hidden,
        decoder_hidden=model_config.decoder_hidden,
        decoder_blocks=model_config.decoder_blocks,
        z_dim=int(model_config.get("z_dim", 0)),
        encoder_latent=model_config.get("encoder_latent", "simple") or "simple",
        encoder_latent_hidden=int(model_config.get("encoder_latent_hidden", 128)),
    )


def sample_prior(rng, num: int, z_dim: int) -> jnp.ndarray:
    """`num` latents from the prior p0(z) = N(0, I): float32 [num, z_dim]."""
    return jax.random.normal(rng, (num, z_dim), jnp.float32)


def interpolate_codes(z0: jnp.ndarray, z1: jnp.ndarray, num: int) -> jnp.ndarray:
    """`num` codes on the straight line from z0 to z1 (both included).

    Args:
      z0, z1: [z_dim].
      num: >= 2.

    Returns:
      [num, z_dim], row i = (1 - t_i) z0 + t_i z1 with t = linspace(0, 1, num).
    """
    if num < 2:
        raise ValueError(f"interpolation needs at least 2 codes, got {num}")
    assert z0.shape == z1.shape and z0.ndim == 1, (z0.shape, z1.shape)
    t = jnp.linspace(0.0, 1.0, num)[:, None]
    return (1.0 - t) * z0[None, :] + t * z1[None, :]


def make_logit_fn(
    model: OccupancyNetwork,
    variables,
    c: jnp.ndarray,
    chunk_size: int = 65536,
    z: Optional[jnp.ndarray] = None,
) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """The eval-mode field of one object as a jittable `points (N,3) -> logits (N,)`.

    Args:
      model: the network.
      variables: its variables ({'params', 'batch_stats'}).
      c: the object's code, [c_dim] (the pixel-aligned model: the dict of
        `encode` without its batch axis).
      chunk_size: points per decoder call inside the function (bounds memory;
        the chunks run in a `lax.map`).
      z: the object's latent, [z_dim] (models with z_dim > 0; default the prior mean).

    Returns:
      A pure function of a float32 [N, 3] array.
    """

    cb = jax.tree.map(lambda x: x[None], c)

    def logits(points):
        zb = None if z is None else z[None]
        out = model.apply(variables, points[None], cb, zb, method=OccupancyNetwork.decode)
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
