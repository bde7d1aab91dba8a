"""Dataset reading, sampling, seeded batching and prefetch; bad-input errors."""

import os
import shutil

import numpy as np
import pytest

from implicit_fields.data import datasets, onet_format, pipeline


def test_batch_indices_are_seeded_epochs():
    n, b = 10, 4
    seen = np.concatenate([pipeline.batch_indices(s, b, n, seed=3) for s in range(5)])  # 20 = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])  # a new permutation each epoch
    np.testing.assert_array_equal(pipeline.batch_indices(3, b, n, 3), pipeline.batch_indices(3, b, n, 3))
    assert not np.array_equal(pipeline.batch_indices(0, b, n, 3), pipeline.batch_indices(0, b, n, 4))


def test_dataset_reads_the_builtin_layout(tiny_dataset):
    ds = datasets.ShapesDataset(tiny_dataset, "train")
    assert len(ds) == 2 * 2 and {ds.category_name(c) for c in ds.categories} == {"chair", "mug"}
    d = ds.load(0)
    assert d["points"].shape == (4096, 3) and d["points"].dtype == np.float32
    assert d["occupancies"].dtype == bool and 0 < d["occupancies"].mean() < 1
    assert d["surface_points"].shape == d["surface_normals"].shape == (4096, 3)
    assert np.abs(d["surface_points"]).max() <= 0.5 + 1e-3
    np.testing.assert_allclose(np.linalg.norm(d["surface_normals"], axis=1), 1.0, atol=2e-3)


def test_train_batch_shapes_noise_and_determinism(tiny_dataset):
    ds = datasets.ShapesDataset(tiny_dataset, "train")
    kw = dict(batch_size=3, seed=0, num_points=50, num_inputs=20, input_noise=0.005)
    b1 = pipeline.make_train_batch(ds, 7, **kw)
    b2 = pipeline.make_train_batch(ds, 7, **kw)
    b3 = pipeline.make_train_batch(ds, 8, **kw)
    assert b1["points"].shape == (3, 50, 3) and b1["occupancies"].shape == (3, 50)
    assert b1["inputs"].shape == (3, 20, 3)
    for k in b1:
        np.testing.assert_array_equal(b1[k], b2[k])
    assert not np.array_equal(b1["points"], b3["points"])
    # Without noise the inputs are exact surface points; with noise they are off by ~0.005.
    d = ds.load(int(pipeline.batch_indices(7, 3, len(ds), 0)[0]))
    rng = np.random.default_rng(0)
    clean = datasets.sample_item(d, rng, 10, 2000, 0.0, 0.0)["inputs"]
    noisy = datasets.sample_item(d, np.random.default_rng(0), 10, 2000, 0.005, 0.0)["inputs"]
    assert np.isin(clean[:, 0], d["surface_points"][:, 0]).all()
    np.testing.assert_allclose(np.std(noisy - clean), 0.005, rtol=0.1)


def test_prefetch_yields_in_order_and_reraises():
    out = list(pipeline.prefetch(lambda s: {"x": np.full(2, s)}, 3, 7))
    assert [int(b["x"][0]) for b in out] == [3, 4, 5, 6]

    def bad(step):
        if step == 2:
            raise ValueError("broken object file")
        return {"x": np.zeros(1)}

    with pytest.raises(ValueError, match="broken object file"):
        list(pipeline.prefetch(bad, 0, 5))


def _copy(tiny_dataset, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dst)
    return str(dst)


def test_missing_and_malformed_files_name_the_file(tiny_dataset, tmp_path):
    path = _copy(tiny_dataset, tmp_path)
    ds = datasets.ShapesDataset(path, "train", cache=False)
    victim = os.path.join(ds.model_dir(0), "points.npz")
    os.remove(victim)
    with pytest.raises(onet_format.DataFormatError, match="points.npz"):
        ds.load(0)
    np.savez(victim, pts=np.zeros((5, 3)), occupancies=np.zeros(1, np.uint8), loc=np.zeros(3), scale=1.0)
    with pytest.raises(onet_format.DataFormatError, match=r"points.npz.*points"):
        ds.load(0)
    pc = os.path.join(ds.model_dir(1), "pointcloud.npz")
    good = np.load(pc)
    pts = good["points"].astype(np.float32)
    pts[3] = np.nan
    np.savez(pc, points=pts.astype(np.float16), normals=good["normals"], loc=good["loc"], scale=good["scale"])
    with pytest.raises(onet_format.DataFormatError, match=r"pointcloud.npz.*(NaN|nan|finite)"):
        ds.load(1)


def test_empty_split_and_unknown_category_are_clear_errors(tiny_dataset, tmp_path):
    path = _copy(tiny_dataset, tmp_path)
    cat = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))[0]
    open(os.path.join(path, cat, "val.lst"), "w").close()
    with pytest.raises(onet_format.DataFormatError, match="val.lst"):
        datasets.ShapesDataset(path, "val")
    with pytest.raises(ValueError, match="not in dataset"):
        datasets.ShapesDataset(path, "train", categories=["99999999"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.ShapesDataset(str(tmp_path / "nowhere"), "train")
