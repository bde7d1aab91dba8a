"""Texture Fields' networks and losses: shapes, compositing, the R1 term, each model's loss falls."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from implicit_fields import cameras
from implicit_fields.methods.texture_fields import config as tf_config
from implicit_fields.methods.texture_fields import model as tf_model
from implicit_fields.methods.texture_fields import task


def _config(kind, img_size=8):
    config = tf_config.get_config()
    config.model.kind = kind
    config.data.img_size = img_size
    config.data.input_size = 32
    config.data.pointcloud_n = 32
    config.model.c_dim = config.model.z_dim = 16
    config.model.decoder_hidden = config.model.geometry_hidden = 16
    config.model.vae_nfilter = config.model.disc_nfilter = 4
    config.model.vae_nfilter_max = config.model.disc_nfilter_max = 8
    if kind != "conditional":
        config.model.encoder = ""
        config.model.geometry_encoder = "simple"
        config.model.geometry_leaky = True
        config.model.decoder_blocks = 5
        config.model.decoder_resnet_leaky = True
    config.train.batch_size = 2
    task.check_config(config)
    return config


def _sphere_batch(img_size, batch=2, input_size=32, n=32, seed=0):
    """Views of a unit-radius sphere: exact depths, and a colour that is a function of position."""
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("image", "depth", "world_mat", "camera_mat", "points", "normals", "condition")}
    for _ in range(batch):
        eye = rng.normal(size=3)
        eye = 3.0 * eye / np.linalg.norm(eye)
        cam = cameras.look_at_camera(eye, focal=2.0)
        pix = cameras.pixel_grid(img_size, img_size).reshape(-1, 2)
        o, d = cameras.pixels_to_rays(pix, cam["camera_mat"], cam["world_mat"], np.eye(4))
        # |o + t d| = 0.4: the nearer root.
        a, b, c = (d * d).sum(1), 2 * (o * d).sum(1), (o * o).sum(1) - 0.16
        disc = b * b - 4 * a * c
        t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
        colour = 0.5 + 0.5 * np.sin(4 * p)
        img = np.where(np.isfinite(t)[:, None], colour, 1.0).reshape(img_size, img_size, 3)
        sphere = rng.normal(size=(n, 3))
        sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
        out["image"].append(img)
        out["depth"].append(t.reshape(img_size, img_size))
        out["world_mat"].append(cam["world_mat"])
        out["camera_mat"].append(cam["camera_mat"])
        out["points"].append(0.4 * sphere)
        out["normals"].append(sphere)
        out["condition"].append(np.full((input_size, input_size, 3), rng.uniform()))
    return {k: jnp.asarray(np.stack(v), jnp.float32) for k, v in out.items()}


def test_render_composites_over_white_and_lifts_exactly():
    # Rendering is the same for the three models; the GAN's generator has no encoder to compile.
    config = _config("gan")
    model = task.create_model(config)
    batch = _sphere_batch(8)
    variables = task.init_variables(config, model, jax.random.PRNGKey(0))
    g = model.generator
    v = {"params": variables["params"]["generator"]}
    c = g.apply(v, batch["points"], batch["normals"], method=g.encode_geometry)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(2, config.model.z_dim)), jnp.float32)
    fake, mask = g.apply(v, batch["depth"], batch["world_mat"], batch["camera_mat"], c, z, method=g.render)
    assert fake.shape == (2, 8, 8, 3) and mask.shape == (2, 8, 8)
    np.testing.assert_array_equal(np.asarray(mask), np.isfinite(np.asarray(batch["depth"])))
    # Background pixels are exactly the background; the output layer's weight starts at zero, so
    # every surface pixel has the colour sigmoid(bias).
    assert np.all(np.asarray(fake)[~np.asarray(mask)] == 1.0)
    bias = np.asarray(v["params"]["decoder"]["conv_out"]["bias"])
    inside = np.asarray(fake)[np.asarray(mask)]
    assert len(inside) >= 8
    np.testing.assert_allclose(inside, np.broadcast_to(1 / (1 + np.exp(-bias)), inside.shape), atol=1e-6)
    # The lifted points of the render lie on the sphere.
    points, m = cameras.depth_to_points(batch["depth"], batch["world_mat"], batch["camera_mat"])
    radius = np.linalg.norm(np.asarray(points)[np.asarray(m)], axis=-1)
    np.testing.assert_allclose(radius, 0.4, atol=1e-5)


def test_r1_matches_finite_differences():
    """mean_b sum (dD/dx)^2 against central differences of the discriminator, per pixel."""
    d = tf_model.Discriminator(img_size=8, nfilter=4, nfilter_max=8, shape_code=True)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.uniform(size=(2, 8, 8, 3)), jnp.float32)
    depth = jnp.asarray(rng.uniform(1, 2, size=(2, 8, 8)), jnp.float32)
    c = jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)
    params = d.init(jax.random.PRNGKey(3), images, depth, c)["params"]
    # Make the logit depend on the image (fc starts at zero).
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: (
            jnp.asarray(rng.normal(size=x.shape) * 0.3, x.dtype) if "fc" == getattr(path[0], "key", "") else x
        ),
        params,
    )

    def d_fn(x):
        return d.apply({"params": params}, x, depth, c)

    r1 = float(tf_model.r1_penalty(d_fn, images))
    eps = 1e-2
    flat = np.asarray(images, np.float64).reshape(2, -1)
    basis = np.eye(flat.shape[1])
    grads = np.zeros_like(flat)
    for b in range(2):
        plus = flat[b][None] + eps * basis
        minus = flat[b][None] - eps * basis
        others = np.repeat(np.asarray(images), flat.shape[1], axis=0).reshape(-1, 2, 8, 8, 3)
        # One image of the batch varies; the logit of that image is independent of the other.
        xp = others.copy()
        xp[:, b] = plus.reshape(-1, 8, 8, 3)
        xm = others.copy()
        xm[:, b] = minus.reshape(-1, 8, 8, 3)
        fp = jax.vmap(lambda x, b=b: d_fn(x)[b])(jnp.asarray(xp, jnp.float32))
        fm = jax.vmap(lambda x, b=b: d_fn(x)[b])(jnp.asarray(xm, jnp.float32))
        grads[b] = (np.asarray(fp, np.float64) - np.asarray(fm, np.float64)) / (2 * eps)
    expected = float(np.mean(np.sum(grads**2, axis=1)))
    assert r1 > 0
    assert r1 == pytest.approx(expected, rel=2e-2)


def test_kl_and_elbo_are_the_originals():
    mean = jnp.asarray([[0.5, -1.0]])
    logstd = jnp.asarray([[0.1, -0.3]])
    # Closed form: sum(-log s + (s^2 + m^2) / 2 - 1/2).
    s = np.exp([0.1, -0.3])
    expected = np.sum(-np.log(s) + (s**2 + np.array([0.25, 1.0])) / 2 - 0.5)
    np.testing.assert_allclose(float(tf_model.kl_standard_normal(mean, logstd)[0]), expected, rtol=1e-6)
    real = jnp.zeros((1, 4, 4, 3))
    fake = jnp.full((1, 4, 4, 3), 0.5)
    total, terms = tf_model.elbo(fake, real, mean, logstd)
    np.testing.assert_allclose(float(terms["recon"]), 0.25, rtol=1e-6)
    np.testing.assert_allclose(float(terms["kl"]), expected / 48.0, rtol=1e-6)
    np.testing.assert_allclose(float(total), 0.25 + expected / 48.0, rtol=1e-6)


@pytest.mark.parametrize("kind", ["conditional", "vae", "gan"])
def test_loss_falls_in_a_tiny_run(kind):
    """A few RMSprop steps on one batch of the sphere: the loss falls; every step is finite."""
    config = _config(kind)
    config.optim.learning_rate = 1e-3
    model = task.create_model(config)
    variables = task.init_variables(config, model, jax.random.PRNGKey(0))
    batch = _sphere_batch(8)
    tx = optax.rmsprop(config.optim.learning_rate, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    params, stats = variables["params"], variables["batch_stats"]
    opt = tx.init(params)

    @jax.jit
    def step(params, stats, opt, key):
        (loss, (metrics, new_stats)), grads = jax.value_and_grad(
            lambda p: task.loss_fn(model, config, p, stats, batch, key), has_aux=True
        )(params)
        updates, opt = tx.update(grads, opt, params)
        return (
            optax.apply_updates(params, updates),
            (stats if new_stats is None else new_stats),
            opt,
            loss,
            metrics,
        )

    losses = []
    for i in range(25):
        params, stats, opt, loss, metrics = step(params, stats, opt, jax.random.PRNGKey(i))
        assert np.isfinite(float(loss)), (kind, i, metrics)
        assert all(np.isfinite(float(v)) for v in metrics.values())
        losses.append(float(loss))
    if kind == "gan":
        # Adversarial: no monotone loss; the generator's part is finite and the discriminator learns.
        assert float(metrics["d_real"]) > float(metrics["d_fake"])
    else:
        assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_gan_gradients_reach_only_their_own_player():
    """The generator's loss moves only the generator; the discriminator's loss only the discriminator."""
    config = _config("gan")
    model = task.create_model(config)
    variables = task.init_variables(config, model, jax.random.PRNGKey(0))
    batch = _sphere_batch(8)
    key = jax.random.PRNGKey(5)

    def parts(params):
        _, (metrics, _) = task.loss_fn(model, config, params, {}, batch, key)
        return jnp.stack([metrics["loss_g"], metrics["loss_d"]])

    # With fc of the discriminator at zero the generator gets no signal: give it a random one first.
    params = variables["params"]
    fc = params["discriminator"]["fc"]
    params["discriminator"]["fc"] = dict(fc, kernel=jnp.ones_like(fc["kernel"]) * 0.1)
    both = jax.jit(jax.jacrev(parts))(params)  # Leading axis: (loss_g, loss_d).
    g_grads = jax.tree.map(lambda x: x[0], both)
    d_grads = jax.tree.map(lambda x: x[1], both)
    norm = optax.tree.norm
    assert float(norm(g_grads["generator"])) > 0 and float(norm(g_grads["discriminator"])) == 0
    assert float(norm(d_grads["discriminator"])) > 0 and float(norm(d_grads["generator"])) == 0


def test_config_checks_contradictions():
    config = _config("gan")
    config.data.img_size = 12
    with pytest.raises(ValueError, match="config.data.img_size=12 must be 4 \\* 2\\^k"):
        task.check_config(config)
    config = _config("vae")
    config.model.encoder = "resnet18"
    with pytest.raises(ValueError, match="config.model.encoder='resnet18'"):
        task.check_config(config)
    config = _config("conditional")
    config.model.encoder = ""
    with pytest.raises(ValueError, match="config.model.encoder=''"):
        task.check_config(config)
    assert isinstance(config, ml_collections.ConfigDict)


@pytest.mark.parametrize("leaky", [True, False])
def test_simple_pointnet_is_the_original_concatenation(leaky):
    """The pooled half of conv_1..3 computed once per object equals the original's [net, pooled] layers."""
    enc = tf_model.SimplePointnet(c_dim=5, hidden_dim=8, leaky=leaky)
    pn = jax.random.normal(jax.random.key(1), (3, 50, 6))
    params = enc.init(jax.random.key(0), pn)["params"]

    def reference(params, pn):
        act = (lambda x: jax.nn.leaky_relu(x, 0.2)) if leaky else jax.nn.relu
        pool = jnp.mean if leaky else jnp.max

        def dense(name, x):
            bias = params[name]["bias"]
            return x @ params[name]["kernel"] + bias.reshape((1,) * (x.ndim - 1) + bias.shape)

        net = dense("conv_p", pn)
        for i in range(3):
            net = dense(f"conv_{i}", act(net))
            pooled = pool(net, axis=1, keepdims=True)
            net = jnp.concatenate([net, jnp.broadcast_to(pooled, net.shape)], axis=-1)
        net = pool(dense("conv_3", act(net)), axis=1)
        return dense("fc_c", act(net))

    assert params["conv_1"]["kernel"].shape == (16, 8)  # the original's parameters
    ours = jax.jit(lambda p, x: enc.apply({"params": p}, x))
    np.testing.assert_allclose(ours(params, pn), reference(params, pn), rtol=1e-5, atol=1e-6)
    g_ours = jax.grad(lambda p: jnp.sum(ours(p, pn) ** 2))(params)
    g_ref = jax.grad(lambda p: jnp.sum(reference(p, pn) ** 2))(params)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
