"""DVR's model: decoder layout, ray-step schedule, losses on an analytic scene, normals, and the
depth gradient through a condition code (training runs: test_task.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields.methods.dvr import model as dvr


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_decoder_parameter_counts_match_the_original():
    # im2mesh/dvr/models/decoder.py Decoder(dim=3, c_dim, hidden_size=512, n_blocks=5, out_dim=4).
    shapes = jax.eval_shape(lambda: dvr.init_decoder(jax.random.key(0), dvr.DVRDecoder()))
    assert count(shapes) == 2_630_660
    shapes = jax.eval_shape(lambda: dvr.init_decoder(jax.random.key(0), dvr.DVRDecoder(c_dim=256)))
    assert count(shapes) == 3_288_580
    out = dvr.DVRDecoder(hidden_dim=32).apply(
        {"params": dvr.init_decoder(jax.random.key(0), dvr.DVRDecoder(hidden_dim=32))}, jnp.zeros((7, 3))
    )
    assert out.shape == (7, 4)


def test_ray_step_schedule_doubles_at_milestones():
    steps = [dvr.ray_steps(s) for s in (0, 49_999, 50_000, 100_000, 250_000, 10**6)]
    assert steps == [16, 16, 32, 64, 128, 128]
    assert dvr.ray_steps(10, start=8, milestones=(5,), maximum=12) == 12


def sphere_params(radius):
    return {"radius": jnp.float32(radius)}


def sphere_logit(params, points):
    return 30.0 * (params["radius"] - jnp.linalg.norm(points, axis=-1))


def sphere_rgb(params, points, directions=None):
    del params, directions
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
    return {
        "origins": jnp.asarray(o, jnp.float32),
        "directions": jnp.asarray(w, jnp.float32),
        "rgb": jnp.asarray(rgb, jnp.float32),
        "mask": jnp.asarray(mask),
        "depth": jnp.full((n,), jnp.inf, jnp.float32),
    }


def test_losses_vanish_for_the_true_scene_and_push_a_wrong_radius_back():
    batch = camera_batch()
    key = jax.random.key(0)

    def losses(r):
        return dvr.dvr_losses(
            sphere_logit,
            sphere_rgb,
            sphere_params(r),
            batch,
            key,
            n_steps=64,
            num_images=1,
            lambda_normal=0.0,
        )

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


def test_view_metrics_of_a_known_rendering():
    image = np.zeros((4, 4, 3), np.float32)
    mask = np.zeros((4, 4), bool)
    mask[:2] = True  # 8 pixels
    depth = np.full((4, 4), np.inf, np.float32)
    depth[:3] = 1.0  # 12 pixels hit, 8 of them in the mask
    rgb = np.full((4, 4, 3), 0.1, np.float32)
    m = dvr.view_metrics(rgb, depth, image, mask)
    assert m["mask_iou"] == pytest.approx(8 / 12)
    assert m["psnr_in_mask"] == pytest.approx(-10 * np.log10(0.01), rel=1e-5)  # MSE 0.01 -> 20 dB
    assert np.isnan(dvr.view_metrics(rgb, np.full((4, 4), np.inf), image, mask)["psnr_in_mask"])


def test_renderer_matches_the_surface_depth_of_the_decoder():
    decoder = dvr.DVRDecoder(hidden_dim=16, n_blocks=1)
    params = dvr.init_decoder(jax.random.key(0), decoder)
    logit_fn, rgb_fn = dvr.make_field_fns(decoder)
    # Scale and shift the occupancy logit so that about half of the cube is inside.
    pts = jnp.asarray(np.random.default_rng(0).uniform(-0.55, 0.55, (4000, 3)), jnp.float32)
    median = float(jnp.median(logit_fn(params, pts)))
    out = params["fc_out"]
    out["kernel"] = out["kernel"].at[:, 0].multiply(20.0)
    out["bias"] = out["bias"].at[0].set(20.0 * (out["bias"][0] - median))
    batch = camera_batch(n=50)
    o, w = np.asarray(batch["origins"]), np.asarray(batch["directions"])
    render = dvr.create_renderer(decoder, chunk=32)
    rgb, depth = render(params, o, w, 32)
    d = np.asarray(dvr.render.surface_depth(logit_fn, params, jnp.asarray(o), jnp.asarray(w), n_steps=32))
    np.testing.assert_allclose(depth, d, rtol=1e-5)
    hit = np.isfinite(d) & (d > 0)
    assert 0 < hit.sum() < len(hit)
    p = o + np.where(hit, d, 0.0)[:, None] * w
    np.testing.assert_allclose(
        rgb[hit], np.asarray(rgb_fn(params, jnp.asarray(p)))[hit], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(rgb[~hit], 1.0)  # white background


BAD_RAYS = {
    "nan origin": ([np.nan, 0.0, 2.0], [0.0, 0.0, -1.0]),
    "inf origin": ([0.0, np.inf, 2.0], [0.0, 0.0, -1.0]),
    "nan direction": ([0.0, 0.0, 2.0], [0.0, np.nan, -1.0]),
    "inf direction": ([0.0, 0.0, 2.0], [np.inf, 0.0, -1.0]),
    "zero direction": ([0.0, 0.0, 2.0], [0.0, 0.0, 0.0]),
}


@pytest.mark.parametrize("in_mask", [True, False])
@pytest.mark.parametrize("kind", sorted(BAD_RAYS))
def test_an_invalid_ray_counts_in_no_loss_term_and_leaves_the_gradient_finite(kind, in_mask):
    """One bad ray (as a NaN camera would give) must not poison the batch: its loss and gradient
    equal those of the batch where it is replaced by a ray that misses everything."""
    batch = camera_batch(n=64)

    def with_ray(origin, direction):
        b = dict(batch)
        b["origins"] = b["origins"].at[5].set(jnp.asarray(origin, jnp.float32))
        b["directions"] = b["directions"].at[5].set(jnp.asarray(direction, jnp.float32))
        b["mask"] = b["mask"].at[5].set(in_mask)
        return b

    def loss(r, b):
        total, _ = dvr.dvr_losses(
            sphere_logit,
            sphere_rgb,
            sphere_params(r),
            b,
            jax.random.key(1),
            n_steps=32,
            num_images=1,
            lambda_normal=0.1,
            lambda_depth=1.0,
        )
        return total

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    bad = value_and_grad(jnp.float32(0.25), with_ray(*BAD_RAYS[kind]))
    # A ray from behind the camera pointing away: it misses the cube and counts in no term.
    away = with_ray([0.0, 0.0, 5.0], [0.0, 0.0, 1.0])
    away["mask"] = away["mask"].at[5].set(False)
    ref = value_and_grad(jnp.float32(0.25), away)
    assert np.isfinite(float(bad[0])) and np.isfinite(float(bad[1]))
    np.testing.assert_allclose(float(bad[0]), float(ref[0]), rtol=1e-5)
    np.testing.assert_allclose(float(bad[1]), float(ref[1]), rtol=1e-5)
