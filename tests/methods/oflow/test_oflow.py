"""Occupancy Flow on the shared trainer: batches, transports, losses, and the whole job on a tiny config."""

import csv
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

import experiment_configs
import run_probes
from implicit_fields import train_utils, trainer, vis
from implicit_fields.data import motion
from implicit_fields.methods.oflow import generation, task
from implicit_fields.methods.oflow import model as oflow_model


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    config = experiment_configs.load("oflow.py:tiny")
    config.data.path = str(tmp_path_factory.mktemp("oflow_data") / "data")
    task.ensure_data(config)
    return config


def _store(config, split="train"):
    return task.SequenceStore(task.load_split(config, split))


def test_batch_is_exact_and_a_pure_function_of_seed_and_step(tiny_data):
    config = tiny_data.copy_and_resolve_references()
    config.loss.corr = True
    store = _store(config)
    batch = task.make_batch(config, store, 3)
    again = task.make_batch(config, _store(config), 3)  # A fresh cache.
    lazy = task.make_batch(config, task.SequenceStore(task.load_split(config, "train"), cache=False), 3)
    for k in batch:
        np.testing.assert_array_equal(batch[k], again[k])
        np.testing.assert_array_equal(batch[k], lazy[k])
    assert not np.array_equal(batch["points"], task.make_batch(config, store, 4)["points"])
    # Two processes' shares make up the single-process batch.
    halves = [task.make_batch(config, store, 3, process_index=i, process_count=2) for i in range(2)]
    for k in batch:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), batch[k])
    b, d = config.train.batch_size, config.data
    assert batch["points"].shape == batch["points_t"].shape == (b, d.points_subsample, 3)
    assert batch["inputs"].shape == (b, d.length, d.input_points, 3)
    assert batch["pcl"].shape == (b, d.length, d.pcl_points, 3)
    np.testing.assert_array_equal(batch["times"], np.tile(np.arange(d.length) / (d.length - 1), (b, 1)))
    # Occupancies are the exact shape's at each sample's frame: frame 0 and frame `time`.
    windows = train_utils.epoch_indices(config.seed, 3, b, len(store), stream=16)
    for row, w in enumerate(windows):
        category, name, start = store.windows[w]
        seq, record = motion.load_motion(os.path.join(config.data.path, category, name))
        seq_times = motion.frame_times(record["n_frames"])
        frame = int(round(batch["time"][row] * (d.length - 1)))
        for key, f in (("", 0), ("_t", frame)):
            inside = seq.contains(batch["points" + key][row].astype(np.float64), seq_times[start + f])
            np.testing.assert_array_equal(inside, batch["occupancies" + key][row] > 0.5)


def _dfaust_like(root, name, n_frames, seed=0):
    """points_seq and pcl_seq as D-FAUST's: every frame normalised by its own loc and scale."""
    rng = np.random.default_rng(seed)
    world = rng.normal(size=(50, 3))
    for kind in ("pcl_seq", "points_seq"):
        os.makedirs(os.path.join(root, name, kind))
    for i in range(n_frames):
        w = world + 0.05 * i
        loc, scale = rng.normal(size=3).astype(np.float16), float(rng.uniform(1.5, 2.0))
        points = ((w - loc) / scale).astype(np.float16)
        np.savez(
            os.path.join(root, name, "pcl_seq", f"{80 + i:08d}.npz"), points=points, loc=loc, scale=scale
        )
        occ = np.packbits(rng.random(50) < 0.3)
        np.savez(
            os.path.join(root, name, "points_seq", f"{80 + i:08d}.npz"),
            points=points,
            occupancies=occ,
            loc=loc,
            scale=scale,
        )


@pytest.mark.parametrize("cache", [True, False])
def test_windows_of_dfaust_frames_match_the_loader(tmp_path, cache):
    # Each frame with its own normalisation is mapped into the window's first frame, as
    # `motion.MotionDataset` (checked against the original's fields) does; cached or read on demand.
    _dfaust_like(tmp_path / "D-FAUST", "50002_punching", 9)
    ds = motion.MotionDataset(tmp_path, None, length=5, offset=2, categories=["D-FAUST"])
    store = task.SequenceStore(ds, cache=cache)
    assert len(store) == 3
    for index in range(len(store)):
        ref = ds.load(index)
        seq, start = store.sequence(index)
        np.testing.assert_array_equal(task.window_pcl(seq, start, 5), ref["pcl"])
        for i in range(5):
            p, o = task.window_points(seq, start, i)
            np.testing.assert_array_equal(p, ref["points"][i])
            np.testing.assert_array_equal(o > 0.5, ref["occupancies"][i])


def test_pull_back_inverts_push_forward_for_every_sample(tiny_data):
    config = tiny_data.copy_and_resolve_references()
    config.ode.rtol, config.ode.atol = 1e-6, 1e-8
    model = task.create_model(config)
    state = task.init_state(config, model, jax.random.key(0))
    rng = np.random.default_rng(0)
    points = jnp.asarray(rng.uniform(-0.4, 0.4, size=(3, 20, 3)), jnp.float32)
    c_t = jnp.asarray(rng.normal(size=(3, config.model.c_dim)), jnp.float32)
    z = jnp.zeros((3, 0), jnp.float32)
    times = jnp.asarray(task.frame_times(config.data.length))
    forward = oflow_model.push_forward(model, state.params, points, times, c_t, z, config.ode)  # [T, B, N, 3]
    assert float(jnp.abs(forward[-1] - points).max()) > 1e-2  # The field moves the points.
    # Sample b pulled back from frame k_b (one solve for all, with different times).
    frames = jnp.asarray([config.data.length - 1, 2, 0])
    at_t = forward[frames, jnp.arange(3)]
    back = oflow_model.pull_back(model, state.params, at_t, times[frames], c_t, z, config.ode)
    np.testing.assert_allclose(np.asarray(back), np.asarray(points), atol=1e-4)  # float32 solves


def test_each_loss_term_falls_in_a_tiny_run(tiny_data):
    # The generative model with the correspondence loss has all four terms. KL weighted 20 (it
    # is a mean over the latent's entries, about 0.1 at the start) so that it counts within the
    # run. The continuous adjoint, the default: every code the fields read must reach the
    # solver as an argument for it. 30 steps: from 6 of 7 initialisations (keys 0, 2 to 6) every
    # term ends below 0.6 of its start; from key 1, L_corr rises first and needs 40 steps.
    config = experiment_configs.load("oflow.py:generative,tiny")
    config.data.path = tiny_data.data.path
    config.loss.vae_beta = 20.0
    assert config.ode.adjoint == "backsolve"
    model = task.create_model(config)
    params = task.init_state(config, model, jax.random.key(0)).params
    batch = jax.tree.map(jnp.asarray, task.make_batch(config, _store(config), 0))
    loss = functools.partial(oflow_model.compute_loss, model, config)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt, key):
        (_, (metrics, _)), grads = jax.value_and_grad(lambda p: loss(p, {}, batch, key), has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, metrics

    opt = tx.init(params)
    history = []
    for i in range(30):
        params, opt, metrics = step(params, opt, jax.random.key(i))
        history.append({k: float(v) for k, v in metrics.items()})
    for key in ("loss_t0", "loss_t", "loss_corr", "kl"):
        first, last = history[0][key], np.mean([h[key] for h in history[-3:]])
        assert np.isfinite(last) and last < 0.85 * first, (key, first, last)


def test_frame_ious_and_generation_order():
    logits = np.array([[5.0, -5.0, 5.0, -5.0], [-5.0, -5.0, -5.0, -5.0]])
    occ = np.array([[True, True, False, False], [False, False, False, False]])
    np.testing.assert_allclose(task.frame_ious(logits, occ, 0.3), [1 / 3, 0.0])

    class Windows:
        windows = [("c", "a", 0), ("c", "a", 1), ("c", "a", 2), ("c", "b", 0), ("c", "b", 1)]

    assert generation.generation_windows(Windows, 0) == [0, 3, 1, 4, 2]
    assert generation.generation_windows(Windows, 3) == [0, 3, 1]
    assert generation.picture_frames(17, 5) == [0, 4, 8, 12, 16]


def test_mesh_samples_follow_the_vertices():
    vertices = np.array([[0, 0, 0], [0.3, 0, 0], [0, 0.3, 0], [0, 0, 0.3]], np.float64)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    shift = np.array([0.1, -0.05, 0.02])
    trajectory = np.stack([vertices, vertices + shift, 2 * vertices])
    points, normals, colors = generation.mesh_samples(trajectory, faces, 500)
    np.testing.assert_allclose(points[1], points[0] + shift, atol=1e-12)
    np.testing.assert_allclose(points[2], 2 * points[0], atol=1e-12)
    np.testing.assert_allclose(normals[1], normals[0], atol=1e-12)
    np.testing.assert_array_equal(colors, generation.position_colors(points[0]))
    assert generation.mesh_samples(trajectory, np.zeros((0, 3), int), 10) is None


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    config = tiny_data.copy_and_resolve_references()
    workdir = str(tmp_path_factory.mktemp("oflow_run") / "run")
    with run_probes.recording_lead_first() as prepared:
        result = trainer.run(config, workdir, "all")
    assert prepared[:1] == ["dataset"]  # written by one process first in a multi-host run
    return config, workdir, result


def test_tiny_run_meshes_once_flows_and_evaluates(tiny_run):
    config, workdir, result = tiny_run
    length = config.data.length
    stored = json.load(open(os.path.join(workdir, "metrics.json")))
    for key in ("iou", "chamfer_l1", "correspondence", "baseline_iou", "baseline_chamfer_l1"):
        assert (
            stored[key] is not None and np.isfinite(stored[key]) and stored[key] == pytest.approx(result[key])
        )
    assert len(stored["iou_frames"]) == len(stored["correspondence_frames"]) == length
    record = trainer.read_generation(os.path.join(workdir, "meshes", "generation.json"))
    windows = record["windows"]
    assert len(windows) == config.generate.max_windows
    assert len(windows[0]["baseline"]) == length and windows[1]["baseline"] is None
    rows = list(csv.DictReader(open(os.path.join(workdir, "eval_frames.csv"))))
    assert len(rows) == len(windows) * length
    # One mesh carried through time: the faces are fixed, and frame k is frame 0's vertices
    # flowed by the trained field to t_k (recomputed here from the checkpoint).
    model, state, _ = trainer.restore(config, workdir, config.generate.checkpoint)
    variables = task.variables_of(state)
    ds = task.load_split(config, "test", points=False)
    for w in windows:
        if not w["num_faces"]:
            continue
        trajectory, faces = generation.load_trajectory(workdir, w["meshes"])
        assert trajectory.shape[0] == length and len(faces) == w["num_faces"]
        seq, start = task.SequenceStore(ds, points=False, windows=[w["window"]]).sequence(w["window"])
        rng = np.random.default_rng([int(config.seed), int(w["window"]), 19])
        codes = task.create_encode_fn(model)(
            variables, jnp.asarray(task.window_inputs(config, seq, start, rng))
        )
        push = task.create_push_forward_fn(model, config.ode)
        again = generation.flow_vertices(
            push, variables, codes, trajectory[0], task.frame_times(length), config.generate.flow_chunk
        )
        np.testing.assert_allclose(again, trajectory, atol=1e-5)
    # The pictures: the filmstrip and the animations (a frame per time step).
    picture = vis.read_png(os.path.join(workdir, "oflow.png"))
    assert picture.ndim == 3 and picture.std() > 5
    with Image.open(os.path.join(workdir, "oflow.gif")) as gif:
        assert gif.n_frames == length
    logged = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert any("eval/iou" in r for r in logged) and any("train/loss_t" in r for r in logged)


def test_eval_refuses_a_generation_with_a_missing_frame(tiny_run, tmp_path):
    config, workdir, _ = tiny_run
    record = trainer.read_generation(os.path.join(workdir, "meshes", "generation.json"))
    gone = record["windows"][0]["meshes"][-1]
    os.rename(os.path.join(workdir, gone), os.path.join(workdir, gone + ".moved"))
    try:
        with pytest.raises(ValueError, match="meshes are missing"):
            trainer.run(config, workdir, "eval")
    finally:
        os.rename(os.path.join(workdir, gone + ".moved"), os.path.join(workdir, gone))
