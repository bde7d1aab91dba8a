"""Test setup: CPU, strict rank promotion, a persistent compilation cache, shared fixtures."""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Persistent compilation cache, shared with the CLI runs the tests start as subprocesses
# (they compile many of the same programs).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO, ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny built-in dataset (2 categories x 3 objects, 4096 points each), made once."""
    from experiments.configs import tiny
    from implicit_fields import training

    config = tiny.get_config()
    config.data.path = str(tmp_path_factory.mktemp("data") / "builtin")
    training.ensure_dataset(config.data, progress=False)
    return config.data.path


@pytest.fixture
def tiny_config(tiny_dataset):
    from experiments.configs import tiny

    config = tiny.get_config()
    config.data.path = tiny_dataset
    return config
