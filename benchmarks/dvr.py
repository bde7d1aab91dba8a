"""DVR training step: the analytic depth gradient versus differentiating through the search.

For 16, 64 and 256 marching steps, in one run and on the same rays, it measures the
jitted DVR training step (surface depth + RGB, freespace, occupancy and normal losses,
forward and backward, Adam update) with `gradient="analytic"` (the custom_vjp:
implicit differentiation at the surface point) and `gradient="unrolled"` (autodiff
through marching and secant steps, what a plain implementation does):

  * XLA's compiled memory analysis of the step (temporary buffers: the peak working
    memory of the step beyond its inputs and outputs), and compile time;
  * rays per second of the whole step (median of warm runs);
  * the ratios unrolled / analytic.

The field is the DVR decoder plus a sphere prior (logit 20 (0.3 - |p|)), so rays
hit a surface as they do in training rather than all missing at initialisation.

  python benchmarks/dvr.py                      # 1024 rays, hidden 128
  python benchmarks/dvr.py --rays 2048 --hidden 512 --steps 16 64
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from implicit_fields.methods.dvr import model as dvr  # noqa: E402


def make_batch(n, seed=0):
    """Rays of a camera at distance 2 looking at the origin, about half on the sphere."""
    rng = np.random.default_rng(seed)
    pix = rng.uniform(-0.5, 0.5, size=(n, 2))
    o = np.tile(np.array([[0.0, 0.0, 2.0]]), (n, 1))
    w = np.concatenate([pix, -np.ones((n, 1))], axis=1)
    mask = np.linalg.norm(pix, axis=1) < 0.3 / 1.7
    return {
        "origins": jnp.asarray(o, jnp.float32),
        "directions": jnp.asarray(w, jnp.float32),
        "rgb": jnp.asarray(rng.uniform(size=(n, 3)), jnp.float32),
        "mask": jnp.asarray(mask),
        "depth": jnp.full((n,), jnp.inf, jnp.float32),
    }


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rays", type=int, default=1024, help="rays per step (original: 1024 per image)")
    parser.add_argument("--hidden", type=int, default=128, help="decoder width (original: 512)")
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64, 256], help="marching steps")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
        f"{args.rays} rays, DVR decoder hidden {args.hidden}"
    )
    decoder = dvr.DVRDecoder(hidden_dim=args.hidden)
    params = dvr.init_decoder(jax.random.key(0), decoder)
    net_logit, net_rgb = dvr.make_field_fns(decoder)

    def logit_fn(p, x):
        return net_logit(p, x) + 20.0 * (0.3 - jnp.linalg.norm(x, axis=-1))

    batch = make_batch(args.rays)
    opt = optax.adam(1e-4)
    opt_state = opt.init(params)
    rows = []
    for n_steps in args.steps:
        row = {"steps": n_steps}
        for mode in ("analytic", "unrolled"):

            def step(p, s, key, mode=mode, n_steps=n_steps):
                (loss, stats), g = jax.value_and_grad(dvr.dvr_losses, argnums=2, has_aux=True)(
                    logit_fn, net_rgb, p, batch, key, n_steps=n_steps, num_images=1, gradient=mode
                )
                updates, s = opt.update(g, s, p)
                return optax.apply_updates(p, updates), s, loss, stats["mask_iou"]

            t0 = time.perf_counter()
            compiled = jax.jit(step).lower(params, opt_state, jax.random.key(1)).compile()
            t_compile = time.perf_counter() - t0
            mem = compiled.memory_analysis()
            temp = mem.temp_size_in_bytes if mem is not None else float("nan")
            out = compiled(params, opt_state, jax.random.key(1))
            jax.block_until_ready(out)
            t = median_time(
                lambda c=compiled: jax.block_until_ready(c(params, opt_state, jax.random.key(1))),
                args.repeats,
            )
            row[mode] = dict(temp=temp, time=t, compile=t_compile, loss=float(out[2]), iou=float(out[3]))
            print(
                f"steps {n_steps:4d} {mode:9s} temp memory {temp / 2**20:9.1f} MiB  "
                f"step {t * 1e3:8.1f} ms  "
                f"{args.rays / t:10,.0f} rays/s  compile {t_compile:5.1f} s  loss {float(out[2]):.2f}  "
                f"mask IoU {float(out[3]):.3f}",
                flush=True,
            )
        rows.append(row)

    print("\n== summary ==")
    print(
        f"{'steps':>5} {'analytic MiB':>13} {'unrolled MiB':>13} {'mem ratio':>10} "
        f"{'analytic rays/s':>16} {'unrolled rays/s':>16} {'speed ratio':>12}"
    )
    for r in rows:
        a, u = r["analytic"], r["unrolled"]
        print(
            f"{r['steps']:>5} {a['temp'] / 2**20:13.1f} {u['temp'] / 2**20:13.1f} "
            f"{u['temp'] / a['temp']:9.1f}x "
            f"{args.rays / a['time']:16,.0f} {args.rays / u['time']:16,.0f} {u['time'] / a['time']:11.2f}x"
        )
    flat = len({r["analytic"]["temp"] for r in rows}) == 1
    print(f"analytic-gradient memory flat across steps: {flat}")


if __name__ == "__main__":
    main()
