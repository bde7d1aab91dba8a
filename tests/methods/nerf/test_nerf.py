"""NeRF on the shared trainer: the original's network, coarse-to-fine rendering, batches, both layouts,
the mesh of the density, and a tiny run end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiment_configs
import run_probes
from implicit_fields import trainer
from implicit_fields.methods.nerf import generation, task
from implicit_fields.methods.nerf import model as nerf_model


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_the_original_network_sizes():
    """8 x 256 with the input again after layer 4, sigma head, 256 bottleneck + 27 view inputs -> 128
    -> RGB; two such networks (coarse and fine)."""
    config = experiment_configs.load("nerf.py:full")
    model = task.create_model(config)
    params = model.init_all(jax.random.PRNGKey(0))["params"]
    dense = lambda i, o: i * o + o  # noqa: E731
    per_net = (
        dense(63, 256)
        + 4 * dense(256, 256)
        + dense(256 + 63, 256)
        + 2 * dense(256, 256)
        + dense(256, 1)
        + dense(256, 256)
        + dense(256 + 27, 128)
        + dense(128, 3)
    )
    assert _count(params["coarse_mlp"]) == _count(params["fine_mlp"]) == per_net
    assert config.rays.num_coarse == 64 and config.rays.num_fine == 128 and config.rays.per_step == 4096
    assert config.data.white_background
    # The learning rate decays log-linearly from 5e-4 to 5e-6 over the run (jaxnerf's schedule).
    from implicit_fields import train_utils

    lr = train_utils.learning_rate_schedule(config.optim, config.train.num_steps)
    np.testing.assert_allclose([lr(0), lr(500_000), lr(1_000_000)], [5e-4, 5e-5, 5e-6], rtol=1e-5)


@pytest.fixture(scope="module")
def tiny():
    config = experiment_configs.load("nerf.py:tiny")
    model = task.create_model(config)
    params = model.init_all(jax.random.PRNGKey(0))["params"]
    return config, model, params


def _rays(n=5):
    rng = np.random.default_rng(0)
    origins = np.tile([[0.0, 0.0, -2.0]], (n, 1)).astype(np.float32)
    dirs = np.c_[rng.uniform(-0.2, 0.2, (n, 2)), np.ones(n)].astype(np.float32)
    dirs[-1] = [1.0, 0.0, 0.0]  # Misses the cube.
    return jnp.asarray(origins), jnp.asarray(dirs)


def test_fine_samples_are_the_sorted_union_and_the_loss_is_both_mses(tiny):
    config, model, params = tiny
    o, d = _rays()
    kw = task.render_kwargs(config)
    render = jax.jit(lambda p, o, d, k: nerf_model.render_rays(model, p, o, d, k, **kw))
    out = render(params, o, d, jax.random.PRNGKey(1))
    nc, nf = config.rays.num_coarse, config.rays.num_fine
    assert out["coarse"]["t"].shape == (5, nc) and out["fine"]["t"].shape == (5, nc + nf)
    t_fine = np.asarray(out["fine"]["t"])
    assert (np.diff(t_fine, axis=1) >= 0).all()
    assert np.isin(np.asarray(out["coarse"]["t"]), t_fine).all()
    # Inside the padded cube: [near, far] of the box intersection.
    near, far, hit = nerf_model.ray_bounds(o, d, config.field.padding)
    assert not bool(hit[-1]) and bool(hit[:-1].all())
    assert (t_fine[:-1] >= np.asarray(near)[:-1, None] - 1e-6).all()
    assert (t_fine[:-1] <= np.asarray(far)[:-1, None] + 1e-6).all()
    # The ray that misses the cube is the white background, whatever the network.
    np.testing.assert_allclose(np.asarray(out["fine"]["rgb"][-1]), 1.0)
    assert float(out["fine"]["opacity"][-1]) == 0.0
    rgb = jnp.asarray(np.random.default_rng(2).random((5, 3)), jnp.float32)
    loss, metrics = jax.jit(nerf_model.nerf_loss, static_argnums=0, static_argnames=tuple(kw))(
        model, params, {"origins": o, "directions": d, "rgb": rgb}, jax.random.PRNGKey(1), **kw
    )
    mse = [float(jnp.mean((out[k]["rgb"] - rgb) ** 2)) for k in ("coarse", "fine")]
    np.testing.assert_allclose(float(loss), sum(mse), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["psnr_fine"]), -10 * np.log10(mse[1]), rtol=1e-5)


def test_gradient_is_finite_for_rays_that_miss(tiny):
    config, model, params = tiny
    o, d = _rays()
    batch = {"origins": o[-1:], "directions": d[-1:], "rgb": jnp.zeros((1, 3))}
    kw = task.render_kwargs(config)

    def loss(p):
        return nerf_model.nerf_loss(model, p, batch, jax.random.PRNGKey(0), **kw)[0]

    g = jax.jit(jax.grad(loss))(params)
    leaves = [np.asarray(x) for x in jax.tree.leaves(g)]
    assert all(np.isfinite(x).all() for x in leaves)


def test_fixed_near_far_bounds():
    o, d = _rays()
    near, far, valid = nerf_model.ray_bounds(o, d, 0.1, near=2.0, far=6.0)
    np.testing.assert_allclose(np.asarray(near), 2.0)
    np.testing.assert_allclose(np.asarray(far), 6.0)
    assert bool(valid.all())


@pytest.fixture(scope="module")
def scene_folders(tmp_path_factory):
    """The tiny built-in scene in both layouts."""
    root = tmp_path_factory.mktemp("nerf_scenes")
    out = {}
    for layout in ("multiview", "blender"):
        config = experiment_configs.load("nerf.py:tiny" + (",blender" if layout == "blender" else ""))
        config.data.path = str(root / layout)
        out[layout] = config
    return out


def test_both_layouts_give_the_same_rays(scene_folders):
    """The built-in scene in the Blender layout is the same scene: equal batches and held-out views."""
    batches, held_out = {}, {}
    for layout, config in scene_folders.items():
        train = task.load_scene(config, "train")
        batches[layout] = task.make_batch(config, train, 3)
        held_out[layout] = task.load_scene(config, "test")
    for k in ("origins", "directions", "rgb", "mask"):
        np.testing.assert_allclose(batches["multiview"][k], batches["blender"][k], atol=1e-5)
    np.testing.assert_allclose(held_out["multiview"].images, held_out["blender"].images, atol=1 / 255)
    assert os.path.exists(os.path.join(scene_folders["blender"].data.path, "transforms_train.json"))


def test_batches_are_a_function_of_seed_and_step(scene_folders):
    config = scene_folders["multiview"]
    train = task.load_scene(config, "train")
    a, b = task.make_batch(config, train, 5), task.make_batch(config, train, 5)
    c = task.make_batch(config, train, 6)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["rgb"], c["rgb"])
    halves = [task.make_batch(config, train, 5, i, 2) for i in range(2)]
    for k in a:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), a[k])
    # One image per step (the original's Blender batching): every ray starts at one camera.
    config.rays.single_image = True
    one = task.make_batch(config, train, 5)
    assert len(np.unique(one["origins"].round(5), axis=0)) == 1
    config.rays.single_image = False


def test_mesh_is_the_density_level_set(tiny, monkeypatch):
    """MISE on sigma - threshold: an analytic density 200 (0.3 - |p|) meshes at |p| = 0.3 - thr / 200."""
    _, model, params = tiny
    config = experiment_configs.load("nerf.py:tiny")
    config.generate.resolution0, config.generate.upsampling_steps = 16, 1

    def sphere_density(model, params, level="fine"):
        return lambda p: 200.0 * jnp.maximum(0.3 - jnp.linalg.norm(p, axis=-1), 0.0)

    monkeypatch.setattr(nerf_model, "density_fn", sphere_density)
    for thr in (20.0, 50.0):
        vertices, faces, colors, _ = generation.extract_mesh(config, model, params, thr)
        r = np.linalg.norm(vertices, axis=1)
        expected = 0.3 - thr / 200.0
        assert len(faces) > 100 and abs(np.median(r) - expected) < 0.01, (thr, np.median(r))
        assert colors.shape == vertices.shape and (colors >= 0).all() and (colors <= 1).all()


def test_the_automatic_threshold_matches_the_masks():
    rng = np.random.default_rng(0)
    mask = rng.random(5000) < 0.3
    # Densities along object rays peak at 8-20, along background rays at 0-3 (and some exactly 0).
    maxima = np.where(mask, rng.uniform(8, 20, 5000), rng.uniform(0, 3, 5000) * (rng.random(5000) < 0.7))
    s, iou = generation.threshold_from_maxima(maxima, mask)
    assert 3 <= s and (maxima[mask] > s).all() and iou == 1.0
    # Overlapping ranges: the chosen level is the best of all levels.
    maxima = np.where(mask, rng.uniform(4, 20, 5000), rng.uniform(0, 6, 5000))
    s, iou = generation.threshold_from_maxima(maxima, mask)
    ious = [np.sum((maxima > t) & mask) / np.sum((maxima > t) | mask) for t in np.linspace(0, 20, 201)]
    assert iou >= max(ious) - 1e-9 and 4 <= s <= 6.1
    with pytest.raises(ValueError, match="density is 0 along every"):
        generation.threshold_from_maxima(np.zeros(10), mask[:10])


def test_tiny_run_end_to_end(scene_folders, tmp_path):
    config = scene_folders["blender"]
    workdir = str(tmp_path / "run")
    with run_probes.recording_lead_first() as prepared:
        result = trainer.run(config, workdir, "all")
    assert prepared[:1] == ["scene"]  # rendered by one process first in a multi-host run
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    for key in ("held_out_psnr", "held_out_ssim", "held_out_mask_iou"):
        assert metrics[key] is not None and np.isfinite(metrics[key])
    assert metrics["held_out_views"] == 1 and "mesh_iou" in metrics  # shape.json: mesh metrics.
    assert os.path.exists(os.path.join(workdir, "renderings.png")) and os.path.exists(
        os.path.join(workdir, "mesh.ply")
    )
    record = trainer.read_generation(os.path.join(workdir, "generation.json"))
    # The stored per-view PSNR is the rendering of the checkpoint: render it again here.
    model, state, _ = trainer.restore(config, workdir, config.generate.checkpoint)
    data = task.load_scene(config, "test")
    again = task.render_views(task.create_renderer(config, model), state.params, data, [0])[0][3]
    np.testing.assert_allclose(again["psnr"], record["held_out_views"][0]["psnr"], rtol=1e-5)
    assert result is not None
