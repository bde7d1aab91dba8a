"""DVR's generation: the coloured mesh, the held-out renderings and their record, per checkpoint."""

import json
import os

import numpy as np
import pytest
import trimesh

from implicit_fields import checkpointing, vis
from implicit_fields.methods.dvr import generation


@pytest.fixture(scope="module")
def generated(dvr_run):
    config, workdir, _ = dvr_run
    return config, workdir, generation.generate(config, workdir)


def test_the_mesh_is_coloured_and_inside_the_box(generated):
    config, workdir, record = generated
    mesh = trimesh.load(os.path.join(workdir, "mesh.ply"), process=False, force="mesh")
    assert len(mesh.faces) == record["num_faces"] and len(mesh.vertices) == record["num_vertices"]
    if len(mesh.vertices):
        assert np.abs(mesh.vertices).max() <= 0.5 * (1 + config.field.padding) + 1e-5
        colors = np.asarray(mesh.visual.vertex_colors)[:, :3]
        assert colors.shape == (len(mesh.vertices), 3) and colors.std() > 0  # the texture field's colours


def test_renderings_and_the_record_come_from_the_best_checkpoint(generated):
    config, workdir, record = generated
    best_step = checkpointing.Checkpointer(os.path.join(workdir, "best")).latest_step()
    assert record["checkpoint_step"] == best_step
    stored = json.load(open(os.path.join(workdir, "generation.json")))
    assert stored == json.loads(json.dumps(record))
    (view,) = stored["held_out_views"]  # the tiny config holds out its last view
    assert view["view"] == config.data.n_views - 1 and 0.0 <= view["mask_iou"] <= 1.0
    image = vis.read_png(os.path.join(workdir, "renderings.png"))
    assert image.ndim == 3 and image.shape[0] >= 128 and image.std() > 5
    assert record["mesh_queries"] > 0 and record["render_seconds"] > 0


def test_the_latest_checkpoint_on_request(dvr_run, tmp_path):
    config, workdir, state = dvr_run
    config = config.copy_and_resolve_references()
    config.generate.checkpoint = "latest"
    out = str(tmp_path / "latest")
    os.makedirs(out)
    os.symlink(os.path.join(workdir, "checkpoints"), os.path.join(out, "checkpoints"))
    record = generation.generate(config, out)
    assert record["checkpoint_step"] == int(state.step) == config.train.num_steps
