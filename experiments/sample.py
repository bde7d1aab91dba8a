"""Sample new shapes from a trained unconditional Occupancy Network, and interpolate.

  python -m experiments.sample --workdir runs/unconditional_cpu --num 8
  python -m experiments.sample --workdir runs/unconditional_cpu --num 8 --interpolate --pair 0,1

Reads WORKDIR/config.json and the best (or latest) checkpoint, draws --num latents
z ~ N(0, I), meshes each decoded field with the run's `config.generate` settings
(MISE by default) and writes WORKDIR/samples/sample_000.ply, sample_001.ply, ... plus a picture grid
WORKDIR/samples.png. With --interpolate it also encodes two objects of --split
(indices --pair) to their posterior means, meshes --steps codes on the line between
them and writes WORKDIR/interpolation/step_00.ply, step_01.ply, ... and WORKDIR/interpolation.png (the
two ground-truth surfaces at the ends of the row).

This file only parses flags; the work is done by the library
(`implicit_fields.methods.onet.generation.write_samples`).
"""

import logging

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained unconditional model's workdir.")
_NUM = flags.DEFINE_integer("num", 8, "Shapes to sample from the prior.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sampled latents.")
_COLUMNS = flags.DEFINE_integer("columns", 4, "Pictures per row of samples.png.")
_INTERPOLATE = flags.DEFINE_bool("interpolate", False, "Also interpolate between two objects' codes.")
_PAIR = flags.DEFINE_string("pair", "0,1", "Indices 'A,B' of the two objects (in --split) to interpolate.")
_SPLIT = flags.DEFINE_string("split", "train", "Split the two interpolated objects come from.")
_STEPS = flags.DEFINE_integer("steps", 6, "Codes on the interpolation line, ends included.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to use.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Orbax reports every restore at INFO; keep its warnings only.
    logging.getLogger("absl").addFilter(lambda r: r.levelno >= logging.WARNING or "/orbax/" not in r.pathname)
    from implicit_fields.methods.onet import generation

    pair = tuple(int(x) for x in _PAIR.value.split(",") if x.strip().lstrip("-").isdigit())
    if len(pair) != 2 or len(_PAIR.value.split(",")) != 2:
        raise ValueError(f"--pair={_PAIR.value!r}: must be two indices 'A,B'")
    summary = generation.write_samples(
        _WORKDIR.value,
        num=_NUM.value,
        seed=_SEED.value,
        columns=_COLUMNS.value,
        interpolate=_INTERPOLATE.value,
        pair=pair,
        split=_SPLIT.value,
        steps=_STEPS.value,
        checkpoint=_CHECKPOINT.value,
    )
    watertight = sum(s["watertight"] for s in summary["samples"])
    count = len(summary["samples"])
    print(f"wrote {count} samples ({watertight} watertight) -> {summary['samples_picture']}")
    if "interpolation_picture" in summary:
        print(f"interpolation -> {summary['interpolation_picture']}")


if __name__ == "__main__":
    cli.run_absl(main)
