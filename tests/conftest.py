"""Test setup: CPU, XLA at -O0, strict rank promotion, a persistent compilation cache, shared fixtures.

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
# XLA's CPU code generation at LLVM -O0. The tests' programs are tiny, so compiling them is
# most of their time (and programs with diffrax's runtime checks are never cached): -O0
# compiles in about 60% of the time and runs them a little slower, the suite ends sooner.
# The same HLO, the same results up to float rounding. Kept when XLA_FLAGS already sets a
# level; the CLI runs the tests start inherit it. (The 8-device run of test_train_utils sets
# its own XLA_FLAGS, so the default level: at -O0 one Adam parameter of 256, of a near-zero
# gradient, missed its tolerance by 2.5e-7.)
_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")
if os.environ["JAX_PLATFORMS"] == "cpu" and "xla_backend_optimization_level" not in _XLA_FLAGS:
    os.environ["XLA_FLAGS"] = (_XLA_FLAGS + " --xla_backend_optimization_level=0").strip()

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
