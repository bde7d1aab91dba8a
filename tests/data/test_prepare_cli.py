"""`python -m experiments.prepare_data` on bad flags, inputs and outputs: one line on stderr,
`error: <flag or path>: <problem>`, exit code 2, no traceback, nothing written.

The cases run from one module fixture; each is then checked by its own (parametrized) test.
Starting Python and importing the library is most of a case's second, so the error cases
run in one Python process started for them, each as `python -m` runs a module (`runpy`, as
`__main__`, with its own `sys.argv`, file descriptors 1 and 2 read back, SystemExit turned
into the exit code the interpreter would give, warnings shown afresh). A few cases run as
processes of their own as well, and must give the same results; the one-mesh dataset is
made by a process of its own.
"""

import json
import os
import subprocess
import sys
import textwrap

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


# The cases that also run as processes of their own: an argparse error, a flag checked by the
# script and a bad input folder.
OWN_PROCESS = ("num_points_text", "splits_sum", "input_missing")

# `python -m experiments.prepare_data ARGS` for each case of a JSON {case: ARGS}, in one process.
IN_ONE_PROCESS = textwrap.dedent(
    """
    import json, os, runpy, sys, tempfile, traceback, warnings
    results = {}
    for case, args in json.loads(sys.argv[1]).items():
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            saved = os.dup(1), os.dup(2)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.argv = ["-m", *args]
            try:
                with warnings.catch_warnings():  # Each case shows its warnings, as a new process.
                    runpy.run_module("experiments.prepare_data", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:  # As the interpreter ends: None is 0, an int itself, else printed and 1.
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            out.seek(0)
            err.seek(0)
            results[case] = (code, out.read(), err.read())
    print("RESULT" + json.dumps(results))
    """
)


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

    def start(command):
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    # Every error case in one process; a few of them, and the one-mesh run, in processes of their own.
    commands = {case: _command(case, paths) for case in CASES}
    arguments = json.dumps({case: command[3:] for case, command in commands.items()})
    in_one = start([sys.executable, "-c", IN_ONE_PROCESS, arguments])
    own = {case: start(commands[case]) for case in OWN_PROCESS}
    own["one_mesh"] = start(_one_mesh_command(paths))
    for case, proc in own.items():
        out, err = proc.communicate(timeout=240)
        own[case] = (proc.returncode, out, err)
    out, err = in_one.communicate(timeout=240)
    assert in_one.returncode == 0 and "RESULT" in out, err[-3000:]
    results = {case: tuple(r) for case, r in json.loads(out.split("RESULT", 1)[1]).items()}
    return paths, results, own


def _one_mesh_command(paths):
    args = ["--input", os.path.join(paths["good"], "box.off"), "--output", paths["out"] + "_one_mesh"]
    return [sys.executable, "-m", "experiments.prepare_data", *args, *FAST]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_flag_is_one_error_line(runs, case):
    paths, results, _ = runs
    code, _, err = results[case]
    _, fragment, may_exist = CASES[case]
    fragment = fragment.format(**paths)
    lines = err.strip().splitlines()
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert lines[-1].startswith("error: ") and fragment in lines[-1], (fragment, lines[-1])
    if not may_exist:
        assert not os.path.exists(paths["out"] + "_" + case)  # Checked before any work.


@pytest.mark.parametrize("case", OWN_PROCESS)
def test_a_process_of_its_own_gives_the_same_result(runs, case):
    _, results, own = runs
    assert own[case] == results[case]


def test_the_rerun_errors_changed_nothing(runs):
    paths, _, _ = runs
    for split in onet_format.SPLITS:
        assert onet_format.read_split(os.path.join(paths["prepared"], "real"), split) == ["box"]
    points = onet_format.load_points_npz(os.path.join(paths["prepared"], "real", "box", "points.npz"))
    assert points["points"].shape == (500, 3)


def test_one_mesh_makes_a_dataset_with_every_split(runs):
    paths, _, own = runs
    code, out, err = own["one_mesh"]
    assert code == 0, err[-2000:]
    assert "note: too few objects for a separate val split" in out
    assert "note: too few objects for a separate test split" in out
    category = paths["out"] + "_one_mesh/real"
    for split in onet_format.SPLITS:
        assert onet_format.read_split(category, split) == ["box"]
