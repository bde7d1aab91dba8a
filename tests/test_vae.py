"""The latent-variable (VAE / unconditional) Occupancy Network: latent encoder, KL term,
prior samples, interpolation, training, and the sampling command."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from experiments import main, sample
from experiments.configs import tiny_unconditional
from implicit_fields import encoders, generation, losses, models, train_utils, vis


def test_kl_is_zero_at_the_prior_and_matches_the_closed_form(key):
    zeros = jnp.zeros((3, 5))
    np.testing.assert_array_equal(losses.kl_normal_std(zeros, zeros), 0.0)
    grad = jax.grad(lambda m, s: losses.kl_normal_std(m, s).sum(), argnums=(0, 1))(zeros, zeros)
    np.testing.assert_array_equal(grad[0], 0.0)
    np.testing.assert_array_equal(grad[1], 0.0)
    mean = jax.random.normal(key, (4, 6))
    logstd = 0.5 * jax.random.normal(jax.random.key(1), (4, 6))
    std = np.exp(np.asarray(logstd, np.float64))
    closed = np.sum(np.log(1.0 / std) + (std**2 + np.asarray(mean, np.float64) ** 2) / 2 - 0.5, axis=-1)
    np.testing.assert_allclose(losses.kl_normal_std(mean, logstd), closed, rtol=1e-5)
    assert (np.asarray(losses.kl_normal_std(mean, logstd)) > 0).all()
    # Monte Carlo: E_q[log q(z) - log p(z)] for one row.
    z = np.asarray(mean[0], np.float64) + std[0] * np.random.default_rng(0).standard_normal((200_000, 6))
    log_q = -0.5 * ((z - np.asarray(mean[0])) / std[0]) ** 2 - np.log(std[0])
    log_p = -0.5 * z**2
    assert np.mean(np.sum(log_q - log_p, axis=1)) == pytest.approx(closed[0], rel=0.02)


def test_latent_encoder_shapes_jit_and_point_order(key):
    enc = encoders.LatentEncoder(z_dim=7, hidden_size=16)
    p = jax.random.uniform(key, (3, 40, 3), minval=-0.5, maxval=0.5)
    occ = (jax.random.uniform(jax.random.key(2), (3, 40)) < 0.3).astype(jnp.float32)
    variables = enc.init(key, p, occ)
    names = set(variables["params"])
    assert names == {"fc_pos", "fc_0", "fc_1", "fc_2", "fc_3", "fc_mean", "fc_logstd"}
    assert variables["params"]["fc_2"]["kernel"].shape == (32, 16)  # 2h -> h
    mean, logstd = enc.apply(variables, p, occ)
    assert mean.shape == logstd.shape == (3, 7)
    m2, s2 = jax.jit(enc.apply)(variables, p, occ)
    np.testing.assert_allclose(m2, mean, rtol=1e-5, atol=1e-6)
    perm = jax.random.permutation(jax.random.key(3), 40)
    m3, _ = enc.apply(variables, p[:, perm], occ[:, perm])
    np.testing.assert_allclose(m3, mean, rtol=1e-5, atol=1e-6)
    # The occupancies matter.
    m4, _ = enc.apply(variables, p, 1.0 - occ)
    assert float(jnp.abs(m4 - mean).max()) > 1e-4
    # Conditioned on a code c it gains fc_c.
    with_c = enc.init(key, p, occ, jnp.ones((3, 4)))
    assert with_c["params"]["fc_c"]["kernel"].shape == (4, 16)


def _tiny_model_and_batch(key):
    config = tiny_unconditional.get_config()
    config.model.decoder_hidden = 32
    config.optim.learning_rate = 1e-2
    model = models.create_model(config.model)
    state = train_utils.create_train_state(key, model, config)
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.55, 0.55, (4, 256, 3)).astype(np.float32)
    radii = np.array([0.2, 0.3, 0.4, 0.45], np.float32)  # balls of four sizes
    occ = (np.linalg.norm(points, axis=-1) < radii[:, None]).astype(np.float32)
    batch = {"points": points, "occupancies": occ, "inputs": np.zeros((4, 0), np.float32)}
    return config, model, state, batch


def test_elbo_terms_sampling_and_parameters(key):
    config, model, state, batch = _tiny_model_and_batch(key)
    params = state.params
    assert set(params) == {"decoder_net", "encoder_latent_net"}  # no encoder, c is empty
    assert "fc_z" in params["decoder_net"] and "fc_c" not in params["decoder_net"]
    variables = {"params": params}
    args = (batch["points"], batch["occupancies"], batch["inputs"])
    out1 = model.apply(variables, *args, jax.random.key(1), method="compute_elbo")
    out2 = model.apply(variables, *args, jax.random.key(2), method="compute_elbo")
    np.testing.assert_allclose(out1["kl"], losses.kl_normal_std(out1["mean"], out1["logstd"]), rtol=1e-6)
    assert out1["logits"].shape == (4, 256) and out1["kl"].shape == (4,)
    assert float(jnp.abs(out1["logits"] - out2["logits"]).max()) > 1e-6  # z is sampled
    # Evaluation is deterministic: z is the posterior mean.
    rec = model.apply(variables, batch["points"], batch["inputs"], *args[:2], method="reconstruct")
    z = out1["mean"]
    direct = model.apply(
        variables, batch["points"], jnp.zeros((4, 0)), z, method=models.OccupancyNetwork.decode
    )
    np.testing.assert_allclose(rec["logits"], direct, rtol=1e-5, atol=1e-6)
    # Prior samples and interpolation.
    zs = models.sample_prior(jax.random.key(0), 4000, 3)
    assert zs.shape == (4000, 3) and abs(float(zs.std()) - 1.0) < 0.05
    line = models.interpolate_codes(zs[0], zs[1], 5)
    np.testing.assert_allclose(line[0], zs[0])
    np.testing.assert_allclose(line[-1], zs[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(line[2], (zs[0] + zs[1]) / 2, rtol=1e-6, atol=1e-6)


def test_a_few_steps_lower_the_loss_and_prior_samples_decode_to_meshes(key):
    config, model, state, batch = _tiny_model_and_batch(key)
    step = jax.jit(train_utils.train_step)
    history = []
    for _ in range(300):
        state, metrics = step(state, batch)
        history.append({k: float(v) for k, v in metrics.items()})
    assert all(np.isfinite(list(h.values())).all() for h in history)
    first, last = (np.mean([h["loss"] for h in part]) for part in (history[:3], history[-3:]))
    assert last < 0.3 * first, [h["loss"] for h in history[::10]]
    assert history[0]["kl"] > 0 and history[-1]["loss"] == pytest.approx(
        history[-1]["rec_error"] + history[-1]["kl"], rel=1e-5
    )
    # The model has learned balls of several sizes, the size carried by z (KL > 0): codes
    # drawn from the prior decode to closed surfaces inside the box, of different volumes.
    assert history[-1]["kl"] > 1.0
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    samples = generation.sample_meshes(config, model, variables, num=3, seed=0)
    for s in samples:
        mesh = trimesh.Trimesh(s["vertices"], s["faces"], process=False)
        assert len(mesh.faces) > 0 and mesh.is_watertight and mesh.volume > 0
        assert np.abs(mesh.vertices).max() <= 0.55 + 1e-5
    volumes = [trimesh.Trimesh(s["vertices"], s["faces"]).volume for s in samples]
    assert np.ptp(volumes) > 1e-3  # different codes, different shapes


def test_unconditional_training_and_sampled_meshes(tiny_dataset, tmp_path):
    config = tiny_unconditional.get_config()
    config.data.path = tiny_dataset
    config.train.num_steps = 30
    config.train.eval_every = 30
    config.train.checkpoint_every = 30
    config.optim.learning_rate = 1e-2
    config.generate.max_objects = 1
    workdir = str(tmp_path / "run")
    main.run(config, workdir, "train")
    lines = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    assert any("train/kl" in x for x in lines) and any("eval/kl" in x for x in lines)
    summary = sample.run(workdir, num=3, interpolate=True, pair=(0, 1), steps=3)
    assert len(summary["samples"]) == 3
    for s in summary["samples"]:
        mesh = trimesh.load(os.path.join(workdir, s["mesh"]), process=False, force="mesh")
        assert len(mesh.faces) == s["num_faces"]
        assert s["watertight"] or len(mesh.faces) == 0  # a 30-step model may decode to nothing
    latents = np.load(os.path.join(workdir, "samples", "latents.npz"))["z"]
    assert latents.shape == (3, config.model.z_dim)
    assert len(os.listdir(os.path.join(workdir, "interpolation"))) == 3
    for name in ("samples.png", "interpolation.png"):
        image = vis.read_png(os.path.join(workdir, name))
        assert image.std() > 5, name
    # The run's generate mode auto-encodes the val objects through q(z | p, o).
    result = main.run(config, workdir, "generate")
    assert result == {}
    saved = np.load(os.path.join(workdir, "meshes", "03001627", "obj_000002_inputs.npz"))
    assert saved["z"].shape == (config.model.z_dim,) and saved["latent_points"].shape == (64, 3)
