"""Meshes per second of ONet's generation: one object at a time against several together.

Runs the real generation (`generation.generate_meshes`: encode, MISE, marching
cubes, the optional simplification and refinement, writing the PLYs) over the
first N (twice) and then the first 2N objects of a split, with `generate.batch_objects`
1 (`mise.extract_mesh` per object) and B (`mise.extract_meshes_batched`: one
jitted call per MISE level for B objects). The first run's rate includes the
compilations (what one generation run pays); the difference of the later two
runs gives the steady rate. Prints meshes/s, the ratios, and whether the two
settings gave the same meshes.

  python benchmarks/generation.py --workdir runs/onet_cpu            # a trained run (its config)
  python benchmarks/generation.py --objects 16 --batch 4 8           # a fresh default model (128^3)
"""

import argparse
import os
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.configs import onet as onet_configs  # noqa: E402
from implicit_fields import train_utils, trainer  # noqa: E402
from implicit_fields.data import builtin, reconstruction  # noqa: E402
from implicit_fields.methods import onet  # noqa: E402
from implicit_fields.methods.onet import generation  # noqa: E402


def timed_generation(config, model, variables, batch_objects: int, count: int, folder: str):
    """(seconds of a first run of `count` objects, steady seconds of `count` objects, records).

    The first run pays every compilation (what one generation run pays). Each
    later call of `generate_meshes` compiles its own field functions again (new
    closures) but finds the library's jitted functions compiled, so the steady
    cost of `count` objects is the time of 2 `count` minus that of `count`,
    both timed after the first run.
    """
    config.generate.batch_objects = batch_objects
    times, records = [], None
    for i, n in enumerate((count, count, 2 * count)):
        config.generate.max_objects = n
        t0 = time.perf_counter()
        workdir = os.path.join(folder, f"b{batch_objects}_{n}_{i}")
        out = generation.generate_meshes(config, workdir, model, variables)
        times.append(time.perf_counter() - t0)
        records = records or out
    return times[0], times[2] - times[1], records


def rate(n: int, seconds: float) -> str:
    """`n / seconds` as meshes/s, or n/a when timing noise leaves no positive difference."""
    return f"{n / seconds:6.2f}" if seconds > 0 else "   n/a"


def same_meshes(folder, a, b, records_a, records_b) -> bool:
    for ra, rb in zip(records_a, records_b):
        va, fa = reconstruction.load_mesh(os.path.join(folder, a, ra["mesh"]))
        vb, fb = reconstruction.load_mesh(os.path.join(folder, b, rb["mesh"]))
        if fa.shape != fb.shape or not np.array_equal(fa, fb) or not np.allclose(va, vb, atol=1e-5):
            return False
    return True


def main():
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--workdir", help="a trained ONet run (default: a fresh default model, full config)")
    parser.add_argument("--objects", type=int, default=16, help="N: objects of run 1 (2N in run 2)")
    parser.add_argument("--batch", type=int, nargs="+", default=[8], help="objects meshed together")
    parser.add_argument("--split", default=None, help="default: the config's generate.split")
    args = parser.parse_args()
    if args.objects < 1 or any(b < 2 for b in args.batch):
        parser.error("--objects must be >= 1 and every --batch >= 2")
    if args.workdir:
        config = trainer.load_run_config(args.workdir)
        if config.method != "onet":
            parser.error(f"--workdir {args.workdir}: a {config.method!r} run, not an ONet run")
        model, state, _ = trainer.restore(config, args.workdir, "best")
        what = args.workdir
    else:
        config = onet_configs.get_config("full")
        cpu_data = onet_configs.get_config("cpu").data
        config.data.builtin_objects_per_category = cpu_data.builtin_objects_per_category
        config.data.path = "data/builtin"
        model = onet.create_model(config)
        state = onet.init_state(config, model, train_utils.rng_keys(0)[0])
        what = "a fresh default model"
    builtin.ensure_dataset(config.data, progress=True)
    config.generate.num_pictures = 0
    config.logging.progress = False
    if args.split:
        config.generate.split = args.split
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    gen = config.generate
    print(
        f"generation of {args.objects} objects of {config.data.path}:{gen.split}, {what}; MISE "
        f"{gen.resolution0}^3 x 2^{gen.upsampling_steps}; device {jax.devices()[0].platform}"
    )
    with tempfile.TemporaryDirectory() as folder:
        n = args.objects
        first, steady, single = timed_generation(config, model, variables, 1, n, folder)
        print(f"one at a time      : {rate(n, steady)} meshes/s steady, {n / first:6.2f} with compiling")
        for b in args.batch:
            first_b, steady_b, records = timed_generation(config, model, variables, b, n, folder)
            same = same_meshes(folder, f"b1_{n}_0", f"b{b}_{n}_0", single, records)
            ratio = f"{steady / steady_b:.2f}x" if steady > 0 and steady_b > 0 else "n/a"
            print(
                f"{b:2d} objects at once: {rate(n, steady_b)} meshes/s steady, {n / first_b:6.2f} with "
                f"compiling; {ratio} one at a time ({first / first_b:.2f}x with "
                f"compiling); same meshes: {same}"
            )


if __name__ == "__main__":
    main()
