"""Voxel super-resolution: binvox I/O, voxelisation of the built-in shapes, the 3-D CNN
encoder, and the voxel model training, meshing and evaluating end to end."""

import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import main
from experiments.configs import tiny_voxels
from implicit_fields import binvox, encoders, models, train_utils, vis
from implicit_fields.data import builtin, datasets, pipeline
from implicit_fields.shapes import Box, Shape, Sphere

# --------------------------------------------------------------------------------------
# .binvox
# --------------------------------------------------------------------------------------


def test_binvox_round_trip_and_exact_bytes(tmp_path):
    rng = np.random.default_rng(0)
    grids = [
        rng.uniform(size=(32, 32, 32)) < 0.3,
        np.zeros((32, 32, 32), bool),  # one value: runs split at 255
        np.ones((8, 8, 8), bool),
    ]
    for i, grid in enumerate(grids):
        path = tmp_path / f"g{i}.binvox"
        binvox.write_binvox(path, grid)
        back = binvox.read_binvox(path)
        np.testing.assert_array_equal(back.data, grid)
        assert back.dims == grid.shape and back.axis_order == "xyz"
        assert back.translate == binvox.UNIT_CUBE_TRANSLATE and back.scale == binvox.UNIT_CUBE_SCALE
        raw = binvox.read_binvox(path, fix_coords=False)
        np.testing.assert_array_equal(raw.data, np.transpose(grid, (0, 2, 1)))
    # The format: header lines, then (value, count) pairs over the xzy order (y fastest,
    # flat index x * D1 * D2 + z * D2 + y).
    grid = np.zeros((2, 2, 2), bool)
    grid[0, 1, 0] = True  # x=0, y=1, z=0 -> flat index 1
    grid[1, 0, 1] = True  # x=1, y=0, z=1 -> flat index 1 * 4 + 1 * 2 + 0 = 6
    buf = tmp_path / "small.binvox"
    binvox.write_binvox(buf, grid, translate=(0.0, 0.0, 0.0), scale=1.0)
    assert buf.read_bytes() == (
        b"#binvox 1\ndim 2 2 2\ntranslate 0.0 0.0 0.0\nscale 1.0\ndata\n"
        + bytes([0, 1, 1, 1, 0, 4, 1, 1, 0, 1])
    )
    np.testing.assert_array_equal(binvox.read_binvox(io.BytesIO(buf.read_bytes())).data, grid)
    assert binvox.encode_rle(np.zeros(600, bool)) == bytes([0, 255, 0, 255, 0, 90])


def test_binvox_errors_name_the_file(tmp_path):
    good = tmp_path / "good.binvox"
    binvox.write_binvox(good, np.ones((4, 4, 4), bool))
    data = good.read_bytes()
    cases = {
        "missing.binvox": (None, "file not found"),
        "text.binvox": (b"hello\n", "not a binvox file"),
        "truncated.binvox": (data[:-1], "odd number of bytes"),
        "short.binvox": (data[:-2], "holds 0 voxels but the header's dims give 64"),
        "value.binvox": (data[:-2] + bytes([2, 64]), "values must be 0 or 1"),
        "dims.binvox": (data.replace(b"dim 4 4 4", b"dim 4 4"), "dim D0 D1 D2"),
        "noheader.binvox": (b"#binvox 1\ndim 4 4 4\n", "unexpected end of file"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(binvox.BinvoxError) as err:
            binvox.read_binvox(path)
        assert str(path) in str(err.value) and problem in str(err.value), str(err.value)


def test_voxels_to_mesh_is_closed_and_has_the_voxel_volume():
    import trimesh

    occ = np.zeros((6, 6, 6), bool)
    occ[1:5, 1:3, 1:4] = True
    occ[3:6, 2:6, 2:3] = True  # an L-shaped solid touching the grid's border
    vertices, faces = binvox.voxels_to_mesh(occ)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(occ.sum() / 6**3, rel=1e-6)  # outward faces
    assert vertices.max() == pytest.approx(0.5) and vertices.min() == pytest.approx(-0.5 + 1 / 6)
    # Any grid: the signed volume of the boundary is the occupied volume.
    occ = np.random.default_rng(1).uniform(size=(6, 6, 6)) < 0.4
    vertices, faces = binvox.voxels_to_mesh(occ)
    assert trimesh.Trimesh(vertices, faces, process=False).volume == pytest.approx(occ.sum() / 6**3)


# --------------------------------------------------------------------------------------
# Voxelisation of the exact shapes.
# --------------------------------------------------------------------------------------


def _box_distance(center, lo, hi):
    """Distance from a point to each voxel box [lo, hi] ([R^3, 3] corners)."""
    d = np.maximum(np.maximum(lo - center, 0.0), center - hi)
    return np.linalg.norm(np.maximum(d, 0.0), axis=-1)


def test_voxelisation_marks_exactly_the_voxels_the_solid_meets():
    res = 16
    sphere = Shape([Sphere(0.31, translation=[0.03, -0.05, 0.02])])
    occ = builtin.voxelize_shape(sphere, res)
    idx = np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lo, hi = idx / res - 0.5, (idx + 1) / res - 0.5
    dist = _box_distance(np.array([0.03, -0.05, 0.02]), lo, hi).reshape(res, res, res)
    meets = dist <= 0.31
    clear = np.abs(dist - 0.31) > 1e-3  # skip voxels the surface only grazes
    np.testing.assert_array_equal(occ[clear], meets[clear])
    # Axis order: a box long along x gives a grid long along the first axis.
    box = Shape([Box([0.4, 0.1, 0.05])])
    occ = builtin.voxelize_shape(box, res)
    extent = [np.ptp(np.nonzero(occ)[a]) + 1 for a in range(3)]
    assert extent[0] > extent[1] > extent[2]
    # Centres of occupied voxels follow binvox.voxel_centers's order.
    centers = binvox.voxel_centers(res)
    inside = box.contains(centers.astype(np.float64)).reshape(res, res, res)
    assert inside.sum() > 0 and not (inside & ~occ).any()


def test_add_voxels_to_the_builtin_dataset(tiny_dataset):
    cat = os.path.join(tiny_dataset, "03001627", "obj_000000")
    builtin.add_voxels(tiny_dataset, 16, num_workers=0, progress=False)
    assert builtin.add_voxels(tiny_dataset, 16, num_workers=0, progress=False) == 0  # nothing left
    vox = binvox.read_binvox(os.path.join(cat, binvox.VOXELS_FILE))
    with open(os.path.join(cat, "shape.json")) as f:
        shape = Shape.from_dict(json.load(f))
    np.testing.assert_array_equal(vox.data, builtin.voxelize_shape(shape, 16))
    assert 0 < vox.data.mean() < 0.5
    # The dataset loads them (and checks their resolution).
    ds = datasets.ShapesDataset(tiny_dataset, "train", voxels=True, voxel_resolution=16)
    assert ds.load(0)["voxels"].shape == (16, 16, 16)
    with pytest.raises(binvox.BinvoxError, match="voxel grid is 16\\^3 but data.voxel_resolution is 32"):
        datasets.ShapesDataset(tiny_dataset, "train", voxels=True, voxel_resolution=32).load(0)
    batch = pipeline.make_train_batch(ds, 0, 3, 0, 20, 0, 0.0, input_type="voxels")
    assert batch["inputs"].shape == (3, 16, 16, 16) and batch["inputs"].dtype == np.float32


# --------------------------------------------------------------------------------------
# The encoder and the model.
# --------------------------------------------------------------------------------------


def test_voxel_encoder_shapes_parameters_and_jit(key):
    enc = encoders.VoxelEncoder()  # the original: c_dim 256, 32 -> 512 channels
    x = (jax.random.uniform(key, (2, 32, 32, 32)) < 0.3).astype(jnp.float32)
    shapes = jax.eval_shape(enc.init, key, x)
    # conv_in 896 + conv_0..3 (55,360 + 221,312 + 884,992 + 3,539,456) + fc 1,048,832
    assert sum(v.size for v in jax.tree.leaves(shapes)) == 5_750_848
    assert shapes["params"]["fc"]["kernel"].shape == (4096, 256)
    assert shapes["params"]["conv_3"]["kernel"].shape == (3, 3, 3, 256, 512)
    # The CPU im2col convolution equals XLA's, for both strides.
    x = x[:, :8, :8, :8, None]
    for stride in (1, 2):
        conv = encoders.Conv3d(5, stride=stride)
        v = conv.init(key, x)
        a = jax.jit(conv.apply)(v, x)
        b = jax.jit(encoders.Conv3d(5, stride=stride, impl="xla").apply)(v, x)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        assert a.shape == (2,) + (8 // stride,) * 3 + (5,)


def test_a_few_steps_lower_the_loss_on_a_tiny_batch(key):
    config = tiny_voxels.get_config()
    model = models.create_model(config.model)
    state = train_utils.create_train_state(key, model, config)
    rng = np.random.default_rng(0)
    vox = np.zeros((4, 16, 16, 16), np.float32)
    for b in range(4):  # boxes of different sizes
        h = 2 + 2 * b
        vox[b, 8 - h // 2 : 8 + h // 2, 4:12, 8 - h // 2 : 8 + h // 2] = 1
    points = rng.uniform(-0.55, 0.55, (4, 256, 3)).astype(np.float32)
    idx = np.clip(np.floor((points + 0.5) * 16).astype(int), 0, 15)
    occ = vox[np.arange(4)[:, None], idx[..., 0], idx[..., 1], idx[..., 2]]
    occ *= (np.abs(points) < 0.5).all(-1)
    batch = {"points": points, "occupancies": occ, "inputs": vox}
    step = jax.jit(train_utils.train_step)
    losses = []
    for _ in range(25):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses
    assert float(metrics["kl"]) == 0.0  # no latent


def test_voxel_model_trains_meshes_and_evaluates(tiny_dataset, tmp_path):
    config = tiny_voxels.get_config()
    config.data.path = tiny_dataset
    config.generate.method = "dense"  # MISE is tested on its own; one grid compiles faster here
    workdir = str(tmp_path / "run")
    result = main.run(config, workdir, "all")
    assert 0.0 <= result["iou"] <= 1.0 and np.isfinite(result["chamfer_l1"])
    records = json.load(open(os.path.join(workdir, "meshes", "generation.json")))
    assert len(records) == 2
    saved = np.load(os.path.join(workdir, records[0]["mesh"].replace(".ply", "_inputs.npz")))
    assert saved["inputs"].shape == (16, 16, 16)
    image = vis.read_png(os.path.join(workdir, "reconstruction.png"))
    assert image.std() > 5
