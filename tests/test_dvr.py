"""DVR: decoder layout, schedule, losses on an analytic scene, and a tiny reconstruction run
with resume-after-kill and the written mesh, picture and metrics."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import dvr_multiview
from implicit_fields import dvr, dvr_training


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_decoder_parameter_counts_match_the_original():
    # im2mesh/dvr/models/decoder.py Decoder(dim=3, c_dim, hidden_size=512, n_blocks=5, out_dim=4).
    shapes = jax.eval_shape(lambda: dvr.init_decoder(jax.random.key(0), dvr.DVRDecoder()))
    assert count(shapes) == 2_630_660
    shapes = jax.eval_shape(lambda: dvr.init_decoder(jax.random.key(0), dvr.DVRDecoder(c_dim=256)))
    assert count(shapes) == 3_288_580
    out = dvr.DVRDecoder(hidden_dim=32).apply(
        {"params": dvr.init_decoder(jax.random.key(0), dvr.DVRDecoder(hidden_dim=32))}, jnp.zeros((7, 3)))
    assert out.shape == (7, 4)


def test_ray_step_schedule_doubles_at_milestones():
    steps = [dvr.ray_steps(s) for s in (0, 49_999, 50_000, 100_000, 250_000, 10**6)]
    assert steps == [16, 16, 32, 64, 128, 128]
    assert dvr.ray_steps(10, start=8, milestones=(5,), maximum=12) == 12


def sphere_params(radius):
    return {"radius": jnp.float32(radius)}


def sphere_logit(params, points):
    return 30.0 * (params["radius"] - jnp.linalg.norm(points, axis=-1))


def sphere_rgb(params, points):
    del params
    return jnp.clip(points + 0.5, 0.0, 1.0)


def camera_batch(n=400, radius=0.3):
    """Rays from z = 2 towards the origin with the exact mask of a sphere of `radius`."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.4, 0.4, size=(n, 2))
    o = np.tile([[0.0, 0.0, 2.0]], (n, 1))
    w = np.concatenate([xy, -np.ones((n, 1))], axis=1)
    # Distance of the line from the origin < radius <=> the ray meets the sphere.
    dist = np.linalg.norm(np.cross(o, w), axis=1) / np.linalg.norm(w, axis=1)
    mask = dist < radius
    hit_points = []
    for oi, wi, m in zip(o, w, mask):
        if m:
            a, b, c = wi @ wi, 2 * oi @ wi, oi @ oi - radius**2
            t = (-b - np.sqrt(b * b - 4 * a * c)) / (2 * a)
            hit_points.append(oi + t * wi)
        else:
            hit_points.append(np.zeros(3))
    rgb = np.clip(np.asarray(hit_points) + 0.5, 0, 1)
    return {"origins": jnp.asarray(o, jnp.float32), "directions": jnp.asarray(w, jnp.float32),
            "rgb": jnp.asarray(rgb, jnp.float32), "mask": jnp.asarray(mask),
            "depth": jnp.full((n,), jnp.inf, jnp.float32)}


def test_losses_vanish_for_the_true_scene_and_push_a_wrong_radius_back():
    batch = camera_batch()
    key = jax.random.key(0)

    def losses(r):
        return dvr.dvr_losses(sphere_logit, sphere_rgb, sphere_params(r), batch, key, n_steps=64,
                              num_images=1, lambda_normal=0.0)

    value_and_grad = jax.jit(jax.value_and_grad(losses, has_aux=True))
    (total, stats), _ = value_and_grad(jnp.float32(0.3))
    assert float(stats["mask_iou"]) > 0.97
    assert float(stats["rgb"]) < 0.05 * float(jnp.sum(batch["mask"]))  # small per-ray colour error
    # Too small: mask rays without a surface are pushed to occupied -> the radius grows;
    # too large: rays outside the mask find a surface that the freespace loss pushes away.
    (small, _), g_small = value_and_grad(jnp.float32(0.2))
    (large, _), g_large = value_and_grad(jnp.float32(0.4))
    assert float(g_small) < 0.0 < float(g_large)
    assert float(small) > float(total) and float(large) > float(total)


def test_central_difference_normals_of_a_sphere_are_radial():
    pts = jnp.asarray(np.random.default_rng(1).normal(size=(50, 3)), jnp.float32)
    pts = 0.3 * pts / jnp.linalg.norm(pts, axis=1, keepdims=True)
    n = dvr.central_difference_normals(sphere_logit, sphere_params(0.3), pts)
    np.testing.assert_allclose(n, pts / 0.3, atol=1e-3)


def tiny_dvr_config(tmp_path):
    config = dvr_multiview.get_config()
    config.data.path = str(tmp_path / "scene")
    config.data.builtin_category = "mug"
    config.data.n_views = 6
    config.data.resolution = 16
    config.data.val_views = 1
    config.model.hidden_dim = 32
    config.model.n_blocks = 2
    config.rays.per_step = 128
    config.rays.steps_start = 16
    config.rays.steps_milestones = ()
    config.rays.render_steps = 16
    config.optim.learning_rate = 1e-3
    config.optim.milestones = (8,)
    config.train.num_steps = 12
    config.train.log_every = 4
    config.train.checkpoint_every = 4
    config.train.progress = False
    config.train.tensorboard = False
    config.generate.resolution0 = 8
    config.generate.upsampling_steps = 1
    config.generate.num_views = 1
    config.eval.n_points = 5000
    config.eval.n_samples = 2000
    return config


class Kill(Exception):
    pass


def test_tiny_run_resumes_exactly_and_writes_mesh_picture_and_metrics(tmp_path):
    config = tiny_dvr_config(tmp_path)
    unbroken = dvr_training.train(config, str(tmp_path / "a"))

    def kill_at_6(step):
        if step == 6:
            raise Kill()

    # Killed after step 6 (the checkpoint of step 4 survives), then resumed.
    with pytest.raises(Kill):
        dvr_training.train(config, str(tmp_path / "b"), on_step=kill_at_6)
    resumed = dvr_training.train(config, str(tmp_path / "b"))
    for a, b in zip(jax.tree.leaves(unbroken.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    workdir = str(tmp_path / "a")
    result = dvr_training.run(config, workdir, mode="all")
    for name in ("mesh.ply", "renderings.png", "metrics.json", "generation.json", "metrics.jsonl"):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "metrics.json")) as f:
        stored = json.load(f)
    assert stored["step"] == 12 and stored == json.loads(json.dumps(result))
    for key in ("field_iou", "mesh_iou", "chamfer_l1", "normal_consistency", "fscore", "held_out_mask_iou"):
        assert key in stored
    assert 0.0 <= stored["field_iou"] <= 1.0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    assert [r["step"] for r in logged] == [4, 8, 12]
    assert all(np.isfinite(r["train/loss"]) for r in logged)
    assert [r["train/ray_steps"] for r in logged] == [16, 16, 16]


def test_missing_scene_without_builtin_is_a_clear_error(tmp_path):
    config = tiny_dvr_config(tmp_path)
    config.data.builtin = False
    with pytest.raises(FileNotFoundError, match="scene"):
        dvr_training.ensure_scene(config.data)


def test_depth_gradient_reaches_the_condition_code_of_a_conditioned_decoder():
    decoder = dvr.DVRDecoder(hidden_dim=16, n_blocks=2, c_dim=8)
    net = dvr.init_decoder(jax.random.key(0), decoder)
    net = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape), net)
    logit_fn, _ = dvr.make_field_fns(decoder)

    def field(params, points):  # the decoder on top of a sphere, so that rays hit
        return logit_fn(params, points) + 20.0 * (0.3 - jnp.linalg.norm(points, axis=-1))

    batch = camera_batch(n=64)
    o, w = batch["origins"], batch["directions"]
    c = jax.random.normal(jax.random.key(2), (8,))

    def loss(code, mode):
        d = dvr.render.surface_depth(field, {"params": net, "c": code}, o, w, n_steps=64, gradient=mode)
        return jnp.sum(jnp.where(jnp.isfinite(d), d, 0.0))

    g_analytic = jax.jit(jax.grad(lambda code: loss(code, "analytic")))(c)
    g_unrolled = jax.jit(jax.grad(lambda code: loss(code, "unrolled")))(c)
    assert np.isfinite(g_analytic).all() and np.abs(g_analytic).max() > 0
    np.testing.assert_allclose(g_analytic, g_unrolled, rtol=1e-3, atol=1e-4)
