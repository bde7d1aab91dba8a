"""ONet's task: the original loss (and the VAE's terms) through the shared step; batches, validation."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import trimesh

import experiment_configs
import prepared_meshes
from implicit_fields import losses, train_utils
from implicit_fields.data import datasets, mesh_render, pipeline, prepare
from implicit_fields.methods import onet
from implicit_fields.methods.onet import generation, task
from implicit_fields.methods.onet import model as models


def _step(model):
    """The shared jitted train step on ONet's loss (one device)."""
    return train_utils.create_train_step(functools.partial(task.loss_fn, model))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_meshes.build(tmp_path_factory.mktemp("prepare"))


def test_a_few_voxel_model_steps_lower_the_loss(key):
    config = experiment_configs.load("onet.py:voxels,tiny")
    # At 3e-3 the loss is below 0.3 of its start after 12 steps (keys 0, 1, 2); at the config's
    # 1e-3 it took 19 steps to reach 0.7, and each step of the 3-D convolutions costs 0.1 s or more.
    config.optim.learning_rate = 3e-3
    model = onet.create_model(config)
    state = onet.init_state(config, model, key)
    rng = np.random.default_rng(0)
    vox = np.zeros((4, 16, 16, 16), np.float32)
    for b in range(4):  # boxes of different sizes
        h = 2 + 2 * b
        vox[b, 8 - h // 2 : 8 + h // 2, 4:12, 8 - h // 2 : 8 + h // 2] = 1
    points = rng.uniform(-0.55, 0.55, (4, 256, 3)).astype(np.float32)
    idx = np.clip(np.floor((points + 0.5) * 16).astype(int), 0, 15)
    occ = vox[np.arange(4)[:, None], idx[..., 0], idx[..., 1], idx[..., 2]]
    occ *= (np.abs(points) < 0.5).all(-1)
    batch = {"points": points, "occupancies": occ, "inputs": vox}
    step = _step(model)
    losses = []
    for _ in range(12):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses
    assert "kl" not in metrics and "rec_error" not in metrics  # no latent, no latent terms


def test_a_few_image_model_steps_lower_the_loss(key):
    config = experiment_configs.load("onet.py:img,tiny")
    # At 3e-3 the loss is below 0.4 of its start after 12 steps (keys 0, 1, 2); at the config's
    # 1e-3 it took 15 steps to reach 0.7, and each step of the ResNet-18 costs about 0.2 s.
    config.optim.learning_rate = 3e-3
    model = onet.create_model(config)
    state = onet.init_state(config, model, key)
    rng = np.random.default_rng(0)
    # Images: a dark square whose size says how large the box to predict is.
    images = np.ones((4, 16, 16, 3), np.float32)
    points = rng.uniform(-0.55, 0.55, (4, 256, 3)).astype(np.float32)
    occ = np.zeros((4, 256), np.float32)
    for b in range(4):
        h = 2 + 3 * b
        images[b, 8 - h // 2 : 8 + h // 2 + 1, 8 - h // 2 : 8 + h // 2 + 1] = 0.2
        occ[b] = (np.abs(points[b]) < 0.06 * (b + 1)).all(-1)
    batch = {"points": points, "occupancies": occ, "inputs": images}
    step = _step(model)
    losses = []
    for _ in range(12):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


def _tiny_model_and_batch(key):
    config = experiment_configs.load("onet.py:unconditional,tiny")
    config.model.decoder_hidden = 32
    config.optim.learning_rate = 1e-2
    model = onet.create_model(config)
    state = onet.init_state(config, model, key)
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
    step = _step(model)
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


def test_img_with_camera_items_carry_their_view(prepared):
    out, _ = prepared
    cfg = ml_collections.ConfigDict(
        {"path": str(out), "categories": (), "cache": True, "input_type": "img", "img_with_camera": True}
    )
    ds = datasets.from_config(cfg, "train")
    kw = dict(num_points=16, num_inputs=0, input_noise=0.0, points_jitter=0.0, input_type="img")
    batch = pipeline.make_train_batch(ds, 3, 6, 0, with_camera=True, **kw)
    plain = pipeline.make_train_batch(ds, 3, 6, 0, **kw)
    assert batch["inputs.world_mat"].shape == batch["inputs.camera_mat"].shape == (6, 4, 4)
    for k in plain:  # The same sample, plus the cameras.
        np.testing.assert_array_equal(batch[k], plain[k])
    # Each item's camera is the one its image was rendered with.
    indices = pipeline.batch_indices(3, 6, len(ds), 0)
    for slot in range(6):
        model = ds.items[int(indices[slot])].model
        v, f = prepare.load_mesh(out.parent / "meshes" / prepared_meshes.SOURCES[model])
        v, _, _ = prepare.normalize_mesh(v)
        cam = {
            "camera_mat": batch["inputs.camera_mat"][slot].astype(np.float64),
            "world_mat": batch["inputs.world_mat"][slot].astype(np.float64),
        }
        mask = mesh_render.render_mesh(v, f, cam, 32, 32)["mask"]
        np.testing.assert_array_equal(mask, (batch["inputs"][slot] < 1.0).any(-1))
    # Validation items use view 0; without image inputs the option is an error.
    config = experiment_configs.load("onet.py:img,tiny")
    config.data.update(cfg)
    val_batches, _ = task.val_batches(config, ds, 1)
    item = ds.load(0)
    np.testing.assert_array_equal(val_batches[0][0]["inputs.world_mat"][0], item["world_mat"][0])
    with pytest.raises(ValueError, match="img_with_camera needs data.input_type 'img'"):
        datasets.from_config(ml_collections.ConfigDict(dict(cfg, input_type="pointcloud")), "train")
