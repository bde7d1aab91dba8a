"""DVR's task through the trainer: bit-exact resume, held-out validation with best/, debug.nans,
lead gating, each process's share of the rays."""

import json
import os
import re

import jax
import numpy as np
import pytest

import experiment_configs
from implicit_fields import checkpointing, trainer
from implicit_fields.data import multiview
from implicit_fields.methods.dvr import task


class Kill(Exception):
    pass


def _jsonl(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_tiny_run_resumes_exactly_and_keeps_the_best_held_out_model(dvr_run, tmp_path):
    config, workdir, unbroken = dvr_run

    def kill_at_6(step):
        if step == 6:
            raise Kill()

    # Killed after step 6 (the checkpoint of step 4 survives), then resumed.
    with pytest.raises(Kill):
        trainer.train_and_evaluate(config, str(tmp_path / "b"), on_step=kill_at_6)
    assert checkpointing.Checkpointer(str(tmp_path / "b" / "checkpoints")).latest_step() == 4
    resumed = trainer.train_and_evaluate(config, str(tmp_path / "b"))
    for a, b in zip(jax.tree.leaves(unbroken.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    logged = _jsonl(workdir)
    train = [r for r in logged if "train/loss" in r]
    assert [r["step"] for r in train] == [4, 8, 12]
    assert all(np.isfinite(r["train/loss"]) for r in train)
    assert [r["train/ray_steps"] for r in train] == [16, 16, 16]
    assert all(r["train/rays_per_second"] > 0 for r in train)
    evals = [r for r in logged if "eval/mask_iou" in r]
    assert [r["step"] for r in evals] == [4, 8, 12]
    assert all(0.0 <= r["eval/mask_iou"] <= 1.0 for r in evals)
    best = checkpointing.Checkpointer(os.path.join(workdir, "best"))
    best_iou = max(r["eval/mask_iou"] for r in evals)
    assert best.read_meta()["val_mask_iou"] == pytest.approx(best_iou)
    assert best.latest_step() == [r["step"] for r in evals if r["eval/mask_iou"] == best_iou][0]
    # The resumed run logged the steps after its restart once more, not its first steps twice.
    assert [r["step"] for r in _jsonl(str(tmp_path / "b")) if "train/loss" in r] == [4, 8, 12]


def _nan_batches(monkeypatch, at_step):
    make_batch = task.make_batch

    def poisoned(config, data, step, *args, **kwargs):
        batch = make_batch(config, data, step, *args, **kwargs)
        if step == at_step:
            # NaN colours (a broken image): invalid rays would only be left out of the loss.
            batch["rgb"] = np.full_like(batch["rgb"], np.nan)
        return batch

    monkeypatch.setattr(task, "make_batch", poisoned)


def test_a_nan_batch_stops_training_and_debug_nans_finds_the_operation(dvr_config, tmp_path, monkeypatch):
    config = dvr_config
    _nan_batches(monkeypatch, at_step=5)  # the batch of step 6
    # Without debug.nans the loop's check stops at the next log or checkpoint, keeping step 4's checkpoint.
    with pytest.raises(FloatingPointError, match=r"non-finite training .*\(step 4\)"):
        trainer.run(config, str(tmp_path / "plain"), "train")
    config.debug.nans = True
    with pytest.raises(FloatingPointError) as info:
        trainer.run(config, str(tmp_path / "debug"), "train")
    assert "non-finite training" not in str(info.value) and "nan" in str(info.value).lower()
    assert not jax.config.jax_debug_nans  # switched off again after the run
    assert checkpointing.Checkpointer(str(tmp_path / "debug" / "checkpoints")).latest_step() == 4


def test_only_the_lead_process_writes_logs_caches_and_results(dvr_config, tmp_path, monkeypatch):
    config = dvr_config
    monkeypatch.setattr(trainer, "is_lead_process", lambda: False)
    workdir = str(tmp_path / "run")
    assert trainer.run(config, workdir, "all") == {}
    assert sorted(os.listdir(workdir)) == ["best", "checkpoints"]  # no logs, config, hull cache or meshes
    assert checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")).latest_step() == 12


def test_each_process_takes_its_share_of_the_rays(dvr_config, dvr_scene):
    config = dvr_config
    data = multiview.load_multiview(dvr_scene)
    views, _ = task.split_views(data.num_views, config.data.val_views)
    depths = np.random.default_rng(0).uniform(1, 2, data.masks.shape).astype(np.float32)
    whole = task.make_batch(config, data, 7, views, depths)
    parts = [
        task.make_batch(config, data, 7, views, depths, process_index=i, process_count=2) for i in range(2)
    ]
    for key in whole:
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
    assert len(parts[0]["origins"]) == config.rays.per_step // 2
    other = task.make_batch(config, data, 8, views, depths)
    assert not np.array_equal(other["origins"], whole["origins"])  # a new step, new rays
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        task.make_batch(config, data, 7, views, depths, process_index=0, process_count=3)


def test_missing_scene_without_builtin_is_a_clear_error(tmp_path):
    config = experiment_configs.load("dvr.py:tiny")
    config.data.path = str(tmp_path / "nowhere")
    config.data.builtin = False
    with pytest.raises(FileNotFoundError, match="no scene there"):
        task.ensure_scene(config.data)
    with pytest.raises(ValueError, match=r"config.data.val_views=6 must be in \[0, 6\)"):
        task.split_views(6, 6)


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("resolution", 32, "config.data.resolution: rendered 16, asked 32"),
        ("n_views", 9, "config.data.n_views: rendered 6, asked 9"),
        ("builtin_category", "chair", "config.data.builtin_category: rendered '03797390', asked '03001627'"),
        ("builtin_seed", 3, "config.data.builtin_seed: rendered 0, asked 3"),
        ("texture", "none", "config.data.texture: rendered 'stripes', asked 'none'"),
        # A scene rendered before there were materials has none in its record: diffuse.
        ("material", "specular", "config.data.material: rendered 'diffuse', asked 'specular'"),
    ],
)
def test_a_scene_rendered_with_other_settings_is_refused_not_reused(dvr_config, key, value, shown):
    before = sorted(os.listdir(dvr_config.data.path))
    dvr_config.data[key] = value
    with pytest.raises(ValueError, match=re.escape(shown)):
        task.ensure_scene(dvr_config.data, progress=False)
    assert sorted(os.listdir(dvr_config.data.path)) == before  # Not rendered over.
    dvr_config.data.builtin = False  # A scene of one's own: used as it is.
    assert task.ensure_scene(dvr_config.data, progress=False) == os.path.abspath(dvr_config.data.path)


def test_a_scene_path_that_is_a_file_is_named(dvr_config, tmp_path):
    (tmp_path / "scene").write_text("")
    dvr_config.data.path = str(tmp_path / "scene")
    with pytest.raises(NotADirectoryError, match=r"config.data.path=.*scene': is a file"):
        task.ensure_scene(dvr_config.data, progress=False)
