"""Command-line entry point: train, mesh and evaluate any method of the family.

  python -m experiments.main --config experiments/configs/onet.py:cpu --workdir runs/quickstart
  python -m experiments.main --config experiments/configs/dvr.py --workdir runs/dvr
  python -m experiments.main --config experiments/configs/onet.py --workdir runs/onet \
      --config.train.batch_size=32 --mode train

The config names its method (`config.method`); the library's trainer runs it
(`implicit_fields.trainer.run`). Modes: train, generate (meshes and pictures),
eval (metrics into WORKDIR/metrics.json), or all (the three in a row, the
default). Running the same command again after an interruption resumes from
the latest checkpoint in WORKDIR.

Multi-process (multi-host) training runs the same command in every process
with --distributed: on a SLURM cluster or a TPU pod the processes find one
another from the environment; launched by hand (any machines, CPU or GPU),
each names the coordinator (process 0) and its own index:

  python -m experiments.main --config ... --workdir /shared/run --distributed \
      --coordinator_address HOST0:8476 --num_processes 2 --process_id I

The global batch (config.train.batch_size) is split over all devices of all
processes; every process builds its share and takes part in checkpoints (the
workdir must be on a disk all processes share); only process 0 writes the
logs, meshes, pictures and metrics.

This file only parses flags; the work is done by the library.
"""

import json
import logging
import os
from typing import Any, Dict, Optional

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (get_config(arg)), as path.py or path.py:arg.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs, meshes and metrics.")
_MODE = flags.DEFINE_enum("mode", "all", ["train", "generate", "eval", "all"], "What to run.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Multi-process: call jax.distributed.initialize(), from the cluster environment (SLURM, TPU pods, "
    "...) or from --coordinator_address, --num_processes and --process_id.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "With --distributed, launched by hand: HOST:PORT of process 0, which every process connects to.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --distributed, launched by hand: how many processes take part."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "With --distributed, launched by hand: this process's index, 0 ... num_processes-1."
)
_CACHE = flags.DEFINE_string(
    "compilation_cache",
    os.environ.get("JAX_COMPILATION_CACHE_DIR", "~/.cache/implicit_fields/jax"),
    "Persistent XLA compilation cache: a second run skips the compiles of the first "
    "(MISE's alone take seconds). Empty: off.",
)
flags.mark_flags_as_required(["config", "workdir"])


def distributed_args(
    distributed: bool,
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
) -> Dict[str, Any]:
    """The keyword arguments of `jax.distributed.initialize` for the launch flags ({}: from the environment).

    Raises:
      ValueError: naming the flag, when the launch flags are given without
        --distributed, are incomplete, or are out of range.
    """
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    named = [f"--{k}" for k, v in given.items() if v is not None]
    if not distributed:
        if named:
            raise ValueError(f"{named[0]}: only means something with --distributed")
        return {}
    if not named:
        return {}  # The cluster environment (SLURM, a TPU pod, ...) says it all.
    missing = [f"--{k}" for k, v in given.items() if v is None]
    if missing:
        raise ValueError(
            f"{', '.join(missing)}: missing; a process launched by hand needs --coordinator_address, "
            f"--num_processes and --process_id (or none of them, to read the cluster environment)"
        )
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"--coordinator_address={coordinator_address}: must be HOST:PORT with a port in 1 ... 65535"
        )
    if num_processes < 1:
        raise ValueError(f"--num_processes={num_processes}: must be at least 1")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"--process_id={process_id}: must be in 0 ... {num_processes - 1} "
            f"(--num_processes={num_processes})"
        )
    return given


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    # Orbax reports every save and restore at INFO; keep its warnings only.
    absl_logger.addFilter(lambda r: r.levelno >= logging.WARNING or "/orbax/" not in r.pathname)
    # Checked before the slow imports.
    launch = distributed_args(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    import jax

    from implicit_fields import trainer

    if _CACHE.value:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE.value))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    if _DISTRIBUTED.value:
        jax.distributed.initialize(**launch)
        absl_logger.info(
            "process %d of %d, with %d of the %d devices",
            jax.process_index(),
            jax.process_count(),
            jax.local_device_count(),
            jax.device_count(),
        )
    result = trainer.run(_CONFIG.value, _WORKDIR.value, _MODE.value)
    if result:
        # The headline metrics (null: undefined for every object, as the original leaves it).
        if "iou" in result:
            keys = [
                k
                for k in (
                    "iou",
                    "chamfer_l1",
                    "normal_consistency",
                    "fscore",
                    "correspondence",
                    "baseline_iou",
                )
                if k in result
            ]
        else:
            others = ("scale", "_worst", "_original")
            keys = [
                k for k, v in result.items() if (v is None or isinstance(v, float)) and not k.endswith(others)
            ]
        shown = {k: None if result[k] is None else round(result[k], 4) for k in keys}
        path = os.path.join(_WORKDIR.value, "metrics.json")
        unit = " (Chamfer-L1 x10)" if "chamfer_l1" in shown else ""
        print(f"metrics{unit}: {json.dumps(shown)} -> {path}")
        if result.get("fid_note"):  # Metrics that were not computed, and why.
            print(f"fid, feature_l1: {result['fid_note']}")


if __name__ == "__main__":
    cli.run_absl(main)
