"""benchmarks/gpu_suite.py: the benchmarks' printed lines -> figures -> met / NOT met, and its runner.

The sample lines are what the benchmark scripts printed in a `--quick` run on the CPU
(some numbers changed to put a figure on each side of its target).
"""

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("gpu_suite", os.path.join(REPO, "benchmarks", "gpu_suite.py"))
gpu_suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_suite)

MISE_OUT = """\
jax 0.10.2 on cpu, 2 CPUs, batch_points=4,096

== marching cubes, sphere {res}^3 ==
PyMCubes 0.0271 s  JAX 0.0074 s (first call 4.79 s)  PyMCubes / JAX = 3.68x  vertices 10,206

== cbn {res}^3 ==
MISE :    {mise} s/mesh (first call 9.91 s)  network {network}  bookkeeping 0.010  marching cubes 0.012
       queries 36,309 = 13.2% of 274,625  per level [4913, 6098, 25298]  rounds 3  \
10,206 vertices 20,408 faces
MISE subdivision='surface':    0.639 s/mesh  network 0.605  \
queries 27,354 (0.75x) per level [4913, 4442, 17999]  \
rounds 5  cells / surface = 1.12x;  meshes: identical (max |dv| 2.8e-07)
MISE with JAX marching cubes:    0.766 s/mesh  marching cubes 0.009 (PyMCubes 0.012)  \
10,206 vertices 20,408 faces
MISE subdivision='surface' + JAX marching cubes:    {fast} s/mesh  network {fast_network}  \
bookkeeping 0.017  \
marching cubes 0.005  (1.04x faster than plain MISE)
dense: skipped
"""

TRAIN_OUT = """\
devices: [CpuDevice(id=0)]  |  model: 10,373,889 parameters  |  batch {b} x {t} points
fwd+bwd  jit trace+lower 0.56 s, XLA compile 2.19 s
train step jit trace+lower 0.90 s, XLA compile 3.69 s
jit fwd+bwd        : 0.785 s/step (min 0.690)  -> 1,305 points/s
jit fwd+bwd+Adam   : 0.823 s/step (min 0.808)  -> {rate} points/s
"""

LOADER_OUT = """\
loader: 64 objects x 2048 points + 300 input points per batch, data/builtin; 16 CPU cores; device gpu
cache 0 workers: {r0:>8} batches/s (  0.62x the 50/s of a 20 ms GPU step)  first batch after 0.1 s
cache 1 worker : {r1:>8} batches/s (  1.02x the 50/s of a 20 ms GPU step)  first batch after 2.0 s
cache 2 workers: {r2:>8} batches/s (  1.64x the 50/s of a 20 ms GPU step)  first batch after 2.1 s
files 0 workers:     12.5 batches/s (  0.25x the 50/s of a 20 ms GPU step)  first batch after 0.1 s
"""

GENERATION_OUT = """\
generation of 16 objects of data/builtin:val, runs/compare_onet; MISE 32^3 x 2^1; device cpu
one at a time      :   1.39 meshes/s steady,   0.60 with compiling
 4 objects at once:   0.61 meshes/s steady,   0.44 with compiling; 0.44x one at a time \
(0.72x with compiling); same meshes: True
 8 objects at once:   2.78 meshes/s steady,   0.41 with compiling; 2.00x one at a time \
(0.68x with compiling); same meshes: False
"""

DVR_OUT = """\
jax 0.10.2 on cpu, 2 CPUs; 64 rays, DVR decoder hidden 32
steps    8 analytic  temp memory       2.6 MiB  step      5.8 ms      11,076 rays/s  compile   \
9.2 s  loss 9.98  mask IoU 0.333
steps    8 unrolled  temp memory       4.9 MiB  step     10.1 ms       6,365 rays/s  compile   \
9.6 s  loss 9.98  mask IoU 0.333
steps   16 analytic  temp memory       2.6 MiB  step      8.9 ms       7,180 rays/s  compile   \
9.1 s  loss 9.98  mask IoU 0.333
"""

RENDERING_OUT = """\
training step, 64 rays, configs 'tiny'; device cpu
  DVR surface (16 marching steps)                    38 points/ray     24,375 rays/s ( 1.00x)  \
temp memory      1.2 MiB ( 1.00x)  compile  11.2 s
  NeRF (8 + 8, 2x32)                                 24 points/ray     21,916 rays/s ( 0.90x)  \
temp memory      1.3 MiB ( 1.09x)  compile   9.3 s
"""

TEXTURE_OUT = """\
device: cpu (cpu), sizes: cpu
training step (loss, gradient, RMSprop update):
  conditional batch  8 x 32^2:   1738.5 ms/step,      4,712 pixels/s (1.00x conditional), compile 25.3 s
  vae         batch  8 x 32^2:    647.4 ms/step,     12,654 pixels/s (2.69x conditional), compile 12.6 s
rendering one 32^2 view (conditional field, codes given):
  depth-lifted (1 query per pixel):      6.9 ms,      149,458 pixels/s
"""

CONVONET_OUT = """\
devices: [CpuDevice(id=0)]  |  size cpu  |  MISE 32^3 + 2 upsampling steps (128^3)
model                 params compile s  s/step  points/s      x MISE s/mesh      x   queries  batch; weights
onet                 957,441       8.8   0.442    18,536   1.00       0.316   1.00    35,937  \
8 x 1024 pts, 300 inputs
convonet_planes    1,978,209      23.3   2.965     2,762   0.15       0.362   0.87    89,005  \
8 x 1024 pts, 3000 inputs
"""

OFLOW_OUT = """\
seconds per 5-frame sequence: OFlow 0.05, MISE at every frame 0.02 -> OFlow is 0.4x faster
training step, batch 4 x 64 points (+ 64 at t = 0), velocity hidden 16:
  backsolve  temp memory      2.1 MiB (1.00x)  compile  25.4 s  step  0.031 s (1.00x)
  checkpoint temp memory      1.9 MiB (0.88x)  compile  13.9 s  step  0.012 s (0.37x)
"""


def target(name_start):
    return next(t for t in gpu_suite.TARGETS if t.name.startswith(name_start))


def judge(name_start, figures, status="ok", platform="gpu", quick=False):
    return gpu_suite.verdict(target(name_start), figures, status, platform, quick)


@pytest.mark.parametrize(
    "network, fast, fast_network, expect",
    [
        ("0.012", "0.045", "0.009", ("met", "met", "met")),
        ("0.031", "0.045", "0.029", ("NOT met", "met", "met")),
        ("0.030", "0.100", "0.030", ("NOT met", "NOT met", "NOT met")),  # the targets are strict: < 30, < 100
        ("0.020", "0.250", "0.041", ("met", "NOT met", "NOT met")),
    ],
)
def test_mise_targets(network, fast, fast_network, expect):
    text = MISE_OUT.format(res=128, mise="0.090", network=network, fast=fast, fast_network=fast_network)
    figures = gpu_suite.parse_mise(text)
    assert figures["context"] == "cbn 128^3"
    assert figures["network"] == float(network) and figures["fast"] == float(fast)
    got = tuple(
        judge(n, figures)
        for n in (
            "MISE CBN 128^3: network queries, default",
            "MISE CBN 128^3: network queries, surface",
            "MISE CBN 128^3: whole",
        )
    )
    assert got == expect


@pytest.mark.parametrize(
    "b, t, rate, step_ms, expect",
    [
        (64, 2048, "26,214,400", 5.0, "met"),
        (64, 2048, "6,553,600", 20.0, "met"),  # <= 20 ms
        (64, 2048, "6,500,000", 20.16, "NOT met"),
        (4, 256, "1,244", 823.15, "NOT met"),
    ],
)
def test_train_step_target(b, t, rate, step_ms, expect):
    figures = gpu_suite.parse_train(TRAIN_OUT.format(b=b, t=t, rate=rate))
    assert figures["step"] * 1e3 == pytest.approx(step_ms, abs=0.01)
    assert figures["context"] == f"{b} x {t}"
    assert judge("train step", figures) == expect
    assert "steps/s" in gpu_suite.measured_text(target("train step"), figures)


@pytest.mark.parametrize(
    "rates, best, expect",
    [
        (("31.0", "51.0", "82.0"), 82.0, "met"),
        (("31.0", "49.9", "45.0"), 49.9, "NOT met"),
        (("50.0", "1.0", "2.0"), 50.0, "met"),
    ],
)
def test_loader_target(rates, best, expect):
    figures = gpu_suite.parse_loader(LOADER_OUT.format(r0=rates[0], r1=rates[1], r2=rates[2]))
    assert figures["cache_best"] == best and figures["files"] == {0: 12.5}
    assert judge("loader", figures) == expect


@pytest.mark.parametrize(
    "platform, quick, expect",
    [
        ("cpu", False, "n/a (cpu): not a GPU: target not judged"),
        ("cpu", True, "n/a (cpu): not a GPU: target not judged"),
        ("tpu", False, "n/a (tpu): not a GPU: target not judged"),
        ("gpu", True, "n/a (--quick sizes): target not judged"),
        ("gpu", False, "met"),
    ],
)
def test_targets_judged_only_on_a_gpu_at_its_sizes(platform, quick, expect):
    figures = gpu_suite.parse_mise(
        MISE_OUT.format(res=128, mise="0.09", network="0.01", fast="0.05", fast_network="0.01")
    )
    assert judge("MISE CBN 128^3: whole", figures, platform=platform, quick=quick) == expect


@pytest.mark.parametrize(
    "status, platform, expect",
    [
        ("failed (exit 1)", "gpu", "NOT met (failed (exit 1))"),
        ("timed out after 90 s", "gpu", "NOT met (timed out after 90 s)"),
        ("ok", "gpu", "NOT met (no figure in its output)"),
        ("failed (exit 1)", "cpu", "not measured (failed (exit 1))"),
        ("skipped: benchmarks/mise.py missing", "gpu", "not measured (skipped: benchmarks/mise.py missing)"),
    ],
)
def test_missing_figures(status, platform, expect):
    # A run cut short after the plain MISE line: the network is there, the fast settings are not.
    text = MISE_OUT.format(res=128, mise="0.09", network="0.01", fast="0.05", fast_network="0.01")
    figures = gpu_suite.parse_mise(text.split("MISE subdivision='surface'")[0])
    assert "network" in figures and "fast" not in figures
    assert judge("MISE CBN 128^3: whole", figures, status=status, platform=platform) == expect


@pytest.mark.parametrize(
    "name, parse, text, expect",
    [
        (
            "DVR",
            gpu_suite.parse_dvr,
            DVR_OUT,
            "analytic 8/16 steps: 11.1k / 7.18k rays/s; unrolled 8 steps: 6.37k rays/s",
        ),
        (
            "NeRF vs DVR",
            gpu_suite.parse_rendering,
            RENDERING_OUT,
            "DVR surface 24.4k rays/s; NeRF 21.9k rays/s",
        ),
        (
            "Texture",
            gpu_suite.parse_texture_fields,
            TEXTURE_OUT,
            "conditional 4.71k px/s; vae 12.7k px/s; lifted view 149k px/s",
        ),
        (
            "ConvONet",
            gpu_suite.parse_convonet,
            CONVONET_OUT,
            "onet 18.5k points/s, MISE 0.316 s; convonet_planes 2.76k points/s, MISE 0.362 s",
        ),
        (
            "ONet generation",
            gpu_suite.parse_generation,
            GENERATION_OUT,
            "one at a time 1.39 meshes/s (0.60 with compiling); 4 at once 0.61 (0.44), 0.44x, same meshes; "
            "8 at once 2.78 (0.41), 2.00x, DIFFERENT meshes",
        ),
        (
            "Occupancy Flow",
            gpu_suite.parse_oflow,
            OFLOW_OUT,
            "5-frame sequence 0.05 s vs 0.02 s MISE per frame; backsolve step 31 ms, 2 MiB; "
            "checkpoint step 12 ms, 2 MiB",
        ),
    ],
)
def test_reported_rows(name, parse, text, expect):
    figures = parse(text)
    assert gpu_suite.measured_text(target(name), figures).startswith(expect)
    for platform in ("gpu", "cpu"):
        assert judge(name, figures, platform=platform) == "reported"
    assert judge(name, parse(""), status="failed (exit 1)") == "not measured (failed (exit 1))"


@pytest.mark.parametrize("exits, status", [(False, "timed out after 1 s"), (True, "ok")])
def test_the_benchmark_and_its_workers_are_ended(tmp_path, monkeypatch, exits, status):
    """At its time limit, or when it exits leaving a worker that holds its output."""
    monkeypatch.setattr(gpu_suite, "LEFTOVER_WAIT", 0.5)
    log = gpu_suite.Log(str(tmp_path / "log"))
    child = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('worker', p.pid, flush=True)" + ("" if exits else "; time.sleep(60)")
    )
    t0 = time.perf_counter()
    result = gpu_suite.run_command([sys.executable, "-c", child], 1.0, log, dict(os.environ))
    log.close()
    assert result.status == status and time.perf_counter() - t0 < 20
    worker = int(result.output.split()[1])
    for _ in range(50):  # The worker was in the benchmark's process group: it is gone.
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {worker} still runs")
    assert "worker" in (tmp_path / "log").read_text()


def test_the_suite_goes_on_after_a_failure(tmp_path, monkeypatch):
    """Two fake benchmarks on a 'GPU': one prints real MISE lines, one fails; the table and the log."""
    bench_dir = tmp_path / "benchmarks"
    bench_dir.mkdir()
    text = MISE_OUT.format(res=128, mise="0.09", network="0.012", fast="0.150", fast_network="0.010")
    (bench_dir / "mise.py").write_text(f"print({text!r})\n")
    (bench_dir / "train_throughput.py").write_text(
        "import sys\nprint('step 1')\nsys.exit('boom: out of memory')\n"
    )
    monkeypatch.setattr(gpu_suite, "ROOT", str(tmp_path))
    monkeypatch.setattr(
        gpu_suite, "device_info", lambda log, env: {"platform": "gpu", "kind": "NVIDIA H200", "jax": "0"}
    )
    rc = gpu_suite.main(
        [
            "--only",
            "mise",
            "train_throughput",
            "data_loader",
            "--log",
            str(tmp_path / "log"),
            "--json",
            str(tmp_path / "out.json"),
        ]
    )
    assert rc == 0
    log = (tmp_path / "log").read_text()
    lines = {line.split("  ")[0]: line for line in log.splitlines()}
    assert lines["MISE CBN 128^3: network queries, default settings < 30 ms"].endswith("  met")
    assert lines["MISE CBN 128^3: whole mesh, surface + JAX marching cubes < 100 ms"].endswith("  NOT met")
    assert lines["train step, default ONet, 64 x 2048 <= 20 ms"].endswith("NOT met (failed (exit 1))")
    assert "not measured (skipped: benchmarks/data_loader.py missing)" in log
    assert "   | boom: out of memory" in log  # the end of the failed benchmark's output
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["benchmarks"]["mise"]["figures"]["network"] == 0.012
    assert record["benchmarks"]["train_throughput"]["status"] == "failed (exit 1)"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "0"], "error: --budget: must be > 0"),
        (["--only", "nope"], "error: --only: invalid choice: 'nope'"),
        (["--only", "dvr", "--skip", "dvr"], "error: --only / --skip: no benchmark left to run"),
        (["--oflow-workdir", "/no/such/run"], "error: --oflow-workdir: /no/such/run: no such run folder"),
        (["--log", "/no/such/dir/log"], "error: /no/such/dir/log: its folder does not exist"),
    ],
)
def test_bad_flags(args, message):
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "gpu_suite.py")] + args,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.startswith(message) and len(out.stderr.splitlines()) == 1, (
        out.stderr
    )
