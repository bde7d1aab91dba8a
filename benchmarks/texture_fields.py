"""Texture Fields: pixels per second of a training step, and of rendering a view.

In one run, on synthetic inputs of the configured sizes (no dataset needed):

  * the jitted training step (loss, gradient, RMSprop update) of the conditional,
    VAE and GAN models: pixels per second (batch x img_size^2 per step), compile
    time, and each model's rate as a ratio to the conditional model's;
  * rendering one 256^2 view (`--render_size`) with the texture field (lift every depth pixel,
    one decoder query per pixel: no ray marching), against the network queries a
    ray-marched renderer of the same field would make for the same view
    (`--march_steps` points per pixel, DVR's first-stage count), measured, not
    extrapolated; the ratio is the speed-up depth lifting gives;
  * the host's batch assembly (`task.make_batch` on in-memory objects): batches
    per second, and its ratio to the training step's rate.

  python benchmarks/texture_fields.py               # the CPU config's sizes (train 32^2, cond 64^2)
  python benchmarks/texture_fields.py --full        # the original's (train 128^2, cond 224^2, batch 18)
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from implicit_fields import cameras, train_utils  # noqa: E402
from implicit_fields.methods.texture_fields import task  # noqa: E402


def load_config(kind, full):
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "configs")
    spec = importlib.util.spec_from_file_location("tf_configs", os.path.join(path, "texture_fields.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(f"{kind},{'full' if full else 'cpu'}")


def sphere_views(batch, size, n_points, input_size, seed=0):
    """Exact depth maps of a sphere of radius 0.4 from random cameras at distance 2.5."""
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("image", "depth", "world_mat", "camera_mat", "points", "normals", "condition")}
    for _ in range(batch):
        eye = rng.normal(size=3)
        cam = cameras.look_at_camera(2.5 * eye / np.linalg.norm(eye), focal=2.5)
        pix = cameras.pixel_grid(size, size).reshape(-1, 2)
        o, d = cameras.pixels_to_rays(pix, cam["camera_mat"], cam["world_mat"], np.eye(4))
        a, b, c = (d * d).sum(1), 2 * (o * d).sum(1), (o * o).sum(1) - 0.16
        disc = b * b - 4 * a * c
        t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        s = rng.normal(size=(n_points, 3))
        s /= np.linalg.norm(s, axis=1, keepdims=True)
        out["image"].append(rng.uniform(size=(size, size, 3)))
        out["depth"].append(t.reshape(size, size))
        out["world_mat"].append(cam["world_mat"])
        out["camera_mat"].append(cam["camera_mat"])
        out["points"].append(0.4 * s)
        out["normals"].append(s)
        out["condition"].append(rng.uniform(size=(input_size, input_size, 3)))
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def train_step_rate(kind, full, repeats):
    config = load_config(kind, full)
    model = task.create_model(config)
    state = task.init_state(config, model, jax.random.PRNGKey(0))
    b, s = config.train.batch_size, config.data.img_size
    batch = {
        k: jnp.asarray(v)
        for k, v in sphere_views(b, s, config.data.pointcloud_n, config.data.input_size).items()
    }
    loss = lambda p, bs, batch, rng: task.loss_fn(model, config, p, bs, batch, rng)  # noqa: E731
    step = jax.jit(
        lambda st, bt: train_utils.train_step(st, bt, loss_fn=loss, loop_key=jax.random.PRNGKey(1))
    )
    t0 = time.perf_counter()
    state, _ = jax.block_until_ready(step(state, batch))
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics["loss"]

    sec = timed(run, repeats)
    return {
        "kind": kind,
        "batch": b,
        "size": s,
        "seconds": sec,
        "pixels_per_s": b * s * s / sec,
        "compile": compile_s,
    }


def render_rates(full, march_steps, repeats, size):
    config = load_config("conditional", full)
    model = task.create_model(config)
    variables = task.init_variables(config, model, jax.random.PRNGKey(0))
    variables = {"params": variables["params"]["generator"], "batch_stats": variables["batch_stats"]}
    views = sphere_views(1, size, config.data.pointcloud_n, config.data.input_size)
    codes = task.create_codes_fn(config, model)(
        variables,
        jnp.asarray(views["points"]),
        jnp.asarray(views["normals"]),
        jnp.asarray(views["condition"]),
    )
    colour = task.create_colour_fn(model)
    g = model.generator

    @jax.jit
    def render(depth, world, camera, c, z):
        return g.apply(variables, depth, world, camera, c, z, method=g.render)[0]

    args = (
        jnp.asarray(views["depth"]),
        jnp.asarray(views["world_mat"]),
        jnp.asarray(views["camera_mat"]),
        *codes,
    )
    jax.block_until_ready(render(*args))
    lifted = timed(lambda: render(*args), repeats)
    # A marched renderer queries the field at march_steps points per pixel: the same decoder,
    # in chunks of one view's pixels (the lifted render's batch), timed in full.
    pts = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, size=(1, size * size, 3)), jnp.float32)
    jax.block_until_ready(colour(variables, pts, *codes))

    def marched():
        out = None
        for _ in range(march_steps):
            out = colour(variables, pts, *codes)
        return out

    marched_s = timed(marched, max(1, repeats // 2))
    return {"size": size, "lifted": lifted, "marched": marched_s, "pixels": size * size}


def batch_rate(full, repeats):
    config = load_config("conditional", full)
    s, i, n = config.data.img_size, config.data.input_size, config.data.builtin_num_surface_points
    rng = np.random.default_rng(0)

    class FakeCache:
        items = [
            {
                "images": rng.integers(0, 256, size=(10, s, s, 3), dtype=np.uint8),
                "depths": rng.uniform(1, 2, size=(10, s, s)).astype(np.float32),
                "world_mat": np.tile(np.eye(4, dtype=np.float32), (10, 1, 1)),
                "camera_mat": np.tile(np.eye(4, dtype=np.float32), (10, 1, 1)),
                "input_images": rng.integers(0, 256, size=(17, i, i, 3), dtype=np.uint8),
                "points": rng.normal(size=(n, 3)).astype(np.float32),
                "normals": rng.normal(size=(n, 3)).astype(np.float32),
            }
            for _ in range(16)
        ]

        def __len__(self):
            return len(self.items)

    cache = FakeCache()
    counter = iter(range(10**9))
    sec = timed(lambda: task.make_batch(config, cache, next(counter))["image"], repeats)
    return {"batch": config.train.batch_size, "seconds": sec}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--full", action="store_true", help="The original's sizes instead of the CPU config's."
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--march_steps", type=int, default=64)
    parser.add_argument("--render_size", type=int, default=256, help="Side of the rendered view.")
    args = parser.parse_args()
    sizes = "full" if args.full else "cpu"
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), sizes: {sizes}")
    rates = [train_step_rate(kind, args.full, args.repeats) for kind in ("conditional", "vae", "gan")]
    base = rates[0]["pixels_per_s"]
    print("training step (loss, gradient, RMSprop update):")
    for r in rates:
        print(
            f"  {r['kind']:<11} batch {r['batch']:>2} x {r['size']}^2: {r['seconds'] * 1e3:8.1f} ms/step, "
            f"{r['pixels_per_s']:>10,.0f} pixels/s ({r['pixels_per_s'] / base:.2f}x conditional), "
            f"compile {r['compile']:.1f} s"
        )
    rr = render_rates(args.full, args.march_steps, args.repeats, args.render_size)
    print(f"rendering one {rr['size']}^2 view (conditional field, codes given):")
    print(
        f"  depth-lifted (1 query per pixel): {rr['lifted'] * 1e3:8.1f} ms, "
        f"{rr['pixels'] / rr['lifted']:>12,.0f} pixels/s"
    )
    print(
        f"  marched ({args.march_steps} queries per pixel):  {rr['marched'] * 1e3:8.1f} ms, "
        f"{rr['pixels'] / rr['marched']:>12,.0f} pixels/s  "
        f"-> lifting is {rr['marched'] / rr['lifted']:.1f}x faster"
    )
    br = batch_rate(args.full, args.repeats)
    step_rate = 1.0 / rates[0]["seconds"]
    print(
        f"host batch assembly (conditional, batch {br['batch']}): {1 / br['seconds']:.1f} batches/s, "
        f"{(1 / br['seconds']) / step_rate:.1f}x the training step's {step_rate:.2f} steps/s"
    )


if __name__ == "__main__":
    main()
