"""Occupancy Flow: seconds per sequence against MISE at every frame, ODE evaluations, step memory.

In one run:

  * seconds per window of 17 frames (`data.length`) of a trained run (`--workdir`), for the
    windows of its test split: Occupancy Flow (MISE once at t = 0, then the vertices
    carried through the 17 frame times by one ODE solve) against the ONet-4D-style baseline
    (MISE at every frame, each query pulled back to t = 0 through the flow), the same
    network and MISE settings; the ratio is the original's structural speed claim, measured.
    Every function is compiled in a first untimed pass;
  * the ODE's function evaluations per integration (counted: `flow.num_function_evaluations`):
    a mesh's vertices from t = 0 through the frame times, and a training batch's points
    from t = 1 back to 0;
  * a training step with each adjoint ('backsolve', the original's continuous adjoint, and
    'checkpoint'): compiled temporary memory (XLA's `memory_analysis`), compile time and
    seconds per step, each as a ratio to the continuous adjoint's.

  python benchmarks/oflow.py --workdir runs/oflow           # a run of experiments/configs/oflow.py:cpu
  python benchmarks/oflow.py --workdir runs/oflow --full    # training step at the original's sizes
"""

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from implicit_fields import flow, trainer  # noqa: E402
from implicit_fields.methods.oflow import generation, task  # noqa: E402
from implicit_fields.methods.oflow import model as oflow_model  # noqa: E402


def load_config(arg):
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "configs")
    spec = importlib.util.spec_from_file_location("oflow_configs", os.path.join(path, "oflow.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def sequences(config, workdir, num_windows):
    """Seconds per window: MISE once plus the flow, against MISE at every frame."""
    model, state, meta = trainer.restore(config, workdir, "latest")
    variables = task.variables_of(state)
    ds = task.load_split(config, "test", points=False)
    order = generation.generation_windows(ds, num_windows)
    store = task.SequenceStore(ds, points=False, windows=order)
    encode = task.create_encode_fn(model)
    decode = task.create_decode_fn(model)
    push = task.create_push_forward_fn(model, config.ode)
    pull = task.create_pull_back_fn(model, config.ode)
    times = task.frame_times(config.data.length)
    gen = config.generate
    print(
        f"checkpoint step {meta['step']}; MISE {gen.resolution0}^3 x {gen.upsampling_steps} upsamplings "
        f"(to {gen.resolution0 * 2**gen.upsampling_steps}^3); {len(times)} frames; "
        f"device {jax.devices()[0].platform}"
    )
    rows = []
    for timed in (False, True):  # The first pass compiles every function on the first window.
        for index in order if timed else order[:1]:
            seq, start = store.sequence(index)
            inputs = task.window_inputs(config, seq, start, np.random.default_rng([config.seed, index, 19]))
            codes = encode(variables, jnp.asarray(inputs))
            jax.block_until_ready(codes)
            t0 = time.perf_counter()
            vertices, faces, _ = generation.extract(config, lambda p, c=codes: decode(variables, c, p))
            t_mise = time.perf_counter() - t0
            t0 = time.perf_counter()
            traj = generation.flow_vertices(push, variables, codes, vertices, times, gen.flow_chunk)
            t_flow = time.perf_counter() - t0
            baseline, t_base = generation.baseline_meshes(config, variables, codes, decode, pull, times)
            if timed:
                rows.append((index, len(vertices), t_mise, t_flow, t_base, codes, traj))
                print(
                    f"  window {index:3d} ({ds.windows[index][1]} from {start}): {len(vertices):6d} vertices;"
                    " "
                    f"OFlow {t_mise + t_flow:6.2f} s (MISE t=0 {t_mise:5.2f} + flow {t_flow:5.2f}); "
                    f"MISE every frame {t_base:6.2f} s; ratio {t_base / (t_mise + t_flow):5.1f}x"
                )
    oflow_s = np.mean([r[2] + r[3] for r in rows])
    base_s = np.mean([r[4] for r in rows])
    print(
        f"seconds per {len(times)}-frame sequence: OFlow {oflow_s:.2f}, MISE at every frame {base_s:.2f} "
        f"-> OFlow is {base_s / oflow_s:.1f}x faster"
    )
    # Function evaluations of the vertices' integration (forward, the generation's solve).
    _, c_t, _, z_t = rows[0][5]
    field = oflow_model.batch_velocity_fn(model)
    vertices = jnp.asarray(rows[0][6][0][None])
    nfe = flow.num_function_evaluations(
        field,
        (state.params, c_t[None], z_t[None]),
        vertices,
        jnp.asarray(times),
        rtol=config.ode.rtol,
        atol=config.ode.atol,
    )
    print(
        f"ODE function evaluations, {vertices.shape[1]} vertices t = 0 -> 1 through {len(times)} times: {nfe}"
    )
    return model, state


def training_step(config, model, state, adjoints=("backsolve", "checkpoint"), steps=5):
    """Compiled temporary memory, compile time and seconds of a training step per adjoint."""
    store = task.SequenceStore(task.load_split(config, "train"))
    batch = jax.tree.map(jnp.asarray, task.make_batch(config, store, 0))
    c_s, c_t = model.apply(task.variables_of(state), batch["inputs"], method=oflow_model.OccupancyFlow.encode)
    z = jnp.zeros((c_t.shape[0], model.z_dim), jnp.float32)
    field = oflow_model.batch_velocity_fn(model)
    nfe = flow.num_function_evaluations(
        field,
        (state.params, c_t, z),
        batch["points_t"],
        jnp.asarray([1.0, 0.0]),
        rtol=config.ode.rtol,
        atol=config.ode.atol,
    )
    b, n = batch["points_t"].shape[:2]
    print(f"ODE function evaluations, a training batch ({b} x {n} points) t = 1 -> 0: {nfe}")
    results = {}
    for adjoint in adjoints:
        cfg = config.copy_and_resolve_references()
        cfg.ode.adjoint = adjoint
        loss = functools.partial(oflow_model.compute_loss, model, cfg)

        def step(params, batch_stats, batch, key, loss=loss):
            (value, (_, stats)), grads = jax.value_and_grad(
                lambda p: loss(p, batch_stats, batch, key), has_aux=True
            )(params)
            return value, grads, stats

        t0 = time.perf_counter()
        compiled = jax.jit(step).lower(state.params, state.batch_stats, batch, jax.random.key(0)).compile()
        t_compile = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        temp = mem.temp_size_in_bytes if mem is not None else float("nan")
        jax.block_until_ready(compiled(state.params, state.batch_stats, batch, jax.random.key(0)))
        t0 = time.perf_counter()
        for i in range(steps):
            out = compiled(state.params, state.batch_stats, batch, jax.random.key(i))
        jax.block_until_ready(out)
        results[adjoint] = (temp, t_compile, (time.perf_counter() - t0) / steps)
    base = results[adjoints[0]]
    print(f"training step, batch {b} x {n} points (+ {n} at t = 0), velocity hidden {model.velocity_hidden}:")
    for adjoint, (temp, tc, ts) in results.items():
        print(
            f"  {adjoint:10s} temp memory {temp / 2**20:8.1f} MiB ({temp / base[0]:4.2f}x)  "
            f"compile {tc:5.1f} s  "
            f"step {ts:6.3f} s ({ts / base[2]:4.2f}x)"
        )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True, help="a trained run of experiments/configs/oflow.py")
    parser.add_argument("--config", default="cpu", help="the run's config argument (default: cpu)")
    parser.add_argument("--windows", type=int, default=2, help="test windows timed")
    parser.add_argument("--full", action="store_true", help="training step at the original's sizes")
    args = parser.parse_args()
    if not os.path.isdir(args.workdir):
        parser.error(f"--workdir {args.workdir!r}: no such run; train one first")
    config = load_config(args.config)
    config.logging.progress = False
    model, state = sequences(config, args.workdir, args.windows)
    if args.full:
        full = load_config("full")
        full.data = config.data  # The same windows, at the original's batch and point counts.
        full.data.points_subsample, full.train.batch_size = 512, 16
        model = task.create_model(full)
        state = task.init_state(full, model, jax.random.key(0))
        config = full
    training_step(config, model, state)


if __name__ == "__main__":
    main()
