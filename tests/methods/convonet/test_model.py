"""The ConvONet model and task: the original configs' sizes, encode/decode, the loss, config checks."""

import jax
import numpy as np
import optax
import pytest

import experiment_configs
from implicit_fields import trainer
from implicit_fields.methods import convonet
from implicit_fields.methods.convonet import generation, task


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize(
    "spec,expected",
    [
        # LocalPoolPointnet 27,232 + LocalDecoder 16,001 + UNet2D depth 4 1,934,976 (shapenet_3plane).
        ("convonet.py:planes", 27_232 + 16_001 + 1_934_976),
        # ... + UNet3D 3 levels 1,025,312 (shapenet_grid32).
        ("convonet.py:grid", 27_232 + 16_001 + 1_025_312),
    ],
)
def test_the_original_configs_have_the_original_parameter_counts(spec, expected):
    config = experiment_configs.load(spec)
    model = convonet.create_model(config)
    shapes = jax.eval_shape(lambda k: task.init_variables(config, model, k), jax.random.key(0))
    assert _count(shapes["params"]) == expected
    assert set(shapes["params"]) == {"encoder", "decoder"}


def test_decode_of_encode_is_the_forward_pass_and_the_loss_is_bce_summed_over_points():
    # The planes (the grid's encoder and decoder: tests/test_local_features.py, the rooms tests).
    config = experiment_configs.load("convonet.py:planes,tiny")
    model = convonet.create_model(config)
    state = convonet.init_state(config, model, jax.random.key(0))
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.55, 0.55, (2, 50, 3)).astype(np.float32)
    inputs = rng.uniform(-0.5, 0.5, (2, 128, 3)).astype(np.float32)
    occ = (rng.uniform(size=(2, 50)) < 0.4).astype(np.float32)
    variables = {"params": state.params}
    logits = model.apply(variables, points, inputs)
    c = model.apply(variables, inputs, method=type(model).encode)
    np.testing.assert_allclose(
        model.apply(variables, points, c, method=type(model).decode), logits, atol=1e-6
    )
    # The jitted per-object encode / decode of generation reads the same field.
    encode, decode = generation.create_field_fns(model, variables)
    np.testing.assert_allclose(decode(encode(inputs[1]), points[1]), logits[1], atol=1e-5)
    batch = {"points": points, "inputs": inputs, "occupancies": occ}
    loss, (metrics, _) = jax.jit(lambda p, b: task.loss_fn(model, p, {}, b, None))(state.params, batch)
    expected = np.mean(np.sum(optax.sigmoid_binary_cross_entropy(logits, occ), axis=-1))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean((logits >= 0) == (occ > 0.5)), atol=1e-6)


def test_local_features_depend_on_nearby_inputs_only():
    """Moving the inputs of one corner leaves the field in the opposite corner unchanged (no global code)."""
    config = experiment_configs.load("convonet.py:grid,tiny")
    config.model.unet3d = False
    model = convonet.create_model(config)
    variables = {"params": convonet.init_state(config, model, jax.random.key(0)).params}
    rng = np.random.default_rng(1)
    inputs = rng.uniform(-0.5, 0.5, (1, 128, 3)).astype(np.float32)
    moved = inputs.copy()
    corner = np.all(inputs[0] > 0.1, axis=-1)
    moved[0, corner] = rng.uniform(0.1, 0.5, (int(corner.sum()), 3))
    far = rng.uniform(-0.5, -0.3, (1, 20, 3)).astype(np.float32)
    apply = jax.jit(model.apply)
    np.testing.assert_allclose(apply(variables, far, inputs), apply(variables, far, moved), atol=1e-6)
    near = rng.uniform(0.2, 0.4, (1, 20, 3)).astype(np.float32)
    assert np.max(np.abs(apply(variables, near, inputs) - apply(variables, near, moved))) > 1e-4


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("model.plane_type", ("xz", "ab"), "plane_type"),
        ("model.plane_type", (), "plane_type"),
        ("model.plane_type", ("xz", "xz"), "plane_type"),
        ("model.plane_resolution", 60, "multiple of 8"),
        ("model.grid_resolution", 30, "multiple of 4"),
        ("model.unet3d_f_maps", 12, "multiples of 8"),
        ("model.scatter_type", "sum", "scatter_type"),
        ("data.pointcloud_n", 0, "pointcloud_n"),
    ],
)
def test_bad_values_are_refused_before_any_work(key, value, match):
    config = experiment_configs.load("convonet.py:planes")
    if key in ("model.grid_resolution", "model.unet3d_f_maps"):
        config.model.plane_type = ("grid",)
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=match):
        trainer.check_config(config)


def test_local_coord_needs_the_grid_alone():
    config = experiment_configs.load("convonet.py:planes,tiny")
    config.model.local_coord = True
    model = convonet.create_model(config)
    with pytest.raises(ValueError, match="local_coord"):
        task.init_variables(config, model, jax.random.key(0))
