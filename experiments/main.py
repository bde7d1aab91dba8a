"""Command-line entry point: train, mesh and evaluate an Occupancy Network (or DVR).

  python -m experiments.main --config experiments/configs/quickstart.py --workdir runs/quickstart
  python -m experiments.main --config experiments/configs/dvr_multiview.py --workdir runs/dvr
  python -m experiments.main --config experiments/configs/default.py --workdir runs/onet \
      --config.train.batch_size=32 --mode train

Modes: train, generate (meshes of the split in config.generate.split), eval
(metrics of those meshes into WORKDIR/metrics.json), or all (the three in a row,
the default). Running the same command again after an interruption resumes
from the latest checkpoint in WORKDIR.

This file only parses flags; the work is done by the library.
"""

import json
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (get_config()).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs, meshes and metrics.")
_MODE = flags.DEFINE_enum("mode", "all", ["train", "generate", "eval", "all"], "What to run.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: call jax.distributed.initialize() (from the cluster environment)."
)
_CACHE = flags.DEFINE_string(
    "compilation_cache", os.environ.get("JAX_COMPILATION_CACHE_DIR", "~/.cache/implicit_fields/jax"),
    "Persistent XLA compilation cache: a second run skips the compiles of the first "
    "(MISE's alone take seconds). Empty: off.",
)
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir: str, mode: str = "all") -> dict:
    """Runs `mode` for `config` in `workdir`; returns the metrics dict when evaluating."""
    import jax

    if config.get("method", "onet") == "dvr":  # Differentiable Volumetric Rendering from images
        from experiments.configs import dvr_multiview
        from implicit_fields import config_utils, dvr_training

        config_utils.check_keys(config, dvr_multiview.get_config(), source="the config")
        return dvr_training.run(config, workdir, mode)

    from experiments.configs import default
    from implicit_fields import config_utils, evaluation, generation, training

    config_utils.check_keys(config, default.get_config(), source="the config")
    workdir = os.path.abspath(workdir)
    if config.debug.disable_jit:
        jax.config.update("jax_disable_jit", True)
    result = {}
    if mode in ("train", "all"):
        training.train_and_evaluate(config, workdir)
    if jax.process_index() != 0:
        return result  # meshing and evaluation run on the first process only
    if mode in ("generate", "all"):
        training.ensure_dataset(config.data, progress=config.train.progress)
        model, state, meta = training.restore_for_inference(config, workdir, config.generate.checkpoint)
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        records = generation.generate_meshes(config, workdir, model, variables)
        print(f"wrote {len(records)} meshes to {os.path.join(workdir, 'meshes')} "
              f"(checkpoint step {meta.get('step')}), picture {os.path.join(workdir, 'reconstruction.png')}")
    if mode in ("eval", "all"):
        records = evaluation.load_generation_records(workdir)
        result = evaluation.evaluate_meshes(config, workdir, records)
        summary = {k: round(result[k], 4) for k in evaluation.REPORTED}
        print(f"{result['split']} metrics over {result['num_objects']} objects "
              f"(Chamfer-L1 x10): {json.dumps(summary)} -> {os.path.join(workdir, 'metrics.json')}")
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    # Orbax reports every save and restore at INFO; keep its warnings only.
    absl_logger.addFilter(lambda r: r.levelno >= logging.WARNING or "/orbax/" not in r.pathname)
    import jax

    if _CACHE.value:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE.value))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    try:
        run(_CONFIG.value, _WORKDIR.value, _MODE.value)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
