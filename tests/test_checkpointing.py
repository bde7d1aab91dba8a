"""Orbax checkpoints of the train state: a round trip through disk, restore into shapes, the JSON record."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from implicit_fields import checkpointing, train_utils


def _state(seed=0):
    rng = np.random.default_rng(seed)
    params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "bias": jnp.zeros(4)}}
    stats = {"bn": {"mean": jnp.asarray(rng.normal(size=4), jnp.float32)}}
    return train_utils.TrainState.create(apply_fn=None, params=params, tx=optax.adam(1e-3), batch_stats=stats)


def test_round_trip_through_disk_with_the_record(tmp_path):
    state = _state()
    grads = jax.tree.map(jnp.ones_like, state.params)
    state = state.apply_gradients(grads=grads)  # step 1 and a non-trivial Adam state
    ckpt = checkpointing.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
    ckpt.save(state, {"val_iou": 0.5}, wait=True)
    ckpt.close()

    fresh = _state(seed=1)
    ckpt = checkpointing.Checkpointer(str(tmp_path / "ckpt"))
    assert ckpt.latest_step() == 1
    restored, meta = ckpt.restore(fresh)
    assert ckpt.read_meta() == meta and meta.pop("checksum") == checkpointing.checksum(
        checkpointing._state_to_tree(state)
    )
    assert meta == {"val_iou": 0.5, "step": 1}
    assert int(restored.step) == 1
    for a, b in zip(
        jax.tree.leaves((state.params, state.batch_stats, state.opt_state)),
        jax.tree.leaves((restored.params, restored.batch_stats, restored.opt_state)),
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ckpt.close()


def test_restore_into_shape_structs_and_keep_the_newest(tmp_path):
    state = _state()
    ckpt = checkpointing.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
    for _ in range(3):
        state = state.apply_gradients(grads=jax.tree.map(jnp.ones_like, state.params))
        ckpt.save(state, wait=True)
    assert sorted(int(d) for d in os.listdir(tmp_path / "ckpt") if d.isdigit()) == [2, 3]
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), _state(seed=2))
    restored, meta = ckpt.restore(abstract)
    assert meta["step"] == 3 and isinstance(restored.params["dense"]["kernel"], jax.Array)
    np.testing.assert_array_equal(
        np.asarray(restored.params["dense"]["kernel"]), state.params["dense"]["kernel"]
    )
    older, meta = ckpt.restore(abstract, step=2)
    assert meta["step"] == 2 and int(older.step) == 2
    ckpt.close()


def test_an_empty_folder_restores_nothing(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path / "none"))
    state = _state()
    same, meta = ckpt.restore(state)
    assert same is state and meta == {} and ckpt.read_meta() == {} and ckpt.latest_step() is None
    ckpt.close()
