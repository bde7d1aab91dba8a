"""Encoders: PointNet, the voxel CNN, ResNet-18 and the latent encoder (shapes, counts, invariances)."""

import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields import encoders, layers


def test_pointnet_parameter_count_matches_the_original():
    enc = encoders.ResnetPointnet().init(jax.random.key(0), jnp.zeros((2, 300, 3)))
    # fc_pos 4,096 + 5 blocks x 1,311,744 + fc_c 262,656
    assert sum(x.size for x in jax.tree.leaves(enc["params"])) == 6_825_472


def test_encoder_is_permutation_invariant(key):
    enc = encoders.ResnetPointnet(c_dim=8, hidden_dim=16)
    x = jax.random.normal(key, (2, 40, 3))
    variables = enc.init(key, x)
    perm = jax.random.permutation(jax.random.key(5), 40)
    np.testing.assert_allclose(
        enc.apply(variables, x), enc.apply(variables, x[:, perm]), rtol=1e-5, atol=1e-6
    )


def test_voxel_encoder_shapes_parameters_and_jit(key):
    enc = encoders.VoxelEncoder()  # the original: c_dim 256, 32 -> 512 channels
    x = (jax.random.uniform(key, (2, 32, 32, 32)) < 0.3).astype(jnp.float32)
    shapes = jax.eval_shape(enc.init, key, x)
    # conv_in 896 + conv_0..3 (55,360 + 221,312 + 884,992 + 3,539,456) + fc 1,048,832
    assert sum(v.size for v in jax.tree.leaves(shapes)) == 5_750_848
    assert shapes["params"]["fc"]["kernel"].shape == (4096, 256)
    assert shapes["params"]["conv_3"]["kernel"].shape == (3, 3, 3, 256, 512)


def test_resnet18_parameter_count_shapes_and_jit(key):
    # torchvision's resnet18 has 11,689,512 parameters with fc 512 -> 1000; ours has fc 512 -> 256.
    enc = encoders.create_encoder("resnet18", c_dim=256, hidden_dim=64)
    shapes = jax.eval_shape(enc.init, key, jnp.zeros((2, 64, 64, 3)))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    assert count == 11_689_512 - (512 * 1000 + 1000) + (512 * 256 + 256) == 11_307_840
    assert shapes["params"]["features"]["layer3"]["0"]["downsample"]["0"]["kernel"].shape == (1, 1, 128, 256)
    assert shapes["batch_stats"]["features"]["layer4"]["1"]["bn2"]["var"].shape == (512,)

    small = encoders.Resnet18(c_dim=8, hidden_dim=4)
    images = jax.random.uniform(key, (3, 32, 40, 3))
    variables = small.init(key, images)
    c = small.apply(variables, images)
    assert c.shape == (3, 8) and np.isfinite(np.asarray(c)).all()
    c_jit = jax.jit(lambda v, x: small.apply(v, x))(variables, images)
    np.testing.assert_allclose(c_jit, c, rtol=1e-5, atol=1e-5)


def test_resnet18_batch_norm_train_and_eval(key):
    enc = encoders.Resnet18(c_dim=8, hidden_dim=4)
    images = jax.random.uniform(key, (4, 32, 32, 3))
    variables = enc.init(key, images)
    # Eval: running statistics (init mean 0, var 1), so each image's code is independent of the batch.
    c_eval = enc.apply(variables, images)
    np.testing.assert_allclose(enc.apply(variables, images[:1]), c_eval[:1], rtol=1e-5, atol=1e-5)
    # Train: batch statistics, and running averages updated with momentum 0.1 (PyTorch).
    c_train, updates = enc.apply(variables, images, train=True, mutable=["batch_stats"])
    assert not np.allclose(c_train, c_eval)
    new = updates["batch_stats"]["features"]["bn1"]
    x = (images - jnp.asarray(encoders.IMAGENET_MEAN).reshape(1, 1, 1, 3)) / jnp.asarray(
        encoders.IMAGENET_STD
    ).reshape(1, 1, 1, 3)
    conv = layers.Conv2d(4, 7, 2, 3)
    feat = conv.apply({"params": variables["params"]["features"]["conv1"]}, x)
    n = feat.size // 4
    np.testing.assert_allclose(new["mean"], 0.1 * feat.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * feat.var((0, 1, 2)) * n / (n - 1), rtol=1e-4)


def test_resnet18_is_the_same_with_either_conv_impl(key):
    # 'auto' on CPU mixes the two per layer; forcing each gives the same codes (gradients: per conv above).
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 19, 17, 3)).astype(np.float32)
    # Random variables from numpy: an eager `init` compiles one RNG program per shape (~10 s here).
    shapes = jax.eval_shape(encoders.Resnet18(c_dim=6, hidden_dim=4).init, key, images)
    variables = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), shapes)
    codes = jax.jit(
        lambda v: {
            impl: encoders.Resnet18(c_dim=6, hidden_dim=4, conv_impl=impl).apply(v, images)
            for impl in ("xla", "im2col")
        }
    )(variables)
    np.testing.assert_allclose(codes["im2col"], codes["xla"], rtol=1e-5, atol=1e-5)


def test_latent_encoder_shapes_jit_and_point_order(key):
    enc = encoders.LatentEncoder(z_dim=7, hidden_size=16)
    p = jax.random.uniform(key, (3, 40, 3), minval=-0.5, maxval=0.5)
    occ = (jax.random.uniform(jax.random.key(2), (3, 40)) < 0.3).astype(jnp.float32)
    variables = enc.init(key, p, occ)
    names = set(variables["params"])
    assert names == {"fc_pos", "fc_0", "fc_1", "fc_2", "fc_3", "fc_mean", "fc_logstd"}
    assert variables["params"]["fc_2"]["kernel"].shape == (32, 16)  # 2h -> h
    mean, logstd = enc.apply(variables, p, occ)
    assert mean.shape == logstd.shape == (3, 7)
    m2, s2 = jax.jit(enc.apply)(variables, p, occ)
    np.testing.assert_allclose(m2, mean, rtol=1e-5, atol=1e-6)
    perm = jax.random.permutation(jax.random.key(3), 40)
    m3, _ = enc.apply(variables, p[:, perm], occ[:, perm])
    np.testing.assert_allclose(m3, mean, rtol=1e-5, atol=1e-6)
    # The occupancies matter.
    m4, _ = enc.apply(variables, p, 1.0 - occ)
    assert float(jnp.abs(m4 - mean).max()) > 1e-4
    # Conditioned on a code c it gains fc_c.
    with_c = enc.init(key, p, occ, jnp.ones((3, 4)))
    assert with_c["params"]["fc_c"]["kernel"].shape == (4, 16)
