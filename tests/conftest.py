"""Test setup: CPU, strict rank promotion, a persistent compilation cache, shared fixtures.

The tests import `implicit_fields` as installed (`pip install -e .`, the
README's test command), the way a user does.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Persistent compilation cache, shared with the CLI runs the tests start as subprocesses
# (they compile many of the same programs).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO, ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import pytest  # noqa: E402

import experiment_configs  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny built-in dataset (2 categories x 2 train objects, 4096 points each), made once."""
    from implicit_fields.data import builtin

    config = experiment_configs.load("onet.py:tiny")
    config.data.path = str(tmp_path_factory.mktemp("data") / "builtin")
    builtin.ensure_dataset(config.data, progress=False)
    return config.data.path


@pytest.fixture
def tiny_config(tiny_dataset):
    """The tiny point-cloud ONet config on the shared tiny dataset."""
    config = experiment_configs.load("onet.py:tiny")
    config.data.path = tiny_dataset
    return config


@pytest.fixture
def fake(monkeypatch):
    """The least-squares method of `fake_method`, found by the trainer as config.method 'fake'."""
    import fake_method

    from implicit_fields import trainer

    method = fake_method.FakeMethod()
    real = trainer.load_method
    monkeypatch.setattr(trainer, "load_method", lambda name: method if name == "fake" else real(name))
    return method
