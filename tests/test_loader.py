"""The batch pipeline: the vectorised point batch, and worker processes (grain) that build batches.

The batch of a step is a function of (seed, step) alone: bitwise the same
whether it is built in the trainer's process or by 1 or 2 worker processes,
from the in-memory cache or from the files, and after a resume.
"""

import functools

import loader_fns
import numpy as np
import pytest

from implicit_fields import trainer
from implicit_fields.data import datasets, pipeline


def _per_item(dataset, step, batch_size, seed, num_points, num_inputs, noise, jitter, input_type, share):
    """The batch as `datasets.sample_item` draws it, object by object (the plain reference)."""
    index, count = share
    indices = pipeline.batch_indices(step, batch_size, len(dataset), seed)
    local = batch_size // count
    items = [
        datasets.sample_item(
            dataset.load(int(indices[slot])),
            np.random.default_rng([seed, step, slot]),
            num_points,
            num_inputs,
            noise,
            jitter,
            input_type,
        )
        for slot in range(index * local, (index + 1) * local)
    ]
    return {k: np.stack([item[k] for item in items]) for k in items[0]}


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize(
    "input_type, noise, jitter, share, cache",
    [
        ("pointcloud", 0.005, 1e-4, (0, 1), True),
        ("pointcloud", 0.0, 0.0, (0, 1), False),
        (None, 0.005, 1e-4, (0, 1), True),
        ("pointcloud", 0.005, 1e-4, (1, 2), True),
        ("pointcloud", 0.005, 1e-4, (2, 4), False),
    ],
)
def test_the_batched_point_sampler_draws_what_the_per_object_sampler_draws(
    tiny_config, input_type, noise, jitter, share, cache
):
    dataset = datasets.from_config(tiny_config.data, "train", cache=cache)
    for step in (0, 3):  # 3 crosses into the next epochs of 4 objects with a batch of 8.
        expected = _per_item(dataset, step, 8, 5, 64, 16, noise, jitter, input_type, share)
        got = pipeline.make_train_batch(
            dataset, step, 8, 5, 64, 16, noise, jitter, share[0], share[1], input_type=input_type
        )
        _assert_same(got, expected)


def test_workers_build_the_same_batches_in_the_same_order_and_pass_on_errors(tiny_config):
    dataset = datasets.from_config(tiny_config.data, "train")
    batch_fn = functools.partial(loader_fns.batch_or_error, dataset, fail_at=9)
    expected = [batch_fn(step) for step in range(2, 9)]
    # Through the trainer's prefetch (1 worker) and grain's iterator alone (2 workers).
    for batches in (
        trainer.prefetch(batch_fn, 2, 10, workers=1),
        trainer.host_batches(batch_fn, 2, 10, workers=2),
    ):
        for want in expected:
            _assert_same(next(batches), want)
        with pytest.raises(Exception, match="points.npz is truncated"):
            next(batches)
