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

This file only parses flags; the work is done by the library.
"""

import json
import logging
import os

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (get_config(arg)), as path.py or path.py:arg.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs, meshes and metrics.")
_MODE = flags.DEFINE_enum("mode", "all", ["train", "generate", "eval", "all"], "What to run.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: call jax.distributed.initialize() (from the cluster environment)."
)
_CACHE = flags.DEFINE_string(
    "compilation_cache",
    os.environ.get("JAX_COMPILATION_CACHE_DIR", "~/.cache/implicit_fields/jax"),
    "Persistent XLA compilation cache: a second run skips the compiles of the first "
    "(MISE's alone take seconds). Empty: off.",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    # Orbax reports every save and restore at INFO; keep its warnings only.
    absl_logger.addFilter(lambda r: r.levelno >= logging.WARNING or "/orbax/" not in r.pathname)
    import jax

    from implicit_fields import trainer

    if _CACHE.value:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE.value))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
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
