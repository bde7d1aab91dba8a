"""Mesh a scene larger than a training cube with a trained ConvONet, crop by crop (sliding window).

  python -m experiments.main --config experiments/configs/convonet.py:rooms_sliding,cpu \
      --workdir runs/rooms_sliding --mode train
  python -m experiments.sliding_window --workdir runs/rooms_sliding --tiles 2,2

Reads WORKDIR/config.json (a ConvONet on the voxel lattice, `model.local_coord`)
and its best (or latest) checkpoint, puts --tiles rooms of --split side by
side (2,2: a floor four times a training cube's), decodes the field crop by
crop (each query crop of --query_voxels voxels with the 3D U-Net's reach as a
margin), stitches the crops and runs marching cubes once. Writes
WORKDIR/sliding/scene.ply, WORKDIR/sliding.png and WORKDIR/sliding/sliding.json
(crops, seconds, the field's IoU against the rooms' exact occupancy, and the
peak memory of the sliding window against one decode of the whole scene).

This file only parses flags; the work is done by the library
(`implicit_fields.methods.convonet.generation.generate_sliding`).
"""

import logging

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained ConvONet run on the voxel lattice.")
_TILES = flags.DEFINE_string("tiles", "2,2", "Rooms along x and z, 'X,Z'.")
_SPLIT = flags.DEFINE_string("split", None, "Split of the rooms (default: the run's generate.split).")
_QUERY = flags.DEFINE_integer("query_voxels", 0, "Side of a query crop in voxels; 0: half the training grid.")
_SAMPLES = flags.DEFINE_integer("samples_per_voxel", 2, "Field samples per voxel and axis.")
_MEMORY = flags.DEFINE_bool(
    "measure_memory", True, "Also measure peak memory, sliding and whole, in fresh processes."
)
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to use.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("absl").addFilter(lambda r: r.levelno >= logging.WARNING or "/orbax/" not in r.pathname)
    from implicit_fields import trainer
    from implicit_fields.methods.convonet import generation

    parts = _TILES.value.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--tiles={_TILES.value!r}: must be two counts 'X,Z'")
    workdir = trainer.check_workdir(_WORKDIR.value, create=False)
    config = trainer.load_run_config(workdir)
    if config.method != "convonet":
        raise ValueError(f"{workdir}: is a {config.method!r} run; the sliding window needs a ConvONet")
    config.generate.checkpoint = _CHECKPOINT.value
    record = generation.generate_sliding(
        config,
        workdir,
        tiles=tuple(int(p) for p in parts),
        split=_SPLIT.value,
        query_voxels=_QUERY.value,
        samples_per_voxel=_SAMPLES.value,
        measure_memory=_MEMORY.value,
    )
    line = (
        f"{record['crops']} crops of {record['query_voxels']}^3 (+{record['margin']} margin) voxels over a "
        f"scene {record['area_ratio']:.1f}x a training cube's floor; field IoU {record['field_iou']:.3f}; "
        f"{record['seconds']:.1f} s"
    )
    if "memory_sliding" in record:
        line += (
            f"; peak memory sliding {record['memory_sliding']['peak_rss_mib']:.0f} MiB "
            f"(+{record['memory_sliding']['decode_mib']:.0f} for the decode) vs whole scene "
            f"{record['memory_whole']['peak_rss_mib']:.0f} MiB (+{record['memory_whole']['decode_mib']:.0f})"
        )
    print(line + f" -> {workdir}/sliding/scene.ply, {workdir}/sliding.png")


if __name__ == "__main__":
    cli.run_absl(main)
