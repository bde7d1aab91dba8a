"""ConvONet local features: scatter / gather, plane and grid sampling, LocalPoolPointnet and LocalDecoder.

References: numpy loops and hand-computed interpolation weights; with torch
installed, `torch.nn.functional.grid_sample` itself and the original PyTorch
modules (transcribed below from ConvONet, MIT licence, with `torch_scatter`
replaced by `torch.Tensor.scatter_reduce`) with copied weights.
"""

import functools
import itertools
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import decoders, encoders, local_features


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------- scatter


def _scatter_loop(values, index, num_segments, reduce):
    """numpy loop: torch_scatter semantics (empty segments 0), entries out of range ignored."""
    batch = index.shape[:-1]
    out = np.zeros(batch + (num_segments,) + values.shape[index.ndim :], np.float64)
    for b in itertools.product(*[range(d) for d in batch]):
        for s in range(num_segments):
            members = [values[b + (n,)] for n in range(index.shape[-1]) if index[b + (n,)] == s]
            if members:
                stack = np.stack(members).astype(np.float64)
                out[b + (s,)] = stack.mean(0) if reduce == "mean" else stack.max(0)
    return out


@pytest.mark.parametrize("reduce", ["mean", "max"])
@pytest.mark.parametrize(
    "batch, n, features, segments",
    [((), 7, (3,), 5), ((2,), 9, (4,), 12), ((2, 3), 5, (2, 2), 4), ((3,), 1, (1,), 6), ((2,), 6, (), 3)],
)
def test_scatter_matches_a_numpy_loop(reduce, batch, n, features, segments):
    rng = np.random.default_rng(len(batch) + n)
    values = rng.normal(size=batch + (n,) + features).astype(np.float32)
    # Segments 0..segments-1 with some left empty, plus out-of-range entries (-1, segments) that are ignored.
    index = rng.integers(-1, segments + 1, size=batch + (n,)).astype(np.int32)
    fn = local_features.scatter_mean if reduce == "mean" else local_features.scatter_max
    out = jax.jit(fn, static_argnums=2)(values, index, segments)
    assert out.shape == batch + (segments,) + features
    np.testing.assert_allclose(out, _scatter_loop(values, index, segments, reduce), rtol=1e-6, atol=1e-6)
    if batch:  # vmapped over the leading batch axis it is the same
        vmapped = jax.jit(jax.vmap(lambda v, i: fn(v, i, segments)))(values, index)
        np.testing.assert_allclose(vmapped, out, rtol=1e-6, atol=1e-6)


def test_scatter_max_of_negative_values_and_empty_cells_and_its_gradient():
    values = jnp.asarray([[-3.0, -1.0], [-2.0, -5.0], [-4.0, -4.5]])
    index = jnp.asarray([2, 2, 0])
    out = local_features.scatter_max(values, index, 4)
    np.testing.assert_array_equal(out, [[-4.0, -4.5], [0.0, 0.0], [-2.0, -1.0], [0.0, 0.0]])
    grad = jax.grad(lambda v: local_features.scatter_max(v, index, 4).sum())(values)
    np.testing.assert_array_equal(grad, [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    grad = jax.grad(lambda v: local_features.scatter_mean(v, index, 4).sum())(values)
    np.testing.assert_array_equal(grad, [[0.5, 0.5], [0.5, 0.5], [1.0, 1.0]])


@pytest.mark.parametrize(
    "values, index, segments, message",
    [
        (np.zeros((2, 5, 3)), np.zeros((2, 4), np.int32), 4, "must start with the shape of index"),
        (np.zeros((5, 3)), np.zeros((5,), np.float32), 4, "index must be integer"),
        (np.zeros((5, 3)), np.zeros((5,), np.int32), 0, "num_segments must be positive"),
    ],
)
def test_scatter_bad_arguments_are_clear_errors(values, index, segments, message):
    for fn in (local_features.scatter_mean, local_features.scatter_max):
        with pytest.raises(ValueError, match=message):
            fn(jnp.asarray(values), jnp.asarray(index), segments)


# ---------------------------------------------------------------- coordinates


@pytest.mark.parametrize("padding", [0.1, 0.0, 0.25])
def test_normalization_and_cell_index_follow_the_original(padding):
    rng = np.random.default_rng(1)
    p = rng.uniform(-0.7, 0.7, size=(2, 50, 3)).astype(np.float32)
    p[0, :3] = [[0.55, -0.55, 0.0], [10.0, -10.0, 0.5], [-0.5, 0.5, 1.0]]  # on / far outside the border
    axes = {"xz": [0, 2], "xy": [0, 1], "yz": [1, 2]}
    for plane, reso in itertools.product(axes, (1, 8, 64)):
        uv = local_features.normalize_coordinate(jnp.asarray(p), padding, plane)
        ref = p[..., axes[plane]] / np.float32(1 + padding + 10e-6) + 0.5
        ref[ref >= 1] = 1 - 10e-6
        ref[ref < 0] = 0.0
        np.testing.assert_allclose(uv, ref, rtol=0, atol=1e-7)
        assert float(uv.max()) < 1 and float(uv.min()) >= 0
        cells = (ref * reso).astype(np.int64)
        index = local_features.coordinate_to_index(uv, reso)
        np.testing.assert_array_equal(index, cells[..., 0] + reso * cells[..., 1])
    xyz = local_features.normalize_3d_coordinate(jnp.asarray(p), padding)
    ref = p / np.float32(1 + padding + 10e-4) + 0.5
    ref[ref >= 1] = 1 - 10e-4
    ref[ref < 0] = 0.0
    np.testing.assert_allclose(xyz, ref, rtol=0, atol=1e-7)
    for reso in (1, 4, 32):
        cells = (ref * reso).astype(np.int64)
        expected = cells[..., 0] + reso * (cells[..., 1] + reso * cells[..., 2])
        np.testing.assert_array_equal(local_features.coordinate_to_index(xyz, reso), expected)


def test_normalization_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown plane 'zx'"):
        local_features.normalize_coordinate(jnp.zeros((1, 2, 3)), 0.1, "zx")
    with pytest.raises(ValueError, match="2 or 3 components"):
        local_features.coordinate_to_index(jnp.zeros((1, 2, 4)), 8)


# ---------------------------------------------------------------- sampling


def _interp_loop(features, coords, mode):
    """Direct formula: per point the 2^k corner weights prod(1 - |x - corner|) (nearest: the rounded cell)."""
    spatial = features.shape[1:-1]
    k = len(spatial)
    out = np.zeros(coords.shape[:2] + features.shape[-1:], np.float64)
    for b, n in itertools.product(range(coords.shape[0]), range(coords.shape[1])):
        # coords[..., 0] runs along the last spatial axis.
        x = [
            min(max(float(coords[b, n, k - 1 - a]) * (spatial[a] - 1), 0.0), spatial[a] - 1) for a in range(k)
        ]
        if mode == "nearest":
            out[b, n] = features[(b,) + tuple(int(np.round(v)) for v in x)]
            continue
        for corner in itertools.product(*[range(s) for s in spatial]):
            w = np.prod([max(0.0, 1.0 - abs(x[a] - corner[a])) for a in range(k)])
            if w > 0:
                out[b, n] += w * features[(b,) + corner]
    return out


def _sample_points(rng, batch, n, k):
    coords = rng.uniform(-0.3, 1.3, size=(batch, n, k))
    # On the border, exactly at the first / last cell centres, outside on both sides, and cell boundaries.
    coords[0, :6, 0] = [0.0, 1.0, -0.5, 1.5, 0.25, 0.5]
    coords[-1, :4, -1] = [1.0, 0.0, -2.0, 3.0]
    return coords.astype(np.float32)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(5, 7), (1, 4), (3, 1), (2, 2)])
def test_sample_plane_matches_the_direct_formula(mode, size):
    rng = np.random.default_rng(size[0] * 10 + size[1])
    features = rng.normal(size=(2,) + size + (3,)).astype(np.float32)
    uv = _sample_points(rng, 2, 40, 2)
    out = local_features.sample_plane(jnp.asarray(features), jnp.asarray(uv), mode)
    assert out.shape == (2, 40, 3)
    np.testing.assert_allclose(out, _interp_loop(features, uv, mode), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(3, 4, 5), (1, 2, 3), (4, 1, 2)])
def test_sample_grid_matches_the_direct_formula(mode, size):
    rng = np.random.default_rng(sum(size))
    features = rng.normal(size=(2,) + size + (2,)).astype(np.float32)
    xyz = _sample_points(rng, 2, 30, 3)
    out = jax.jit(local_features.sample_grid, static_argnums=2)(features, xyz, mode)
    assert out.shape == (2, 30, 2)
    np.testing.assert_allclose(out, _interp_loop(features, xyz, mode), rtol=1e-5, atol=1e-5)


def test_interpolation_reproduces_multilinear_functions():
    # Bilinear / trilinear interpolation is exact on functions a + b x + c y + d xy (+ z terms, xyz).
    d, h, w = 4, 5, 6
    z, y, x = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    fn = lambda x, y, z: 1.0 + 0.5 * x - 2.0 * y + 0.25 * x * y + 0.1 * x * y * z - z  # noqa: E731
    grid = fn(x, y, z).astype(np.float32)[None, ..., None]
    xyz = np.random.default_rng(0).uniform(-0.2, 1.2, size=(1, 50, 3)).astype(np.float32)
    c = np.clip(xyz, 0, 1)
    expected = fn(c[..., 0] * (w - 1), c[..., 1] * (h - 1), c[..., 2] * (d - 1))
    np.testing.assert_allclose(local_features.sample_grid(grid, xyz)[..., 0], expected, rtol=1e-5, atol=1e-4)
    plane = grid[:, 2]  # z = 2: [1, H, W, 1]
    expected = fn(c[..., 0] * (w - 1), c[..., 1] * (h - 1), 2.0)
    np.testing.assert_allclose(local_features.sample_plane(plane, xyz[..., :2])[..., 0], expected, atol=1e-4)


def test_sampling_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown sample mode 'bicubic'"):
        local_features.sample_plane(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 3, 2)), "bicubic")
    with pytest.raises(ValueError, match=r"must be \[batch, N, 3\]"):
        local_features.sample_grid(jnp.zeros((1, 4, 4, 4, 2)), jnp.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match=r"plane features must be \[batch, H, W, C\]"):
        local_features.sample_plane(jnp.zeros((1, 4, 4, 4, 2)), jnp.zeros((1, 3, 2)))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("spatial", [(5, 7), (3, 4, 6)])
def test_sampling_matches_torch_grid_sample(mode, spatial):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(spatial))
    features = rng.normal(size=(2,) + spatial + (3,)).astype(np.float32)
    coords = _sample_points(rng, 2, 64, len(spatial))
    if mode == "nearest":  # keep clear of exact half-cells, where torch's float rounding may tip either way
        scale = np.asarray(spatial[::-1], np.float32) - 1
        frac = np.clip(coords, 0, 1) * scale % 1
        coords = np.where(np.abs(frac - 0.5) < 1e-3, coords + 0.01, coords)
    if len(spatial) == 2:
        ours = local_features.sample_plane(features, coords, mode)
        grid = torch.from_numpy(2.0 * coords[:, :, None] - 1.0)  # [B, N, 1, 2]
    else:
        ours = local_features.sample_grid(features, coords, mode)
        grid = torch.from_numpy(2.0 * coords[:, :, None, None] - 1.0)  # [B, N, 1, 1, 3]
    inp = torch.from_numpy(np.moveaxis(features, -1, 1).copy())
    ref = torch.nn.functional.grid_sample(inp, grid, mode=mode, padding_mode="border", align_corners=True)
    ref = ref.reshape(ref.shape[0], ref.shape[1], -1).permute(0, 2, 1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- encoder and decoder


def test_parameter_counts_match_the_original():
    # Counted with the original modules in PyTorch (src/encoder/pointnet.py, src/conv_onet/models/decoder.py).
    key, p = jax.random.key(0), jnp.zeros((2, 16, 3))
    for kw in (
        {"plane_type": ("xz", "xy", "yz"), "plane_resolution": 64},
        {"plane_type": "grid", "grid_resolution": 32},
    ):
        enc = encoders.LocalPoolPointnet(c_dim=32, hidden_dim=32, **kw)  # configs/pointcloud/shapenet_*
        assert _count(jax.eval_shape(enc.init, key, p)) == 27_232
    default = encoders.LocalPoolPointnet(plane_resolution=8)  # c_dim = hidden_dim = 128
    assert _count(jax.eval_shape(default.init, key, p)) == 428_416
    planes = {t: jnp.zeros((2, 8, 8, 32)) for t in local_features.PLANES}
    assert _count(jax.eval_shape(decoders.LocalDecoder(hidden_size=32).init, key, p, planes)) == 16_001
    planes = {"xz": jnp.zeros((2, 8, 8, 128))}
    assert _count(jax.eval_shape(decoders.LocalDecoder().init, key, p, planes)) == 824_321  # hidden 256


def _numpy_variables(module, *args, seed=0):
    """Random variables, U(-0.5, 0.5), drawn by numpy (an eager `init` compiles one program per shape)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.uniform(-0.5, 0.5, s.shape).astype(np.float32), shapes)


@pytest.mark.parametrize(
    "plane_type, expected",
    [
        (("xz", "xy", "yz"), {"xz": (2, 8, 8, 6), "xy": (2, 8, 8, 6), "yz": (2, 8, 8, 6)}),
        ("grid", {"grid": (2, 4, 4, 4, 6)}),
        (("grid", "xy"), {"xy": (2, 8, 8, 6), "grid": (2, 4, 4, 4, 6)}),
    ],
)
def test_encoder_shapes_jit_point_order_and_empty_cells(plane_type, expected):
    enc = encoders.LocalPoolPointnet(
        c_dim=6, hidden_dim=8, plane_type=plane_type, plane_resolution=8, grid_resolution=4
    )
    # Points in one corner octant: the cells of the far corner stay empty (0).
    p = np.random.default_rng(0).uniform(-0.55, -0.1, size=(2, 60, 3)).astype(np.float32)
    variables = _numpy_variables(enc, p)
    assert set(variables["params"]) == {"fc_pos", "fc_c"} | {f"blocks_{i}" for i in range(5)}
    apply = jax.jit(enc.apply)
    fea = apply(variables, p)
    assert {k: v.shape for k, v in fea.items()} == expected
    for k, v in fea.items():
        far = v[:, -1, -1] if k != "grid" else v[:, -1, -1, -1]
        np.testing.assert_array_equal(far, 0.0)
        assert float(jnp.abs(v).max()) > 0
    # The features do not depend on the order of the points.
    fea_perm = apply(variables, p[:, np.random.default_rng(1).permutation(60)])
    for k in fea:
        np.testing.assert_allclose(fea_perm[k], fea[k], rtol=1e-5, atol=1e-6)
    # The pooling is local: points of the opposite octant, in other cells of every plane and of the
    # grid, leave the features of the first octant's cells as they were (a global pool would not).
    both = apply(variables, np.concatenate([p, -p], axis=1))
    for k, v in both.items():
        near = (slice(None),) + (slice(0, v.shape[1] // 2),) * (v.ndim - 2)
        np.testing.assert_allclose(v[near], fea[k][near], rtol=1e-5, atol=1e-6)
        assert float(jnp.abs(v[(slice(None),) + (-1,) * (v.ndim - 2)]).max()) > 0


def test_encoder_unet_hooks_are_submodules_applied_to_planes_and_grid():
    class Scale(nn.Module):
        @nn.compact
        def __call__(self, x):
            scale = self.param("s", nn.initializers.ones, (x.shape[-1],))
            return x * scale.reshape((1,) * (x.ndim - 1) + scale.shape)

    p = np.random.default_rng(0).uniform(-0.5, 0.5, size=(2, 30, 3)).astype(np.float32)
    kw = {
        "c_dim": 4,
        "hidden_dim": 8,
        "plane_resolution": 4,
        "grid_resolution": 2,
        "plane_type": ("xz", "xy", "grid"),
    }
    plain = encoders.LocalPoolPointnet(**kw)
    hooked = encoders.LocalPoolPointnet(unet=Scale(), unet3d=Scale(), **kw)
    variables = _numpy_variables(hooked, p)
    params = variables["params"]
    assert params["unet"]["s"].shape == params["unet3d"]["s"].shape == (4,)  # one U-Net for all planes
    base = {"params": {k: v for k, v in params.items() if k not in ("unet", "unet3d")}}
    a, b = jax.jit(plain.apply)(base, p), jax.jit(hooked.apply)(variables, p)
    for k in ("xz", "xy"):
        np.testing.assert_allclose(b[k], np.asarray(a[k]) * params["unet"]["s"], rtol=1e-6)
    np.testing.assert_allclose(b["grid"], np.asarray(a["grid"]) * params["unet3d"]["s"], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"plane_type": ("xz", "zx"), "plane_resolution": 8}, "plane_type"),
        ({"plane_type": (), "plane_resolution": 8}, "plane_type"),
        ({"plane_type": "xz"}, "plane_resolution must be a positive integer"),
        ({"plane_type": "grid", "grid_resolution": 0}, "grid_resolution must be a positive integer"),
        ({"plane_type": "xz", "plane_resolution": 8, "scatter_type": "sum"}, "scatter_type"),
    ],
)
def test_encoder_bad_settings_are_clear_errors(key, kwargs, message):
    with pytest.raises(ValueError, match=message):
        encoders.LocalPoolPointnet(c_dim=4, hidden_dim=4, **kwargs).init(key, jnp.zeros((1, 5, 3)))


def test_decoder_shapes_names_and_bad_inputs():
    dec = decoders.LocalDecoder(hidden_size=8, n_blocks=3)
    rng = np.random.default_rng(0)
    p = rng.uniform(-0.6, 0.6, size=(2, 25, 3)).astype(np.float32)
    c = {"xz": rng.normal(size=(2, 4, 4, 5)), "grid": rng.normal(size=(2, 3, 3, 3, 5))}
    c = {k: v.astype(np.float32) for k, v in c.items()}
    variables = _numpy_variables(dec, p, c)
    names = {"fc_p", "fc_out"} | {f"fc_c_{i}" for i in range(3)} | {f"blocks_{i}" for i in range(3)}
    assert set(variables["params"]) == names
    apply = jax.jit(dec.apply)
    out = apply(variables, p, c)
    assert out.shape == (2, 25)
    # Pointwise in p: decoding a subset of the points gives their logits.
    np.testing.assert_allclose(apply(variables, p[:, 5:9], c), out[:, 5:9], rtol=1e-5, atol=1e-6)
    # The features matter; without them (the original's c_dim 0) there is no fc_c.
    other = {k: v + 1.0 for k, v in c.items()}
    assert float(jnp.abs(apply(variables, p, other) - out).max()) > 1e-3
    assert "fc_c_0" not in jax.eval_shape(dec.init, jax.random.key(0), p, None)["params"]
    with pytest.raises(ValueError, match="unknown feature types"):
        dec.apply(variables, p, {"xz": c["xz"], "zx": c["xz"]})
    with pytest.raises(ValueError, match="dict of feature planes / grids, got ArrayImpl"):
        dec.apply(variables, p, jnp.ones((2, 5)))  # a global code, as the ONet decoders take
    with pytest.raises(ValueError, match="no latent code"):
        dec.apply(variables, p, c, jnp.ones((2, 3)))


# ---------------------------------------------------------------- parity with the original PyTorch code


@functools.lru_cache(maxsize=None)
def _original():
    """The original modules, transcribed from ConvONet (src/common.py, src/layers.py,
    src/encoder/pointnet.py, src/conv_onet/models/decoder.py at 838bea5; MIT licence) without the U-Nets.

    Only `torch_scatter` is replaced (by `scatter_reduce`, empty cells 0 as torch_scatter gives).
    """
    torch = pytest.importorskip("torch")
    tnn, F = torch.nn, torch.nn.functional

    def scatter_mean(src, index, dim_size):
        index = index.expand_as(src)
        out = src.new_zeros(src.shape[:-1] + (dim_size,)).scatter_add_(-1, index, src)
        count = src.new_zeros(out.shape).scatter_add_(-1, index, torch.ones_like(src))
        return out / count.clamp(min=1)

    def scatter_max(src, index, dim_size):
        out = src.new_zeros(src.shape[:-1] + (dim_size,))
        return out.scatter_reduce(-1, index.expand_as(src), src, reduce="amax", include_self=False)

    def normalize_coordinate(p, padding=0.1, plane="xz"):
        if plane == "xz":
            xy = p[:, :, [0, 2]]
        elif plane == "xy":
            xy = p[:, :, [0, 1]]
        else:
            xy = p[:, :, [1, 2]]
        xy_new = xy / (1 + padding + 10e-6)
        xy_new = xy_new + 0.5
        if xy_new.max() >= 1:
            xy_new[xy_new >= 1] = 1 - 10e-6
        if xy_new.min() < 0:
            xy_new[xy_new < 0] = 0.0
        return xy_new

    def normalize_3d_coordinate(p, padding=0.1):
        p_nor = p / (1 + padding + 10e-4)
        p_nor = p_nor + 0.5
        if p_nor.max() >= 1:
            p_nor[p_nor >= 1] = 1 - 10e-4
        if p_nor.min() < 0:
            p_nor[p_nor < 0] = 0.0
        return p_nor

    def coordinate2index(x, reso, coord_type="2d"):
        x = (x * reso).long()
        if coord_type == "2d":
            index = x[:, :, 0] + reso * x[:, :, 1]
        else:
            index = x[:, :, 0] + reso * (x[:, :, 1] + reso * x[:, :, 2])
        return index[:, None, :]

    class ResnetBlockFC(tnn.Module):
        def __init__(self, size_in, size_out=None, size_h=None):
            super().__init__()
            size_out = size_in if size_out is None else size_out
            size_h = min(size_in, size_out) if size_h is None else size_h
            self.fc_0 = tnn.Linear(size_in, size_h)
            self.fc_1 = tnn.Linear(size_h, size_out)
            self.actvn = tnn.ReLU()
            self.shortcut = None if size_in == size_out else tnn.Linear(size_in, size_out, bias=False)
            tnn.init.zeros_(self.fc_1.weight)

        def forward(self, x):
            net = self.fc_0(self.actvn(x))
            dx = self.fc_1(self.actvn(net))
            x_s = x if self.shortcut is None else self.shortcut(x)
            return x_s + dx

    class LocalPoolPointnet(tnn.Module):
        def __init__(
            self,
            c_dim=128,
            dim=3,
            hidden_dim=128,
            scatter_type="max",
            plane_resolution=None,
            grid_resolution=None,
            plane_type="xz",
            padding=0.1,
            n_blocks=5,
        ):
            super().__init__()
            self.c_dim = c_dim
            self.fc_pos = tnn.Linear(dim, 2 * hidden_dim)
            self.blocks = tnn.ModuleList([ResnetBlockFC(2 * hidden_dim, hidden_dim) for i in range(n_blocks)])
            self.fc_c = tnn.Linear(hidden_dim, c_dim)
            self.reso_plane, self.reso_grid = plane_resolution, grid_resolution
            self.plane_type, self.padding = plane_type, padding
            self.scatter = scatter_max if scatter_type == "max" else scatter_mean

        def generate_plane_features(self, p, c, plane="xz"):
            xy = normalize_coordinate(p.clone(), plane=plane, padding=self.padding)
            index = coordinate2index(xy, self.reso_plane)
            fea_plane = scatter_mean(c.permute(0, 2, 1), index, self.reso_plane**2)
            return fea_plane.reshape(p.size(0), self.c_dim, self.reso_plane, self.reso_plane)

        def generate_grid_features(self, p, c):
            p_nor = normalize_3d_coordinate(p.clone(), padding=self.padding)
            index = coordinate2index(p_nor, self.reso_grid, coord_type="3d")
            fea_grid = scatter_mean(c.permute(0, 2, 1), index, self.reso_grid**3)
            r = self.reso_grid
            return fea_grid.reshape(p.size(0), self.c_dim, r, r, r)

        def pool_local(self, xy, index, c):
            fea_dim = c.size(2)
            c_out = 0
            for key in xy.keys():
                size = self.reso_grid**3 if key == "grid" else self.reso_plane**2
                fea = self.scatter(c.permute(0, 2, 1), index[key], size)
                fea = fea.gather(dim=2, index=index[key].expand(-1, fea_dim, -1))
                c_out += fea
            return c_out.permute(0, 2, 1)

        def forward(self, p):
            coord, index = {}, {}
            for plane in ("xz", "xy", "yz"):
                if plane in self.plane_type:
                    coord[plane] = normalize_coordinate(p.clone(), plane=plane, padding=self.padding)
                    index[plane] = coordinate2index(coord[plane], self.reso_plane)
            if "grid" in self.plane_type:
                coord["grid"] = normalize_3d_coordinate(p.clone(), padding=self.padding)
                index["grid"] = coordinate2index(coord["grid"], self.reso_grid, coord_type="3d")
            net = self.fc_pos(p)
            net = self.blocks[0](net)
            for block in self.blocks[1:]:
                pooled = self.pool_local(coord, index, net)
                net = torch.cat([net, pooled], dim=2)
                net = block(net)
            c = self.fc_c(net)
            fea = {}
            if "grid" in self.plane_type:
                fea["grid"] = self.generate_grid_features(p, c)
            for plane in ("xz", "xy", "yz"):
                if plane in self.plane_type:
                    fea[plane] = self.generate_plane_features(p, c, plane=plane)
            return fea

    class LocalDecoder(tnn.Module):
        def __init__(
            self,
            dim=3,
            c_dim=128,
            hidden_size=256,
            n_blocks=5,
            leaky=False,
            sample_mode="bilinear",
            padding=0.1,
        ):
            super().__init__()
            self.c_dim, self.n_blocks = c_dim, n_blocks
            if c_dim != 0:
                self.fc_c = tnn.ModuleList([tnn.Linear(c_dim, hidden_size) for i in range(n_blocks)])
            self.fc_p = tnn.Linear(dim, hidden_size)
            self.blocks = tnn.ModuleList([ResnetBlockFC(hidden_size) for i in range(n_blocks)])
            self.fc_out = tnn.Linear(hidden_size, 1)
            self.actvn = F.relu if not leaky else (lambda x: F.leaky_relu(x, 0.2))
            self.sample_mode, self.padding = sample_mode, padding

        def sample_plane_feature(self, p, c, plane="xz"):
            xy = normalize_coordinate(p.clone(), plane=plane, padding=self.padding)
            vgrid = 2.0 * xy[:, :, None].float() - 1.0
            mode = self.sample_mode
            return F.grid_sample(c, vgrid, padding_mode="border", align_corners=True, mode=mode).squeeze(-1)

        def sample_grid_feature(self, p, c):
            p_nor = normalize_3d_coordinate(p.clone(), padding=self.padding)
            vgrid = 2.0 * p_nor[:, :, None, None].float() - 1.0
            c = F.grid_sample(c, vgrid, padding_mode="border", align_corners=True, mode=self.sample_mode)
            return c.squeeze(-1).squeeze(-1)

        def forward(self, p, c_plane):
            if self.c_dim != 0:
                c = 0
                if "grid" in c_plane:
                    c += self.sample_grid_feature(p, c_plane["grid"])
                for plane in ("xz", "xy", "yz"):
                    if plane in c_plane:
                        c += self.sample_plane_feature(p, c_plane[plane], plane=plane)
                c = c.transpose(1, 2)
            net = self.fc_p(p.float())
            for i in range(self.n_blocks):
                if self.c_dim != 0:
                    net = net + self.fc_c[i](c)
                net = self.blocks[i](net)
            return self.fc_out(self.actvn(net)).squeeze(-1)

    return types.SimpleNamespace(torch=torch, LocalPoolPointnet=LocalPoolPointnet, LocalDecoder=LocalDecoder)


def _randomize(module, seed):
    """PyTorch-like magnitudes (U(+-1/sqrt(fan_in))) for every parameter, the zero-initialised fc_1 too."""
    orig = _original()
    gen = orig.torch.Generator().manual_seed(seed)
    with orig.torch.no_grad():
        for name, prm in module.named_parameters():
            fan_in = (
                prm.shape[1]
                if prm.ndim == 2
                else module.get_parameter(name[: -len("bias")] + "weight").shape[1]
            )
            prm.copy_((orig.torch.rand(prm.shape, generator=gen) * 2 - 1) / fan_in**0.5)


def _to_flax(state_dict):
    """'blocks.0.fc_1.weight' -> params['blocks_0']['fc_1']['kernel'] (transposed); biases as they are."""
    params = {}
    for name, value in state_dict.items():
        parts = name.split(".")
        path = []
        for part in parts[:-1]:
            if part.isdigit():
                path[-1] += f"_{part}"
            else:
                path.append(part)
        value = value.detach().numpy()
        leaf = {"weight": "kernel", "bias": "bias"}[parts[-1]]
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value.T if leaf == "kernel" else value
    return params


def _channels_last(features):
    return {k: np.moveaxis(v.detach().numpy(), 1, -1) for k, v in features.items()}


@pytest.mark.parametrize(
    "plane_type, scatter_type, sample_mode",
    [
        (("xz", "xy", "yz"), "max", "bilinear"),
        (("grid",), "max", "bilinear"),
        (("xy", "grid"), "mean", "nearest"),
    ],
)
def test_encoder_and_decoder_match_the_original_pytorch_modules(plane_type, scatter_type, sample_mode):
    orig = _original()
    torch = orig.torch
    reso = {"plane_resolution": 8, "grid_resolution": 4}
    rng = np.random.default_rng(7)
    p = rng.uniform(-0.6, 0.6, size=(2, 200, 3)).astype(np.float32)  # some outside the padded cube
    q = rng.uniform(-0.6, 0.6, size=(2, 100, 3)).astype(np.float32)

    t_enc = orig.LocalPoolPointnet(
        c_dim=16, hidden_dim=16, scatter_type=scatter_type, plane_type=list(plane_type), **reso
    )
    _randomize(t_enc, 0)
    t_dec = orig.LocalDecoder(c_dim=16, hidden_size=16, sample_mode=sample_mode)
    _randomize(t_dec, 1)
    with torch.no_grad():
        t_fea = t_enc(torch.from_numpy(p))
        t_out = t_dec(torch.from_numpy(q), t_fea).numpy()

    enc = encoders.LocalPoolPointnet(
        c_dim=16, hidden_dim=16, scatter_type=scatter_type, plane_type=plane_type, **reso
    )
    fea = jax.jit(enc.apply)({"params": _to_flax(t_enc.state_dict())}, p)
    ref = _channels_last(t_fea)
    assert set(fea) == set(ref)
    for k in ref:
        assert np.abs(ref[k]).max() > 0.1  # a real comparison
        np.testing.assert_allclose(fea[k], ref[k], rtol=1e-5, atol=1e-5)
    dec = decoders.LocalDecoder(hidden_size=16, sample_mode=sample_mode)
    out = jax.jit(dec.apply)({"params": _to_flax(t_dec.state_dict())}, q, ref)
    assert np.abs(t_out).std() > 0.01
    np.testing.assert_allclose(out, t_out, rtol=1e-5, atol=1e-5)
