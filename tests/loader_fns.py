"""Batch functions for the worker tests: a light module, so that each spawned worker imports little."""

from implicit_fields.data import pipeline


def batch_or_error(dataset, step, fail_at):
    """The batch of `step`, or (at `fail_at`) the kind of error a damaged file gives."""
    if step == fail_at:
        raise ValueError("object 7: points.npz is truncated")
    return pipeline.make_train_batch(dataset, step, 4, 0, 32, 8, 0.005)
