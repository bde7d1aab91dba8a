"""Tests of the .binvox format: exact bytes, round trips, errors and voxels to mesh."""

import io

import numpy as np
import pytest

from implicit_fields.data import binvox


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
