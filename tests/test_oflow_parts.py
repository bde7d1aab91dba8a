"""Occupancy Flow's parts in the core: the temporal encoder, the velocity field, L_corr with the ODE."""

import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields import decoders, encoders, flow, losses


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_temporal_encoder_flattens_trajectories_as_the_original():
    rng = np.random.default_rng(0)
    seq = jnp.asarray(rng.normal(size=(2, 17, 9, 3)), jnp.float32)
    enc = encoders.TemporalResnetPointnet(c_dim=128, hidden_dim=128)
    params = enc.init(jax.random.PRNGKey(0), seq)
    # The original's TemporalResnetPointnet(c 128, dim 51, hidden 128): fc_pos, 5 blocks, fc_c.
    h = 128
    block = (2 * h * h + h) + (h * h + h) + 2 * h * h
    assert _count(params) == (51 * 2 * h + 2 * h) + 5 * block + (h * h + h)
    # x.transpose(1, 2).view(batch, n, -1): per point its 17 positions, frame by frame.
    flat = np.asarray(seq).transpose(0, 2, 1, 3).reshape(2, 9, 51)
    direct = encoders.ResnetPointnet(128, 128).apply(
        {"params": params["params"]["pointnet"]}, jnp.asarray(flat)
    )
    np.testing.assert_allclose(np.asarray(enc.apply(params, seq)), np.asarray(direct), rtol=1e-6)
    # A different frame order is a different code.
    assert not np.allclose(np.asarray(enc.apply(params, seq[:, ::-1])), np.asarray(direct))


def test_velocity_field_parameters_inputs_and_the_ode():
    field = decoders.VelocityField(hidden_size=128, n_blocks=5)
    rng = np.random.default_rng(1)
    p = jnp.asarray(rng.uniform(-0.5, 0.5, size=(2, 30, 3)), jnp.float32)
    c = jnp.asarray(rng.normal(size=(2, 128)), jnp.float32)
    params = field.init(jax.random.PRNGKey(1), p, 0.0, c)
    h = 128
    expected = (4 * h + h) + 5 * (h * h + h) + 5 * 2 * (h * h + h) + (3 * h + 3)  # fc_p, fc_c, blocks, fc_out
    assert _count(params) == expected
    v0 = field.apply(params, p, 0.0, c)
    assert v0.shape == (2, 30, 3)
    assert not np.allclose(np.asarray(field.apply(params, p, 0.7, c)), np.asarray(v0))  # Depends on t.
    assert not np.allclose(np.asarray(field.apply(params, p, 0.0, c[::-1])), np.asarray(v0))  # And on c.
    # Per-sample times [batch] equal one call per sample.
    both = field.apply(params, p, jnp.asarray([0.2, 0.9]), c)
    one = field.apply(params, p[1:], 0.9, c[1:])
    np.testing.assert_allclose(np.asarray(both[1:]), np.asarray(one), rtol=1e-5, atol=1e-6)

    # As the ODE's field (a small one: compilation time): points pulled from t = 1 back to 0,
    # differentiable with the continuous adjoint.
    small = decoders.VelocityField(hidden_size=16, n_blocks=2)
    params = small.init(jax.random.PRNGKey(2), p, 0.0, c)

    def velocity(prm, x, t):
        return small.apply(prm, x[None], t, c[:1])[0]

    def loss(prm):
        return jnp.sum(flow.integrate(velocity, prm, p[0], jnp.asarray([1.0, 0.0]))[-1] ** 2)

    g = jax.jit(jax.grad(loss))(params)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))
    assert float(jax.tree.reduce(lambda a, x: a + jnp.sum(jnp.abs(x)), g, 0.0)) > 0


def test_correspondence_loss_is_zero_for_the_exact_flow():
    """Points flowed by a rigid rotation's field land on their closed-form correspondences: L_corr ~ 0."""

    def rotation(omega, x, t):
        del t
        return jnp.stack([-omega * x[:, 1], omega * x[:, 0], jnp.zeros_like(x[:, 0])], axis=-1)

    rng = np.random.default_rng(2)
    p0 = rng.uniform(-0.5, 0.5, size=(50, 3)).astype(np.float32)
    times = np.linspace(0.0, 1.0, 17).astype(np.float32)
    c, s = np.cos(1.5 * times)[:, None], np.sin(1.5 * times)[:, None]
    z = np.broadcast_to(p0[:, 2], (17, 50))
    truth = np.stack([c * p0[:, 0] - s * p0[:, 1], s * p0[:, 0] + c * p0[:, 1], z], -1)
    flowed = flow.integrate(rotation, jnp.float32(1.5), p0, jnp.asarray(times), rtol=1e-6, atol=1e-8)
    assert float(losses.correspondence_l2(flowed, jnp.asarray(truth))) < 1e-5
    # The wrong speed is not.
    wrong = flow.integrate(rotation, jnp.float32(1.0), p0, jnp.asarray(times))
    assert float(losses.correspondence_l2(wrong, jnp.asarray(truth))) > 0.05
    # Exactly on the correspondences: zero loss and a zero (not NaN) gradient.
    g = jax.grad(losses.correspondence_l2)(jnp.asarray(truth), jnp.asarray(truth))
    assert np.all(np.asarray(g) == 0)


def test_latent_pointnet_parameters_and_inputs_as_the_original():
    rng = np.random.default_rng(4)
    seq = jnp.asarray(rng.normal(size=(2, 17, 11, 3)), jnp.float32)
    c = jnp.asarray(rng.normal(size=(2, 16)), jnp.float32)
    h, z, blocks = 128, 32, 3
    for temporal, dim in ((False, 3), (True, 51)):
        enc = encoders.LatentPointnet(z_dim=z, hidden_dim=h, n_blocks=blocks, temporal=temporal)
        params = enc.init(jax.random.PRNGKey(0), seq, c)
        # encoder_latent.PointNet(z, c 16, dim, hidden 128, 3 blocks): fc_pos, blocks, c_layers,
        # fc_mean, fc_logstd.
        block = (2 * h * h + h) + (h * h + h) + 2 * h * h
        expected = (dim * 2 * h + 2 * h) + blocks * block + blocks * (16 * 2 * h + 2 * h) + 2 * (h * z + z)
        assert _count(params) == expected, temporal
        mean, logstd = enc.apply(params, seq, c)
        assert mean.shape == logstd.shape == (2, z)
        # Frame 0 only, or every frame: moving a later frame changes only the temporal posterior.
        moved = seq.at[:, 5].add(0.3)
        changed = not np.allclose(np.asarray(enc.apply(params, moved, c)[0]), np.asarray(mean))
        assert changed == temporal
        # Without a code the c_layers are skipped.
        assert _count(enc.init(jax.random.PRNGKey(0), seq)) == expected - blocks * (16 * 2 * h + 2 * h)
