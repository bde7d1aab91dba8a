"""Texture Fields' whole job on a tiny config: train -> renderings + picture -> metrics; textured meshes.

The VAE's tiny config: the whole job is the same for the three models (the conditional model's
ResNet-18 steps are tested in test_model.py), and it compiles in a fraction of the time.
"""

import json
import os
import shutil

import numpy as np
import pytest
import trimesh

import experiment_configs
import run_probes
from implicit_fields import meshing, trainer, vis
from implicit_fields.methods.texture_fields import evaluation, generation


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf")
    config = experiment_configs.load("texture_fields.py:vae,tiny")
    config.data.path = str(root / "data")
    workdir = str(root / "run")
    with run_probes.recording_lead_first() as prepared:
        result = trainer.run(config, workdir, "all")
    assert prepared[:1] == ["dataset"]  # written by one process first in a multi-host run
    return config, workdir, result


def test_tiny_run_renders_and_evaluates(tiny_run):
    config, workdir, result = tiny_run
    stored = json.load(open(os.path.join(workdir, "metrics.json")))
    for key in ("ssim", "psnr", "l1", "ssim_data_range_2"):
        assert np.isfinite(stored[key]) and stored[key] == pytest.approx(result[key]), key
    assert 0 < stored["ssim"] <= 1 and 0 <= stored["l1"] <= 1
    # No weights, no FID: null with the reason, never a number.
    assert stored["fid"] is None and stored["feature_l1"] is None and "not computed" in stored["fid_note"]
    record = trainer.read_generation(os.path.join(workdir, "renderings", "generation.json"))
    assert record["checkpoint_step"] == config.train.num_steps and record["images"]
    for pair in record["images"]:
        fake = vis.read_png(os.path.join(workdir, pair["fake"]))
        real = vis.read_png(os.path.join(workdir, pair["real"]))
        assert fake.shape == real.shape == (config.eval.img_size, config.eval.img_size, 3)
        # Compositing: where the truth is background (white), so is ours.
        background = (real == 255).all(-1)
        assert background.any() and (fake[background] == 255).all()
    picture = vis.read_png(os.path.join(workdir, generation.PICTURE))
    assert picture.ndim == 3 and picture.std() > 5
    logged = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert any("eval/psnr" in r for r in logged)


def test_eval_refuses_a_missing_rendering(tiny_run, tmp_path):
    config, workdir, _ = tiny_run
    record = trainer.read_generation(os.path.join(workdir, "renderings", "generation.json"))
    copy = tmp_path / "run"
    shutil.copytree(os.path.join(workdir, "renderings"), copy / "renderings")
    kept = dict(record, images=record["images"] + [{"fake": "renderings/fake/gone.png", "real": "x.png"}])
    json.dump(kept, open(copy / "renderings" / "generation.json", "w"))
    with pytest.raises(ValueError, match="gone.png: missing; rerun --mode generate"):
        evaluation.evaluate(config, str(copy))


def test_textured_meshes_from_a_given_shape(tiny_run, tmp_path):
    """The texture field colours any mesh: a coloured PLY, renderings beside the truth, scores."""
    config, workdir, _ = tiny_run
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.3)

    def mesh_fn(obj):
        assert obj["input_images"].shape[1:] == (config.data.input_size, config.data.input_size, 3)
        return np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces)

    out = str(tmp_path / "textured")
    record = generation.textured_meshes(config, workdir, mesh_fn, out, num_objects=1, split="test")
    assert len(record["objects"]) == 1 and all(np.isfinite(record[k]) for k in ("ssim", "psnr", "l1"))
    ply = os.path.join(out, record["objects"][0]["mesh"])
    mesh = trimesh.load(ply, process=False, force="mesh")
    assert len(mesh.vertices) == len(sphere.vertices)
    colors = np.asarray(mesh.visual.vertex_colors)[:, :3]
    assert colors.min() >= 0 and colors.max() <= 255 and colors.std() >= 0
    assert any("checkpoint" in c for c in meshing.read_ply_comments(ply))
    assert vis.read_png(record["picture"]).std() > 5


def test_render_coloured_mesh_interpolates_vertex_colours():
    """A square facing the camera with one colour per corner: barycentric blends, white around it."""
    from implicit_fields import cameras

    v = np.array([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.3, 0.3, 0.0], [-0.3, 0.3, 0.0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
    cam = cameras.look_at_camera((0.0, 0.0, -2.0), focal=2.0)
    img = generation.render_coloured_mesh(v, f, colors, cam, 33)
    assert (img[0, 0] == 1).all()  # Background.
    centre = img[16, 16]  # The square's centre: the mean of corners 0 and 2 on the shared diagonal.
    np.testing.assert_allclose(centre, (colors[0] + colors[2]) / 2, atol=0.05)
    inside = img[(img != 1).any(-1)]
    assert len(inside) > 50 and inside.min() >= 0 and inside.max() <= 1


def test_the_batch_of_a_step_is_a_pure_function_of_the_seed_and_step(tiny_run):
    """So a resumed run sees an unbroken one's batches: any order, a fresh cache, the same arrays."""
    from implicit_fields.methods.texture_fields import task

    config, _, _ = tiny_run
    dataset, n = task.load_split(config, "train", config.data.img_size)
    first = task.ObjectCache(dataset, n)
    again = task.ObjectCache(dataset, n)
    forward = [task.make_batch(config, first, s) for s in range(4)]
    backward = [task.make_batch(config, again, s) for s in reversed(range(4))][::-1]
    for a, b in zip(forward, backward):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(forward[0]["image"], forward[1]["image"])
    # Epochs: every object once in each run of n positions (here steps of one object).
    for epoch in range(2):
        seen = [int(task.epoch_objects(config.seed, epoch * n + s, 1, n)[0]) for s in range(n)]
        assert sorted(seen) == list(range(n))
    # Two processes' shares are the single-process batch.
    halves = [task.make_batch(config, first, 1, process_index=i, process_count=2) for i in range(2)]
    for k in forward[1]:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), forward[1][k])
