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


def test_meshing_objects_together_gives_the_meshes_of_one_at_a_time(tiny_config, tmp_path):
    import numpy as np

    from implicit_fields import train_utils
    from implicit_fields.data import reconstruction

    config = tiny_config
    config.generate.split, config.generate.max_objects = "train", 4  # Groups of 3: one full, one padded.
    config.generate.refinement_steps = 2  # Each mesh is then refined with its own object's field.
    model = onet.create_model(config)
    state = onet.init_state(config, model, train_utils.rng_keys(config.seed)[0])
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    runs = {}
    for group in (1, 3):
        config.generate.batch_objects = group
        runs[group] = generation.generate_meshes(config, str(tmp_path / f"g{group}"), model, variables)
    assert len(runs[1]) == len(runs[3]) == 4
    for a, b in zip(runs[1], runs[3]):
        keys = ("model", "num_queries", "num_faces")
        assert [a[k] for k in keys] == [b[k] for k in keys]
        va, fa = reconstruction.load_mesh(str(tmp_path / "g1" / a["mesh"]))
        vb, fb = reconstruction.load_mesh(str(tmp_path / "g3" / b["mesh"]))
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_allclose(va, vb, atol=1e-5)
    assert sum(r["num_faces"] for r in runs[3]) > 0
