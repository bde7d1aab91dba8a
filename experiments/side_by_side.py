"""One table (and one picture) of several runs on the same scene: NeRF, DVR, DVR as a volume, ...

Reads each run's `metrics.json` (after `--mode all` or `--mode eval`) and
`metrics.jsonl` (training time), and prints a Markdown table with held-out PSNR
and SSIM, mask IoU, and mesh IoU and Chamfer-L1 (x10) against the exact shape:

  python -m experiments.side_by_side --run NeRF=runs/nerf --run "DVR (surface)"=runs/dvr \\
      --run "DVR (volume)"=runs/dvr_volume --picture side_by_side.png

With `--picture`, the held-out views each run wrote (`views/*.png` in its workdir)
are put side by side: one row per view, the truth then each run.
"""

import json
import os

import numpy as np

from experiments import cli
from implicit_fields import vis
from implicit_fields.data import image_io

COLUMNS = (
    ("held-out PSNR", "held_out_psnr", "{:.2f}"),
    ("SSIM", "held_out_ssim", "{:.3f}"),
    ("mask IoU", "held_out_mask_iou", "{:.3f}"),
    ("mesh IoU", "mesh_iou", "{:.3f}"),
    ("Chamfer-L1 x10", "chamfer_l1", "{:.4f}"),
)


def _read_json(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: does not exist; run the training with --mode all (or eval) first")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None


def training_minutes(workdir):
    """Wall-clock minutes between the first and the last record of metrics.jsonl, or None."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    times, steps = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "time" in rec and "step" in rec:
                times.append(rec["time"])
                steps.append(rec["step"])
    if len(times) < 2 or steps[-1] <= steps[0]:
        return None
    # The first record comes after steps[0] steps (and the compilation): scale to the whole run.
    return (times[-1] - times[0]) * steps[-1] / (steps[-1] - steps[0]) / 60.0


def table(runs):
    """Markdown table of `runs` [(name, workdir)]."""
    head = "| run | steps | training (min) | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for name, workdir in runs:
        m = _read_json(os.path.join(workdir, "metrics.json"))
        minutes = training_minutes(workdir)
        cells = [name, str(m.get("step", "")), f"{minutes:.1f}" if minutes else "-"]
        for _, key, fmt in COLUMNS:
            v = m.get(key)
            cells.append(fmt.format(v) if isinstance(v, (int, float)) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def picture(runs, path, max_views=4):
    """One row per held-out view: the truth, then each run's rendering (`views/` of each workdir)."""
    rows, labels = [], []
    listings = []
    for name, workdir in runs:
        folder = os.path.join(workdir, "views")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: no rendered views; run --mode generate of {name!r} again")
        listings.append(sorted(f for f in os.listdir(folder) if f.startswith("view_") and f.endswith(".png")))
    shared = sorted(set(listings[0]).intersection(*listings[1:]))
    shared = [f for f in shared if not f.endswith("_truth.png")][:max_views]
    if not shared:
        raise ValueError("the runs have no held-out view in common (views/view_*.png)")
    for f in shared:
        truth = os.path.join(runs[0][1], "views", f.replace(".png", "_truth.png"))
        images = [truth] + [os.path.join(w, "views", f) for _, w in runs]
        row = [(np.clip(image_io.read_rgb(p), 0, 1) * 255 + 0.5).astype(np.uint8) for p in images]
        scale = max(1, 128 // max(row[0].shape[:2]))
        rows.append([np.repeat(np.repeat(im, scale, 0), scale, 1) for im in row])
        labels.append([f"{f[5:-4]} truth"] + [name for name, _ in runs])
    vis.write_png(path, vis.image_grid(rows, labels))
    return path


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=WORKDIR (repeat)")
    parser.add_argument("--picture", default="", help="write the held-out views side by side here (PNG)")
    parser.add_argument("--markdown", default="", help="also write the table to this file")
    args = parser.parse_args(argv)
    runs = []
    for spec in args.run:
        if "=" not in spec:
            cli.fail(f"--run: {spec!r} is not NAME=WORKDIR")
        name, workdir = spec.split("=", 1)
        if not os.path.isdir(workdir):
            cli.fail(f"--run {name}: {workdir}: no such run folder")
        runs.append((name, workdir))
    text = cli.run(table, runs)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if args.picture:
        print(f"wrote {cli.run(picture, runs, args.picture)}")


if __name__ == "__main__":
    main()
