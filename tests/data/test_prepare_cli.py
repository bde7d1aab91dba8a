"""`python -m experiments.prepare_data` on bad flags, inputs and outputs: one line on stderr,
`error: <flag or path>: <problem>`, exit code 2, no traceback, nothing written.

The cases run as subprocesses, a few at a time, from one module fixture; each is then
checked by its own (parametrized) test.
"""

import os
import subprocess
import sys

import pytest
import trimesh

import experiment_configs
from implicit_fields.data import onet_format, prepare

REPO = experiment_configs.REPO
FAST = [
    "--num-points",
    "500",
    "--num-surface-points",
    "500",
    "--render-views",
    "0",
    "--voxel-resolution",
    "0",
    "--workers",
    "1",
    "--quiet",
]

# id: (flags given a dict of paths, what the error line must name, whether the output
# folder may exist afterwards).
CASES = {
    "input_missing": (lambda p: ["--input", p["nowhere"]], "--input: {nowhere}: no such folder", False),
    "input_empty_path": (lambda p: ["--input", ""], "--input: no folder given", False),
    "input_no_meshes": (lambda p: ["--input", p["empty"]], "--input: {empty}: no .off/.obj/.ply/.stl", False),
    "input_a_text_file": (lambda p: ["--input", p["text"]], "--input: {text}: not a folder", False),
    "input_only_broken": (lambda p: ["--input", p["broken"]], "--input: {broken}: none of its 2 mesh", False),
    "input_flag_absent": (lambda p: ["--drop-input"], "the following arguments are required: --input", False),
    "splits_not_numbers": (lambda p: ["--splits", "a,b,c"], "--splits: must be 3 numbers", False),
    "splits_two": (lambda p: ["--splits", "0.5,0.5"], "--splits: must be 3 numbers", False),
    "splits_negative": (lambda p: ["--splits=-0.5,1,0.5"], "--splits: must be non-negative", False),
    "splits_sum": (lambda p: ["--splits", "0.5,0.2,0.2"], "--splits: must sum to 1", False),
    "num_points_0": (lambda p: ["--num-points", "0"], "--num-points: must be >= 1, got 0", False),
    "num_points_text": (lambda p: ["--num-points", "many"], "--num-points: invalid int value", False),
    "surface_points_neg": (
        lambda p: ["--num-surface-points", "-3"],
        "--num-surface-points: must be >= 1",
        False,
    ),
    "surface_fraction_big": (
        lambda p: ["--surface-fraction", "1.5"],
        "--surface-fraction: must be in [0.0",
        False,
    ),
    "voxels_negative": (lambda p: ["--voxel-resolution", "-1"], "--voxel-resolution: must be >= 0", False),
    "views_negative": (lambda p: ["--render-views", "-2"], "--render-views: must be >= 0", False),
    "resolution_1": (lambda p: ["--render-resolution", "1"], "--render-resolution: must be >= 2", False),
    "workers_negative": (lambda p: ["--workers", "-1"], "--workers: must be >= 0", False),
    "category_path": (lambda p: ["--category", "a/b"], "--category: must be a folder name", False),
    "output_a_file": (
        lambda p: ["--output", p["text"]],
        "--output: {text}: exists and is not a folder",
        True,
    ),
    "output_under_a_file": (
        lambda p: ["--output", p["text"] + "/sub"],
        "--output: {text}/sub: cannot be",
        True,
    ),
    "rerun_other_points": (
        lambda p: ["--output", p["prepared"], "--num-points", "700"],
        "{prepared}/real: was prepared with other parameters: --num-points 500 -> 700",
        True,
    ),
    "rerun_other_splits": (
        lambda p: ["--output", p["prepared"], "--splits", "0.5,0.5,0"],
        "{prepared}/real: was prepared with other parameters: --splits 0.7,0.1,0.2 -> 0.5,0.5,0.0",
        True,
    ),
}


def _command(case, paths):
    flags, _, _ = CASES[case]
    given = flags(paths)
    args = ["--input", paths["good"], "--output", paths["out"] + "_" + case]
    if "--drop-input" in given:
        args, given = args[2:], []
    args = args + FAST + given  # Later flags win.
    return [sys.executable, "-m", "experiments.prepare_data", *args]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    paths = {name: str(root / name) for name in ("good", "empty", "broken", "nowhere", "out", "prepared")}
    for name in ("good", "empty", "broken"):
        os.mkdir(paths[name])
    trimesh.creation.box().export(os.path.join(paths["good"], "box.off"))
    with open(os.path.join(paths["broken"], "open.off"), "w") as f:
        f.write("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    with open(os.path.join(paths["broken"], "junk.stl"), "wb") as f:
        f.write(b"")
    paths["text"] = str(root / "notes.txt")
    with open(paths["text"], "w") as f:
        f.write("not a folder")
    prepare.prepare_dataset(
        paths["good"],
        paths["prepared"],
        num_points=500,
        num_surface_points=500,
        render_views=0,
        voxel_resolution=0,
        num_workers=0,
        progress=False,
    )
    env = {k: v for k, v in os.environ.items() if k != "IMPLICIT_FIELDS_DEBUG"}
    results, pending = {}, list(CASES) + ["one_mesh"]
    while pending:  # Three at a time: each process mostly imports.
        batch, pending = pending[:3], pending[3:]
        procs = {}
        for case in batch:
            command = _command(case, paths) if case in CASES else _one_mesh_command(paths)
            procs[case] = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        for case, proc in procs.items():
            out, err = proc.communicate(timeout=240)
            results[case] = (proc.returncode, out, err)
    return paths, results


def _one_mesh_command(paths):
    args = ["--input", os.path.join(paths["good"], "box.off"), "--output", paths["out"] + "_one_mesh"]
    return [sys.executable, "-m", "experiments.prepare_data", *args, *FAST]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_flag_is_one_error_line(runs, case):
    paths, results = runs
    code, _, err = results[case]
    _, fragment, may_exist = CASES[case]
    fragment = fragment.format(**paths)
    lines = err.strip().splitlines()
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert lines[-1].startswith("error: ") and fragment in lines[-1], (fragment, lines[-1])
    if not may_exist:
        assert not os.path.exists(paths["out"] + "_" + case)  # Checked before any work.


def test_the_rerun_errors_changed_nothing(runs):
    paths, _ = runs
    for split in onet_format.SPLITS:
        assert onet_format.read_split(os.path.join(paths["prepared"], "real"), split) == ["box"]
    points = onet_format.load_points_npz(os.path.join(paths["prepared"], "real", "box", "points.npz"))
    assert points["points"].shape == (500, 3)


def test_one_mesh_makes_a_dataset_with_every_split(runs):
    paths, results = runs
    code, out, err = results["one_mesh"]
    assert code == 0, err[-2000:]
    assert "note: too few objects for a separate val split" in out
    assert "note: too few objects for a separate test split" in out
    category = paths["out"] + "_one_mesh/real"
    for split in onet_format.SPLITS:
        assert onet_format.read_split(category, split) == ["box"]
