"""The pixel-aligned image model (PIFu's idea): projection, sampling, the encoder's alignment, the config."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiment_configs
from implicit_fields import cameras, decoders, encoders, trainer
from implicit_fields.data import builtin, datasets
from implicit_fields.methods import onet
from implicit_fields.methods.onet import generation, task
from implicit_fields.methods.onet import model as models

H, W = 9, 7  # Feature map of the projection tests (rows, columns).


def _camera(eye, focal):
    cam = cameras.look_at_camera(eye, focal=focal)
    return cam["world_mat"], cam["camera_mat"]


def _condition(features, world_mat, camera_mat):
    return {
        "features": jnp.asarray(features, jnp.float32),
        "world_mat": jnp.asarray(world_mat, jnp.float32)[None],
        "camera_mat": jnp.asarray(camera_mat, jnp.float32)[None],
    }


def _point_at(pixel, depth, world_mat, camera_mat):
    """The object-space point at camera depth `depth` on the ray of `pixel` ([-1, 1] convention)."""
    p = cameras.image_points_to_world(
        np.asarray([pixel], np.float64), camera_mat, world_mat, np.eye(4), depth
    )
    return p.astype(np.float32)


def _cell_pixel(row, col):
    return (2.0 * col / (W - 1) - 1.0, 2.0 * row / (H - 1) - 1.0)


@pytest.mark.parametrize(
    "eye, focal, cell, depth",
    [
        ((0.0, 0.0, -2.0), 2.0, (4, 3), 2.0),  # the image centre, at the origin
        ((1.5, 0.8, -1.0), 1.7, (0, 0), 1.6),  # the top-left corner pixel
        ((-2.0, 1.0, 0.5), 2.5, (8, 6), 2.4),  # the bottom-right corner pixel
        ((0.3, -1.8, 1.1), 1.2, (2, 5), 2.2),
        ((2.2, 0.0, 0.0), 3.0, (6, 1), 1.8),
    ],
)
def test_a_known_point_lands_on_its_pixel_and_reads_its_feature(eye, focal, cell, depth):
    world_mat, camera_mat = _camera(eye, focal)
    pixel = _cell_pixel(*cell)
    p = _point_at(pixel, depth, world_mat, camera_mat)
    fmap = np.zeros((1, H, W, 3), np.float32)
    fmap[0, cell[0], cell[1], 0] = 1.0  # a marker at the point's pixel
    fmap[0, :, :, 1] = np.arange(W)[None, :]  # the column index
    fmap[0, :, :, 2] = np.arange(H)[:, None]  # the row index
    c = _condition(fmap, world_mat, camera_mat)
    pixels, point_depth = decoders.project_points(jnp.asarray(p)[None], c["world_mat"], c["camera_mat"])
    np.testing.assert_allclose(pixels[0, 0], pixel, atol=1e-5)
    np.testing.assert_allclose(point_depth[0, 0], depth, rtol=1e-5)
    reference, _ = cameras.project_to_image(p.astype(np.float64), camera_mat, world_mat, np.eye(4))
    np.testing.assert_allclose(pixels[0], reference, atol=1e-5)
    features, z = decoders.pixel_aligned_features(jnp.asarray(p)[None], c, depth_scale=2.0)
    np.testing.assert_allclose(features[0, 0], [1.0, cell[1], cell[0]], atol=1e-4)
    centre_depth = np.linalg.norm(eye)  # the camera looks at the origin
    np.testing.assert_allclose(z[0, 0], 2.0 * (depth - centre_depth), atol=1e-4)
    # Half a cell to the right: half the marker, between the columns.
    if cell[1] < W - 1:
        shifted = _point_at((pixel[0] + 1.0 / (W - 1), pixel[1]), depth, world_mat, camera_mat)
        features, _ = decoders.pixel_aligned_features(jnp.asarray(shifted)[None], c)
        np.testing.assert_allclose(features[0, 0], [0.5, cell[1] + 0.5, cell[0]], atol=1e-4)


def _touched_cells(p, world_mat, camera_mat):
    """The (row, col) cells the bilinear read of each point's projection weighs."""
    pixels, _ = cameras.project_to_image(p.astype(np.float64), camera_mat, world_mat, np.eye(4))
    cols = np.clip((pixels[:, 0] + 1) / 2 * (W - 1), 0, W - 1)
    rows = np.clip((pixels[:, 1] + 1) / 2 * (H - 1), 0, H - 1)
    cells = set()
    for r, c in zip(rows, cols):
        for rr in {int(np.floor(r)), int(np.ceil(r))}:
            for cc in {int(np.floor(c)), int(np.ceil(c))}:
                cells.add((rr, cc))
    return cells


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logits_depend_on_the_features_at_the_projected_pixel_only(seed):
    rng = np.random.default_rng(seed)
    world_mat, camera_mat = _camera(rng.normal(size=3) * 0.3 + (0.0, 0.5, -2.0), 2.0)
    p = rng.uniform(-0.3, 0.3, (1, 4, 3)).astype(np.float32)
    fmap = rng.normal(size=(1, H, W, 8)).astype(np.float32)
    decoder = decoders.PixelAlignedDecoder(hidden_size=16, n_blocks=2)
    c = _condition(fmap, world_mat, camera_mat)
    variables = decoder.init(jax.random.key(seed), p, c)
    logits = decoder.apply(variables, p, c)
    touched = _touched_cells(p[0], world_mat, camera_mat)
    assert len(touched) < H * W // 2
    elsewhere = fmap.copy()
    for r in range(H):
        for col in range(W):
            if (r, col) not in touched:
                elsewhere[0, r, col] = rng.normal(size=8) * 10.0
    np.testing.assert_array_equal(
        decoder.apply(variables, p, _condition(elsewhere, world_mat, camera_mat)), logits
    )
    # A change at one touched cell changes the logit of a point that reads it.
    r, col = sorted(touched)[0]
    changed = fmap.copy()
    changed[0, r, col] += 10.0
    assert (
        np.abs(decoder.apply(variables, p, _condition(changed, world_mat, camera_mat)) - logits).max() > 1e-4
    )


@pytest.mark.parametrize(
    "image_size, stride, cells", [((64, 64), 4, (16, 16)), ((64, 48), 8, (8, 6)), ((37, 23), 16, (3, 2))]
)
def test_each_stage_is_resampled_onto_the_image_pixels(image_size, stride, cells):
    """A map whose cells hold their image pixel (s k) reads, at output cell j, pixel j (W - 1) / (w - 1)."""
    out = ((image_size[0] + 3) // 4, (image_size[1] + 3) // 4)
    fmap = np.zeros((2,) + cells + (2,), np.float32)
    fmap[..., 0] = stride * np.arange(cells[0])[:, None]  # row pixel
    fmap[..., 1] = stride * np.arange(cells[1])[None, :]  # column pixel
    aligned = np.asarray(encoders.pixel_aligned_resample(jnp.asarray(fmap), stride, image_size, out))
    assert aligned.shape == (2,) + out + (2,)
    rows = np.arange(out[0]) * (image_size[0] - 1) / (out[0] - 1)
    cols = np.arange(out[1]) * (image_size[1] - 1) / (out[1] - 1)
    inside_r, inside_c = rows <= stride * (cells[0] - 1), cols <= stride * (cells[1] - 1)
    np.testing.assert_allclose(
        aligned[0, inside_r, :, 0], np.broadcast_to(rows[inside_r, None], (inside_r.sum(), out[1])), atol=1e-4
    )
    np.testing.assert_allclose(
        aligned[1, :, inside_c, 1].T,
        np.broadcast_to(cols[None, inside_c], (out[0], inside_c.sum())),
        atol=1e-4,
    )
    # Beyond the last cell centre the border is held.
    np.testing.assert_allclose(aligned[0, ~inside_r, :, 0], stride * (cells[0] - 1), atol=1e-4)


@pytest.mark.parametrize("size", [8, 37])
def test_the_encoder_returns_one_map_at_a_quarter_of_the_image(size, key):
    encoder = encoders.Resnet18Pixel(c_dim=6, hidden_dim=2)
    images = jax.random.uniform(key, (2, size, size, 3))
    variables = jax.jit(encoder.init)(key, images)
    out = jax.jit(encoder.apply)(variables, images)
    side = -(-size // 4)
    assert set(out) == {"features"} and out["features"].shape == (2, side, side, 6)
    assert np.isfinite(np.asarray(out["features"])).all()


def _pixel_config(**changes):
    config = experiment_configs.load("onet.py:img_pixel,tiny")
    for key, value in changes.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"data.img_with_camera": False},
            r"config.data.img_with_camera=False: .*set data.img_with_camera=True",
        ),
        ({"model.decoder": "cbatchnorm"}, r"config.model.decoder='cbatchnorm': .*only the 'pixel_aligned'"),
        ({"model.encoder": "resnet18"}, r"config.model.decoder='pixel_aligned' .*encoder='resnet18_pixel'"),
        ({"model.z_dim": 4}, r"config.model.z_dim=4: .*no latent"),
        ({"data.input_type": "pointcloud"}, r"config.model.encoder='resnet18_pixel' reads 'img' inputs"),
    ],
)
def test_a_config_the_pixel_model_cannot_run_is_a_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        trainer.check_config(_pixel_config(**changes))


@pytest.mark.parametrize("size", ["full", "cpu", "tiny"])
def test_every_size_of_the_variant_passes_the_checks(size):
    config = experiment_configs.load(f"onet.py:img_pixel,{size}")
    assert trainer.check_config(config) is onet
    assert (config.model.encoder, config.model.decoder) == ("resnet18_pixel", "pixel_aligned")
    assert config.data.img_with_camera and config.data.input_type == "img"


@pytest.mark.parametrize("cams", [None, {"world_mat": jnp.eye(4)[None]}])
def test_the_model_without_the_views_cameras_is_a_clear_error(cams, key):
    model = onet.create_model(_pixel_config())
    images = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match="needs its view's cameras"):
        model.init(key, jnp.zeros((1, 4, 3)), images, cameras=cams)


def _camera_batch(config, rng, b=2):
    s = config.data.img_size
    cams = cameras.sample_views(b, 2.0, 0, focal=2.0)
    return {
        "points": rng.uniform(-0.55, 0.55, (b, 32, 3)).astype(np.float32),
        "occupancies": (rng.random((b, 32)) < 0.3).astype(np.float32),
        "inputs": rng.random((b, s, s, 3)).astype(np.float32),
        "inputs.world_mat": cams["world_mat"].astype(np.float32),
        "inputs.camera_mat": cams["camera_mat"].astype(np.float32),
    }


@pytest.mark.parametrize("path", ["loss", "validation"])
def test_the_loss_and_validation_read_the_batch_cameras(path, key):
    """Another view's cameras give other logits; the loss's gradients are finite and reach the encoder."""
    config = _pixel_config()
    model = onet.create_model(config)
    state = onet.init_state(config, model, key)
    batch = _camera_batch(config, np.random.default_rng(0))
    swapped = dict(batch)
    for k in datasets.CAMERA_KEYS:  # each object with the other's view
        swapped[k] = batch[k][::-1]
    if path == "loss":

        def loss(params, b):
            return task.loss_fn(model, params, state.batch_stats, b, None)[0]

        value_and_grad = jax.jit(jax.value_and_grad(loss))  # one compilation for both batches
        value, grads = value_and_grad(state.params, batch)
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
        assert np.abs(np.asarray(grads["encoder_net"]["conv1"]["kernel"])).max() > 0
        assert abs(float(value_and_grad(state.params, swapped)[0]) - float(value)) > 1e-3
    else:
        step = jax.jit(functools.partial(task.eval_step, threshold_logit=0.0))
        out, other = step(state, batch), step(state, swapped)
        assert np.isfinite(np.asarray(out["loss"])).all()
        assert np.abs(np.asarray(out["loss"]) - np.asarray(other["loss"])).max() > 1e-3


def test_generation_decodes_the_validation_field(tiny_dataset, key):
    """The mesh's field (view 0 encoded once, with its cameras) is the field that validation scores."""
    config = _pixel_config()
    config.data.path = tiny_dataset
    config.data.img_n_views, config.data.builtin_img_resolution = 3, 12  # the shared dataset's renders
    builtin.ensure_dataset(config.data, progress=False)
    ds = datasets.from_config(config.data, config.data.val_split)
    model = onet.create_model(config)
    variables = task.init_variables(config, model, key)
    batches, count = task.val_batches(config, ds, 1)
    batch, _ = batches[0]
    expected = model.apply(
        variables,
        batch["points"],
        batch["inputs"],
        cameras=task.batch_cameras(batch),
        method=models.OccupancyNetwork.reconstruct,
    )["logits"]
    encode, decode = generation.create_field_fns(model, variables)
    for i in range(min(count, 2)):
        data = ds.load(i)
        inputs = datasets.eval_inputs(
            data, i, config.data.pointcloud_n, config.data.pointcloud_noise, config.seed, "img"
        )
        cams = generation.object_cameras(data)
        np.testing.assert_array_equal(cams["world_mat"], batch["inputs.world_mat"][i])
        c = encode(inputs, cams)
        assert set(c) == {"features", "world_mat", "camera_mat"}
        np.testing.assert_allclose(decode(c, batch["points"][i]), expected[i], rtol=1e-4, atol=1e-4)
        field = models.make_logit_fn(model, variables, c, chunk_size=100)
        np.testing.assert_allclose(field(batch["points"][i]), expected[i], rtol=1e-4, atol=1e-4)
