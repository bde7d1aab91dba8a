"""Sliding-window decoding: crops stitched without seams, equal to one decode of the whole scene."""

import jax
import numpy as np
import pytest

from implicit_fields import unet
from implicit_fields.methods.convonet import model as convonet_model
from implicit_fields.methods.convonet import sliding_window


def _model(layer_order="cr", levels=2, resolution=8):
    return convonet_model.ConvolutionalOccupancyNetwork(
        c_dim=8,
        encoder_hidden=8,
        plane_type=("grid",),
        grid_resolution=resolution,
        encoder_blocks=2,
        unet=False,
        unet3d=True,
        unet3d_levels=levels,
        unet3d_f_maps=8,
        unet3d_layer_order=layer_order,
        decoder_hidden=8,
        decoder_blocks=2,
        local_coord=True,
    )


def _scene(seed=0, n=600, size=(0.9, 0.9, 0.9)):
    """Points on random spheres and a floor, in a box larger than the training cube's crops."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.8, (6, 3)) * np.asarray(size) / 0.9
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = centres[rng.integers(0, 6, n)] + 0.1 * d
    floor = np.c_[rng.uniform(0, size[0], n // 3), np.zeros(n // 3), rng.uniform(0, size[2], n // 3)]
    return np.concatenate([pts, floor]).astype(np.float32)


def _variables(model, seed=0):
    variables = model.init(
        jax.random.key(seed), np.zeros((1, 8, 3), np.float32), np.zeros((1, 64, 3), np.float32)
    )
    # Random biases as well, so that no part of the network is trivially zero.
    leaves, tree = jax.tree_util.tree_flatten(variables)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, leaves)


@pytest.mark.parametrize("levels,query", [(2, 4)])
def test_stitched_grid_equals_one_whole_decode(levels, query):
    model = _model(levels=levels)
    variables = _variables(model)
    points = _scene()
    bounds = (np.zeros(3), np.full(3, 0.9))
    kwargs = dict(samples_per_voxel=1, bounds=bounds, batch_points=4096)
    sliding, lattice, stats = sliding_window.decode_sliding(model, variables, points, query, **kwargs)
    whole, lattice_whole = sliding_window.decode_whole(model, variables, points, query, **kwargs)
    assert lattice == lattice_whole
    assert stats["crops"] >= 8  # really cut into several crops along every axis
    assert stats["margin"] >= unet.receptive_field_radius(levels)
    assert np.ptp(whole) > 0.05  # a field that varies, not a constant
    np.testing.assert_allclose(sliding, whole, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("change", ["no_margin", "groupnorm"])
def test_seams_appear_when_the_reach_leaves_the_crop(change):
    """Exactness needs the condition: without the margin, or with GroupNorm over each crop, crops differ."""
    model = _model(layer_order="gcr" if change == "groupnorm" else "cr", levels=1)
    variables = _variables(model)
    points = _scene()
    margin = 0 if change == "no_margin" else None
    kwargs = dict(samples_per_voxel=1, bounds=(np.zeros(3), np.full(3, 0.9)), batch_points=4096)
    sliding, _, _ = sliding_window.decode_sliding(model, variables, points, 4, margin=margin, **kwargs)
    whole, _ = sliding_window.decode_whole(model, variables, points, 4, margin=margin, **kwargs)
    assert np.max(np.abs(sliding - whole)) > 1e-3


def test_mesh_of_the_stitched_grid_is_in_scene_coordinates():
    """Marching cubes once over an analytic field on the lattice: a sphere where it was put."""
    model = _model()
    lattice = sliding_window.scene_lattice(np.asarray([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), model, 4, 2)
    axes = [lattice.origin[a] + np.arange(lattice.shape[a]) * lattice.voxel / 2 for a in range(3)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    values = 0.3 - np.sqrt((x - 0.5) ** 2 + (y - 0.4) ** 2 + (z - 0.6) ** 2)
    vertices, faces = sliding_window.mesh_lattice(values.astype(np.float32), lattice, 0.0)
    radius = np.linalg.norm(vertices - [0.5, 0.4, 0.6], axis=1)
    np.testing.assert_allclose(radius, 0.3, atol=lattice.voxel / 2)
    assert len(faces) > 100


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(query_voxels=3), "multiple of 2"),
        (dict(query_voxels=4, margin=3), "multiple of 2"),
        (dict(query_voxels=4, samples_per_voxel=0), "samples_per_voxel"),
    ],
)
def test_bad_crop_settings_are_refused(kwargs, match):
    model = _model()
    with pytest.raises(ValueError, match=match):
        sliding_window.decode_sliding(model, _variables(model), _scene(n=300), **kwargs)


def test_a_unit_cube_model_is_refused():
    model = _model().clone(local_coord=False)
    with pytest.raises(ValueError, match="local_coord"):
        sliding_window.decode_sliding(model, {}, _scene(n=300), 4)
