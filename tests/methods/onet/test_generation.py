"""ONet's generation: the meshing settings of `config.generate` reach MISE and the dense grid."""

import jax
import jax.numpy as jnp
import pytest

from implicit_fields import losses
from implicit_fields.methods import onet
from implicit_fields.methods.onet import generation

R = 0.4


@jax.jit
def SPHERE(points):
    """logit(0.2) + 20 (r - |p|): a sphere of radius R at the 0.2 threshold."""
    return losses.probability_to_logit(0.2) + 20.0 * (R - jnp.linalg.norm(points, axis=-1))


def test_generation_options_reach_extract_mesh():
    """generate.simplify_nfaces, refinement_gradient, marching_cubes and subdivision reach extract()."""
    config = onet.get_config()
    config.generate.resolution0, config.generate.upsampling_steps = 8, 2
    config.generate.simplify_nfaces = 600
    config.generate.refinement_steps = 2
    assert generation.refinement_second_order(config) is False  # cbatchnorm: first order is exact
    config.generate.refinement_gradient = "second_order"
    assert generation.refinement_second_order(config) is True
    v, f, stats = generation.extract(config, SPHERE)
    assert 0 < f.shape[0] <= 600 and stats["time_simplify"] > 0 and stats["time_refinement"] > 0
    config.generate.marching_cubes = "jax"
    v2, f2, _ = generation.extract(config, SPHERE)
    assert 0 < f2.shape[0] <= 600
    config.generate.subdivision = "surface"
    _, f3, surface = generation.extract(config, SPHERE)
    assert 0 < f3.shape[0] <= 600 and surface["num_queries"] < stats["num_queries"]
    config.generate.subdivision = "octree"
    with pytest.raises(ValueError, match="subdivision"):
        generation.extract(config, SPHERE)
    config.generate.subdivision = "cells"
    config.generate.marching_cubes = "skimage"
    with pytest.raises(ValueError, match="marching_cubes"):
        generation.extract(config, SPHERE)
    config.generate.refinement_gradient = "exact"
    with pytest.raises(ValueError, match="refinement_gradient"):
        generation.refinement_second_order(config)


def test_dense_meshing_uses_the_fields_box_and_threshold():
    config = onet.get_config()
    config.generate.method = "dense"
    config.generate.resolution = 32
    v, f, stats = generation.extract(config, SPHERE)
    assert stats["num_queries"] == 33**3 and len(f) > 0
    radius = jnp.linalg.norm(v, axis=-1)
    assert abs(float(radius.mean()) - R) < 0.01
    config.field.threshold = 0.5  # a higher iso-level: logit 0 at |p| = R - logit(0.2) / 20
    v2, _, _ = generation.extract(config, SPHERE)
    expected = R + float(losses.probability_to_logit(0.2)) / 20.0
    assert abs(float(jnp.linalg.norm(v2, axis=-1).mean()) - expected) < 0.01
    config.generate.method = "marching"
    with pytest.raises(ValueError, match="unknown generate.method 'marching'"):
        generation.extract(config, SPHERE)
