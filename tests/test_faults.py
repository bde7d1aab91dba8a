"""The fault suite: a kill during a checkpoint write, corrupt checkpoints, a changed config, an
interrupted or mixed generation, unusable workdirs. Each fault ends in the right fallback or in one
clear error, and nothing already saved is lost.

The trainer's side runs the least-squares method of `fake_method` (fast); the generation records
run the real ONet on the tiny config.
"""

import glob
import json
import logging
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
from fake_method import _fake_config

import experiment_configs
from implicit_fields import checkpointing, meshing, train_utils, trainer

REPO = experiment_configs.REPO


def _params(state):
    return np.asarray(jax.device_get(state.params["w"]))


def _snapshot(folder):
    """Every file under `folder` with its size and modification time."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def _truncate(pattern):
    files = [f for f in glob.glob(pattern) if os.path.isfile(f)]
    assert files, pattern
    for f in files:
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
    return files


# ---------------------------------------------------------------------------
# Kill during a checkpoint write.
# ---------------------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import orbax.checkpoint as ocp
    import fake_method
    from implicit_fields import trainer

    fake_method.install()
    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        out = real_save(self, step, *args, **kwargs)
        if step == {kill_at} and "checkpoints" in str(self.directory):
            os.kill(os.getpid(), signal.SIGKILL)  # While the asynchronous write runs.
        return out

    ocp.CheckpointManager.save = save
    config = fake_method._fake_config()
    config.train.num_steps = 8
    trainer.train_and_evaluate(config, {workdir!r})
    """
)


@pytest.mark.parametrize("kill_at", [4, 6])
def test_a_kill_during_a_checkpoint_write_then_a_rerun_resumes_bit_exactly(fake, tmp_path, kill_at):
    config = _fake_config()
    config.train.num_steps = 8
    unbroken = trainer.train_and_evaluate(config, str(tmp_path / "unbroken"))
    workdir = str(tmp_path / "killed")
    script = KILL_SCRIPT.format(tests=os.path.dirname(__file__), kill_at=kill_at, workdir=workdir)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    resumed = trainer.train_and_evaluate(config, workdir)
    np.testing.assert_array_equal(_params(resumed), _params(unbroken))
    assert int(resumed.step) == 8


# ---------------------------------------------------------------------------
# Corrupt checkpoints.
# ---------------------------------------------------------------------------

# Files of an Orbax checkpoint whose damage makes it unreadable (data, array and JSON metadata).
DAMAGE = {
    "data file": "state/d/*",
    "state metadata": "state/_METADATA",
    "record": "meta/metadata",
    "manifest": "state/manifest.ocdbt",
    "array metadata": "state/array_metadatas/*",
}


@pytest.fixture
def trained(fake, tmp_path):
    """A finished fake run with checkpoints at steps 2, 4 and 6 (and best/), plus an unbroken
    8-step run to compare a resumed one with."""
    config = _fake_config()
    config.train.max_to_keep = 3
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(config, workdir)
    longer = _fake_config()
    longer.train.max_to_keep = 3
    longer.train.num_steps = 8
    # The run from step 4 to 8 reaches the parameters of an unbroken 8-step run.
    unbroken = trainer.train_and_evaluate(longer, str(tmp_path / "unbroken"))
    return config, workdir, longer, _params(unbroken)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one(trained, damage, caplog):
    config, workdir, longer, unbroken = trained
    bad = os.path.join(workdir, "checkpoints", "6")
    damaged = _truncate(os.path.join(bad, DAMAGE[damage]))
    caplog.set_level(logging.WARNING)
    _, state, meta = trainer.restore(config, workdir, "latest")
    assert meta["step"] == 4 and int(state.step) == 4
    # The warning names the damaged file itself (TensorStore's and JSON's errors do not).
    warned = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert any(d in w for d in damaged for w in warned), warned
    assert os.path.exists(bad)  # Reading never moves or deletes.
    # Training resumes from step 4: the unreadable checkpoint is moved aside (kept), its step saved anew.
    resumed = trainer.train_and_evaluate(longer, workdir)
    np.testing.assert_array_equal(_params(resumed), unbroken)
    kept = glob.glob(os.path.join(workdir, "checkpoints.corrupt", "6_*"))
    assert len(kept) == 1 and os.path.exists(os.path.join(kept[0], os.path.relpath(damaged[0], bad)))
    assert checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")).latest_step() == 8


RESTORE_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    sys.path.insert(0, {tests!r})
    from test_faults import _many_arrays
    from implicit_fields import checkpointing

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    _, meta = checkpointing.Checkpointer({folder!r}).restore(_many_arrays(0))
    print("restored step", meta["step"])
    """
)


def _many_arrays(value, count=400):
    """A train state of `count` parameter arrays (and Adam's two moments of each)."""
    params = {f"layer{i}": jax.numpy.full((64,), float(i + value)) for i in range(count)}
    return train_utils.TrainState.create(apply_fn=None, params=params, tx=optax.adam(1e-3), batch_stats={})


def test_a_truncated_data_file_is_reported_in_one_line_not_a_flood(tmp_path):
    """When one of Orbax's array reads fails, each read still in flight prints a traceback ("Event
    loop is closed", "exception was never retrieved" with the TensorStore spec): thousands of lines
    for one truncated file, outside Python's logging. One line names the file instead."""
    folder = str(tmp_path / "checkpoints")
    ckpt = checkpointing.Checkpointer(folder, max_to_keep=3)
    state = _many_arrays(1)
    for _ in (1, 2):
        state = state.replace(step=state.step + 1)
        ckpt.save(state, wait=True)
    ckpt.close()
    damaged = _truncate(os.path.join(folder, "2", "state", "d", "*"))
    script = RESTORE_SCRIPT.format(tests=os.path.dirname(__file__), folder=folder)
    command = [sys.executable, "-c", script]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "restored step 1", proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "never retrieved" not in proc.stderr, proc.stderr[-3000:]
    ours = [line for line in proc.stderr.splitlines() if "implicit_fields" in line or "checkpoint" in line]
    assert len(ours) == 2 and any(f in ours[0] for f in damaged) and "step 1" in ours[1], proc.stderr[-3000:]


def test_a_checkpoint_whose_arrays_changed_fails_its_checksum(trained, caplog):
    config, workdir, _, _ = trained
    record = os.path.join(workdir, "checkpoints", "6", "meta", "metadata")
    meta = json.load(open(record))
    meta["checksum"] = "00000000"
    with open(record, "w") as f:
        json.dump(meta, f)
    caplog.set_level(logging.WARNING)
    _, _, meta = trainer.restore(config, workdir, "latest")
    assert meta["step"] == 4
    assert any("checksum" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", ["data file", "record"])
def test_a_corrupt_best_model_falls_back_to_the_checkpoints(trained, damage, caplog):
    config, workdir, longer, unbroken = trained
    (best_step,) = checkpointing.Checkpointer(os.path.join(workdir, "best")).all_steps()
    _truncate(os.path.join(workdir, "best", str(best_step), DAMAGE[damage]))
    caplog.set_level(logging.WARNING)
    _, state, meta = trainer.restore(config, workdir, "best")  # What generation and eval use.
    assert meta["checkpoint"] == "checkpoints" and meta["step"] == 6
    assert any(os.path.join(workdir, "best") in r.getMessage() for r in caplog.records)
    # Training resumes from checkpoints/ (the corrupt best model is moved aside; the next
    # validation saves a new one).
    resumed = trainer.train_and_evaluate(longer, workdir)
    np.testing.assert_array_equal(_params(resumed), unbroken)
    assert glob.glob(os.path.join(workdir, "best.corrupt", f"{best_step}_*"))
    assert checkpointing.Checkpointer(os.path.join(workdir, "best")).latest_step() in (8,)


def test_when_no_checkpoint_reads_the_error_names_each(trained):
    config, workdir, longer, _ = trained
    for step in (2, 4, 6):
        _truncate(os.path.join(workdir, "checkpoints", str(step), "state", "d", "*"))
    before = _snapshot(workdir)
    with pytest.raises(
        checkpointing.CheckpointError, match="no checkpoint in .*checkpoints can be read"
    ) as e:
        trainer.restore(config, workdir, "latest")
    for step in (2, 4, 6):
        assert os.path.join(workdir, "checkpoints", str(step)) in str(e.value)
    with pytest.raises(checkpointing.CheckpointError):
        trainer.train_and_evaluate(longer, workdir)
    after = _snapshot(workdir)
    assert {k: v for k, v in after.items() if k in before} == before  # Nothing lost or changed.


# ---------------------------------------------------------------------------
# A rerun with another config.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("seed", 3),
        ("optim.learning_rate", 0.05),
        ("optim.schedule", "cosine"),
        ("field.threshold", 0.3),
        ("data.nan_at", 3),
    ],
)
@pytest.mark.parametrize("mode", ["train", "generate", "eval"])
def test_a_changed_config_refuses_and_writes_nothing(fake, tmp_path, key, value, mode):
    config = _fake_config()
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(config, workdir)
    before = _snapshot(workdir)
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ValueError, match=rf"differs .* {key} ") as e:
        trainer.run(config, workdir, mode)
    assert "nothing was written" in str(e.value)
    assert _snapshot(workdir) == before
    assert not fake.generated and not fake.evaluated


def test_harmless_changes_resume_and_are_recorded(fake, tmp_path):
    config = _fake_config()
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(config, workdir)
    config.train.num_steps = 8
    config.logging.log_every = 1
    state = trainer.train_and_evaluate(config, workdir)
    assert int(state.step) == 8
    stored = json.load(open(os.path.join(workdir, "config.json")))
    assert stored["train"]["num_steps"] == 8 and stored["logging"]["log_every"] == 1
    (record,) = [json.loads(x) for x in open(os.path.join(workdir, "config_changes.jsonl"))]
    assert record["resumed_from_step"] == 6
    assert record["changes"] == {
        "logging.log_every": {"old": 2, "new": 1},
        "train.num_steps": {"old": 6, "new": 8},
    }


def test_a_changed_model_width_refuses_before_anything_is_written(tiny_config, tmp_path):
    """The issue's example: a wider decoder on a finished ONet run."""
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(tiny_config, workdir)
    before = _snapshot(workdir)
    tiny_config.model.decoder_hidden *= 2
    for mode in ("train", "generate"):
        with pytest.raises(ValueError, match=r"model.decoder_hidden \d+ -> \d+"):
            trainer.run(tiny_config, workdir, mode)
    assert _snapshot(workdir) == before
    # Keys of memory and speed only (the method's RESUMABLE_KEYS) may change.
    tiny_config.model.decoder_hidden //= 2
    tiny_config.data.cache = not tiny_config.data.cache
    tiny_config.train.eval_batch_size += 1
    assert set(trainer.config_changes(tiny_config, workdir)) == {"data.cache", "train.eval_batch_size"}


# ---------------------------------------------------------------------------
# Generations: recorded, and refused when interrupted or mixed.
# ---------------------------------------------------------------------------


def _sphere(path, step):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=1, radius=0.3)
    meshing.write_mesh(path, m.vertices, m.faces, comments=trainer.mesh_provenance({"step": step}))


def test_generation_records_refuse_unfinished_mixed_and_missing_meshes(tmp_path):
    path = str(tmp_path / "generation.json")
    meshes = [str(tmp_path / f"m{i}.ply") for i in range(4)]
    record = trainer.start_generation(path, {"checkpoint": "best", "step": 7}, split="val")
    with pytest.raises(ValueError, match="did not finish"):
        trainer.read_generation(path)
    for m in meshes:
        _sphere(m, 7)
    trainer.finish_generation(path, record, objects=len(meshes))
    record = trainer.read_generation(path)
    assert record["checkpoint_step"] == 7 and record["checkpoint"] == "best" and record["complete"]
    trainer.check_meshes(record, meshes, path)
    for step in (3, None):
        if step is None:
            meshing.write_mesh(meshes[1], np.eye(3), np.array([[0, 1, 2]]))  # No provenance.
        else:
            _sphere(meshes[1], step)
        with pytest.raises(ValueError, match=r"1 of its 4 meshes were made from another checkpoint"):
            trainer.check_meshes(record, meshes, path)
    os.remove(meshes[2])
    with pytest.raises(ValueError, match="1 of its 4 meshes are missing"):
        trainer.check_meshes(record, meshes, path)
    with open(path, "w") as f:
        json.dump([{"mesh": "m0.ply"}], f)  # A record from before generations named their checkpoint.
    with pytest.raises(ValueError, match="made before generation records named their checkpoint"):
        trainer.read_generation(path)
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="not a valid generation record"):
        trainer.read_generation(path)
    with pytest.raises(FileNotFoundError, match="run --mode generate first"):
        trainer.read_generation(str(tmp_path / "none.json"))


def test_an_interrupted_onet_generation_is_refused_by_eval(tiny_config, tmp_path, monkeypatch):
    from implicit_fields.methods import onet
    from implicit_fields.methods.onet import generation

    tiny_config.generate.max_objects = 2
    tiny_config.train.checkpoint_every = 1
    workdir = str(tmp_path / "run")
    trainer.run(tiny_config, workdir, "all")  # Meshes of step 2.
    record = json.load(open(os.path.join(workdir, "meshes", "generation.json")))
    assert record["complete"] and record["checkpoint_step"] == 2 and len(record["objects"]) == 2
    # More training, then a generation killed after its first mesh: one mesh of step 3, one of step 2.
    tiny_config.train.num_steps = 3
    tiny_config.generate.checkpoint = "latest"
    trainer.run(tiny_config, workdir, "train")
    real = meshing.write_mesh
    calls = []

    def dies_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(generation.meshing, "write_mesh", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        onet.generate(tiny_config, workdir)
    monkeypatch.setattr(generation.meshing, "write_mesh", real)
    with pytest.raises(ValueError, match="from the checkpoint of step 3 did not finish"):
        trainer.run(tiny_config, workdir, "eval")
    # Even if the record said it finished, the mixture is found in the meshes themselves.
    path = os.path.join(workdir, "meshes", "generation.json")
    stale = dict(record, checkpoint_step=3)
    with open(path, "w") as f:
        json.dump(stale, f)
    with pytest.raises(ValueError, match=r"1 of its 2 meshes were made from another checkpoint"):
        trainer.run(tiny_config, workdir, "eval")
    result = trainer.run(tiny_config, workdir, "all")  # Generating again mends it.
    assert result["checkpoint_step"] == 3


# ---------------------------------------------------------------------------
# Workdirs that cannot be used.
# ---------------------------------------------------------------------------


def test_a_workdir_that_is_a_file_is_a_clear_error(fake, tmp_path):
    path = tmp_path / "run"
    path.write_text("not a folder")
    for mode in ("train", "generate", "eval"):
        with pytest.raises(NotADirectoryError, match=rf"workdir {path}: is a file"):
            trainer.run(_fake_config(), str(path), mode)
    assert path.read_text() == "not a folder"


def test_a_workdir_that_cannot_be_written_is_a_clear_error(fake, tmp_path, monkeypatch):
    # Root ignores file modes, so the refusal of the file system is simulated.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(trainer.tempfile, "TemporaryFile", refuse)
    with pytest.raises(PermissionError, match=r"workdir .*run: cannot write there \(Permission denied\)"):
        trainer.run(_fake_config(), str(tmp_path / "run"), "train")
    assert os.listdir(tmp_path / "run") == []
