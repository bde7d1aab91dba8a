"""Tests of the built-in dataset: generation, splits, voxelisations and single-view renders."""

import json
import os
import re

import numpy as np
import pytest

from implicit_fields import vis
from implicit_fields.data import binvox, builtin, datasets, onet_format, pipeline, shape_render
from implicit_fields.data.onet_format import load_pointcloud_npz, load_points_npz, read_metadata, read_split
from implicit_fields.data.shapes import CATEGORIES, Box, Shape, Sphere

# --------------------------------------------------------------------------------------
# Built-in dataset.
# --------------------------------------------------------------------------------------

_SMALL = dict(objects_per_category=2, num_points=600, num_surface_points=300, progress=False)


def _read_dataset(root):
    out = {}
    for synset in CATEGORIES:
        for split in ("train", "test"):
            for mid in read_split(os.path.join(root, synset), split):
                folder = os.path.join(root, synset, mid)
                with open(os.path.join(folder, "shape.json")) as f:
                    record = json.load(f)
                out[(synset, mid)] = (
                    load_points_npz(os.path.join(folder, "points.npz")),
                    load_pointcloud_npz(os.path.join(folder, "pointcloud.npz")),
                    record,
                )
    return out


def test_builtin_dataset_deterministic_across_workers(tmp_path):
    a = builtin.generate_dataset(tmp_path / "a", num_workers=0, seed=3, **_SMALL)
    b = builtin.generate_dataset(tmp_path / "b", num_workers=2, seed=3, **_SMALL)
    assert read_metadata(a) == {s: {"id": s, "name": n} for s, n in CATEGORIES.items()}
    da, db = _read_dataset(a), _read_dataset(b)
    assert sorted(da) == sorted(db) and len(da) == 2 * len(CATEGORIES)
    for key in da:
        (pa, ca, ra), (pb, cb, rb) = da[key], db[key]
        for x, y in ((pa, pb), (ca, cb)):
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
        assert ra == rb
        # The stored labels are exactly the shape's occupancy at the stored points.
        shape = Shape.from_dict(ra)
        np.testing.assert_array_equal(shape.contains(pa["points"]), pa["occupancies"])
        assert pa["points"].shape == (600, 3) and ca["points"].shape == (300, 3)
        assert np.abs(pa["points"]).max() <= 0.55 and np.abs(ca["points"]).max() <= 0.5 + 1e-3
        np.testing.assert_allclose(pa["loc"], ra["loc"])
        assert pa["scale"] == ra["scale"] == ca["scale"]
        assert pa["occupancies"].mean() < 0.5
    # Another seed gives other objects.
    c = builtin.generate_dataset(tmp_path / "c", categories=["mug"], num_workers=0, seed=4, **_SMALL)
    pc = load_points_npz(os.path.join(c, "03797390", "obj_000000", "points.npz"))
    assert not np.array_equal(pc["points"], da[("03797390", "obj_000000")][0]["points"])


def test_builtin_resume_and_param_check(tmp_path):
    root = tmp_path / "d"
    builtin.generate_dataset(root, categories=["chair", "04379243"], num_workers=0, **_SMALL)
    chair = root / "03001627"
    assert read_split(chair, "train") == ["obj_000000"] and read_split(chair, "test") == ["obj_000001"]
    assert sorted(os.listdir(root)) == ["03001627", "04379243", "metadata.yaml"]
    # Simulate an interrupted run: a stale temp folder and a missing object.
    stale = chair / ".tmp-obj_000001-12345"
    stale.mkdir()
    (stale / "points.npz").write_bytes(b"partial")
    mtime = os.path.getmtime(chair / "obj_000000" / "points.npz")
    for name in os.listdir(chair / "obj_000001"):
        os.remove(chair / "obj_000001" / name)
    os.rmdir(chair / "obj_000001")
    builtin.generate_dataset(root, categories=["chair"], num_workers=0, **_SMALL)
    assert not stale.exists()
    assert os.path.getmtime(chair / "obj_000000" / "points.npz") == mtime  # Skipped.
    assert load_points_npz(chair / "obj_000001" / "points.npz")["points"].shape == (600, 3)
    with pytest.raises(ValueError, match="use another out_dir"):
        builtin.generate_dataset(root, categories=["chair"], num_workers=0, seed=9, **_SMALL)


def test_split_counts():
    assert builtin.split_counts(125, (0.7, 0.1, 0.2)) == [88, 12, 25]
    assert builtin.split_counts(10, (0.7, 0.1, 0.2)) == [7, 1, 2]
    assert builtin.split_counts(3, (0.7, 0.1, 0.2)) == [1, 1, 1]
    assert builtin.split_counts(2, (0.7, 0.1, 0.2)) == [1, 0, 1]
    assert builtin.split_counts(5, (1.0, 0.0, 0.0)) == [5, 0, 0]


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
# Single-view renders (img_choy2016).
# --------------------------------------------------------------------------------------


def test_images_of_the_builtin_dataset_and_the_reader(tiny_dataset, tmp_path):
    added = builtin.add_images(tiny_dataset, n_views=3, resolution=12, num_workers=1, progress=False)
    assert added == 8  # every object folder with a shape.json (2 categories x 4)
    assert builtin.add_images(tiny_dataset, n_views=3, resolution=12, num_workers=1, progress=False) == 0
    ds = datasets.ShapesDataset(tiny_dataset, "train", images=True)
    folder = os.path.join(ds.model_dir(0), builtin.IMAGES_DIR)
    assert sorted(os.listdir(folder)) == ["000.png", "001.png", "002.png", "cameras.npz", "images.json"]
    data = ds.load(0)
    assert data["images"].shape == (3, 12, 12, 3) and data["images"].dtype == np.uint8
    # White background around the object, the object in the middle, as the renderer draws it.
    assert (data["images"][:, 0, 0] == 255).all() and data["images"].min() < 200
    shape = onet_format.load_shape(ds.model_dir(0))
    cams = onet_format.load_cameras(os.path.join(folder, "cameras.npz"))
    view = shape_render.render_view(shape, {k: v[1] for k, v in cams.items()}, 12, 12)
    assert view["mask"].any()  # cameras.npz holds the cameras the views were rendered with
    np.testing.assert_array_equal(view["mask"], (data["images"][1] != 255).any(-1))
    np.testing.assert_array_equal(vis.read_png(os.path.join(folder, "001.png")), data["images"][1])
    # Deterministic per object: re-rendering gives the same bytes.
    before = open(os.path.join(folder, "002.png"), "rb").read()
    builtin.add_images(tiny_dataset, n_views=3, resolution=14, num_workers=1, progress=False)
    builtin.add_images(tiny_dataset, n_views=3, resolution=12, num_workers=1, progress=False)
    assert open(os.path.join(folder, "002.png"), "rb").read() == before
    # Resized on loading (the original's Resize(224)).
    resized = datasets.ShapesDataset(tiny_dataset, "train", images=True, img_size=20, cache=False).load(0)
    assert resized["images"].shape == (3, 20, 20, 3)
    # Training draws a random view per sample, evaluation view 0.
    seen = {
        int(
            np.argmin(
                [
                    np.abs(
                        datasets.object_inputs(data, np.random.default_rng(s), 0, 0.0, "img")
                        - data["images"][v] / 255.0
                    ).max()
                    for v in range(3)
                ]
            )
        )
        for s in range(20)
    }
    assert seen == {0, 1, 2}
    view0 = data["images"][0] / np.float32(255)
    np.testing.assert_array_equal(datasets.eval_inputs(data, 5, 0, 0.0, 0, "img"), view0)
    batch = pipeline.make_train_batch(ds, 3, 4, 0, 16, 0, 0.0, 0.0, input_type="img")
    again = pipeline.make_train_batch(ds, 3, 4, 0, 16, 0, 0.0, 0.0, input_type="img")
    assert batch["inputs"].shape == (4, 12, 12, 3)
    np.testing.assert_array_equal(batch["inputs"], again["inputs"])  # a function of (seed, step)


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("builtin_objects_per_category", 7, "config.data.builtin_objects_per_category: it has"),
        ("builtin_num_points", 123, "config.data.builtin_num_points: it has"),
        ("builtin_num_surface_points", 77, "config.data.builtin_num_surface_points: it has"),
        ("builtin_categories", ("chair", "lamp"), "config.data.builtin_categories: ['03636649'] missing"),
    ],
)
def test_a_dataset_generated_with_other_settings_is_refused_not_reused(tiny_config, key, value, shown):
    data = tiny_config.data
    before = sorted(os.listdir(data.path))
    data[key] = value
    with pytest.raises(ValueError, match=re.escape(shown)):
        builtin.ensure_dataset(data, progress=False)
    assert sorted(os.listdir(data.path)) == before  # Nothing generated over it.
    data.builtin = False  # A dataset of one's own: used as it is.
    assert builtin.ensure_dataset(data, progress=False) == data.path


def test_the_same_settings_or_a_subset_of_categories_reuse_the_dataset(tiny_config):
    data = tiny_config.data
    assert builtin.ensure_dataset(data, progress=False) == data.path
    data.builtin_categories = ("chair",)
    assert builtin.ensure_dataset(data, progress=False) == data.path


def test_a_dataset_path_that_is_a_file_is_named(tiny_config, tmp_path):
    (tmp_path / "data").write_text("")
    tiny_config.data.path = str(tmp_path / "data")
    with pytest.raises(NotADirectoryError, match=r"config.data.path=.*data': is a file"):
        builtin.ensure_dataset(tiny_config.data, progress=False)
