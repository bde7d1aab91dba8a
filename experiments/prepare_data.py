"""Convert a folder of meshes (OFF, OBJ, PLY, STL) into the Occupancy Networks layout.

  python -m experiments.prepare_data --input DIR_OF_MESHES --output DATASET_DIR

Normalisation, occupancy points (uniform + near-surface), surface points with normals,
32^3 voxels, img_choy2016 renderings (24 views of 64 px by default) and splits, as
documented in `implicit_fields.data.prepare`. Broken meshes
(unreadable, open, self-intersecting, no volume) are reported and skipped; the summary is
printed and written to DATASET_DIR/prepare_report.json.

Every flag is checked before any work; a bad one stops with `error: <flag>: <problem>`
(exit code 2). A rerun completes an interrupted one; a rerun with other parameters than
the existing objects were made with stops and lists them (old -> new), unless
`--rebuild` asks to regenerate what they change. With fewer meshes than splits, the
empty splits reuse the train objects (printed), so one mesh is enough to train on.
"""

from experiments import cli
from implicit_fields.data import prepare

FLAGS = {
    "input_dir": "--input",
    "out_dir": "--output",
    "category": "--category",
    "num_points": "--num-points",
    "num_surface_points": "--num-surface-points",
    "surface_fraction": "--surface-fraction",
    "voxel_resolution": "--voxel-resolution",
    "render_views": "--render-views",
    "render_resolution": "--render-resolution",
    "num_workers": "--workers",
    "split_fractions": "--splits",
    "seed": "--seed",
    "rebuild": "--rebuild",
}
"""The flag of each `prepare.prepare_dataset` argument (for error messages)."""


def print_summary(report):
    """Print converted / skipped counts, the reason of every skipped mesh and reused splits."""
    n_conv, n_skip = len(report["converted"]), len(report["skipped"])
    print(f"converted {n_conv}, skipped {n_skip} of {n_conv + n_skip} meshes in {report['seconds']:.0f} s")
    for rec in report["skipped"]:
        print(f"  skipped {rec['source']}: {rec['reason']}")
    if report.get("rebuilt"):
        print(f"  rebuilt {len(report['rebuilt'])} objects made with other parameters")
    for rec in report.get("rebuild_failed", []):
        print(f"  not rebuilt, left out of the splits: {rec['model_id']} ({rec['source']}): {rec['reason']}")
    for rec in report.get("render_errors", []):
        print(f"  no renderings for existing {rec['model_id']} ({rec['source']}): {rec['reason']}")
    print("splits: " + ", ".join(f"{k} {len(v)}" for k, v in report["splits"].items()))
    for split, what in report.get("reused_splits", {}).items():
        print(f"note: too few objects for a separate {split} split: {split}.lst lists {what} (none held out)")


def add_arguments(parser):
    parser.add_argument("--num-points", type=int, default=100_000, help="occupancy points per mesh")
    parser.add_argument("--num-surface-points", type=int, default=100_000, help="surface points per mesh")
    parser.add_argument(
        "--surface-fraction",
        type=float,
        default=0.5,
        help="fraction of the occupancy points near the surface (after the uniform ones)",
    )
    parser.add_argument("--voxel-resolution", type=int, default=32, help="model.binvox side (0: none)")
    parser.add_argument(
        "--render-views", type=int, default=24, help="img_choy2016 renderings per mesh (0: none)"
    )
    parser.add_argument(
        "--render-resolution", type=int, default=64, help="rendering side in pixels (the original's: 137)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: usable cores)")
    parser.add_argument(
        "--splits", default="0.7,0.1,0.2", help="train,val,test fractions (negative values: --splits=...)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="regenerate the existing objects (and splits) made with other parameters",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args, input_dir, output, category, category_name=None, input_flag="--input"):
    """prepare.prepare_dataset with the parsed arguments; prints and returns the report.

    Args:
      input_flag: how errors name the input folder (the flag it came from).

    Raises:
      ValueError: a bad flag or a parameter mismatch, the message naming the flags.
    """

    def _flag(argument):
        return input_flag if argument == "input_dir" else FLAGS.get(argument, argument)

    try:
        report = prepare.prepare_dataset(
            input_dir,
            output,
            category=category,
            category_name=category_name,
            num_points=args.num_points,
            num_surface_points=args.num_surface_points,
            surface_fraction=args.surface_fraction,
            voxel_resolution=args.voxel_resolution,
            render_views=args.render_views,
            render_resolution=args.render_resolution,
            split_fractions=args.splits,
            seed=args.seed,
            num_workers=args.workers,
            progress=not args.quiet,
            rebuild=args.rebuild,
        )
    except prepare.ArgumentError as e:
        raise ValueError(f"{_flag(e.argument)}: {e.problem}") from e
    except prepare.ParameterMismatchError as e:
        raise ValueError(e.describe(_flag, "--rebuild")) from e
    print_summary(report)
    return report


def _main(argv):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of mesh files (searched recursively)")
    parser.add_argument("--output", required=True, help="dataset root to create or complete")
    parser.add_argument("--category", default="real", help="category id (folder name)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args, args.input, args.output, args.category)


def main(argv=None):
    """The command line; a bad flag or file is one line on stderr and exit code 2."""
    return cli.run(_main, argv)


if __name__ == "__main__":
    main()
