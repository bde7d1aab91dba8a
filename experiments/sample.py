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

This file only parses flags; the work is done by the library.
"""

import json
import os
import sys

from absl import app, flags


def run(workdir: str, num: int = 8, seed: int = 0, columns: int = 4, interpolate: bool = False,
        pair=(0, 1), split: str = "train", steps: int = 6, checkpoint: str = "best") -> dict:
    """Writes samples (and an interpolation) for the run in `workdir`; returns a summary dict."""
    import numpy as np

    from experiments.configs import default
    from implicit_fields import config_utils, generation, training, vis
    from implicit_fields.data import datasets

    workdir = os.path.abspath(workdir)
    config = config_utils.load_run_config(workdir, default.get_config())
    config.train.progress = False
    model, state, meta = training.restore_for_inference(config, workdir, checkpoint)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    summary = {"checkpoint_step": meta.get("step"), "samples": []}

    out_dir = os.path.join(workdir, "samples")
    os.makedirs(out_dir, exist_ok=True)
    samples = generation.sample_meshes(config, model, variables, num, seed)
    images = []
    for i, s in enumerate(samples):
        path = os.path.join(out_dir, f"sample_{i:03d}.ply")
        generation.write_mesh(path, s["vertices"], s["faces"])
        images.append(vis.render_mesh(s["vertices"], s["faces"], image_size=200))
        summary["samples"].append(
            {"mesh": os.path.relpath(path, workdir), "num_vertices": int(len(s["vertices"])),
             "num_faces": int(len(s["faces"])), "watertight": _watertight(s["vertices"], s["faces"])}
        )
    np.savez(os.path.join(out_dir, "latents.npz"), z=np.stack([s["z"] for s in samples]), seed=seed)
    columns = max(1, columns)
    rows = [images[i : i + columns] for i in range(0, len(images), columns)]
    labels = [[f"sample {r * columns + j}" for j in range(len(row))] for r, row in enumerate(rows)]
    picture = os.path.join(workdir, "samples.png")
    vis.write_png(picture, vis.image_grid(rows, labels=labels))
    summary["samples_picture"] = picture

    if interpolate:
        training.ensure_dataset(config.data, progress=False)
        ds = datasets.from_config(config.data, split, cache=False)
        a, b = (int(x) for x in pair)
        for index in (a, b):
            if not 0 <= index < len(ds):
                raise ValueError(f"--pair index {index} is outside the {len(ds)} objects of split {split!r}")
        data_a, data_b = ds.load(a), ds.load(b)
        meshes = generation.interpolation_meshes(config, model, variables, data_a, data_b, a, b, steps)
        interp_dir = os.path.join(workdir, "interpolation")
        os.makedirs(interp_dir, exist_ok=True)
        row = [vis.render_points(data_a["surface_points"], data_a["surface_normals"], image_size=200)]
        names = [f"{ds.items[a].model} truth"]
        for i, m in enumerate(meshes):
            generation.write_mesh(os.path.join(interp_dir, f"step_{i:02d}.ply"), m["vertices"], m["faces"])
            row.append(vis.render_mesh(m["vertices"], m["faces"], image_size=200))
            names.append(f"t={m['t']:.2f}")
        row.append(vis.render_points(data_b["surface_points"], data_b["surface_normals"], image_size=200))
        names.append(f"{ds.items[b].model} truth")
        picture = os.path.join(workdir, "interpolation.png")
        vis.write_png(picture, vis.image_grid([row], labels=[names]))
        summary["interpolation_picture"] = picture
        summary["interpolation"] = {"split": split, "pair": [a, b], "steps": steps}
    with open(os.path.join(out_dir, "samples.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def _watertight(vertices, faces) -> bool:
    import trimesh

    return bool(len(faces)) and bool(trimesh.Trimesh(vertices, faces, process=False).is_watertight)


def _define_flags():
    """The command's flags (defined only when run as a script, so that importing `run`
    next to `experiments.main` does not define --workdir twice)."""
    flags.DEFINE_string("workdir", None, "A trained unconditional model's workdir.")
    flags.DEFINE_integer("num", 8, "Shapes to sample from the prior.")
    flags.DEFINE_integer("seed", 0, "Seed of the sampled latents.")
    flags.DEFINE_integer("columns", 4, "Pictures per row of samples.png.")
    flags.DEFINE_bool("interpolate", False, "Also interpolate between two objects' codes.")
    flags.DEFINE_string("pair", "0,1", "Indices 'A,B' of the two objects (in --split) to interpolate.")
    flags.DEFINE_string("split", "train", "Split the two interpolated objects come from.")
    flags.DEFINE_integer("steps", 6, "Codes on the interpolation line, ends included.")
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to use.")
    flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        pair = tuple(int(x) for x in f.pair.split(","))
        if len(pair) != 2:
            raise ValueError(f"--pair must be two indices 'A,B', got {f.pair!r}")
        summary = run(
            f.workdir, f.num, f.seed, f.columns, f.interpolate, pair, f.split, f.steps, f.checkpoint
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    watertight = sum(s["watertight"] for s in summary["samples"])
    count = len(summary["samples"])
    print(f"wrote {count} samples ({watertight} watertight) -> {summary['samples_picture']}")
    if "interpolation_picture" in summary:
        print(f"interpolation -> {summary['interpolation_picture']}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
