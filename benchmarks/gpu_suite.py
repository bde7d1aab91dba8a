"""Every benchmark in one call, sized for one GPU, and the GPU targets each one checks: met or NOT met.

Runs the benchmarks of this folder one after the other, each as its own process
(its output printed through as it comes) with a time limit of its own and all
of them within `--budget` seconds, the ones with targets first: MISE (CBN
decoder at 128^3), the training step of the default ONet at 64 x 2048 points,
the training loader, then DVR, NeRF vs DVR, Texture Fields, ConvONet and
Occupancy Flow (a tiny run is trained first unless `--oflow-workdir` names one).
It then prints a table of the targets with what was measured and a verdict:

  * MISE, CBN decoder, 128^3: the network queries < 30 ms (default settings, and
    with `subdivision='surface'`), the whole mesh with the JAX marching cubes < 100 ms;
  * the loader at 64 x 2048 from the in-memory cache (the best worker count) >= 50 batches/s;
  * the train step of the default ONet at 64 x 2048 <= 20 ms (50 steps/s, the rate the
    loader's target is derived from);
  * DVR's rays/s and the other benchmarks' figures: reported (no target).

The targets are GPU targets: on another platform, or with `--quick` (tiny sizes,
to check that everything runs), they are not judged (`n/a`). A benchmark that
fails or runs out of time is reported with the end of its output and the suite
goes on; the exit code is 0 unless the suite itself broke. With the variable OUT
set (the device tool of this workplace), everything printed also goes to
$OUT/gpu_suite.log and the figures to $OUT/gpu_suite.json.

  python benchmarks/gpu_suite.py                 # on a GPU machine, about 8 minutes
  python benchmarks/gpu_suite.py --quick         # tiny sizes, anywhere (about 10 minutes on 2 CPU cores)
  python benchmarks/gpu_suite.py --only mise train_throughput
  bash benchmarks/gpu_suite.sh                   # the device tool: installs .whl/ first
"""

import argparse
import dataclasses
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from typing import Callable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import cli  # noqa: E402

TAIL_LINES = 15  # lines of a failed benchmark's output shown again
MEASURED_WIDTH = 64  # the summary's measured column (longer texts wrap)
LEFTOVER_WAIT = 3.0  # seconds for a benchmark's output to end after it exits (then its leftovers are ended)


def number(text: str) -> float:
    """'1,234.5' -> 1234.5."""
    return float(text.replace(",", ""))


def si(value: float) -> str:
    """A rate in 3 significant figures with k / M: 1234567 -> '1.23M'."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


# ---------------------------------------------------------------- parsers: a benchmark's output -> figures
# Each reads the lines its script prints (see the scripts' print calls) and returns a dict of
# figures (seconds, rates) and `context` (the sizes measured); figures that are not in the
# output (a run cut short) are absent.


def parse_mise(text: str) -> dict:
    """The CBN case of benchmarks/mise.py: seconds of the mesh, its network queries, the fast settings."""
    cases, case = {}, None
    for line in text.splitlines():
        m = re.match(r"^== (\w+ \d+\^3) ==\s*$", line)
        if m:
            case = cases.setdefault(m.group(1), {"context": m.group(1)})
            continue
        if case is None:
            continue
        m = re.match(r"^MISE :\s*([\d.]+) s/mesh .*?network ([\d.]+)", line)
        if m:
            case["mise"], case["network"] = number(m.group(1)), number(m.group(2))
        m = re.match(r"^MISE subdivision='surface':\s*([\d.]+) s/mesh\s+network ([\d.]+)", line)
        if m:
            case["surface"], case["surface_network"] = number(m.group(1)), number(m.group(2))
        m = re.match(r"^MISE with JAX marching cubes:\s*([\d.]+) s/mesh", line)
        if m:
            case["jax_mc"] = number(m.group(1))
        m = re.match(
            r"^MISE subdivision='surface' \+ JAX marching cubes:\s*([\d.]+) s/mesh\s+network ([\d.]+)", line
        )
        if m:
            case["fast"], case["fast_network"] = number(m.group(1)), number(m.group(2))
    cbn = [c for label, c in cases.items() if label.startswith("cbn ")]
    return cbn[0] if cbn else {}


def parse_train(text: str) -> dict:
    """benchmarks/train_throughput.py: the jitted train step (forward, backward, Adam)."""
    out = {}
    m = re.search(r"batch (\d+) x (\d+) points", text)
    if m:
        out["context"] = f"{m.group(1)} x {m.group(2)}"
        out["points_per_step"] = int(m.group(1)) * int(m.group(2))
    m = re.search(r"jit fwd\+bwd\+Adam\s*:\s*([\d.]+) s/step \(min ([\d.]+)\)\s*->\s*([\d,]+) points/s", text)
    if m and out.get("points_per_step"):
        out["points_per_s"] = number(m.group(3))
        # From points/s: the seconds are printed to 1 ms only.
        out["step"] = out["points_per_step"] / out["points_per_s"] if out["points_per_s"] else float("inf")
    m = re.search(r"train step jit trace\+lower ([\d.]+) s, XLA compile ([\d.]+) s", text)
    if m:
        out["compile"] = number(m.group(1)) + number(m.group(2))
    return out


def parse_loader(text: str) -> dict:
    """benchmarks/data_loader.py: batches/s per source (cache, files) and worker count."""
    out = {"cache": {}, "files": {}}
    m = re.search(r"loader: (\d+) objects x (\d+) points", text)
    if m:
        out["context"] = f"{m.group(1)} x {m.group(2)}"
    for m in re.finditer(r"^(cache|files)\s+(\d+) workers?\s*:\s*([\d.,]+) batches/s", text, re.M):
        out[m.group(1)][int(m.group(2))] = number(m.group(3))
    if out["cache"]:
        out["cache_best"] = max(out["cache"].values())
    return out


def parse_dvr(text: str) -> dict:
    """benchmarks/dvr.py: rays/s and temporary memory per marching-step count and gradient."""
    out = {"rows": []}
    m = re.search(r"(\d+) rays, DVR decoder hidden (\d+)", text)
    if m:
        out["context"] = f"{m.group(1)} rays, hidden {m.group(2)}"
    pattern = (
        r"^steps\s+(\d+)\s+(analytic|unrolled)\s+temp memory\s+([\d.]+) MiB\s+"
        r"step\s+([\d.]+) ms\s+([\d,]+) rays/s"
    )
    for m in re.finditer(pattern, text, re.M):
        out["rows"].append((int(m.group(1)), m.group(2), number(m.group(3)), number(m.group(5))))
    return out


def parse_rendering(text: str) -> dict:
    """benchmarks/rendering.py: rays/s and temporary memory of each model's train step."""
    out = {"rows": []}
    m = re.search(r"training step, (\d+) rays, configs '(\w+)'", text)
    if m:
        out["context"] = f"{m.group(1)} rays, configs {m.group(2)}"
    pattern = r"^\s+(.+?)\s+(\d+) points/ray\s+([\d,]+) rays/s .*?temp memory\s+([\d.]+) MiB"
    for m in re.finditer(pattern, text, re.M):
        out["rows"].append((m.group(1), number(m.group(3)), number(m.group(4))))
    return out


def parse_texture_fields(text: str) -> dict:
    """benchmarks/texture_fields.py: pixels/s of the three models' steps and of a depth-lifted view."""
    out = {"rows": []}
    m = re.search(r"sizes: (\w+)", text)
    if m:
        out["context"] = f"sizes {m.group(1)}"
    pattern = r"^\s+(conditional|vae|gan)\s+batch\s+(\d+) x (\d+)\^2:\s+([\d.]+) ms/step,\s+([\d,]+) pixels/s"
    for m in re.finditer(pattern, text, re.M):
        out["rows"].append((m.group(1), number(m.group(5))))
    m = re.search(r"depth-lifted \(1 query per pixel\):\s+([\d.]+) ms,\s+([\d,]+) pixels/s", text)
    if m:
        out["lifted"] = number(m.group(2))
    return out


def parse_convonet(text: str) -> dict:
    """benchmarks/convonet.py's table: training points/s and MISE seconds per mesh of each model."""
    out = {"rows": []}
    m = re.search(r"size (\w+)", text)
    if m:
        out["context"] = f"size {m.group(1)}"
    pattern = (
        r"^(onet|convonet_planes|convonet_grid)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d,]+)\s+[\d.]+"
        r"\s+([\d.]+)"
    )
    for m in re.finditer(pattern, text, re.M):
        out["rows"].append((m.group(1), number(m.group(5)), number(m.group(6))))
    return out


def parse_oflow(text: str) -> dict:
    """benchmarks/oflow.py: seconds per sequence, OFlow vs MISE at every frame, and the train steps."""
    out = {"steps": []}
    m = re.search(r"seconds per (\d+)-frame sequence: OFlow ([\d.]+), MISE at every frame ([\d.]+)", text)
    if m:
        out["frames"], out["oflow"], out["baseline"] = int(m.group(1)), number(m.group(2)), number(m.group(3))
    m = re.search(r"training step, batch (\d+) x (\d+) points", text)
    if m:
        out["context"] = f"train batch {m.group(1)} x {m.group(2)}"
    pattern = r"^\s+(backsolve|checkpoint)\s+temp memory\s+([\d.]+) MiB.*?step\s+([\d.]+) s"
    for m in re.finditer(pattern, text, re.M):
        out["steps"].append((m.group(1), number(m.group(2)), number(m.group(3))))
    return out


def parse_generation(text: str) -> dict:
    """benchmarks/generation.py: meshes/s of ONet's generation, one object at a time and B together."""
    out = {"rows": []}
    m = re.search(r"MISE (\d+)\^3 x 2\^(\d+)", text)
    if m:
        out["context"] = f"MISE {int(m.group(1)) * 2 ** int(m.group(2))}^3"
    m = re.search(r"^one at a time\s*:\s*([\d.]+) meshes/s steady,\s*([\d.]+) with compiling", text, re.M)
    if m:
        out["single"] = (number(m.group(1)), number(m.group(2)))
    pattern = r"^\s*(\d+) objects at once:\s*([\d.]+) meshes/s steady,\s*([\d.]+) with compiling"
    pattern += r".*same meshes: (\w+)"
    for m in re.finditer(pattern, text, re.M):
        out["rows"].append((int(m.group(1)), number(m.group(2)), number(m.group(3)), m.group(4) == "True"))
    return out


# ------------------------------------------------------------------------------------ the reported rows


def report_dvr(f: dict) -> Optional[str]:
    if not f.get("rows"):
        return None
    parts = []
    for mode in ("analytic", "unrolled"):
        rows = [r for r in f["rows"] if r[1] == mode]
        if rows:
            steps = "/".join(str(r[0]) for r in rows)
            parts.append(f"{mode} {steps} steps: " + " / ".join(f"{si(r[3])}" for r in rows) + " rays/s")
    return "; ".join(parts)


def report_rendering(f: dict) -> Optional[str]:
    if not f.get("rows"):
        return None
    return "; ".join(f"{name.split(' (')[0]} {si(rate)} rays/s" for name, rate, _ in f["rows"])


def report_texture_fields(f: dict) -> Optional[str]:
    parts = [f"{kind} {si(rate)} px/s" for kind, rate in f.get("rows", [])]
    if "lifted" in f:
        parts.append(f"lifted view {si(f['lifted'])} px/s")
    return "; ".join(parts) or None


def report_convonet(f: dict) -> Optional[str]:
    if not f.get("rows"):
        return None
    return "; ".join(f"{name} {si(pts)} points/s, MISE {s:.3f} s" for name, pts, s in f["rows"])


def report_oflow(f: dict) -> Optional[str]:
    parts = []
    if "oflow" in f:
        parts.append(
            f"{f['frames']}-frame sequence {f['oflow']:.2f} s vs {f['baseline']:.2f} s MISE per frame"
        )
    parts += [f"{adjoint} step {s * 1e3:.0f} ms, {mib:.0f} MiB" for adjoint, mib, s in f.get("steps", [])]
    return "; ".join(parts) or None


def report_generation(f: dict) -> Optional[str]:
    if "single" not in f:
        return None
    one, one_first = f["single"]
    parts = [f"one at a time {one:.2f} meshes/s ({one_first:.2f} with compiling)"]
    for b, rate, first, same in f["rows"]:
        same_text = "same meshes" if same else "DIFFERENT meshes"
        parts.append(f"{b} at once {rate:.2f} ({first:.2f}), {rate / one:.2f}x, {same_text}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------- benchmarks and targets


@dataclasses.dataclass
class Benchmark:
    """A benchmark script, its arguments on a GPU and with --quick, its time limits and its parser."""

    name: str
    script: str
    gpu_args: list
    quick_args: list
    timeout: float  # seconds on a GPU
    quick_timeout: float
    parse: Callable[[str], dict]
    what: str  # one line: what it measures


@dataclasses.dataclass
class Target:
    """A row of the summary: a figure of a benchmark against a limit (`op` None: reported only)."""

    name: str
    bench: str
    key: Optional[str] = None  # the figure compared
    op: Optional[str] = None  # '<', '<=' or '>='
    limit: float = 0.0
    unit: str = ""
    scale: float = 1.0  # figure -> unit
    report: Optional[Callable[[dict], Optional[str]]] = None  # the measured text of a reported row

    def passes(self, value: float) -> bool:
        return {"<": value < self.limit, "<=": value <= self.limit, ">=": value >= self.limit}[self.op]

    def goal(self) -> str:
        return f"{self.op} {self.limit * self.scale:g} {self.unit}"


MISE_COMMON = ["--fields", "cbn", "--compare-marching-cubes", "--skip-dense", "--skip-batched"]
MISE_COMMON += ["--cbn-refine-steps", "0", "--simplify-nfaces", "0"]

BENCHMARKS = [  # In this order: the targets first, so that a short budget still measures them.
    Benchmark(
        "mise",
        "mise.py",
        MISE_COMMON
        + ["--resolutions", "128", "--resolution0", "32", "--cbn-repeats", "10", "--repeats", "5"],
        MISE_COMMON + ["--resolutions", "64", "--resolution0", "16", "--cbn-repeats", "1", "--repeats", "1"],
        90,
        300,
        parse_mise,
        "MISE, CBN decoder: s/mesh, network, the fast settings",
    ),
    Benchmark(
        "train_throughput",
        "train_throughput.py",
        ["--batch", "64", "--points", "2048", "--repeats", "20", "--no-eager", "--no-torch"],
        ["--batch", "4", "--points", "256", "--repeats", "2", "--no-eager", "--no-torch"],
        90,
        300,
        parse_train,
        "train step of the default ONet: points/s",
    ),
    Benchmark(
        "data_loader",
        "data_loader.py",
        ["--batch", "64", "--points", "2048", "--workers", "0", "1", "2", "8", "--no-train-step"],
        ["--batch", "8", "--points", "256", "--workers", "0", "1", "--batches", "10", "--file-batches", "3"]
        + ["--no-train-step"],
        120,
        300,
        parse_loader,
        "training loader: batches/s from the cache and from files",
    ),
    Benchmark(
        "generation",
        "generation.py",
        ["--objects", "16", "--batch", "4", "8"],
        ["--objects", "2", "--batch", "2"],
        120,
        400,
        parse_generation,
        "ONet generation: meshes/s one at a time vs several objects per MISE call",
    ),
    Benchmark(
        "dvr",
        "dvr.py",
        ["--rays", "4096", "--hidden", "512", "--steps", "16", "64", "256", "--repeats", "10"],
        ["--rays", "64", "--hidden", "32", "--steps", "8", "16", "--repeats", "2"],
        75,
        300,
        parse_dvr,
        "DVR train step: rays/s, analytic vs unrolled depth gradient",
    ),
    Benchmark(
        "rendering",
        "rendering.py",
        ["--size", "full", "--rays", "4096", "--repeats", "10"],
        ["--size", "tiny", "--rays", "64", "--repeats", "2"],
        75,
        300,
        parse_rendering,
        "NeRF vs DVR train step: rays/s",
    ),
    Benchmark(
        "texture_fields",
        "texture_fields.py",
        ["--full", "--repeats", "10"],
        ["--repeats", "1", "--render_size", "32", "--march_steps", "8"],
        60,
        300,
        parse_texture_fields,
        "Texture Fields: pixels/s",
    ),
    Benchmark(
        "convonet",
        "convonet.py",
        ["--size", "full", "--repeats", "10", "--objects", "3", "--warmup-steps", "30"],
        ["--size", "cpu", "--repeats", "1", "--objects", "1", "--warmup-steps", "2", "--models", "onet"]
        + ["convonet_planes"],
        90,
        300,
        parse_convonet,
        "ConvONet vs ONet: points/s, MISE s/mesh",
    ),
    Benchmark(
        "oflow",
        "oflow.py",
        ["--windows", "2", "--full"],
        ["--windows", "1"],
        150,
        400,
        parse_oflow,
        "Occupancy Flow: s per sequence, train step per adjoint",
    ),
]
NAMES = [b.name for b in BENCHMARKS]

TARGETS = [
    Target("MISE CBN 128^3: network queries, default settings", "mise", "network", "<", 0.030, "ms", 1e3),
    Target(
        "MISE CBN 128^3: network queries, surface subdivision", "mise", "fast_network", "<", 0.030, "ms", 1e3
    ),
    Target("MISE CBN 128^3: whole mesh, surface + JAX marching cubes", "mise", "fast", "<", 0.100, "ms", 1e3),
    Target(
        "loader 64 x 2048 from the cache, best worker count",
        "data_loader",
        "cache_best",
        ">=",
        50.0,
        "batches/s",
    ),
    Target("train step, default ONet, 64 x 2048", "train_throughput", "step", "<=", 0.020, "ms", 1e3),
    Target("ONet generation, MISE batched over objects", "generation", report=report_generation),
    Target("DVR train step", "dvr", report=report_dvr),
    Target("NeRF vs DVR train step", "rendering", report=report_rendering),
    Target("Texture Fields", "texture_fields", report=report_texture_fields),
    Target("ConvONet vs ONet", "convonet", report=report_convonet),
    Target("Occupancy Flow", "oflow", report=report_oflow),
]


def measured_text(target: Target, figures: dict) -> Optional[str]:
    """What the summary shows as measured for `target` (None: not measured)."""
    if target.report is not None:
        text = target.report(figures)
    elif target.key in figures:
        value = figures[target.key]
        text = f"{value * target.scale:.1f} {target.unit}"
        if target.bench == "train_throughput":
            text += f" ({si(figures['points_per_s'])} points/s, {1 / value:.1f} steps/s)"
        if target.bench == "data_loader":
            rates = " / ".join(f"{figures['cache'][w]:.1f}" for w in sorted(figures["cache"]))
            text += f" (workers {'/'.join(str(w) for w in sorted(figures['cache']))}: {rates}"
            if figures["files"]:
                text += "; from files " + " / ".join(
                    f"{figures['files'][w]:.1f}" for w in sorted(figures["files"])
                )
            text += ")"
    else:
        text = None
    if text is not None and figures.get("context"):
        text += f" [{figures['context']}]"
    return text


def verdict(target: Target, figures: dict, status: str, platform: str, quick: bool) -> str:
    """met / NOT met on a GPU at the GPU sizes; otherwise what was (not) judged and why."""
    judged = platform == "gpu" and not quick
    value = figures.get(target.key) if target.key else None
    shown = measured_text(target, figures)
    if shown is None:
        if status.startswith("skipped"):
            return f"not measured ({status})"
        reason = status if status != "ok" else "no figure in its output"
        return f"{'NOT met' if judged and target.op else 'not measured'} ({reason})"
    if target.op is None:
        return "reported"
    if platform != "gpu":
        return f"n/a ({platform}): not a GPU: target not judged"
    if quick:
        return "n/a (--quick sizes): target not judged"
    return "met" if target.passes(value) else "NOT met"


# ------------------------------------------------------------------------------------------------- running


class Log:
    """Prints to stdout and, when given a path, to a log file too (line by line, flushed)."""

    def __init__(self, path: Optional[str]):
        self.file = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115
        self.lock = threading.Lock()

    def __call__(self, text: str = "", end: str = "\n") -> None:
        with self.lock:
            sys.stdout.write(text + end)
            sys.stdout.flush()
            if self.file:
                self.file.write(text + end)
                self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


@dataclasses.dataclass
class Result:
    status: str  # 'ok', 'failed (exit N)', 'timed out after N s', 'skipped: ...'
    output: str = ""
    seconds: float = 0.0


def run_command(cmd: list, timeout: float, log: Log, env: dict) -> Result:
    """Runs `cmd` in its own process group, its output printed through; killed at `timeout` s."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # Its own process group: a timeout ends its workers too.
        )
    except OSError as e:
        return Result(f"failed to start: {cli.one_line(e)}")
    lines = []

    def pump():
        for line in proc.stdout:
            lines.append(line)
            log(line, end="")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None:  # Timed out, or the suite was interrupted.
            stop(proc)
    reader.join(timeout=LEFTOVER_WAIT)
    if reader.is_alive():  # It exited, but processes it started still hold its output: ended too.
        log("(it exited; the processes it left running were ended)")
        stop(proc)
        reader.join(timeout=10)
    seconds = time.perf_counter() - t0
    if timed_out:
        status = f"timed out after {timeout:.0f} s"
    elif proc.returncode != 0:
        status = f"failed (exit {proc.returncode})"
    else:
        status = "ok"
    return Result(status, "".join(lines), seconds)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of `proc` (started in a session of its own: it and what it started),
    then SIGKILL to what is left of it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)  # Is any process of the group left?
            except ProcessLookupError:
                return
            time.sleep(0.1)


def device_info(log: Log, env: dict) -> dict:
    """Platform, device kind and count, jax and jaxlib versions, from a short process of its own.

    A separate process: this one never holds the accelerator (JAX takes most of its memory).
    """
    probe = (
        "import json, sys, jax, jaxlib; d = jax.devices()[0]; "
        "print('GPU_SUITE_DEVICE ' + json.dumps({'platform': d.platform, 'kind': d.device_kind, "
        "'count': jax.device_count(), 'jax': jax.__version__, 'jaxlib': jaxlib.__version__, "
        "'python': sys.version.split()[0]}))"
    )
    env = dict(env, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    try:
        out = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"device probe failed: {cli.one_line(e)}")
        return {"platform": "unknown", "kind": "unknown", "jax": "unknown"}
    for line in out.stdout.splitlines():
        if line.startswith("GPU_SUITE_DEVICE "):
            return json.loads(line.split(" ", 1)[1])
    log("device probe failed (jax does not import or sees no device):")
    log("\n".join((out.stdout + out.stderr).strip().splitlines()[-TAIL_LINES:]))
    return {"platform": "unknown", "kind": "unknown", "jax": "unknown"}


def nvidia_smi() -> Optional[str]:
    """The GPUs as nvidia-smi names them (name, driver, memory), or None without it."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or None


def oflow_commands(args, bench: Benchmark, scratch: str, quick: bool) -> tuple[list, list]:
    """(setup commands, the benchmark's arguments) of Occupancy Flow: without --oflow-workdir, a tiny run
    is trained first."""
    if args.oflow_workdir:
        return [], ["--workdir", args.oflow_workdir, "--config", args.oflow_config] + bench_args(bench, quick)
    run_dir = os.path.join(scratch, "oflow_run")
    train = [
        sys.executable,
        "-m",
        "experiments.main",
        "--config",
        "experiments/configs/oflow.py:tiny",
        "--workdir",
        run_dir,
        f"--config.data.path={os.path.join(scratch, 'motion_tiny')}",
        "--mode",
        "train",
        "--compilation_cache=",
    ]
    return [train], ["--workdir", run_dir, "--config", "tiny"] + bench_args(bench, quick)


def bench_args(bench: Benchmark, quick: bool) -> list:
    return list(bench.quick_args if quick else bench.gpu_args)


def run_benchmark(bench: Benchmark, args, log: Log, env: dict, deadline: float, scratch: str) -> Result:
    """Runs one benchmark (and its setup) within its own limit and the suite's deadline."""
    script = os.path.join(ROOT, "benchmarks", bench.script)
    if not os.path.exists(script):
        log(f"skipped: benchmarks/{bench.script} does not exist (yet)")
        return Result(f"skipped: benchmarks/{bench.script} missing")
    if bench.name == "oflow":
        setup, extra = oflow_commands(args, bench, scratch, args.quick)
    else:
        setup, extra = [], bench_args(bench, args.quick)
    limit = (bench.quick_timeout if args.quick else bench.timeout) * args.timeout_scale
    t_end = min(time.perf_counter() + limit, deadline)
    if t_end - time.perf_counter() < args.min_seconds:
        log(f"skipped: less than {args.min_seconds:.0f} s of the suite's --budget left")
        return Result("skipped: --budget spent")
    spent = 0.0
    for cmd in setup:
        log("$ " + " ".join(cmd))
        result = run_command(cmd, t_end - time.perf_counter(), log, env)
        spent += result.seconds
        if result.status != "ok":
            result.status = "setup " + result.status
            return result
    cmd = [sys.executable, script] + extra
    log("$ " + " ".join(os.path.relpath(c, ROOT) if c == script else c for c in cmd))
    result = run_command(cmd, t_end - time.perf_counter(), log, env)
    result.seconds += spent
    return result


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def summary(device: dict, results: dict, figures: dict, quick: bool, log: Log) -> list:
    """Prints the benchmarks' statuses and the targets' table; returns the table's rows."""
    platform = device.get("platform", "unknown")
    log("\n== benchmarks ==")
    for bench in BENCHMARKS:
        if bench.name not in results:
            continue
        r = results[bench.name]
        line = f"  {bench.name:<17} {r.status:<28} {r.seconds:7.1f} s   {bench.what}"
        if r.status not in ("ok",) and not r.status.startswith("skipped") and last_line(r.output):
            line += f"\n  {'':<17} last line: {last_line(r.output)[:160]}"
        log(line)
    rows = []
    for target in TARGETS:
        if target.bench not in results:
            continue
        f = figures.get(target.bench, {})
        name = f"{target.name} {target.goal()}" if target.op else target.name
        rows.append(
            {
                "target": name,
                "measured": measured_text(target, f) or "-",
                "verdict": verdict(target, f, results[target.bench].status, platform, quick),
            }
        )
    width_t = max([len(r["target"]) for r in rows] + [6])
    width_m = min(max([len(r["measured"]) for r in rows] + [8]), MEASURED_WIDTH)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "--quick sizes" if quick else "GPU sizes"
    log(f"\n== targets: {device.get('kind')} ({platform}), jax {device.get('jax')}, {when}, {mode} ==")
    log(f"{'target':<{width_t}}  {'measured':<{width_m}}  verdict")
    for r in rows:
        # A long measured text continues on the next lines, in its column.
        measured = textwrap.wrap(r["measured"], width_m, break_on_hyphens=False) or ["-"]
        log(f"{r['target']:<{width_t}}  {measured[0]:<{width_m}}  {r['verdict']}")
        for more in measured[1:]:
            log(f"{'':<{width_t}}    {more}")
    return rows


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"run only these: {NAMES}")
    parser.add_argument(
        "--skip", nargs="+", choices=NAMES, default=[], metavar="NAME", help="run all but these"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for all the benchmarks (default 480 at GPU sizes, 2400 with --quick); "
        "a benchmark that would start with less than --min-seconds left is skipped",
    )
    parser.add_argument("--min-seconds", type=float, default=20.0, help="see --budget")
    parser.add_argument(
        "--timeout-scale", type=float, default=1.0, help="multiplies every benchmark's own time limit"
    )
    parser.add_argument(
        "--oflow-workdir", help="a trained Occupancy Flow run (default: train a tiny one first)"
    )
    parser.add_argument(
        "--oflow-config", default="cpu", help="that run's config argument (with --oflow-workdir)"
    )
    parser.add_argument(
        "--log",
        default=os.path.join(os.environ["OUT"], "gpu_suite.log") if os.environ.get("OUT") else None,
        help="also write everything printed here (default: $OUT/gpu_suite.log when OUT is set)",
    )
    parser.add_argument(
        "--json",
        default=os.path.join(os.environ["OUT"], "gpu_suite.json") if os.environ.get("OUT") else None,
        help="write the figures and verdicts here (default: $OUT/gpu_suite.json when OUT is set)",
    )
    args = parser.parse_args(argv)
    if args.budget is None:
        args.budget = 2400.0 if args.quick else 480.0
    for flag in ("budget", "min_seconds", "timeout_scale"):
        if not getattr(args, flag) > 0:
            cli.fail(f"--{flag.replace('_', '-')}: must be > 0, got {getattr(args, flag)}")
    if args.oflow_workdir and not os.path.isdir(args.oflow_workdir):
        cli.fail(f"--oflow-workdir: {args.oflow_workdir}: no such run folder")
    for path in (args.log, args.json):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            cli.fail(f"{path}: its folder does not exist")
    selected = [b for b in BENCHMARKS if (not args.only or b.name in args.only) and b.name not in args.skip]
    if not selected:
        cli.fail("--only / --skip: no benchmark left to run")

    log = Log(args.log)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    scratch = tempfile.mkdtemp(prefix="gpu_suite_")
    broke = False
    results, figures = {}, {}
    try:
        start = datetime.datetime.now(datetime.timezone.utc)
        deadline = time.perf_counter() + args.budget  # The device probe counts too.
        device = device_info(log, env)
        log(
            f"gpu_suite {start:%Y-%m-%d %H:%M:%S} UTC; host {os.uname().nodename}, {os.cpu_count()} CPU cores"
        )
        log(
            f"device: {device.get('kind')} ({device.get('platform')}, {device.get('count', '?')} device(s)); "
            f"jax {device.get('jax')}, jaxlib {device.get('jaxlib', '?')}, Python {device.get('python', '?')}"
        )
        gpus = nvidia_smi()
        if gpus:
            log(f"nvidia-smi: {gpus}")
        if device.get("platform") != "gpu":
            log("not a GPU: every benchmark runs, but the GPU targets are not judged")
        log(f"sizes: {'--quick (tiny)' if args.quick else 'GPU'}; budget {args.budget:.0f} s in all")
        for bench in selected:
            log(f"\n==== {bench.name}: {bench.what} ====")
            result = run_benchmark(bench, args, log, env, deadline, scratch)
            results[bench.name] = result
            log(f"---- {bench.name}: {result.status}, {result.seconds:.1f} s")
            if result.status != "ok" and not result.status.startswith("skipped"):
                tail = result.output.rstrip().splitlines()[-TAIL_LINES:]
                log(f"---- the end of {bench.name}'s output:")
                log("\n".join("   | " + line for line in tail))
            try:
                figures[bench.name] = bench.parse(result.output)
            except Exception:  # noqa: BLE001 - a parser's bug: reported, the others go on
                log(f"the suite could not read {bench.name}'s output:\n{traceback.format_exc()}")
                figures[bench.name] = {}
                broke = True
        rows = summary(device, results, figures, args.quick, log)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                record = {
                    "date": start.isoformat(),
                    "device": device,
                    "quick": args.quick,
                    "targets": rows,
                    "benchmarks": {
                        name: {
                            "status": r.status,
                            "seconds": round(r.seconds, 1),
                            "figures": figures.get(name),
                        }
                        for name, r in results.items()
                    },
                }
                json.dump(record, f, indent=1, default=str)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        log.close()
    return 1 if broke else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
