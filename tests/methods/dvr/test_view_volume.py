"""DVR's options: IDR's view-dependent colour (`model.view_dependent`), the occupancy field rendered
as a volume (`rays.mode='volume'`), the specular scene and the experiment config's options."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiment_configs
from implicit_fields import trainer
from implicit_fields.methods.dvr import generation, task
from implicit_fields.methods.dvr import model as dvr


def small_view_decoder(**kwargs):
    settings = dict(hidden_dim=16, n_blocks=1, feature_dim=8, render_hidden=16, render_layers=2, view_freqs=4)
    return dvr.ViewDependentDecoder(**{**settings, **kwargs})


@functools.lru_cache(maxsize=None)
def decoder_and_params(view_dependent, seed=0, **kwargs):
    """A small decoder (view-dependent or DVR's) and its parameters, initialised once (jitted)."""
    decoder = small_view_decoder(**kwargs) if view_dependent else dvr.DVRDecoder(hidden_dim=16, n_blocks=1)
    return decoder, jax.jit(lambda key: dvr.init_decoder(key, decoder))(jax.random.key(seed))


def points_and_rays(n=6, seed=1):
    rng = np.random.default_rng(seed)
    points = jnp.asarray(rng.uniform(-0.3, 0.3, (n, 3)), jnp.float32)
    dirs = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
    return points, dirs


# --------------------------------------------------------------------------------------
# The view-dependent colour.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("view_freqs, c_dim", [(4, 0), (0, 5)])
def test_the_view_dependent_colour_depends_on_the_view_direction(view_freqs, c_dim):
    decoder, net = decoder_and_params(True, view_freqs=view_freqs, c_dim=c_dim)
    params = {"params": net, "c": jnp.ones((c_dim,))} if c_dim else net
    logit_fn, rgb_fn = dvr.make_field_fns(decoder)
    with pytest.raises(ValueError, match="view-dependent colour .* needs the rays' directions"):
        rgb_fn(params, jnp.zeros((2, 3)))
    rgb_fn = jax.jit(rgb_fn)
    points, dirs = points_and_rays()
    rgb = rgb_fn(params, points, dirs)
    assert rgb.shape == (6, 3) and np.all((rgb > 0) & (rgb < 1))
    other = rgb_fn(params, points, -dirs)
    assert np.abs(rgb - other).min(axis=1).max() > 1e-4 and np.abs(rgb - other).max() > 1e-3
    np.testing.assert_allclose(rgb_fn(params, points, 3.0 * dirs), rgb, rtol=1e-5)  # only the unit v counts
    # Pointwise: a point's colour does not depend on the other points of the batch.
    moved = points.at[2:].set(-points[2:])
    np.testing.assert_allclose(rgb_fn(params, moved, dirs)[:2], rgb[:2], rtol=1e-5)
    assert logit_fn(params, points).shape == (6,)


def test_dvrs_own_colour_ignores_the_view_direction():
    decoder, params = decoder_and_params(False)
    _, rgb_fn = dvr.make_field_fns(decoder)
    rgb_fn = jax.jit(rgb_fn)
    points, dirs = points_and_rays()
    np.testing.assert_array_equal(rgb_fn(params, points, dirs), rgb_fn(params, points))
    np.testing.assert_array_equal(rgb_fn(params, points, -dirs), rgb_fn(params, points))


def test_rendering_network_sizes_are_idrs():
    # IDR: d_in 9 (x, v, n) + 256 features, 4 x 512, 3 out, view encoding of 4 octaves (27 values).
    decoder = dvr.ViewDependentDecoder()
    shapes = jax.eval_shape(lambda: dvr.init_decoder(jax.random.key(0), decoder))
    rendering = shapes["rendering"]
    assert rendering["fc_0"]["kernel"].shape == (3 + 3 + 27 + 256, 512)
    assert [rendering[f"fc_{i}"]["kernel"].shape[1] for i in range(4)] == [512] * 4
    assert rendering["fc_out"]["kernel"].shape == (512, 3) and "fc_4" not in rendering
    assert shapes["geometry"]["fc_out"]["kernel"].shape == (512, 257)


CENTRE = np.array([[0.1, -0.05, 0.0]])
AXES2 = np.array([[0.09, 0.04, 0.16]])  # squared semi-axes of the ellipsoid


def _unit_rows(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


ANALYTIC = {  # (occupancy logit, its outward unit normal)
    "sphere": (
        lambda p: 30.0 * (0.3 - jnp.linalg.norm(p, axis=-1)),
        _unit_rows,
    ),
    "shifted sphere": (
        lambda p: 5.0 * (0.25 - jnp.linalg.norm(p - CENTRE, axis=-1)),
        lambda p: _unit_rows(p - CENTRE),
    ),
    "ellipsoid": (
        lambda p: 1.0 - jnp.sum(p * p / AXES2, axis=-1),
        lambda p: _unit_rows(p / AXES2),
    ),
}


@pytest.mark.parametrize("kind", sorted(ANALYTIC))
def test_autodiff_normals_of_an_analytic_logit_are_the_analytic_normals(kind):
    logit, normal = ANALYTIC[kind]
    pts = np.random.default_rng(2).uniform(-0.45, 0.45, (64, 3)).astype(np.float32)
    n = dvr.autodiff_normals(lambda params, p: logit(p), None, jnp.asarray(pts))
    np.testing.assert_allclose(n, normal(pts.astype(np.float64)), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("c_dim", [0, 5])
def test_the_colour_loss_reaches_the_geometry_through_the_normal(c_dim):
    """At fixed points, the logit's column of the geometry network's last layer changes the colour
    only through n = -grad f / |grad f|: its kernel gets a gradient (equal to a finite difference), its
    bias (a constant shift of f, no change of grad f) none; for DVR's own colour neither does."""
    decoder, net = decoder_and_params(True, seed=3, c_dim=c_dim)
    _, rgb_fn = dvr.make_field_fns(decoder)
    points, dirs = points_and_rays(32)
    target = jnp.full((32, 3), 0.5)

    def loss(net):
        params = {"params": net, "c": jnp.linspace(-1, 1, c_dim)} if c_dim else net
        return jnp.sum(jnp.abs(rgb_fn(params, points, dirs) - target))

    loss = jax.jit(loss)
    grads = jax.jit(jax.grad(loss))(net)["geometry"]["fc_out"]
    g_kernel, g_bias = np.asarray(grads["kernel"][:, 0]), float(grads["bias"][0])
    assert np.abs(g_kernel).max() > 1e-4 and np.all(np.isfinite(g_kernel))
    assert g_bias == 0.0
    j = int(np.argmax(np.abs(g_kernel)))
    eps = 1e-2

    def shifted(e):
        out = jax.tree.map(lambda x: x, net)  # new dicts, same arrays
        out["geometry"]["fc_out"]["kernel"] = out["geometry"]["fc_out"]["kernel"].at[j, 0].add(e)
        return out

    fd = (float(loss(shifted(eps))) - float(loss(shifted(-eps)))) / (2 * eps)
    assert fd == pytest.approx(g_kernel[j], rel=0.05, abs=1e-4)
    # DVR's texture field: the logit column never reaches the colour.
    plain, plain_net = decoder_and_params(False)
    _, plain_rgb = dvr.make_field_fns(plain)
    g = jax.jit(jax.grad(lambda p: jnp.sum(jnp.abs(plain_rgb(p, points, dirs) - target))))(plain_net)
    assert float(jnp.abs(g["fc_out"]["kernel"][:, 0]).max()) == 0.0


# --------------------------------------------------------------------------------------
# Volume rendering of the occupancy field.
# --------------------------------------------------------------------------------------


def sphere_field(slope):
    def logit_fn(params, points):
        return slope * (params["radius"] - jnp.linalg.norm(points, axis=-1))

    def rgb_fn(params, points, directions=None):
        del params, directions
        return jnp.clip(points + 0.5, 0.0, 1.0)

    return logit_fn, rgb_fn


def sphere_rays(n, radius, seed=0):
    """Rays from z = 2 towards the cube, their distance to the sphere's centre line, the exact mask,
    entry depth and the colour there (white outside the mask, as the images' background)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-0.25, 0.25, size=(n, 2))  # +-0.5 at the centre
    o = np.tile([[0.0, 0.0, 2.0]], (n, 1))
    w = np.concatenate([xy, -np.ones((n, 1))], axis=1)
    a, b, c = (w * w).sum(1), 2 * (o * w).sum(1), (o * o).sum(1) - radius**2
    disc = b * b - 4 * a * c
    mask = disc > 0
    depth = np.where(mask, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    dist = np.linalg.norm(np.cross(o, w), axis=1) / np.linalg.norm(w, axis=1)
    hit = o + np.where(mask, depth, 0.0)[:, None] * w
    rgb = np.where(mask[:, None], np.clip(hit + 0.5, 0, 1), 1.0)
    batch = {
        "origins": jnp.asarray(o, jnp.float32),
        "directions": jnp.asarray(w, jnp.float32),
        "rgb": jnp.asarray(rgb, jnp.float32),
        "mask": jnp.asarray(mask),
        "depth": jnp.asarray(depth, jnp.float32),
    }
    return batch, dist, depth


@pytest.mark.parametrize("radius, samples", [(0.3, 64), (0.2, 32), (0.4, 16)])
def test_the_volume_rendering_of_a_sphere_has_its_silhouette_depth_and_colours(radius, samples):
    logit_fn, rgb_fn = sphere_field(1e6)  # a binary occupancy: alpha 0 or 1 beyond 1e-5 of the surface
    batch, dist, depth_true = sphere_rays(600, radius)
    o, w = batch["origins"], batch["directions"]

    @jax.jit
    def rendered(key):
        out = dvr.render_volume(
            logit_fn, rgb_fn, {"radius": jnp.float32(radius)}, o, w, key, num_samples=samples
        )
        return out, dvr.expected_depth(out)

    near, far, _ = dvr.render.intersect_box(np.asarray(o), np.asarray(w), 0.1)
    spacing = (far - near) / samples  # per unit of the direction
    chord = 2.0 * np.sqrt(np.maximum(radius**2 - dist**2, 0.0)) / np.linalg.norm(np.asarray(w), axis=1)
    for key in (None, jax.random.key(0)):
        out, (mask, depth) = rendered(key)
        mask, depth, rgb = np.asarray(mask), np.asarray(depth), np.asarray(out["rgb"])
        # Every ray whose chord through the sphere is longer than two bins has a sample inside;
        # a ray that misses the sphere has none.
        sure = chord > 2.0 * spacing
        assert sure.sum() > 0.7 * np.sum(batch["mask"]) and mask[sure].all()
        assert not mask[dist > radius].any()
        inter, union = np.sum(mask & np.asarray(batch["mask"])), np.sum(mask | np.asarray(batch["mask"]))
        assert inter / union > 0.9
        # The first sample inside: at most two bins behind the surface; its colour there.
        np.testing.assert_array_less(depth_true[mask] - 1e-4, depth[mask])
        np.testing.assert_array_less(depth[mask], depth_true[mask] + 2.0 * spacing[mask] + 1e-4)
        assert np.all(np.isinf(depth[~mask]))
        np.testing.assert_allclose(np.asarray(out["opacity"])[sure], 1.0, atol=1e-6)
        np.testing.assert_allclose(rgb[dist > radius + 1e-4], 1.0)  # white background
        p = np.asarray(o) + depth[:, None] * np.asarray(w)
        np.testing.assert_allclose(rgb[sure], np.clip(p[sure] + 0.5, 0, 1), atol=1e-4)


def test_a_ray_that_misses_the_cube_is_white_and_transparent():
    logit_fn, _ = sphere_field(1.0)
    o = jnp.asarray([[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]], jnp.float32)
    w = jnp.asarray([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], jnp.float32)  # away from / through the cube
    out = jax.jit(
        lambda params: dvr.render_volume(
            logit_fn, lambda p, x, d: jnp.zeros_like(x), params, o, w, None, num_samples=8
        )
    )({"radius": jnp.float32(10.0)})
    assert list(np.asarray(out["hit"])) == [False, True]
    np.testing.assert_allclose(out["opacity"], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out["rgb"][0], 1.0)
    np.testing.assert_allclose(out["rgb"][1], 0.0, atol=1e-6)


@pytest.mark.parametrize("logit", [-3.0, 0.0, 4.0, 30.0])
def test_the_mask_loss_is_the_bce_of_the_opacity_and_keeps_a_gradient_when_opaque(logit):
    """log(1 - opacity) from the logits: equal to the BCE of the opacity where that is representable,
    and a non-zero gradient for a field opaque everywhere (opacity 1 in float32)."""
    n, samples = 4, 16
    o = jnp.tile(jnp.asarray([[0.0, 0.0, -2.0]], jnp.float32), (n, 1))
    w = jnp.tile(jnp.asarray([[0.0, 0.0, 1.0]], jnp.float32), (n, 1))
    batch = {"origins": o, "directions": w, "rgb": jnp.ones((n, 3)), "mask": jnp.asarray([True, False] * 2)}

    def mask_loss(c):
        fields = (lambda p, x: jnp.full(x.shape[:-1], p), lambda p, x, d: jnp.zeros_like(x))
        _, stats = dvr.dvr_volume_losses(
            *fields,
            c,
            batch,
            jax.random.key(0),
            num_samples=samples,
            num_images=1,
            lambda_rgb=0.0,
            lambda_normal=0.0,
        )
        return stats["mask"]

    c = jnp.float32(logit)
    s = samples * np.log1p(np.exp(logit))  # -log transmittance = sum of softplus(logit).
    opacity = -np.expm1(-s)
    expected = 2 * (-np.log(max(opacity, 1e-30))) + 2 * s
    np.testing.assert_allclose(float(jax.jit(mask_loss)(c)), expected, rtol=1e-4)
    g = float(jax.jit(jax.grad(mask_loss))(c))
    assert np.isfinite(g) and g > 0  # Half the rays are background: more occupancy costs more.


def volume_losses(r, batch, key=None, **kwargs):
    # Alpha is a probability per sample, so a soft field's silhouette grows with the samples
    # passed near the surface: a slope of 300 keeps that within a few thousandths.
    logit_fn, rgb_fn = sphere_field(300.0)
    settings = dict(num_samples=48, num_images=1, lambda_mask=1.0, lambda_normal=0.0)
    key = jax.random.key(0) if key is None else key
    return dvr.dvr_volume_losses(logit_fn, rgb_fn, {"radius": r}, batch, key, **{**settings, **kwargs})


def test_volume_losses_are_lowest_near_the_true_sphere_and_push_a_wrong_radius_back():
    batch, _, _ = sphere_rays(400, 0.3)
    value_and_grad = jax.jit(jax.value_and_grad(lambda r: volume_losses(r, batch), has_aux=True))
    (total, stats), _ = value_and_grad(jnp.float32(0.3))
    assert float(stats["mask_iou"]) > 0.9  # grazing rays may pass between two samples
    assert set(stats) >= {"rgb", "mask", "mask_iou", "mask_accuracy", "loss"}
    (small, _), g_small = value_and_grad(jnp.float32(0.2))
    (large, _), g_large = value_and_grad(jnp.float32(0.4))
    assert float(g_small) < 0.0 < float(g_large)
    assert float(small) > float(total) and float(large) > float(total)


BAD_RAYS = {
    "nan origin": ([np.nan, 0.0, 2.0], [0.0, 0.0, -1.0]),
    "inf direction": ([0.0, 0.0, 2.0], [np.inf, 0.0, -1.0]),
    "zero direction": ([0.0, 0.0, 2.0], [0.0, 0.0, 0.0]),
}


@pytest.mark.parametrize("kind", sorted(BAD_RAYS))
def test_an_invalid_ray_counts_in_no_volume_loss_term(kind):
    batch, _, _ = sphere_rays(64, 0.3)

    def with_ray(origin, direction, in_mask):
        b = dict(batch)
        b["origins"] = b["origins"].at[5].set(jnp.asarray(origin, jnp.float32))
        b["directions"] = b["directions"].at[5].set(jnp.asarray(direction, jnp.float32))
        b["mask"] = b["mask"].at[5].set(in_mask)
        b["rgb"] = b["rgb"].at[5].set(np.nan if in_mask else 1.0)  # a broken pixel, too
        return b

    value_and_grad = jax.jit(
        jax.value_and_grad(lambda r, b: volume_losses(r, b, lambda_normal=0.1, lambda_depth=1.0)[0])
    )
    bad = value_and_grad(jnp.float32(0.25), with_ray(*BAD_RAYS[kind], True))
    ref = value_and_grad(jnp.float32(0.25), with_ray([0.0, 0.0, 5.0], [0.0, 0.0, 1.0], False))
    assert np.isfinite(float(bad[0])) and np.isfinite(float(bad[1]))
    np.testing.assert_allclose(float(bad[0]), float(ref[0]), rtol=1e-5)
    np.testing.assert_allclose(float(bad[1]), float(ref[1]), rtol=1e-5)


@pytest.mark.parametrize("view_dependent", [False, True])
def test_the_volume_renderer_matches_render_volume_in_chunks(view_dependent):
    decoder, params = decoder_and_params(view_dependent)
    batch, _, _ = sphere_rays(50, 0.3)
    o, w = np.asarray(batch["origins"]), np.asarray(batch["directions"])
    render = dvr.create_renderer(decoder, chunk=16, mode="volume", volume_samples=8)  # 32 rays a chunk
    rgb, depth = render(params, o, w, 99)
    logit_fn, rgb_fn = dvr.make_field_fns(decoder)
    out, (mask, d) = jax.jit(
        lambda p, o, w: (lambda out: (out, dvr.expected_depth(out)))(
            dvr.render_volume(logit_fn, rgb_fn, p, o, w, None, num_samples=8)
        )
    )(params, jnp.asarray(o), jnp.asarray(w))
    np.testing.assert_allclose(rgb, out["rgb"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(depth, d, rtol=1e-5)
    assert np.array_equal(np.isfinite(depth), np.asarray(mask))
    with pytest.raises(ValueError, match="mode must be 'surface' or 'volume'"):
        dvr.create_renderer(decoder, mode="volumes")


# --------------------------------------------------------------------------------------
# Training runs, mesh colours and the experiment config's options.
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def specular_scene(tmp_path_factory):
    """The tiny config's mug rendered with highlights (6 views of 16 x 16)."""
    config = experiment_configs.load("dvr.py:tiny,specular")
    config.data.path = str(tmp_path_factory.mktemp("dvr_specular") / "scene")
    return task.ensure_scene(config.data, progress=False)


def short_run(spec, scene, workdir, steps=16, **data):
    """Trains `spec` on `scene` for `steps` steps (one validation at the end); the logged records."""
    config = experiment_configs.load(spec)
    config.data.path = scene
    config.data.update(data)
    config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = steps
    config.optim.milestones = (steps,)
    config.logging.log_every = 4
    trainer.train_and_evaluate(config, str(workdir))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    return config, logged


def test_a_tiny_view_dependent_run_on_the_specular_scene_lowers_its_loss(specular_scene, tmp_path):
    with open(os.path.join(specular_scene, "multiview.json")) as f:
        assert json.load(f)["params"]["material"] == "specular"
    # Without the visual hull (3 s of carving; the colour head does not depend on it).
    config, logged = short_run("dvr.py:tiny,specular,view", specular_scene, tmp_path, visual_hull_depth=False)
    assert config.model.view_dependent and config.rays.mode == "surface"
    train = [r for r in logged if "train/loss" in r]
    losses = [r["train/loss"] for r in train]
    assert len(losses) == 4 and np.all(np.isfinite(losses))
    assert losses[-1] < 0.97 * losses[0]
    assert train[0]["train/rgb"] > 0  # the colour head was in the loss (rays hit the surface)
    (val,) = [r for r in logged if "eval/mask_iou" in r]
    assert 0.0 <= val["eval/mask_iou"] <= 1.0


def test_a_tiny_volume_run_lowers_its_loss(dvr_scene, tmp_path):
    config, logged = short_run("dvr.py:tiny,volume", dvr_scene, tmp_path)
    assert config.rays.mode == "volume" and config.loss.lambda_mask == 1.0
    train = [r for r in logged if "train/loss" in r]
    losses = [r["train/loss"] for r in train]
    assert len(losses) == 4 and np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0]
    assert all("train/mask" in r and "train/freespace" not in r for r in train)
    assert not os.path.exists(os.path.join(tmp_path, "visual_hull_depth.npy"))  # no occupancy depths used
    (val,) = [r for r in logged if "eval/mask_iou" in r]
    assert 0.0 < val["eval/mask_iou"] <= 1.0  # the rendered held-out view's opacity >= 0.5


@pytest.mark.parametrize("view_dependent", [False, True])
def test_mesh_colours_of_a_view_dependent_field_look_straight_at_the_surface(view_dependent):
    decoder, params = decoder_and_params(view_dependent, seed=4)
    logit_fn, rgb_fn = dvr.make_field_fns(decoder)
    rgb_fn = jax.jit(rgb_fn)
    vertices = np.random.default_rng(0).uniform(-0.4, 0.4, (20, 3)).astype(np.float32)
    colors = generation.vertex_colors(decoder, params, vertices, batch=7)  # three batches
    v = jnp.asarray(vertices)
    normals = jax.jit(dvr.autodiff_normals, static_argnums=0)(logit_fn, params, v)
    np.testing.assert_allclose(colors, rgb_fn(params, v, -normals), rtol=1e-5, atol=1e-6)
    if view_dependent:  # another view gives other colours
        assert np.abs(colors - np.asarray(rgb_fn(params, v, normals))).max() > 1e-4
    assert generation.vertex_colors(decoder, params, np.zeros((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("size", ["cpu", "full", "tiny"])
@pytest.mark.parametrize("options", ["", "volume", "specular", "view", "volume,specular,view"])
def test_every_option_of_the_experiment_config_passes_the_checks(size, options):
    config = experiment_configs.load(f"dvr.py:{size},{options}" if options else f"dvr.py:{size}")
    assert trainer.check_config(config) is trainer.load_method("dvr")
    chosen = set(options.split(",")) - {""}
    assert (config.rays.mode == "volume") == ("volume" in chosen)
    assert config.loss.lambda_mask == (1.0 if "volume" in chosen else 0.0)
    assert (config.data.material == "specular") == ("specular" in chosen)
    assert config.model.view_dependent == ("view" in chosen)
    if "specular" in chosen:
        assert config.data.path == "data/dvr_builtin_specular"
    # The order does not matter; the size is optional (cpu).
    reordered = experiment_configs.load(f"dvr.py:{','.join(sorted(chosen, reverse=True) + [size])}")
    assert reordered.to_dict() == config.to_dict()
    if size == "cpu":
        default_size = experiment_configs.load(f"dvr.py:{options}" if options else "dvr.py")
        assert default_size.to_dict() == config.to_dict()


@pytest.mark.parametrize("arg", ["huge", "cpu,volumes", "tiny,,glossy"])
def test_an_unknown_config_option_is_named(arg):
    bad = [t for t in arg.split(",") if t not in ("cpu", "tiny", "")][0]
    with pytest.raises(ValueError, match=f"unknown config argument '{bad}'; sizes .* options"):
        experiment_configs.load(f"dvr.py:{arg}")


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("loss.lambda_mask", 0.5, r"config.loss.lambda_mask=0.5 is used only with config.rays.mode='volume'"),
        ("rays.mode", "volumes", r"config.rays.mode='volumes'"),
        ("rays.volume_samples", 0, r"config.rays.volume_samples=0"),
        ("data.material", "glossy", r"config.data.material='glossy'"),
        ("model.feature_dim", 0, r"config.model.feature_dim=0"),
        ("model.view_freqs", -1, r"config.model.view_freqs=-1"),
        ("model.render_layers", 0, r"config.model.render_layers=0"),
    ],
)
def test_bad_option_values_name_their_key(key, value, match):
    config = experiment_configs.load("dvr.py:tiny")
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=match):
        trainer.check_config(config)
