"""Render built-in objects to multi-view images (DVR layout) and a contact sheet.

  python -m experiments.render_multiview --out outputs/multiview --objects 1 --views 6

Generates a small built-in dataset in OUT/data if none is given with --dataset, renders
--views views per object into each object folder (image/, mask/, depth/, cameras.npz)
and writes OUT/contact_sheet.png: one row per object with its images, then the masks
and depth maps of the first views. The work is done by `implicit_fields.data.multiview`.
"""

import os
import time

import numpy as np

from experiments import cli
from implicit_fields import vis
from implicit_fields.data import builtin, multiview
from implicit_fields.data.shapes import CATEGORIES, category_synset


def _depth_picture(depth):
    """float depth map (inf background) -> uint8 grey, near = dark."""
    finite = np.isfinite(depth)
    out = np.full(depth.shape, 255, np.uint8)
    if finite.any():
        lo, hi = depth[finite].min(), depth[finite].max()
        out[finite] = np.rint(30 + 180 * (depth[finite] - lo) / max(hi - lo, 1e-9)).astype(np.uint8)
    return out


def _main(argv):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/multiview", help="output folder")
    parser.add_argument("--dataset", default=None, help="existing built-in dataset (else made in OUT/data)")
    parser.add_argument("--categories", default=",".join(CATEGORIES.values()), help="comma-separated")
    parser.add_argument("--objects", type=int, default=1, help="objects per category")
    parser.add_argument("--views", type=int, default=6, help="views per object")
    parser.add_argument("--resolution", type=int, default=96, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--texture", default="stripes", choices=["none", "stripes"])
    parser.add_argument("--sheet_views", type=int, default=4, help="views per row of the sheet")
    args = parser.parse_args(argv)
    for flag, value, low in (
        ("--objects", args.objects, 1),
        ("--views", args.views, 1),
        ("--resolution", args.resolution, 2),
        ("--seed", args.seed, 0),
        ("--sheet_views", args.sheet_views, 1),
    ):
        if value < low:
            raise ValueError(f"{flag}: must be >= {low}, got {value}")
    try:
        categories = [category_synset(c.strip()) for c in args.categories.split(",") if c.strip()]
    except ValueError as e:
        raise ValueError(f"--categories: {e}") from None
    if not categories:
        raise ValueError(f"--categories: no category given (got {args.categories!r})")
    if args.dataset is not None and not os.path.isdir(args.dataset):
        raise ValueError(f"--dataset: {args.dataset}: no such folder")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out: {args.out}: exists and is not a folder")
    dataset = args.dataset or os.path.join(args.out, "data")
    if args.dataset is None:
        builtin.generate_dataset(
            dataset,
            categories,
            max(args.objects, 1),
            seed=args.seed,
            num_points=2048,
            num_surface_points=2048,
            num_workers=1,
        )
    start = time.time()
    folders = multiview.generate_multiview_dataset(
        dataset,
        categories,
        n_views=args.views,
        resolution=args.resolution,
        seed=args.seed,
        texture=args.texture,
        max_objects=args.objects,
        overwrite=True,
    )
    elapsed = time.time() - start
    print(
        f"rendered {len(folders)} objects x {args.views} views at {args.resolution}px "
        f"in {elapsed:.1f}s ({elapsed / max(len(folders) * args.views, 1):.3f} s/view)"
    )

    rows, labels = [], []
    for folder in folders:
        data = multiview.load_multiview(folder)
        k = min(args.sheet_views, data.num_views)
        row = [np.rint(data.images[i] * 255).astype(np.uint8) for i in range(k)]
        row += [data.masks[0].astype(np.uint8) * 255, _depth_picture(data.depths[0])]
        rows.append(row)
        name = CATEGORIES.get(os.path.basename(os.path.dirname(folder)), "")
        labels.append([f"{name} {i}" for i in range(k)] + ["mask 0", "depth 0"])
    os.makedirs(args.out, exist_ok=True)
    sheet = os.path.join(args.out, "contact_sheet.png")
    vis.write_png(sheet, vis.image_grid(rows, labels))
    print(f"wrote {sheet}")


def main(argv=None):
    """The command line; a bad flag or file is one line on stderr and exit code 2."""
    return cli.run(_main, argv)


if __name__ == "__main__":
    main()
