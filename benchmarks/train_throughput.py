"""Training throughput of the default point-cloud Occupancy Network.

Measures, in one run and on the same inputs:
  * jit trace+lower and XLA compile time of the train step;
  * points per second of forward+backward (and of the whole Adam step) of the
    jitted, donated step at batch B x T query points;
  * the same forward+backward run op by op (`jax.disable_jit`): the plain
    baseline, reported as a ratio;
  * if PyTorch is installed, the same architecture in eager PyTorch (the
    original code's framework), also as a ratio;
  * on the CPU, the fwd+bwd also compiled with XLA's default options instead of
    the step's (`train_utils.default_compiler_options`: Eigen dots), as a ratio;
  * the minor page faults of a step: on Linux its temporaries (~4 GiB at the
    default size) are fresh memory at every step, first touched 4 KiB at a
    time; `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` makes them 2 MiB pages
    (about 15% faster on the 2-core machine).

  python benchmarks/train_throughput.py                   # default 64 x 2048
  python benchmarks/train_throughput.py --batch 16 --points 1024 --repeats 5
"""

import argparse
import functools
import os
import resource
import time

import jax
import numpy as np

from implicit_fields import losses, train_utils
from implicit_fields.methods import onet
from implicit_fields.methods.onet import task


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def torch_baseline(config, batch, repeats):
    """The same network in eager PyTorch (forward+backward), or None without torch."""
    try:
        import torch
        import torch.nn as tnn
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    h, c_dim, eh = config.model.decoder_hidden, config.model.c_dim, config.model.encoder_hidden

    class BlockFC(tnn.Module):
        def __init__(self, i, o):
            super().__init__()
            hh = min(i, o)
            self.fc_0, self.fc_1 = tnn.Linear(i, hh), tnn.Linear(hh, o)
            self.sc = tnn.Linear(i, o, bias=False) if i != o else None

        def forward(self, x):
            dx = self.fc_1(torch.relu(self.fc_0(torch.relu(x))))
            return (self.sc(x) if self.sc is not None else x) + dx

    class Pointnet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc_pos = tnn.Linear(3, 2 * eh)
            self.blocks = tnn.ModuleList([BlockFC(2 * eh, eh) for _ in range(5)])
            self.fc_c = tnn.Linear(eh, c_dim)

        def forward(self, p):
            net = self.blocks[0](self.fc_pos(p))
            for b in self.blocks[1:]:
                net = b(torch.cat([net, net.max(1, keepdim=True)[0].expand_as(net)], 2))
            return self.fc_c(torch.relu(net.max(1)[0]))

    class CBN(tnn.Module):
        def __init__(self, f):
            super().__init__()
            self.g, self.b = tnn.Conv1d(c_dim, f, 1), tnn.Conv1d(c_dim, f, 1)
            self.bn = tnn.BatchNorm1d(f, affine=False)

        def forward(self, x, c):
            c = c.unsqueeze(2)
            return self.g(c) * self.bn(x) + self.b(c)

    class CBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            self.bn_0, self.bn_1 = CBN(h), CBN(h)
            self.fc_0, self.fc_1 = tnn.Conv1d(h, h, 1), tnn.Conv1d(h, h, 1)

        def forward(self, x, c):
            net = self.fc_0(torch.relu(self.bn_0(x, c)))
            return x + self.fc_1(torch.relu(self.bn_1(net, c)))

    class Decoder(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc_p = tnn.Conv1d(3, h, 1)
            self.blocks = tnn.ModuleList([CBlock() for _ in range(config.model.decoder_blocks)])
            self.bn, self.fc_out = CBN(h), tnn.Conv1d(h, 1, 1)

        def forward(self, p, c):
            net = self.fc_p(p.transpose(1, 2))
            for b in self.blocks:
                net = b(net, c)
            return self.fc_out(torch.relu(self.bn(net, c))).squeeze(1)

    enc, dec = Pointnet(), Decoder()
    params = list(enc.parameters()) + list(dec.parameters())
    p = torch.from_numpy(np.asarray(batch["points"]))
    x = torch.from_numpy(np.asarray(batch["inputs"]))
    occ = torch.from_numpy(np.asarray(batch["occupancies"]))

    def step():
        for q in params:
            q.grad = None
        logits = dec(p, enc(x))
        loss = tnn.functional.binary_cross_entropy_with_logits(logits, occ, reduction="none").sum(-1).mean()
        loss.backward()

    step()
    return median_time(step, repeats)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-eager", action="store_true", help="skip the op-by-op baseline")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    args = parser.parse_args()

    config = onet.get_config()
    B, T = args.batch, args.points
    rng = np.random.default_rng(0)
    batch = {
        "points": rng.uniform(-0.55, 0.55, (B, T, 3)).astype(np.float32),
        "occupancies": (rng.uniform(size=(B, T)) < 0.3).astype(np.float32),
        "inputs": rng.normal(size=(B, config.data.pointcloud_n, 3)).astype(np.float32) * 0.3,
    }
    model = onet.create_model(config)
    mesh = train_utils.create_mesh()
    repl, data = train_utils.shardings(mesh)
    state = jax.device_put(onet.init_state(config, model, jax.random.key(0)), repl)
    dbatch = jax.device_put(batch, data)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    print(f"devices: {jax.devices()}  |  model: {n_params:,} parameters  |  batch {B} x {T} points")

    def loss_fn(params, batch_stats, b):
        logits, upd = model.apply(
            {"params": params, "batch_stats": batch_stats},
            b["points"],
            b["inputs"],
            train=True,
            mutable=["batch_stats"],
        )
        return losses.occupancy_bce(logits, b["occupancies"])

    grad_fn = jax.value_and_grad(loss_fn)
    options = train_utils.default_compiler_options(mesh)
    print(f"XLA options of the step (train_utils.default_compiler_options): {options or 'none'}")
    t0 = time.perf_counter()
    lowered = jax.jit(grad_fn).lower(state.params, state.batch_stats, dbatch)
    t1 = time.perf_counter()
    fwd_bwd = lowered.compile(options or None)
    t2 = time.perf_counter()
    print(f"fwd+bwd  jit trace+lower {t1 - t0:.2f} s, XLA compile {t2 - t1:.2f} s")
    fwd_bwd_xla = lowered.compile() if options else None

    step = train_utils.create_train_step(functools.partial(task.loss_fn, model), mesh)
    t0 = time.perf_counter()
    step_lowered = step.lower(state, dbatch, ())
    t1 = time.perf_counter()
    step_compiled = step_lowered.compile()
    t2 = time.perf_counter()
    mem_mib = step_compiled.memory_analysis().temp_size_in_bytes / 2**20
    print(f"train step jit trace+lower {t1 - t0:.2f} s, XLA compile {t2 - t1:.2f} s")

    def run_fwd_bwd():
        jax.block_until_ready(fwd_bwd(state.params, state.batch_stats, dbatch))

    run_fwd_bwd()
    t_fb, t_fb_min = median_time(run_fwd_bwd, args.repeats)
    if fwd_bwd_xla is not None:

        def run_fwd_bwd_xla():
            jax.block_until_ready(fwd_bwd_xla(state.params, state.batch_stats, dbatch))

        run_fwd_bwd_xla()
        t_xla, _ = median_time(run_fwd_bwd_xla, args.repeats)

    holder = [state]

    def run_step():
        holder[0], m = step_compiled(holder[0], dbatch)
        jax.block_until_ready(m)

    run_step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t_st, t_st_min = median_time(run_step, args.repeats)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.repeats
    pts = B * T
    print(f"jit fwd+bwd        : {t_fb:.3f} s/step (min {t_fb_min:.3f})  -> {pts / t_fb:,.0f} points/s")
    print(f"jit fwd+bwd+Adam   : {t_st:.3f} s/step (min {t_st_min:.3f})  -> {pts / t_st:,.0f} points/s")
    if fwd_bwd_xla is not None:
        print(
            f"jit fwd+bwd, XLA's default options: {t_xla:.3f} s/step -> {pts / t_xla:,.0f} points/s  "
            f"({t_xla / t_fb:.2f}x the time with the step's options)"
        )
    huge = "glibc.malloc.hugetlb=1" in os.environ.get("GLIBC_TUNABLES", "")
    pages = "2 MiB pages" if huge else "GLIBC_TUNABLES=glibc.malloc.hugetlb=1 makes them 2 MiB pages"
    print(
        f"page faults        : {faults:,.0f} per step (the step's {mem_mib:,.0f} MiB of temporaries are new "
        f"memory each time; {pages})"
    )

    if not args.no_eager:

        def run_eager():
            with jax.disable_jit():
                jax.block_until_ready(grad_fn(holder[0].params, holder[0].batch_stats, batch))

        run_eager()
        t_e, _ = median_time(run_eager, max(1, args.repeats - 1))
        print(
            f"op-by-op fwd+bwd   : {t_e:.3f} s/step -> {pts / t_e:,.0f} points/s  "
            f"(jit is {t_e / t_fb:.2f}x faster)"
        )
    if not args.no_torch:
        res = torch_baseline(config, batch, max(1, args.repeats - 1))
        if res is None:
            print("PyTorch eager      : not installed (pip install torch to compare)")
        else:
            t_t, _ = res
            print(
                f"PyTorch eager f+b  : {t_t:.3f} s/step -> {pts / t_t:,.0f} points/s  "
                f"(jit is {t_t / t_fb:.2f}x faster)"
            )


if __name__ == "__main__":
    main()
