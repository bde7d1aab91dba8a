"""ConvONet against ONet: training points/s and MISE seconds per mesh, in one run.

For each model (ONet and ConvONet with planes and with a grid, at the sizes of
the `cpu` experiment configs unless `--size full`):
  * the jitted, donated train step (the trainer's) on the same batch of
    built-in-like inputs: compile time and points/s;
  * MISE on a built-in object: the input encoded once, then only the
    decoder at MISE's points (`resolution0` 32, 2 upsampling steps: 128^3),
    seconds per mesh after the first (compiled) one, and network queries.
    With `--runs name=WORKDIR ...` the trained weights of those runs are used
    (a trained field has a real surface for MISE to follow); otherwise the
    models are freshly initialised and trained for `--warmup-steps` steps on
    the built-in data, so that MISE sees a surface.
Ratios are against ONet measured in the same run.

  python benchmarks/convonet.py
  python benchmarks/convonet.py --runs onet=runs/compare_onet convonet_planes=runs/compare_planes
"""

import argparse
import functools
import os
import sys
import tempfile
import time

import jax
import numpy as np

from implicit_fields import mise, train_utils, trainer
from implicit_fields.data import builtin, datasets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from experiments.configs import convonet as convonet_configs  # noqa: E402
from experiments.configs import onet as onet_configs  # noqa: E402

MODELS = {
    "onet": lambda size: onet_configs.get_config(f"pointcloud,{size}"),
    "convonet_planes": lambda size: convonet_configs.get_config(f"planes,{size}"),
    "convonet_grid": lambda size: convonet_configs.get_config(f"grid,{size}"),
}


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def field_fns(model, variables):
    """Jitted encode(inputs [n, 3]) -> code and decode(code, points [N, 3]) -> logits [N]."""

    @jax.jit
    def encode(inputs):
        c = model.apply(variables, inputs[None], method=type(model).encode)
        return jax.tree_util.tree_map(lambda x: x[0], c)

    @jax.jit
    def decode(c, points):
        cb = jax.tree_util.tree_map(lambda x: x[None], c)
        return model.apply(variables, points[None], cb, method=type(model).decode)[0]

    return encode, decode


def measure(name, config, args, run_dir):
    method = trainer.load_method(config.method)
    builtin.ensure_dataset(config.data, progress=False)
    mesh = train_utils.create_mesh()
    repl, data_sharding = train_utils.shardings(mesh)
    model = method.create_model(config)
    with tempfile.TemporaryDirectory() as workdir:  # the objects' task writes nothing there
        task = method.create_task(config, workdir, model, mesh)
    state = jax.device_put(method.init_state(config, model, jax.random.key(0)), repl)
    batch = jax.device_put(task.batch_fn(0), data_sharding)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    step = train_utils.create_train_step(task.loss_fn, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, ()).compile()
    compile_s = time.perf_counter() - t0
    holder = [state]

    def run_step():
        holder[0], m = compiled(holder[0], batch)
        jax.block_until_ready(m)

    run_step()
    step_s = median_time(run_step, args.repeats)
    points = config.train.batch_size * config.data.points_subsample
    if run_dir:
        _, state, meta = trainer.restore(config, run_dir, "best")
        source = f"{run_dir} step {meta.get('step')}"
    else:
        for s in range(args.warmup_steps):
            holder[0], _ = compiled(holder[0], jax.device_put(task.batch_fn(s), data_sharding))
        state = holder[0]
        source = f"{args.warmup_steps} warm-up steps"
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    encode, decode = field_fns(model, variables)
    val = datasets.from_config(config.data, config.data.val_split, cache=False)
    times, queries = [], []
    for i in range(args.objects + 1):
        data = val.load(i % len(val))
        inputs = datasets.eval_inputs(
            data, i, config.data.pointcloud_n, config.data.pointcloud_noise, config.seed, "pointcloud"
        )
        t0 = time.perf_counter()
        c = encode(inputs)
        _, _, stats = mise.extract_mesh(
            functools.partial(decode, c),
            resolution0=32,
            upsampling_steps=2,
            threshold=config.field.threshold,
            padding=config.field.padding,
            return_stats=True,
        )
        if i:  # the first mesh compiles
            times.append(time.perf_counter() - t0)
            queries.append(stats["num_queries"])
    return {
        "name": name,
        "params": n_params,
        "compile_s": compile_s,
        "step_s": step_s,
        "points_per_s": points / step_s,
        "mise_s": float(np.median(times)),
        "queries": float(np.mean(queries)),
        "source": source,
        "batch": f"{config.train.batch_size} x {config.data.points_subsample} pts, "
        f"{config.data.pointcloud_n} inputs",
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("cpu", "full"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--objects", type=int, default=3, help="meshes timed per model")
    parser.add_argument("--warmup-steps", type=int, default=30)
    parser.add_argument("--runs", nargs="*", default=(), help="name=WORKDIR of trained runs to mesh")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    runs = dict(r.split("=", 1) for r in args.runs)
    print(f"devices: {jax.devices()}  |  size {args.size}  |  MISE 32^3 + 2 upsampling steps (128^3)")
    results = []
    for name in args.models:
        config = MODELS[name](args.size)
        config.logging.progress = False
        results.append(measure(name, config, args, runs.get(name)))
    base = next((r for r in results if r["name"] == "onet"), results[0])
    header = f"{'model':17s} {'params':>10s} {'compile s':>9s} {'s/step':>7s} {'points/s':>9s} {'x':>6s} "
    header += f"{'MISE s/mesh':>11s} {'x':>6s} {'queries':>9s}  batch; weights"
    print(header)
    for r in results:
        print(
            f"{r['name']:17s} {r['params']:10,d} {r['compile_s']:9.1f} {r['step_s']:7.3f} "
            f"{r['points_per_s']:9,.0f} {r['points_per_s'] / base['points_per_s']:6.2f} "
            f"{r['mise_s']:11.3f} {base['mise_s'] / r['mise_s']:6.2f} {r['queries']:9,.0f}  "
            f"{r['batch']}; {r['source']}"
        )
    print("x: throughput relative to ONet (higher is faster), for training and for meshing")


if __name__ == "__main__":
    main()
