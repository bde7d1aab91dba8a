"""Occupancy Flow's network (`im2mesh/oflow/models/__init__.py`) and its losses.

`OccupancyFlow` holds the parts; the ODE is `implicit_fields.flow`'s, so the
module exposes the pieces the solver and the losses call:

* `encode(inputs [B, T, n, 3]) -> (c_s, c_t)`: the ResNet-PointNet code of frame
  0 (the shape) and the temporal ResNet-PointNet code of the trajectories (the
  motion), each [B, c_dim] ([B, 0] without that encoder);
* `infer_z(inputs, c_t) -> (mean_z, logstd_z, mean_zt, logstd_zt)`: the
  generative model's PointNet posteriors over the shape latent z (frame 0) and
  the motion latent z_t (the trajectories), both given c_t as the original's
  `infer_z(inputs, c=c_t)`; [B, 0] without a latent;
* `decode(p [B, N, 3], c_s, z) -> logits [B, N]`: the occupancy at t = 0 (ONet's
  decoder);
* `velocity(p [B, N, 3], t, c_t, z_t) -> [B, N, 3]`: v(p, t).

`velocity_fn(model, variables)` turns them into the solver's
`v(params, points, t, codes)` and `pull_back` / `push_forward` into the two
transports the losses and generation need (`flow.integrate_samples`,
`flow.integrate`).
"""

from typing import Any, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from implicit_fields import decoders, encoders, flow, losses


class OccupancyFlow(nn.Module):
    """The shape at t = 0 (an occupancy network) and its motion (a velocity field).

    Attributes:
      encoder: 'pointnet_resnet' (the code c_s of frame 0) or None.
      encoder_temporal: 'pointnet_resnet' (`TemporalResnetPointnet` over the
        frames' corresponding points) or None.
      c_dim: size of c_s and of c_t.
      encoder_hidden, encoder_temporal_hidden: the encoders' widths (128 in the
        point-cloud config).
      decoder: 'cbatchnorm' or 'simple' (ONet's decoders).
      decoder_hidden, decoder_blocks: its width (256) and depth (5).
      velocity_hidden, velocity_blocks: the velocity field's width (128 in the
        point-cloud config) and depth (5).
      z_dim: the generative model's latent size (0: none).
      encoder_latent_hidden, encoder_latent_blocks: its posteriors' width and depth.
    """

    encoder: Any = "pointnet_resnet"
    encoder_temporal: Any = "pointnet_resnet"
    c_dim: int = 128
    encoder_hidden: int = 128
    encoder_temporal_hidden: int = 128
    decoder: str = "cbatchnorm"
    decoder_hidden: int = 256
    decoder_blocks: int = 5
    velocity_hidden: int = 128
    velocity_blocks: int = 5
    z_dim: int = 0
    encoder_latent_hidden: int = 128
    encoder_latent_blocks: int = 3

    def setup(self):
        if self.encoder:
            self.encoder_net = encoders.ResnetPointnet(c_dim=self.c_dim, hidden_dim=self.encoder_hidden)
        if self.encoder_temporal:
            self.encoder_temporal_net = encoders.TemporalResnetPointnet(
                c_dim=self.c_dim, hidden_dim=self.encoder_temporal_hidden
            )
        if self.z_dim > 0:
            kw = dict(
                z_dim=self.z_dim, hidden_dim=self.encoder_latent_hidden, n_blocks=self.encoder_latent_blocks
            )
            self.encoder_latent_net = encoders.LatentPointnet(temporal=False, **kw)
            self.encoder_latent_temporal_net = encoders.LatentPointnet(temporal=True, **kw)
        self.decoder_net = decoders.create_decoder(
            self.decoder, hidden_size=self.decoder_hidden, n_blocks=self.decoder_blocks
        )
        self.velocity_net = decoders.VelocityField(
            hidden_size=self.velocity_hidden, n_blocks=self.velocity_blocks
        )

    def _empty(self, inputs):
        return jnp.zeros((inputs.shape[0], 0), jnp.float32)

    def encode(self, inputs) -> Tuple[jnp.ndarray, jnp.ndarray]:
        """(c_s, c_t) of point-cloud sequences [B, T, n, 3]."""
        c_s = self.encoder_net(inputs[:, 0]) if self.encoder else self._empty(inputs)
        c_t = self.encoder_temporal_net(inputs) if self.encoder_temporal else self._empty(inputs)
        return c_s, c_t

    def infer_z(self, inputs, c_t):
        """The posteriors' (mean_z, logstd_z, mean_zt, logstd_zt), each [B, z_dim] ([B, 0] without z)."""
        if self.z_dim == 0:
            e = self._empty(inputs)
            return e, e, e, e
        mean_z, logstd_z = self.encoder_latent_net(inputs, c_t)
        mean_zt, logstd_zt = self.encoder_latent_temporal_net(inputs, c_t)
        return mean_z, logstd_z, mean_zt, logstd_zt

    def decode(self, p, c_s, z, train: bool = False):
        """Occupancy logits [B, N] of points p [B, N, 3] at t = 0."""
        z = z if z.shape[-1] else None
        return self.decoder_net(p, c_s, z, train=train)

    def velocity(self, p, t, c_t, z_t):
        """v(p, t) [B, N, 3] for points [B, N, 3] and times (scalar or [B])."""
        return self.velocity_net(p, t, c_t if c_t.shape[-1] else None, z_t if z_t.shape[-1] else None)

    def __call__(self, inputs, p, train: bool = False):
        """Initialises every part: codes, latents, the decoder at t = 0 and the field at t = 0."""
        c_s, c_t = self.encode(inputs)
        mean_z, _, mean_zt, _ = self.infer_z(inputs, c_t)
        return self.decode(p, c_s, mean_z, train=train), self.velocity(p, 0.0, c_t, mean_zt)


def create_model(model_config) -> OccupancyFlow:
    """The network of `config.model`."""
    m = model_config
    return OccupancyFlow(
        encoder=m.encoder or None,
        encoder_temporal=m.encoder_temporal or None,
        c_dim=m.c_dim,
        encoder_hidden=m.encoder_hidden,
        encoder_temporal_hidden=m.encoder_temporal_hidden,
        decoder=m.decoder,
        decoder_hidden=m.decoder_hidden,
        decoder_blocks=m.decoder_blocks,
        velocity_hidden=m.velocity_hidden,
        velocity_blocks=m.velocity_blocks,
        z_dim=m.z_dim,
        encoder_latent_hidden=m.encoder_latent_hidden,
        encoder_latent_blocks=m.encoder_latent_blocks,
    )


# ---------------------------------------------------------------------------
# The transports.
# ---------------------------------------------------------------------------


def velocity_fn(model: OccupancyFlow):
    """The solver's field `v(params, points [N, 3], t, (c_t [C], z_t [Z])) -> [N, 3]` of one sample.

    `params` are the model's parameters (the velocity field has no batch norm).
    """

    def v(params, points, t, codes):
        c_t, z_t = codes
        out = model.apply(
            {"params": params}, points[None], t, c_t[None], z_t[None], method=OccupancyFlow.velocity
        )
        return out[0]

    return v


def batch_velocity_fn(model: OccupancyFlow):
    """The solver's field `v((params, c_t [B, C], z_t [B, Z]), points [B, N, 3], t) -> [B, N, 3]`.

    The codes travel with the parameters as the solver's arguments: the continuous adjoint
    cannot differentiate a field that closes over traced values.
    """

    def v(args, points, t):
        params, c_t, z_t = args
        return model.apply({"params": params}, points, t, c_t, z_t, method=OccupancyFlow.velocity)

    return v


def pull_back(model, params, points, t, c_t, z_t, ode) -> jnp.ndarray:
    """Points [B, N, 3] at times t [B] carried back to t = 0, every sample in one solve.

    `flow.integrate_samples` (each sample's time reparametrised onto [0, 1]); the
    original's `transform_to_t0`.
    """
    return flow.integrate_samples(
        velocity_fn(model),
        params,
        points,
        t,
        jnp.zeros_like(t),
        sample_args=(c_t, z_t),
        rtol=ode.rtol,
        atol=ode.atol,
        adjoint=ode.adjoint,
        max_steps=ode.max_steps,
    )


def push_forward(model, params, points, times, c_t, z_t, ode) -> jnp.ndarray:
    """Points [B, N, 3] at t = times[0] carried to every time: [T, B, N, 3] (`transform_to_t`)."""
    return flow.integrate(
        batch_velocity_fn(model),
        (params, c_t, z_t),
        points,
        times,
        rtol=ode.rtol,
        atol=ode.atol,
        adjoint=ode.adjoint,
        max_steps=ode.max_steps,
    )


# ---------------------------------------------------------------------------
# Losses (`im2mesh/oflow/training.py`).
# ---------------------------------------------------------------------------


def bce_mean(logits, occupancies):
    """The original's reconstruction terms: BCE with logits, the mean over points and samples."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, occupancies))


def kl_mean(mean, logstd):
    """`dist.kl_divergence(q_z, p0_z).mean()`: the mean over the batch and the latent entries."""
    if mean.shape[-1] == 0:
        return jnp.zeros((), jnp.float32)
    return jnp.mean(losses.kl_normal_std(mean, logstd)) / mean.shape[-1]


def compute_loss(model: OccupancyFlow, config, params, batch_stats, batch, rng):
    """The loss of one batch: (loss, (metrics, new batch statistics or None)).

    Args:
      batch: 'inputs' [B, T, n, 3]; 'points' [B, N, 3] and 'occupancies' [B, N] at t = 0;
        'points_t', 'occupancies_t' [B, N] at 'time' [B]; 'pcl' [B, T, M, 3] (with
        `loss.corr`); 'times' [T] of the window's frames (the same for every sample).
    """
    lo = config.loss
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    inputs = batch["inputs"]
    c_s, c_t = model.apply(variables, inputs, method=OccupancyFlow.encode)
    mean_z, logstd_z, mean_zt, logstd_zt = model.apply(variables, inputs, c_t, method=OccupancyFlow.infer_z)
    kz, kzt = jax.random.split(rng)
    z = mean_z + jnp.exp(logstd_z) * jax.random.normal(kz, mean_z.shape, mean_z.dtype)
    z_t = mean_zt + jnp.exp(logstd_zt) * jax.random.normal(kzt, mean_zt.shape, mean_zt.dtype)
    metrics: Dict[str, jnp.ndarray] = {}
    total = jnp.zeros((), jnp.float32)
    new_stats = batch_stats or None

    def decode(stats, p):
        v = {"params": params}
        if stats:
            v["batch_stats"] = stats
            logits, upd = model.apply(
                v, p, c_s, z, train=True, method=OccupancyFlow.decode, mutable=["batch_stats"]
            )
            return logits, upd["batch_stats"]
        return model.apply(v, p, c_s, z, train=True, method=OccupancyFlow.decode), None

    if lo.recon:
        # Two train-mode decoder calls, each with its own batch statistics and each updating
        # the running ones (the original calls the decoder twice in one step as well).
        logits_t0, new_stats = decode(batch_stats, batch["points"])
        loss_t0 = bce_mean(logits_t0, batch["occupancies"])
        p_at_t0 = pull_back(model, params, batch["points_t"], batch["time"], c_t, z_t, config.ode)
        logits_t, stats2 = decode(new_stats, p_at_t0)
        new_stats = stats2 if stats2 is not None else new_stats
        loss_t = bce_mean(logits_t, batch["occupancies_t"])
        total = total + loss_t0 + loss_t
        metrics.update(
            loss_t0=loss_t0,
            loss_t=loss_t,
            accuracy_t=jnp.mean((logits_t >= 0) == (batch["occupancies_t"] >= 0.5)),
        )
    if lo.corr:
        pcl = batch["pcl"]
        times = batch["times"][0]
        flowed = push_forward(model, params, pcl[:, 0], times, c_t, z_t, config.ode)  # [T, B, M, 3]
        loss_corr = losses.correspondence_l2(jnp.swapaxes(flowed, 0, 1)[:, 1:], pcl[:, 1:])
        total = total + loss_corr
        metrics["loss_corr"] = loss_corr
    if model.z_dim > 0:
        kl = lo.vae_beta * (kl_mean(mean_z, logstd_z) + kl_mean(mean_zt, logstd_zt))
        total = total + kl
        metrics["kl"] = kl
    return total, (metrics, new_stats)
