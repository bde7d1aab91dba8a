"""Convert a folder of meshes (OFF, OBJ, PLY, STL) into the Occupancy Networks layout.

  python -m experiments.prepare_data --input DIR_OF_MESHES --output DATASET_DIR

Normalisation, occupancy points (uniform + near-surface), surface points with normals,
32^3 voxels, img_choy2016 renderings (24 views of 64 px by default) and splits, as
documented in `implicit_fields.data.prepare`. Broken meshes
(unreadable, open, self-intersecting, no volume) are reported and skipped; the summary is
printed and written to DATASET_DIR/prepare_report.json.
"""

import argparse

from implicit_fields.data import prepare


def print_summary(report):
    """Print converted / skipped counts and the reason of every skipped mesh."""
    n_conv, n_skip = len(report["converted"]), len(report["skipped"])
    print(f"converted {n_conv}, skipped {n_skip} of {n_conv + n_skip} meshes in {report['seconds']:.0f} s")
    for rec in report["skipped"]:
        print(f"  skipped {rec['source']}: {rec['reason']}")
    for rec in report.get("render_errors", []):
        print(f"  no renderings for existing {rec['model_id']} ({rec['source']}): {rec['reason']}")
    print("splits: " + ", ".join(f"{k} {len(v)}" for k, v in report["splits"].items()))


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
    parser.add_argument("--splits", default="0.7,0.1,0.2", help="train,val,test fractions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args, input_dir, output, category, category_name=None):
    """prepare.prepare_dataset with the parsed arguments; prints and returns the report."""
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
        split_fractions=[float(x) for x in args.splits.split(",")],
        seed=args.seed,
        num_workers=args.workers,
        progress=not args.quiet,
    )
    print_summary(report)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of mesh files (searched recursively)")
    parser.add_argument("--output", required=True, help="dataset root to create or complete")
    parser.add_argument("--category", default="real", help="category id (folder name)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    run(args, args.input, args.output, args.category)


if __name__ == "__main__":
    main()
