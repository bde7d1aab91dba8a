"""Orbax checkpoints of the train state: save periodically, restore the latest.

The state is saved as a plain dict of arrays ('step', 'params',
'batch_stats', 'opt_state') plus a small JSON record, under an absolute path
(Orbax requires one). `restore` takes the freshly initialised state (or its
`jax.ShapeDtypeStruct`s, for inference) as the target, so the restored arrays
have the same structure, dtypes and shardings.
"""

import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def _state_to_tree(state) -> Dict[str, Any]:
    step = state.step
    return {
        "step": step if isinstance(step, jax.ShapeDtypeStruct) else jnp.asarray(step),
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
    }


def _abstract(tree):
    def to_struct(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x), sharding=sharding)

    return jax.tree.map(to_struct, tree)


class Checkpointer:
    """A `CheckpointManager` for one folder of step-numbered checkpoints.

    Args:
      directory: where the checkpoints go (made absolute).
      max_to_keep: how many recent checkpoints survive.
    """

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, state, meta: Optional[Dict[str, Any]] = None, wait: bool = False) -> None:
        """Saves `state` under its step (asynchronously unless `wait`)."""
        step = int(jax.device_get(state.step))
        meta = dict(meta or {}, step=step)
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_state_to_tree(state)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        if wait:
            self.manager.wait_until_finished()

    def restore(self, state, step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
        """Restores the checkpoint at `step` (default latest) into the structure of `state`.

        Returns:
          (restored_state, meta) or (state, {}) when there is no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            return state, {}
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(_state_to_tree(state))),
                meta=ocp.args.JsonRestore(),
            ),
        )
        tree = restored["state"]
        new_state = state.replace(
            step=tree["step"],
            params=tree["params"],
            batch_stats=tree["batch_stats"],
            opt_state=tree["opt_state"],
        )
        return new_state, dict(restored["meta"] or {})

    def read_meta(self, step: Optional[int] = None) -> Dict[str, Any]:
        """The JSON record of the checkpoint at `step` (default latest), without its arrays ({} if none)."""
        step = self.latest_step() if step is None else step
        if step is None:
            return {}
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"] or {})

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
