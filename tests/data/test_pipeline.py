"""Tests of the training pipeline: seeded batch indices and batches (prefetch: tests/test_trainer.py)."""

import numpy as np

from implicit_fields.data import datasets, pipeline


def test_batch_indices_are_seeded_epochs():
    n, b = 10, 4
    seen = np.concatenate([pipeline.batch_indices(s, b, n, seed=3) for s in range(5)])  # 20 = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])  # a new permutation each epoch
    np.testing.assert_array_equal(pipeline.batch_indices(3, b, n, 3), pipeline.batch_indices(3, b, n, 3))
    assert not np.array_equal(pipeline.batch_indices(0, b, n, 3), pipeline.batch_indices(0, b, n, 4))


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
