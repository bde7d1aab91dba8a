"""DVR fixtures: the tiny config's scene, rendered once, and one tiny run trained on it."""

import pytest

import experiment_configs
from implicit_fields import trainer
from implicit_fields.methods.dvr import task


@pytest.fixture(scope="session")
def dvr_scene(tmp_path_factory):
    """The tiny config's scene (a mug, 6 views of 16 x 16, one held out), rendered once."""
    config = experiment_configs.load("dvr.py:tiny")
    config.data.path = str(tmp_path_factory.mktemp("dvr") / "scene")
    return task.ensure_scene(config.data, progress=False)


@pytest.fixture
def dvr_config(dvr_scene):
    config = experiment_configs.load("dvr.py:tiny")
    config.data.path = dvr_scene
    return config


@pytest.fixture(scope="session")
def dvr_run(dvr_scene, tmp_path_factory):
    """(config, workdir, final state) of the tiny config trained for its 12 steps (not generated)."""
    config = experiment_configs.load("dvr.py:tiny")
    config.data.path = dvr_scene
    workdir = str(tmp_path_factory.mktemp("dvr_run") / "run")
    state = trainer.train_and_evaluate(config, workdir)
    return config, workdir, state
