"""Training step of volume rendering (NeRF) against surface rendering (DVR), and DVR's field as a volume.

For each model, in one run and on the same rays, the jitted training step of the
shared trainer (rendering, loss, backward, Adam update) from the shipped
experiment configs:

  * rays per second of the step (median of warm runs);
  * XLA's compiled memory analysis of the step (temporary buffers: the peak working
    memory beyond inputs and outputs) and the compile time;
  * the points the field is evaluated at per ray (DVR's marching points without
    gradient), and the ratios to the first model (the baseline: DVR's surface rendering,
    with the marching steps its schedule ends with).

  python benchmarks/rendering.py                     # the cpu sizes, 1024 rays
  python benchmarks/rendering.py --size full --rays 4096

Every model sees the same rays (a camera at distance 2 looking at the object); the
number of rays is the same for all (`--rays`), whatever the config's own batch.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments import cli  # noqa: E402
from experiments.configs import dvr as dvr_configs  # noqa: E402
from experiments.configs import nerf as nerf_configs  # noqa: E402
from implicit_fields import train_utils  # noqa: E402
from implicit_fields.methods.dvr import task as dvr_task  # noqa: E402
from implicit_fields.methods.nerf import task as nerf_task  # noqa: E402


def make_batch(n, seed=0):
    """Rays of a camera at distance 2 looking at the origin, spread over the object's image."""
    rng = np.random.default_rng(seed)
    pix = rng.uniform(-0.45, 0.45, size=(n, 2))
    return {
        "origins": jnp.asarray(np.tile([[0.0, 0.0, -2.0]], (n, 1)), jnp.float32),
        "directions": jnp.asarray(np.concatenate([pix, np.ones((n, 1))], axis=1), jnp.float32),
        "rgb": jnp.asarray(rng.uniform(size=(n, 3)), jnp.float32),
        "mask": jnp.asarray(np.linalg.norm(pix, axis=1) < 0.25),
        "depth": jnp.full((n,), jnp.inf, jnp.float32),
    }


def models(size):
    """(name, config, task module, static settings, field points per ray) of each model compared."""
    out = []
    for name, spec in (("DVR surface", ""), ("DVR volume", ",volume"), ("DVR surface + IDR colour", ",view")):
        config = dvr_configs.get_config(size + spec)
        steps = dvr_task.ray_steps(config, config.train.num_steps - 1)  # The schedule's last.
        if config.rays.mode == "volume":
            points = config.rays.volume_samples
        else:
            points = steps + config.loss.n_secant + 2 + (12 if config.loss.lambda_normal else 0)
        out.append(
            (
                f"{name} ({steps} marching steps)"
                if config.rays.mode != "volume"
                else f"{name} ({config.rays.volume_samples} samples)",
                config,
                dvr_task,
                {"ray_steps": steps},
                points,
            )
        )
    config = nerf_configs.get_config(size)
    r = config.rays
    out.append(
        (
            f"NeRF ({r.num_coarse} + {r.num_fine}, {config.model.net_depth}x{config.model.net_width})",
            config,
            nerf_task,
            {},
            r.num_coarse + (r.num_coarse + r.num_fine if r.num_fine else 0),
        )
    )
    return out


def measure(config, task, static, batch, repeats):
    model = task.create_model(config)
    state = task.init_state(config, model, jax.random.PRNGKey(0))

    def loss(params, batch_stats, b, rng):
        return task.loss_fn(model, config, params, batch_stats, b, rng, **static)

    step = jax.jit(lambda s, b: train_utils.train_step(s, b, loss_fn=loss, loop_key=jax.random.PRNGKey(1)))
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp = mem.temp_size_in_bytes if mem is not None else float("nan")
    state, _ = compiled(state, batch)
    jax.block_until_ready(state.params)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(state.params)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), temp, compile_s


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="cpu", choices=("cpu", "full", "tiny"), help="the configs' size")
    parser.add_argument("--rays", type=int, default=1024, help="rays per step, the same for every model")
    parser.add_argument("--repeats", type=int, default=5, help="warm steps timed (the median is shown)")
    args = parser.parse_args(argv)
    if args.rays < 1 or args.repeats < 1:
        cli.fail("--rays and --repeats must be >= 1")
    batch = make_batch(args.rays)
    print(f"training step, {args.rays} rays, configs '{args.size}'; device {jax.devices()[0].platform}")
    base = None
    for name, config, task, static, points in models(args.size):
        config.rays.per_step = args.rays
        seconds, temp, compile_s = measure(config, task, static, batch, args.repeats)
        rate = args.rays / seconds
        base = base or (rate, temp)
        print(
            f"  {name:<48} {points:4d} points/ray  {rate:9,.0f} rays/s ({rate / base[0]:5.2f}x)  "
            f"temp memory {temp / 2**20:8.1f} MiB ({temp / base[1]:5.2f}x)  compile {compile_s:5.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    cli.run(main)
