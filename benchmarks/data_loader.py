"""Batches per second of the training loader, against the train step and a GPU step of 20 ms.

Builds the default point-cloud ONet's training batches (64 objects x 2048 query
points plus 300 input points) of the built-in dataset (the quick
start's, generated at data/builtin if it is missing) the way the trainer does
(`trainer.host_batches`, `pipeline.make_train_batch`): in the trainer's process
(0 workers) or in 1 and 2 grain worker processes, from the in-memory cache
(`data.cache=True`: each process loads every object once, then samples from
memory) and straight from the files (`data.cache=False`: every batch reads 64
points.npz and pointcloud.npz, as a dataset too large to cache would).

Printed for each case: steady-state batches/s (after a warm-up that fills the
caches), the time to the first batch (worker start), and the rate as a ratio
to 50 batches/s (a GPU step of 20 ms, the target) and to the default model's
jitted train step measured on this machine in the same run.

  python benchmarks/data_loader.py                        # 0/1/2 workers, cache and files
  python benchmarks/data_loader.py --workers 0 2 --batches 200 --no-train-step
"""

import argparse
import functools
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.configs import onet as onet_configs  # noqa: E402
from implicit_fields import train_utils, trainer  # noqa: E402
from implicit_fields.data import builtin, datasets, pipeline  # noqa: E402
from implicit_fields.methods import onet  # noqa: E402
from implicit_fields.methods.onet import task  # noqa: E402

GPU_STEP_RATE = 50.0  # batches/s: a GPU train step of 20 ms.


def loader_rate(batch_fn, workers: int, warmup: int, batches: int):
    """(seconds to the first batch, steady batches/s) of `host_batches` with `workers`."""
    t0 = time.perf_counter()
    source = trainer.host_batches(batch_fn, 0, warmup + batches, workers=workers, buffer_size=2)
    next(source)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        next(source)
    t1 = time.perf_counter()
    count = 0
    for _ in source:
        count += 1
    rate = count / (time.perf_counter() - t1)
    source.close()
    return first, rate


def train_step_rate(config, batch, repeats: int) -> float:
    """Steps/s of the default model's jitted train step on this machine (after compiling)."""
    model = onet.create_model(config)
    mesh = train_utils.create_mesh()
    repl, data = train_utils.shardings(mesh)
    state = jax.device_put(onet.init_state(config, model, jax.random.key(0)), repl)
    dbatch = jax.device_put(batch, data)
    step = train_utils.create_train_step(functools.partial(task.loss_fn, model), mesh)
    state, metrics = step(state, dbatch, ())
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = step(state, dbatch, ())
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    return 1.0 / float(np.median(times))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/builtin", help="the dataset (built-in: made if missing)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sources", nargs="+", default=["cache", "files"], choices=["cache", "files"])
    parser.add_argument("--batches", type=int, default=300, help="timed batches from the cache")
    parser.add_argument("--file-batches", type=int, default=20, help="timed batches from the files")
    parser.add_argument("--train-repeats", type=int, default=2, help="timed train steps")
    parser.add_argument("--no-train-step", action="store_true", help="skip the train step's rate")
    args = parser.parse_args()
    if args.batch < 1 or args.points < 1 or args.batches < 1 or args.file_batches < 1:
        parser.error("--batch, --points, --batches and --file-batches must be >= 1")
    if any(w < 0 for w in args.workers):
        parser.error("--workers must be >= 0")

    # The default (full) model and batch, on the quick start's built-in data (60 objects a category).
    config = onet_configs.get_config("full")
    cpu_data = onet_configs.get_config("cpu").data
    config.data.builtin_objects_per_category = cpu_data.builtin_objects_per_category
    config.data.path = args.data
    config.train.batch_size = args.batch
    config.data.points_subsample = args.points
    builtin.ensure_dataset(config.data, progress=True)
    print(
        f"loader: {args.batch} objects x {args.points} points + {config.data.pointcloud_n} input points "
        f"per batch, {args.data}; {os.cpu_count()} CPU cores; device {jax.devices()[0].platform}"
    )
    step_rate = None
    if not args.no_train_step:
        dataset = datasets.from_config(config.data, config.data.train_split, cache=True)
        batch = pipeline.make_train_batch(
            dataset, 0, args.batch, 0, args.points, config.data.pointcloud_n, config.data.pointcloud_noise
        )
        step_rate = train_step_rate(config, batch, args.train_repeats)
        print(f"train step (default model, jitted): {step_rate:.3f} steps/s ({1 / step_rate:.3f} s/step)")
    for source in args.sources:
        cache = source == "cache"
        for workers in args.workers:
            dataset = datasets.from_config(config.data, config.data.train_split, cache=cache)
            batch_fn = functools.partial(
                pipeline.make_train_batch,
                dataset,
                batch_size=args.batch,
                seed=0,
                num_points=args.points,
                num_inputs=config.data.pointcloud_n,
                input_noise=config.data.pointcloud_noise,
                points_jitter=config.data.points_jitter,
            )
            # From the cache, every process (the trainer's or each worker) first loads every
            # object: the warm-up covers three epochs of batches.
            epochs = -(-3 * len(dataset) // args.batch)
            warmup = max(2, epochs * max(workers, 1)) if cache else 2
            timed = args.batches if cache else args.file_batches
            first, rate = loader_rate(batch_fn, workers, warmup, timed)
            line = (
                f"{source:5s} {workers} worker{'s' if workers != 1 else ' '}: {rate:8.1f} batches/s "
                f"({rate / GPU_STEP_RATE:6.2f}x the 50/s of a 20 ms GPU step"
            )
            if step_rate:
                line += f", {rate / step_rate:8.1f}x this machine's train step"
            print(line + f")  first batch after {first:.1f} s")


if __name__ == "__main__":
    main()
