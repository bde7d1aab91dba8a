"""Forward+backward of the ResNet-18 image encoder with XLA's and the im2col convolution on CPU.

Times, in one run and on the same inputs, `jax.value_and_grad` of a scalar loss
of `encoders.Resnet18` (train-mode batch norm, jitted) with `conv_impl` =
'xla' (`lax.conv_general_dilated` everywhere), 'im2col' (strided slices and
one matmul everywhere) and 'auto' (on CPU: im2col for 1x1 kernels and
outputs under 64 pixels, XLA's convolution otherwise), calling them in turn
in every repeat so that a shared, busy CPU slows all alike; prints the median
ms per step and the ratios. With `--layers` it times every distinct
convolution shape of the network on its own too (forward and the gradients
w.r.t. input and kernel), with one more alternative, 'shifted': k^2 shifted
matmuls summed, without the k^2-wide patch buffer (never the fastest here).

The defaults are those of `experiments/configs/onet.py:img,cpu` (64 x 64 images,
batch 8, width 64, c_dim 256).

  python benchmarks/conv2d.py
  python benchmarks/conv2d.py --size 64 --batch 8 --repeats 20 --layers
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from implicit_fields import encoders, layers  # noqa: E402


def _conv2d_shifted(x, kernel, stride, padding):
    """The convolution as kh kw shifted (strided) slices, each times its kernel tap, summed."""
    kh, kw, cin, _ = kernel.shape
    s, p = stride, padding
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    oh = (x.shape[1] + 2 * p - kh) // s + 1
    ow = (x.shape[2] + 2 * p - kw) // s + 1
    out = None
    for a in range(kh):
        for b in range(kw):
            sl = jax.lax.slice(
                xp, (0, a, b, 0), (x.shape[0], a + s * (oh - 1) + 1, b + s * (ow - 1) + 1, cin), (1, s, s, 1)
            )
            term = sl @ kernel[a, b]
            out = term if out is None else out + term
    return out


CONV_FNS = {
    "xla": lambda x, k, s, p: layers.conv2d(x, k, s, p, impl="xla"),
    "im2col": lambda x, k, s, p: layers.conv2d(x, k, s, p, impl="im2col"),
    "shifted": _conv2d_shifted,
}


def interleaved_medians(fns, repeats):
    """Median seconds of each zero-argument function, called in turn `repeats` times."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


IMPLS = ("xla", "im2col", "auto")


def model_step_fns(size, batch, width, c_dim):
    """Jitted value_and_grad steps of Resnet18 per conv impl, their arguments bound."""
    key = jax.random.PRNGKey(0)
    images = jax.random.uniform(key, (batch, size, size, 3))
    fns, outputs = {}, {}
    variables = encoders.Resnet18(c_dim=c_dim, hidden_dim=width, conv_impl="xla").init(key, images)
    for impl in IMPLS:
        model = encoders.Resnet18(c_dim=c_dim, hidden_dim=width, conv_impl=impl)

        def loss_fn(params, batch_stats, images, model=model):
            c, updates = model.apply(
                {"params": params, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"]
            )
            return jnp.mean(jnp.square(c)), updates

        step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
        args = (variables["params"], variables["batch_stats"], images)
        t0 = time.perf_counter()
        outputs[impl] = jax.block_until_ready(step(*args))
        print(f"  {impl:>7}: compile + first step {time.perf_counter() - t0:.2f} s", flush=True)
        fns[impl] = lambda step=step, args=args: step(*args)
    (loss_x, _), grads_x = outputs["xla"]
    for impl in IMPLS[1:]:
        (loss, _), grads = outputs[impl]
        diff = max(
            float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-12))
            for a, b in zip(jax.tree.leaves(grads_x), jax.tree.leaves(grads))
        )
        print(
            f"  {impl} vs xla: loss {float(loss):.6f} vs {float(loss_x):.6f}, "
            f"max relative gradient difference (per leaf) {diff:.1e}"
        )
    return fns


def layer_shapes(size, width):
    """The distinct (H, in, out, k, stride, padding) convolutions of ResNet-18 on size x size images."""
    h = (size + 6 - 7) // 2 + 1
    shapes = [(size, 3, width, 7, 2, 3)]
    h = (h + 2 - 3) // 2 + 1  # max pool
    cin = width
    for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
        cout = width * mult
        if stride != 1 or cin != cout:
            shapes.append((h, cin, cout, 3, stride, 1))
            shapes.append((h, cin, cout, 1, stride, 0))
            h = (h - 1) // stride + 1
        shapes.append((h, cout, cout, 3, 1, 1))
        cin = cout
    return shapes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=64, help="ResNet width (hidden_dim)")
    parser.add_argument("--c_dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--layers", action="store_true", help="also time each conv shape on its own")
    args = parser.parse_args()
    print(
        f"backend {jax.default_backend()}, {os.cpu_count()} CPUs; Resnet18 width {args.width}, "
        f"{args.batch} x {args.size}^2 images"
    )

    fns = model_step_fns(args.size, args.batch, args.width, args.c_dim)
    med = interleaved_medians(fns, args.repeats)
    print(
        "Resnet18 forward+backward, median ms per step: "
        + ", ".join(f"{impl} {1e3 * med[impl]:.1f}" for impl in IMPLS)
    )
    ratios = (("xla", "im2col"), ("xla", "auto"), ("im2col", "auto"))
    print("  " + ", ".join(f"{a} / {b} = {med[a] / med[b]:.2f}x" for a, b in ratios))

    if args.layers:
        print("per conv shape, forward+backward (grad w.r.t. input and kernel), median ms:")
        key = jax.random.PRNGKey(1)
        for h, cin, cout, k, s, p in layer_shapes(args.size, args.width):
            auto = layers._auto_conv2d_impl((args.batch, h, h, cin), (k, k, cin, cout), s, p)
            x = jax.random.normal(key, (args.batch, h, h, cin))
            kernel = 0.05 * jax.random.normal(key, (k, k, cin, cout))
            fns = {}
            for name, conv in CONV_FNS.items():
                if name == "shifted" and k == 1:
                    continue

                def loss(x, w, conv=conv, s=s, p=p):
                    return jnp.sum(jnp.sin(conv(x, w, s, p)))

                grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
                jax.block_until_ready(grad(x, kernel))
                fns[name] = lambda grad=grad, x=x, kernel=kernel: grad(x, kernel)
            med = interleaved_medians(fns, args.repeats)
            cells = "  ".join(f"{name} {1e3 * t:7.2f}" for name, t in med.items())
            shape = f"{h:3d}^2 x {cin:3d} -> {cout:3d}, {k}x{k}/{s} pad {p}"
            print(f"  {shape}:  {cells}   (auto: {auto})", flush=True)


if __name__ == "__main__":
    main()
