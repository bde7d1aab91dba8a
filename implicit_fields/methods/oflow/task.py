"""Occupancy Flow's training task: the data, the state, the loss, validation.

The dataset is a folder in the D-FAUST layout (`data.motion`); with
`data.builtin` the built-in shapes in motion are made there first. Sequences are
cut into windows of `data.length` frames as the original's
`subdivide_into_sequences`, and a window's time runs over [0, 1] (frame i at
i / (length - 1)). Each step takes `train.batch_size` windows (epoch
permutations of the seed) and, per window, as the original's fields and
transforms:

* 'points', 'occupancies': `data.points_subsample` uniform points of frame 0;
* 'points_t', 'occupancies_t', 'time': as many of a random frame of the window,
  in the coordinates of the window's first frame;
* 'inputs': `data.input_points` corresponding surface points of every frame
  (one draw of indices for all frames) with N(0, `data.input_noise`^2) noise;
* 'pcl' (with `loss.corr`): `data.pcl_points` more corresponding points;
* 'times': the window's frame times.

The batch is a pure function of (seed, step), so a resumed run matches an
unbroken one. Validation measures the IoU of every frame of the validation
windows at `field.threshold`, each frame's points pulled back to t = 0 through
the flow (the original's `eval_step_iou`); the best model has the highest IoU.
"""

import functools
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import Mesh

from implicit_fields import config_utils, losses, train_utils, trainer
from implicit_fields.data import motion, onet_format, shapes
from implicit_fields.methods.oflow import config as oflow_config
from implicit_fields.methods.oflow import model as oflow_model

logger = logging.getLogger(__name__)

EVAL_JITTER = 1e-4
"""N(0, 1) * this added to stored float16 points in validation (the original's `load_all_steps`)."""


# ---------------------------------------------------------------------------
# Config, model and state.
# ---------------------------------------------------------------------------


def check_config(config) -> None:
    """Checks Occupancy Flow's own values and how they fit together (before any work)."""
    config_utils.check_values(config, oflow_config.CHECKS)
    m, d = config.model, config.data
    if d.builtin:
        for c in d.builtin_categories:
            try:
                shapes.category_synset(c)
            except ValueError as e:
                raise ValueError(f"config.data.builtin_categories: {e}") from None
        if d.builtin_frames < d.offset + d.length:
            raise ValueError(
                f"config.data.builtin_frames={d.builtin_frames} is shorter than one window: "
                f"data.offset={d.offset} + data.length={d.length} frames"
            )
    if (m.encoder or m.encoder_temporal) and m.c_dim == 0:
        raise ValueError("config.model.c_dim=0: the encoders need a code size > 0 (or set them to '')")
    if not m.encoder and not m.encoder_temporal and m.z_dim == 0:
        raise ValueError(
            "config.model.encoder='' and encoder_temporal='' with z_dim=0: the model would see no input; "
            "give it an encoder or a latent (z_dim > 0)"
        )
    if not config.loss.recon and not config.loss.corr:
        raise ValueError("config.loss.recon=False and config.loss.corr=False: the model would learn nothing")
    if m.decoder == "cbatchnorm" and not m.encoder:
        raise ValueError(
            "config.model.decoder='cbatchnorm' needs the code of frame 0 (config.model.encoder); the "
            "generative model uses 'simple'"
        )
    if config.generate.picture_frames > d.length:
        raise ValueError(
            f"config.generate.picture_frames={config.generate.picture_frames} is more than the "
            f"{d.length} frames of a window (data.length)"
        )


def create_model(config) -> oflow_model.OccupancyFlow:
    """The network of `config.model`."""
    return oflow_model.create_model(config.model)


def _dummy(config, batch_size: int = 2):
    t = config.data.length
    inputs = jnp.zeros((batch_size, t, config.data.input_points, 3), jnp.float32)
    points = jnp.zeros((batch_size, config.data.points_subsample, 3), jnp.float32)
    return inputs, points


def init_state(config, model: oflow_model.OccupancyFlow, key) -> train_utils.TrainState:
    """Fresh parameters (PyTorch-style initialisation) and the optimiser state (Adam)."""
    inputs, points = _dummy(config)
    variables = model.init(key, inputs, points)
    return train_utils.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=train_utils.create_optimizer(config.optim, config.train.num_steps),
        batch_stats=dict(variables.get("batch_stats", {})),
    )


# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------


def ensure_data(config) -> str:
    """The dataset folder; with `data.builtin` the built-in motion dataset is made there first."""
    d = config.data
    if not d.builtin:
        if not os.path.isdir(d.path):
            raise FileNotFoundError(
                f"config.data.path={d.path!r}: no such dataset folder (config.data.builtin=True makes "
                f"the built-in shapes in motion there)"
            )
        return d.path
    motion.ensure_motion_dataset(
        d.path,
        categories=list(d.builtin_categories),
        sequences_per_category=d.builtin_sequences_per_category,
        n_frames=d.builtin_frames,
        num_points=d.builtin_num_points,
        num_pcl_points=d.builtin_num_pcl_points,
        seed=config.seed,
        progress=config.logging.progress,
    )
    return d.path


def load_split(config, split: str, points: bool = True) -> motion.MotionDataset:
    """The windows of `split` (a `motion.MotionDataset`).

    Raises:
      ValueError: naming `data.path` when the split has no window.
    """
    path = ensure_data(config)
    ds = motion.MotionDataset(
        path,
        split,
        length=config.data.length,
        offset=config.data.offset,
        categories=list(config.data.categories) or None,
        points=points,
    )
    if len(ds) == 0:
        raise ValueError(
            f"config.data.path={config.data.path!r}: the {split!r} split has no window of "
            f"data.length={config.data.length} frames after data.offset={config.data.offset}"
        )
    return ds


@functools.lru_cache(maxsize=128)
def _read_points(path: str):
    d = onet_format.load_points_npz(path)
    return (
        d["points"].astype(np.float16),
        d["occupancies"],
        np.asarray(d["loc"], np.float64),
        float(d["scale"]),
    )


@functools.lru_cache(maxsize=128)
def _read_pcl(path: str):
    d = motion.load_pcl_npz(path)
    return d["points"].astype(np.float16), np.asarray(d["loc"], np.float64), float(d["scale"])


class Sequence:
    """One sequence's frames: `points_seq` (points, occupancies, loc, scale) and `pcl_seq`.

    With `cache` every frame is read at once and kept compact (float16 points, as stored;
    bool occupancies); without, frames are read when asked (the last 128 files kept), for
    datasets larger than memory (D-FAUST's 42 GB).
    """

    def __init__(self, folder: str, points: bool = True, cache: bool = True):
        self.folder = folder
        self.pcl_files = motion.frame_files(os.path.join(folder, motion.PCL_SEQ_DIR))
        self.points_files = motion.frame_files(os.path.join(folder, motion.POINTS_SEQ_DIR)) if points else []
        self._points = [_read_points.__wrapped__(f) for f in self.points_files] if cache else None
        self._pcl = [_read_pcl.__wrapped__(f) for f in self.pcl_files] if cache else None
        if cache:
            self._check_pcl(self._pcl, range(len(self._pcl)))

    def _check_pcl(self, frames, numbers):
        counts = {f[0].shape[0] for f in frames}
        if len(counts) > 1:
            bad = [
                self.pcl_files[i] for i, f in zip(numbers, frames) if f[0].shape[0] != frames[0][0].shape[0]
            ]
            raise onet_format.DataFormatError(
                f"{bad[0]}: {sorted(counts)} points in the frames of {os.path.dirname(bad[0])}; the frames "
                f"of a pcl_seq correspond point by point"
            )

    def points(self, f: int):
        """(points float16 [N, 3], occupancies bool [N], loc [3], scale) of frame f."""
        return self._points[f] if self._points is not None else _read_points(self.points_files[f])

    def pcl(self, f: int):
        """(points float16 [M, 3], loc [3], scale) of frame f."""
        return self._pcl[f] if self._pcl is not None else _read_pcl(self.pcl_files[f])

    @property
    def num_pcl(self) -> int:
        return self.pcl(0)[0].shape[0]


class SequenceStore:
    """The sequences of a split's windows, for the samples of any window.

    Only the sequences of `windows` (indices into the dataset's windows; None: all) are
    opened; with `cache` (`data.cache`) they are read at once and kept in memory. A window's
    samples are mapped into its first frame's coordinates as the original's fields do:
    `(loc_i + scale_i p - loc_0) / scale_0`.
    """

    def __init__(
        self,
        dataset: motion.MotionDataset,
        points: bool = True,
        windows: Optional[List[int]] = None,
        cache: bool = True,
        progress: bool = False,
    ):
        self.dataset = dataset
        self.windows = list(dataset.windows)
        self.sequences: Dict[Tuple[str, str], Sequence] = {}
        used = range(len(self.windows)) if windows is None else windows
        keys = sorted({self.windows[i][:2] for i in used})
        desc = "load sequences" if cache else "open sequences"
        for key in tqdm.tqdm(keys, desc=desc, unit="sequence", disable=not progress):
            self.sequences[key] = Sequence(os.path.join(dataset.path, *key), points, cache)

    def __len__(self):
        return len(self.windows)

    def sequence(self, index: int) -> Tuple[Sequence, int]:
        category, name, start = self.windows[index]
        return self.sequences[(category, name)], start


def _to_first(p, loc, scale, loc0, scale0):
    """Points of a frame (its loc, scale) in the coordinates of the window's first frame."""
    p = np.asarray(p, np.float64)
    if np.array_equal(loc, loc0) and scale == scale0:
        return p.astype(np.float32)
    return ((loc + scale * p - loc0) / scale0).astype(np.float32)


def window_points(seq: Sequence, start: int, frame: int, idx=None) -> Tuple[np.ndarray, np.ndarray]:
    """Points (float32, first-frame coordinates) and occupancies (float32) of one frame of a window."""
    p, o, loc, scale = seq.points(start + frame)
    _, _, loc0, scale0 = seq.points(start)
    if idx is not None:
        p, o = p[idx], o[idx]
    return _to_first(p, loc, scale, loc0, scale0), o.astype(np.float32)


def window_pcl(seq: Sequence, start: int, length: int, idx=None) -> np.ndarray:
    """Corresponding points [T, M, 3] of a window (float32, its first pcl frame's coordinates)."""
    frames = [seq.pcl(start + i) for i in range(length)]
    seq._check_pcl(frames, range(start, start + length))
    _, loc0, scale0 = frames[0]
    return np.stack(
        [_to_first(p if idx is None else p[idx], loc, scale, loc0, scale0) for p, loc, scale in frames]
    )


def window_inputs(config, seq, start: int, rng: np.random.Generator) -> np.ndarray:
    """The input point-cloud sequence [T, n, 3] of a window: one index draw for all frames, plus noise."""
    d = config.data
    idx = rng.integers(0, seq.num_pcl, size=d.input_points)
    inputs = window_pcl(seq, start, d.length, idx)
    if d.input_noise:
        inputs = inputs + np.float32(d.input_noise) * rng.standard_normal(inputs.shape).astype(np.float32)
    return inputs.astype(np.float32)


def frame_times(length: int) -> np.ndarray:
    """Times of a window's frames, i / (length - 1), float32 (`motion.frame_times` of the window)."""
    return motion.frame_times(length).astype(np.float32)


def make_batch(
    config, store: SequenceStore, step: int, process_index: int = 0, process_count: int = 1
) -> Dict[str, np.ndarray]:
    """The batch of step `step` (this process's share): a pure function of (seed, step)."""
    d = config.data
    b = config.train.batch_size
    if b % process_count:
        raise ValueError(f"config.train.batch_size={b} is not divisible by {process_count} processes")
    windows = train_utils.epoch_indices(config.seed, step, b, len(store), stream=16)
    rng = np.random.default_rng([int(config.seed), int(step), 17])
    rows = []
    for w in windows:
        seq, start = store.sequence(int(w))
        n0 = seq.points(start)[0].shape[0]
        p0, o0 = window_points(seq, start, 0, rng.integers(0, n0, size=d.points_subsample))
        i = int(rng.integers(0, d.length))
        ni = seq.points(start + i)[0].shape[0]
        pt, ot = window_points(seq, start, i, rng.integers(0, ni, size=d.points_subsample))
        inputs = window_inputs(config, seq, start, rng)
        row = {
            "points": p0,
            "occupancies": o0,
            "points_t": pt,
            "occupancies_t": ot,
            "time": np.float32(i / (d.length - 1)),
            "inputs": inputs,
            "times": frame_times(d.length),
        }
        if config.loss.corr:
            jdx = rng.integers(0, seq.num_pcl, size=d.pcl_points)
            row["pcl"] = window_pcl(seq, start, d.length, jdx)
        rows.append(row)
    local = rows[process_index * b // process_count : (process_index + 1) * b // process_count]
    return {k: np.stack([r[k] for r in local]) for k in local[0]}


# ---------------------------------------------------------------------------
# Inference with a trained state (validation, generation, evaluation).
# ---------------------------------------------------------------------------


def variables_of(state) -> Dict[str, Any]:
    """The model's variables of a train state (for `apply`)."""
    out = {"params": state.params}
    if state.batch_stats:
        out["batch_stats"] = state.batch_stats
    return out


def create_encode_fn(model: oflow_model.OccupancyFlow):
    """Jitted `encode(variables, inputs [T, n, 3]) -> (c_s, c_t, z, z_t)` of one window.

    The generative model's z and z_t are its posteriors' means given the window (so that its
    reconstructions can be validated and evaluated like the conditional model's; the
    original validates with a posterior sample); without a latent they are empty.
    """

    @jax.jit
    def encode(variables, inputs):
        c_s, c_t = model.apply(variables, inputs[None], method=oflow_model.OccupancyFlow.encode)
        mean_z, _, mean_zt, _ = model.apply(
            variables, inputs[None], c_t, method=oflow_model.OccupancyFlow.infer_z
        )
        return c_s[0], c_t[0], mean_z[0], mean_zt[0]

    return encode


def create_decode_fn(model: oflow_model.OccupancyFlow):
    """Jitted `decode(variables, codes, points [N, 3]) -> logits [N]` at t = 0 (eval-mode batch norm)."""

    @jax.jit
    def decode(variables, codes, points):
        c_s, _, z, _ = codes
        out = model.apply(
            variables, points[None], c_s[None], z[None], method=oflow_model.OccupancyFlow.decode
        )
        return out[0]

    return decode


def create_pull_back_fn(model: oflow_model.OccupancyFlow, ode):
    """Jitted `pull(variables, codes, points [B, N, 3], t [B]) -> points at t = 0 [B, N, 3]`."""

    @jax.jit
    def pull(variables, codes, points, t):
        _, c_t, _, z_t = codes
        b = points.shape[0]
        ct = jnp.broadcast_to(c_t, (b,) + c_t.shape)
        zt = jnp.broadcast_to(z_t, (b,) + z_t.shape)
        return oflow_model.pull_back(model, variables["params"], points, t, ct, zt, ode)

    return pull


def create_push_forward_fn(model: oflow_model.OccupancyFlow, ode):
    """Jitted `push(variables, codes, points [N, 3], times [T]) -> [T, N, 3]` (from times[0])."""

    @jax.jit
    def push(variables, codes, points, times):
        _, c_t, _, z_t = codes
        out = oflow_model.push_forward(
            model, variables["params"], points[None], times, c_t[None], z_t[None], ode
        )
        return out[:, 0]

    return push


def create_frame_logits_fn(model: oflow_model.OccupancyFlow, ode):
    """Jitted `logits(variables, codes, points [T, N, 3], times [T]) -> [T, N]`: frames pulled to t = 0."""
    pull = create_pull_back_fn(model, ode)
    decode = create_decode_fn(model)

    @jax.jit
    def logits(variables, codes, points, times):
        p0 = pull(variables, codes, points, times)
        return jax.vmap(lambda p: decode(variables, codes, p))(p0)

    return logits


def validation_window(config, store: SequenceStore, index: int, num_points: int):
    """A validation window's fixed inputs, points [T, N, 3] (jittered) and occupancies [T, N] (bool)."""
    seq, start = store.sequence(index)
    rng = np.random.default_rng([int(config.seed), int(index), 18])
    inputs = window_inputs(config, seq, start, rng)
    pts, occ = [], []
    for i in range(config.data.length):
        n = seq.points(start + i)[0].shape[0]
        n = min(num_points, n) if num_points else n
        p, o = window_points(seq, start, i, np.arange(n))
        pts.append(p)
        occ.append(o >= 0.5)
    n = min(len(p) for p in pts)
    points = np.stack([p[:n] for p in pts])
    points = points + np.float32(EVAL_JITTER) * rng.standard_normal(points.shape).astype(np.float32)
    return inputs, points.astype(np.float32), np.stack([o[:n] for o in occ])


def frame_ious(logits: np.ndarray, occupancies: np.ndarray, threshold: float) -> np.ndarray:
    """IoU of each frame [T] at the probability `threshold` (0 where both sets are empty)."""
    pred = np.asarray(logits) >= losses.probability_to_logit(threshold)
    occ = np.asarray(occupancies)
    inter = (pred & occ).sum(-1)
    union = (pred | occ).sum(-1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def create_task(config, workdir: str, model: oflow_model.OccupancyFlow, mesh: Mesh) -> trainer.Task:
    """The training task: the cached training sequences, the batch of a step, the loss, validation."""
    del workdir
    num_devices = mesh.devices.size
    if config.train.batch_size % num_devices:
        raise ValueError(
            f"config.train.batch_size={config.train.batch_size} must be a multiple of the "
            f"{num_devices} devices the batch is split over"
        )
    progress = config.logging.progress
    trainer.lead_first("dataset", ensure_data, config)  # one process writes it (multi-host runs)
    store = SequenceStore(load_split(config, "train"), cache=config.data.cache, progress=progress)
    logger.info("loaded %d training windows of %d sequences", len(store), len(store.sequences))
    val: Optional[SequenceStore] = None
    try:
        val = SequenceStore(load_split(config, "val"), cache=config.data.cache, progress=progress)
    except ValueError as e:
        logger.warning("no validation: %s", e)
    n_val = (
        0
        if val is None
        else (min(config.train.val_windows, len(val)) if config.train.val_windows else len(val))
    )
    encode = create_encode_fn(model)
    frame_logits = create_frame_logits_fn(model, config.ode)
    val_data: List[Any] = []

    def evaluate(state):
        if not val_data:
            val_data.extend(validation_window(config, val, i, config.train.val_points) for i in range(n_val))
        variables = variables_of(state)
        times = jnp.asarray(frame_times(config.data.length))
        ious = []
        for inputs, points, occ in val_data:
            codes = encode(variables, jnp.asarray(inputs))
            logits = np.asarray(frame_logits(variables, codes, jnp.asarray(points), times))
            ious.append(frame_ious(logits, occ, config.field.threshold))
        ious = np.asarray(ious)
        return {
            "iou": float(ious.mean()),
            "iou_t0": float(ious[:, 0].mean()),
            "iou_t1": float(ious[:, -1].mean()),
        }

    batch_fn = functools.partial(
        make_batch, config, store, process_index=jax.process_index(), process_count=jax.process_count()
    )
    keys = tuple(
        k
        for k, on in (
            ("loss_t0", config.loss.recon),
            ("loss_t", config.loss.recon),
            ("loss_corr", config.loss.corr),
        )
        if on
    )
    return trainer.Task(
        loss_fn=functools.partial(oflow_model.compute_loss, model, config),
        batch_fn=batch_fn,
        eval_fn=evaluate if n_val else None,
        best_metric="iou",
        items_per_step=config.train.batch_size * config.data.points_subsample * 2,
        items_name="points",
        progress_keys=keys,
    )
