"""A least-squares method in miniature (the protocol `trainer` documents), for fast trainer tests.

`install()` makes `trainer.load_method('fake')` return it, in this process (the
tests' `fake` fixture) or in a subprocess that a fault test kills.
"""

import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields import config_utils, train_utils, trainer

# ---------------------------------------------------------------------------
# A least-squares method: y = x . w_true, batches a pure function of the step.
# ---------------------------------------------------------------------------

W_TRUE = np.array([1.0, -2.0, 0.5], np.float32)


def _fake_config():
    config = config_utils.common_config("fake")
    config.train.num_steps = 6
    config.train.eval_every = 2
    config.train.checkpoint_every = 2
    config.logging.log_every = 2
    config.logging.progress = False
    config.logging.tensorboard = False
    config.optim.learning_rate = 0.1
    config.data = {"nan_at": -1, "scores": ()}
    return config


def _batch(config, step):
    rng = np.random.default_rng([config.seed, step])
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = x @ W_TRUE
    if step == config.data.nan_at:
        y[0] = np.nan
    return {"x": x, "y": y}


def _loss(params, batch_stats, batch, rng, scale=1):
    del batch_stats
    noise = 0.0 * jax.random.normal(rng, ())  # uses the step key
    err = batch["x"] @ params["w"] - batch["y"]
    return jnp.mean(err**2) * scale + noise, ({"abs_err": jnp.mean(jnp.abs(err))}, None)


class FakeMethod:
    """A method package in miniature (the protocol `trainer` documents)."""

    def __init__(self):
        self.generated = []
        self.evaluated = []
        self.static_calls = []

    get_config = staticmethod(_fake_config)

    def create_model(self, config):
        return "model"

    def init_state(self, config, model, key):
        return train_utils.TrainState.create(
            apply_fn=None,
            params={"w": jnp.zeros(3, jnp.float32)},
            tx=train_utils.create_optimizer(config.optim, config.train.num_steps),
            batch_stats={},
        )

    def create_task(self, config, workdir, model, mesh):
        scores = list(config.data.scores)
        calls = {"n": 0}

        def evaluate(state):
            calls["n"] += 1
            if scores:
                return {"score": scores[calls["n"] - 1]}
            return {"score": -float(np.sum((np.asarray(state.params["w"]) - W_TRUE) ** 2))}

        def static_fn(step):
            self.static_calls.append(step)
            return {"scale": 1 if step < 3 else 2}

        return trainer.Task(
            loss_fn=_loss,
            batch_fn=lambda step: _batch(config, step),
            static_fn=static_fn,
            eval_fn=evaluate,
            best_metric="score",
            items_per_step=8,
            items_name="samples",
        )

    def generate(self, config, workdir):
        self.generated.append(workdir)

    def evaluate(self, config, workdir):
        self.evaluated.append(workdir)
        return {"score": 1.0}


def install(method=None):
    """Makes `trainer.load_method('fake')` return `method` (a new FakeMethod by default)."""
    method = method or FakeMethod()
    real = trainer.load_method
    trainer.load_method = lambda name: method if name == "fake" else real(name)
    return method
