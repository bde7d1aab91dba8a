"""ConvONet's U-Nets: shapes, the original's parameter counts and initialisation, the receptive field,
errors, and (with PyTorch installed) outputs equal to the original modules' on copied weights."""

import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import unet


def _count(params):
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))


# Counted on the original modules (commit 838bea5 of autonomousvision/convolutional_occupancy_networks)
# with PyTorch 2.13: `UNet(32, in_channels=32, depth=d, start_filts=32, merge_mode='concat')` and
# `UNet3D(in_channels=32, out_channels=32, f_maps=32, num_levels=n)`, as `src/encoder/pointnet.py`
# builds them from configs/pointcloud/{shapenet,room}_{3plane,grid32,grid64}.yaml.
ORIGINAL_PARAMETER_COUNTS = [
    ("shapenet_3plane", unet.UNet2D(out_channels=32, start_filts=32, depth=4), 2, 1_934_976),
    ("room_3plane", unet.UNet2D(out_channels=32, start_filts=32, depth=5), 2, 7_769_472),
    ("shapenet_grid32", unet.UNet3D(out_channels=32, f_maps=32, num_levels=3), 3, 1_025_312),
    ("room_grid64", unet.UNet3D(out_channels=32, f_maps=32, num_levels=4), 3, 4_123_424),
]


@pytest.mark.parametrize(
    "config, model, dims, count", ORIGINAL_PARAMETER_COUNTS, ids=[c[0] for c in ORIGINAL_PARAMETER_COUNTS]
)
def test_original_configs_parameter_counts_and_shapes(config, model, dims, count):
    levels = getattr(model, "depth", None) or model.num_levels
    for size in (2 ** (levels - 1), 64 if dims == 2 else 32):  # the smallest input and the original's
        x = jax.ShapeDtypeStruct((2,) + (size,) * dims + (32,), jnp.float32)
        y, variables = jax.eval_shape(model.init_with_output, jax.random.key(0), x)
        assert y.shape == x.shape, config
        assert set(variables) == {"params"}  # GroupNorm keeps no running statistics
        assert _count(variables["params"]) == count, config


def test_initialisation_follows_the_original(key):
    """2-D convs Xavier-normal with zero bias; transposed and 3-D convs PyTorch's uniform default."""
    model = unet.UNet2D(out_channels=32, start_filts=32, depth=2)
    p2 = jax.jit(model.init)(key, jnp.zeros((1, 2, 2, 32)))["params"]
    kernel = np.asarray(p2["down_convs_1"]["conv2"]["kernel"])  # [3, 3, 64, 64]
    assert kernel.shape == (3, 3, 64, 64)
    np.testing.assert_allclose(kernel.std(), math.sqrt(2.0 / (2 * 64 * 9)), rtol=0.03)
    assert abs(kernel.mean()) < 0.002
    final = np.asarray(p2["conv_final"]["kernel"])  # 1x1, Xavier too
    np.testing.assert_allclose(final.std(), math.sqrt(2.0 / 64), rtol=0.1)
    for name in ("conv1", "conv2"):
        assert not np.asarray(p2["down_convs_0"][name]["bias"]).any()
    assert not np.asarray(p2["conv_final"]["bias"]).any()
    up = p2["up_convs_0"]["upconv"]  # [2, 2, 64, 32]: fan-in 4 * 32 as PyTorch computes it
    bound = 1.0 / math.sqrt(4 * 32)
    assert up["kernel"].shape == (2, 2, 64, 32)
    assert np.abs(np.asarray(up["kernel"])).max() <= bound
    np.testing.assert_allclose(np.asarray(up["kernel"]).std(), bound / math.sqrt(3), rtol=0.05)
    assert 0.0 < np.abs(np.asarray(up["bias"])).max() <= bound

    model = unet.UNet3D(out_channels=8, f_maps=16, num_levels=2)
    p3 = jax.jit(model.init)(key, jnp.zeros((1, 2, 2, 2, 16)))["params"]
    conv = p3["decoders_0"]["SingleConv1"]  # GroupNorm(8, 48) -> conv 48 -> 16, no bias
    assert set(conv) == {"groupnorm", "conv"} and set(conv["conv"]) == {"kernel"}
    np.testing.assert_array_equal(conv["groupnorm"]["scale"], np.ones(48))
    np.testing.assert_array_equal(conv["groupnorm"]["bias"], np.zeros(48))
    kernel, bound = np.asarray(conv["conv"]["kernel"]), 1.0 / math.sqrt(27 * 48)
    assert kernel.shape == (3, 3, 3, 48, 16) and np.abs(kernel).max() <= bound
    np.testing.assert_allclose(kernel.std(), bound / math.sqrt(3), rtol=0.03)
    # Encoder: the first conv gives max(out // 2, in) channels (16 -> 16, then 16 -> 32 at level 1).
    assert p3["encoders_0"]["SingleConv1"]["conv"]["kernel"].shape[-2:] == (16, 16)
    assert p3["encoders_1"]["SingleConv1"]["conv"]["kernel"].shape[-2:] == (16, 16)
    assert p3["encoders_1"]["SingleConv2"]["conv"]["kernel"].shape[-2:] == (16, 32)
    final_bound = 1.0 / math.sqrt(16)
    assert np.abs(np.asarray(p3["final_conv"]["bias"])).max() <= final_bound


def _reach(levels):
    """Per axis, the input interval [lo(p), hi(p)] each output p depends on, derived from the layers.

    Two 3-wide convolutions per level and block; max pooling maps coarse [a, b] to fine [2a, 2b + 1];
    nearest / 2x2-transposed upsampling maps fine [a, b] to coarse [a // 2, b // 2].
    """

    def encoder(level, lo, hi):
        lo, hi = lo - 2, hi + 2
        for _ in range(level):
            lo, hi = 2 * lo - 2, 2 * hi + 1 + 2
        return lo, hi

    def decoder(level, lo, hi):
        lo, hi = lo - 2, hi + 2
        a = encoder(level, lo, hi)
        coarse = (lo // 2, hi // 2)
        b = encoder(level + 1, *coarse) if level + 2 == levels else decoder(level + 1, *coarse)
        return min(a[0], b[0]), max(a[1], b[1])

    return lambda p: encoder(0, p, p) if levels == 1 else decoder(0, p, p)


def _expected_mask(levels, size, q):
    """Outputs along one axis of length `size` that depend on input position q."""
    interval = _reach(levels)
    return np.array([interval(p)[0] <= q <= interval(p)[1] for p in range(size)])


@pytest.mark.parametrize(
    "model, levels, spatial",
    [
        (unet.UNet2D(out_channels=4, start_filts=4, depth=1), 1, (8, 6)),
        (unet.UNet2D(out_channels=4, start_filts=4, depth=4), 4, (112, 16)),
        # (3 levels in 3D need a 52-voxel input: 9 s of the suite; 2-D depth 4 checks deep levels.)
        (unet.UNet3D(out_channels=4, f_maps=4, num_levels=2, layer_order="cr"), 2, (22, 6, 4)),
    ],
    ids=["2d-depth1", "2d-depth4", "3d-levels2"],
)
def test_receptive_field(model, levels, spatial, key):
    """One input voxel reaches exactly the outputs the layers predict, at most the documented radius away.

    Without normalisation (with GroupNorm every input reaches every output, see below). The exact
    dependency set is seen with positive kernels, zero biases and a zero input but for the one voxel:
    then exactly the outputs that depend on it are positive (ReLU and max pooling pass every positive
    value on; a NaN probe does not work, XLA's CPU max pooling may drop NaNs). One input per residue of
    the position mod 2^(levels - 1) along the long first axis, so that the widest reach is seen. With
    the initial weights, a change of that voxel changes outputs inside the window only.
    """
    radius = unet.receptive_field_radius(levels)
    assert radius == 7 * 2 ** (levels - 1) - 5
    period = 2 ** (levels - 1)
    centres = [radius + 1 + r for r in range(period)]
    others = [n // 2 - 1 for n in spatial[1:]]
    x = jax.random.normal(key, (period,) + spatial + (1,))
    one_hot, bumped = jnp.zeros_like(x), x
    for b, c in enumerate(centres):
        one_hot = one_hot.at[(b, c, *others, 0)].set(1.0)
        bumped = bumped.at[(b, c, *others, 0)].add(10.0)

    @jax.jit
    def run(x, one_hot, bumped):
        params = model.init(key, x)
        positive = jax.tree_util.tree_map_with_path(
            lambda path, p: jnp.zeros_like(p) if path[-1].key == "bias" else jnp.abs(p) + 0.01, params
        )
        return model.apply(positive, one_hot) > 0, model.apply(params, bumped) != model.apply(params, x)

    reached, changed = (np.asarray(a) for a in run(x, one_hot, bumped))
    assert reached.shape == changed.shape == x.shape[:-1] + (model.out_channels,)
    widest = 0
    for b, c in enumerate(centres):
        expected = _expected_mask(levels, spatial[0], c)
        for n, q in zip(spatial[1:], others):
            expected = np.multiply.outer(expected, _expected_mask(levels, n, q))
        mask = reached[b].any(-1)
        np.testing.assert_array_equal(mask, expected)
        assert not (changed[b].any(-1) & ~expected).any()
        hits = np.nonzero(mask.reshape(spatial[0], -1).any(-1))[0]
        widest = max(widest, np.abs(hits - c).max())
    assert widest == radius
    assert changed.any()


def test_group_norm_makes_every_output_depend_on_every_input(key):
    model = unet.UNet3D(out_channels=8, f_maps=8, num_levels=2)
    x = jax.random.normal(key, (1, 24, 4, 4, 8))

    @jax.jit
    def run(x):
        params = model.init(key, x)
        return model.apply(params, x), model.apply(params, x.at[0, 0, 0, 0, 0].add(10.0))

    y, y_bumped = (np.asarray(a) for a in run(x))
    assert y.shape == (1, 24, 4, 4, 8) and np.isfinite(y).all() and y.std() > 0
    changed = (y_bumped != y).any(-1)[0]
    radius = unet.receptive_field_radius(2)
    # Beyond the radius (up to 23 voxels away) nearly every output moves (a few may sit at ReLU's zero).
    assert changed[radius + 1 :].mean() > 0.9 and changed[-1].any()


@pytest.mark.parametrize("levels, expected", [(1, 8), (2, 16), (3, 32), (4, 64)])
def test_sliding_window_receptive_field_is_the_originals(levels, expected):
    assert unet.sliding_window_receptive_field(levels) == expected
    # The original's crop margin is smaller than the exact reach from 2 levels on.
    assert (expected - 1 < 2 * unet.receptive_field_radius(levels)) == (levels > 1)


@pytest.mark.parametrize("levels", [0, -1, 2.0, True, None])
def test_bad_level_counts_are_refused(levels, key):
    for function in (unet.receptive_field_radius, unet.sliding_window_receptive_field):
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            function(levels)
    with pytest.raises(ValueError, match="UNet2D.depth: must be an integer >= 1"):
        jax.eval_shape(unet.UNet2D(depth=levels).init, key, jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="UNet3D.num_levels: must be an integer >= 1"):
        jax.eval_shape(unet.UNet3D(num_levels=levels).init, key, jnp.zeros((1, 4, 4, 4, 1)))


@pytest.mark.parametrize(
    "model, shape, message",
    [
        (unet.UNet2D(depth=3), (1, 12, 6, 3), r"spatial sizes \(12, 6\) must be multiples of .* = 4"),
        (unet.UNet2D(depth=2), (1, 8, 8), "input must be NHWC with 4 axes, got shape"),
        (unet.UNet2D(depth=2), (1, 2, 8, 8, 3), "input must be NHWC with 4 axes"),
        (unet.UNet3D(num_levels=3), (1, 8, 8, 2, 3), r"UNet3D: spatial sizes \(8, 8, 2\) must be multiples"),
        (unet.UNet3D(num_levels=2), (1, 8, 8, 3), "input must be NDHWC with 5 axes"),
        (unet.UNet3D(num_levels=2, layer_order="crg"), (1, 4, 4, 4, 3), "UNet3D.layer_order: must be one of"),
        (unet.UNet3D(num_levels=2, num_groups=0), (1, 4, 4, 4, 3), "UNet3D.num_groups: must be an integer"),
        (unet.UNet3D(num_levels=2, num_groups=8), (1, 4, 4, 4, 12), "12 channels, not divisible into 8"),
        (unet.UNet3D(f_maps=4, num_levels=2), (1, 4, 4, 4, 3), "12 channels, not divisible into 8"),
    ],
    ids=[
        "2d-size",
        "2d-3-axes",
        "2d-5-axes",
        "3d-size",
        "3d-4-axes",
        "order",
        "groups-0",
        "in-groups",
        "dec-groups",
    ],
)
def test_bad_inputs_and_settings_are_refused(model, shape, message, key):
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(model.init, key, jax.ShapeDtypeStruct(shape, jnp.float32))


# ---- Parity with the original PyTorch modules: needs PyTorch and a checkout of the original. ----
#
#   CONVONET_SRC=/path/to/convolutional_occupancy_networks python -m pytest -q tests/test_unet.py -k torch
#
# (with torch importable, e.g. PYTHONPATH=<a folder torch is installed in>). This is the weight
# conversion a checkpoint converter needs.


needs_the_original = pytest.mark.skipif(
    not os.environ.get("CONVONET_SRC"),
    reason="CONVONET_SRC (a convolutional_occupancy_networks checkout) is not set",
)


def _original(module_name):
    """The original `src/encoder/<module_name>.py`, loaded from its file (its package needs torch_scatter)."""
    pytest.importorskip("torch")
    path = os.path.join(os.environ["CONVONET_SRC"], "src", "encoder", f"{module_name}.py")
    spec = importlib.util.spec_from_file_location(f"convonet_original_{module_name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_to_flax(state_dict):
    """The Flax params of a U-Net from the original's state dict (names and layouts as `unet` documents)."""
    params = {}
    for name, value in state_dict.items():
        value = value.detach().cpu().numpy()
        path = []
        for part in name.split("."):
            if part.isdigit():
                path[-1] = f"{path[-1]}_{part}"
            elif part != "basic_module":
                path.append(part)
        *path, leaf = path
        if leaf == "weight" and path[-1] == "groupnorm":
            leaf = "scale"
        elif leaf == "weight" and path[-1] == "upconv":  # [in, out, a, b] -> [a, b, in, out]
            leaf, value = "kernel", value.transpose(2, 3, 0, 1)
        elif leaf == "weight":  # [out, in, *k] -> [*k, in, out]
            leaf, value = "kernel", np.moveaxis(value, (0, 1), (-1, -2))
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(value)
    return params


@needs_the_original
@pytest.mark.parametrize("depth, in_channels", [(1, 3), (2, 3), (3, 32)])
def test_unet2d_matches_the_original_torch_module(depth, in_channels):
    original = _original("unet")
    torch = pytest.importorskip("torch")
    torch.manual_seed(depth)
    module = original.UNet(5, in_channels=in_channels, depth=depth, start_filts=8, merge_mode="concat")
    with torch.no_grad():  # non-zero biases, so that their layout is checked too
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(2, in_channels, 16, 8)
        expected = module(x).numpy().transpose(0, 2, 3, 1)
    model = unet.UNet2D(out_channels=5, start_filts=8, depth=depth)
    params = torch_to_flax(module.state_dict())
    x = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    )
    y = np.asarray(model.apply({"params": params}, x))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@needs_the_original
@pytest.mark.parametrize(
    "num_levels, layer_order, in_channels, num_groups",
    [(1, "gcr", 4, 4), (2, "gcr", 3, 4), (3, "gcr", 8, 8), (3, "cr", 3, 8)],  # 3 < 4 groups: one group
)
def test_unet3d_matches_the_original_torch_module(num_levels, layer_order, in_channels, num_groups):
    original = _original("unet3d")
    torch = pytest.importorskip("torch")
    torch.manual_seed(num_levels)
    module = original.UNet3D(
        in_channels=in_channels,
        out_channels=5,
        f_maps=8,
        num_levels=num_levels,
        layer_order=layer_order,
        num_groups=num_groups,
        is_segmentation=False,
    )
    with torch.no_grad():  # GroupNorm scale / bias away from 1 / 0
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(2, in_channels, 8, 12, 4)
        expected = module(x).numpy().transpose(0, 2, 3, 4, 1)
    model = unet.UNet3D(
        out_channels=5, f_maps=8, num_levels=num_levels, num_groups=num_groups, layer_order=layer_order
    )
    params = torch_to_flax(module.state_dict())
    x = jnp.asarray(x.numpy().transpose(0, 2, 3, 4, 1))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    )
    y = np.asarray(model.apply({"params": params}, x))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
