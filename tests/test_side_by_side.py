"""experiments.side_by_side: the table of several runs and their held-out views side by side."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments import side_by_side
from implicit_fields import vis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_run(folder, metrics, seconds, views=(20, 21)):
    os.makedirs(os.path.join(folder, "views"))
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 100, "time": 1000.0}) + "\n")
        f.write(json.dumps({"step": 1000, "time": 1000.0 + seconds}) + "\n")
    for v in views:
        for suffix, value in (("", 100), ("_truth", 200)):
            img = np.full((16, 16, 3), value, np.uint8)
            vis.write_png(os.path.join(folder, "views", f"view_{v:04d}{suffix}.png"), img)


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.side_by_side", *args], cwd=REPO, capture_output=True, text=True
    )


def test_table_and_picture(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fake_run(a, {"step": 1000, "held_out_psnr": 21.234, "held_out_ssim": 0.9, "mesh_iou": 0.7}, 540.0)
    fake_run(b, {"step": 1000, "held_out_psnr": 25.0, "held_out_mask_iou": 0.8, "chamfer_l1": None}, 900.0)
    out = run("--run", f"NeRF={a}", "--run", f"DVR (surface)={b}", "--picture", str(tmp_path / "p.png"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("| run | steps | training (min) | held-out PSNR")
    # 900 s over steps 100 -> 1000 is 1000 s for the whole run: 16.7 minutes.
    assert "| NeRF | 1000 | 10.0 | 21.23 | 0.900 | - | 0.700 | - |" in lines
    assert "| DVR (surface) | 1000 | 16.7 | 25.00 | - | 0.800 | - | - |" in lines
    with Image.open(tmp_path / "p.png") as im:
        width, height = im.size
    # Two shared views (rows) of truth + two runs (columns), each upscaled from 16 to 128 pixels.
    assert width >= 3 * 128 and height >= 2 * 128


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "nonsense"], "is not NAME=WORKDIR"),
        (["--run", "x=/no/such/run"], "no such run folder"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        side_by_side.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_run_without_metrics_is_named(tmp_path, capsys):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(SystemExit) as exit_info:
        side_by_side.main(["--run", f"x={tmp_path / 'empty'}"])
    assert exit_info.value.code == 2 and "metrics.json: does not exist" in capsys.readouterr().err
