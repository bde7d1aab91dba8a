"""One trainer for every method: `run(config, workdir, mode)`.

The method is the package `implicit_fields.methods.<config.method>`, found
with `importlib` (as big_vision finds its models). A method package provides:

* `get_config()`: its defaults, built on `config_utils.common_config`; they
  are also its schema (a config may set no other key);
* `create_model(config)`: the network (a Flax module);
* `init_state(config, model, key)`: a fresh `train_utils.TrainState`
  (parameters, batch statistics, optimiser);
* `create_task(config, workdir, model, mesh)`: a `Task`, what training needs:
  the loss, the batch of each step, and optionally a validation;
* `generate(config, workdir)` and `evaluate(config, workdir)`: meshes,
  pictures and metrics of a trained run (they restore it with `restore`).

Everything else is here, once: `config.json`, the debug switches (as context
managers), restore-and-resume from the latest checkpoint, the sharded, jitted
step with donated state (`train_utils.create_train_step`), batches prepared
ahead on a thread, the progress bar, JSON-lines and TensorBoard logs, the stop
on a non-finite loss or gradient, the checkpoint cadence, validation with the
best model kept in `best/`, and lead-process gating for multi-host runs (every
process trains; only the first writes logs, pictures and metrics).

A run killed at any point and started again with the same command resumes from
its latest checkpoint and reaches the parameters of an unbroken run: the batch
of step `s` is a pure function of the seed and `s`, and so is the step's key
(`fold_in(loop_key, s)`).
"""

import contextlib
import dataclasses
import functools
import importlib
import logging
import math
import os
import pkgutil
import queue
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import jax
import numpy as np
import tqdm

from implicit_fields import checkpointing, config_utils, summary, train_utils

logger = logging.getLogger(__name__)

MODES = ("train", "generate", "eval", "all")
CHECKPOINTS = ("best", "latest")


@dataclasses.dataclass(frozen=True)
class Task:
    """What a method gives the training loop.

    Attributes:
      loss_fn: `(params, batch_stats, batch, rng, **static) -> (loss, (metrics,
        new_batch_stats))`, a pure JAX function (see `train_utils.train_step`);
        `new_batch_stats` None keeps the state's.
      batch_fn: `step -> batch`, this process's share of the batch of step
        `step` (0-based: the batch that takes the state from `step` to
        `step + 1`) as numpy arrays with the batch on axis 0. A pure function
        of the step (and the config), so that a resumed run sees the batches
        of an unbroken one.
      static_fn: optional `step -> {name: value}` of compile-time settings of
        the step (e.g. DVR's marching steps, doubled at milestones); passed to
        `loss_fn` as keyword arguments and logged as `train/<name>`.
      eval_fn: optional validation `state -> {name: float}`, run every
        `train.eval_every` steps and at the end, logged as `eval/<name>`.
      best_metric: the key of `eval_fn`'s result that selects the best model
        (higher is better), kept in `WORKDIR/best`.
      items_per_step: points, rays, ... of one step, for the throughput.
      items_name: what they are, e.g. 'points': logged as `train/points_per_second`.
      progress_keys: training metrics shown on the progress bar besides the loss.
    """

    loss_fn: Callable[..., Any]
    batch_fn: Callable[[int], Mapping[str, np.ndarray]]
    static_fn: Optional[Callable[[int], Mapping[str, Any]]] = None
    eval_fn: Optional[Callable[[Any], Mapping[str, float]]] = None
    best_metric: Optional[str] = None
    items_per_step: int = 0
    items_name: str = "items"
    progress_keys: Tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Methods and configs.
# ---------------------------------------------------------------------------


def available_methods() -> List[str]:
    """The method packages under `implicit_fields.methods`."""
    package = importlib.import_module("implicit_fields.methods")
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)


def load_method(name: str):
    """The method package `implicit_fields.methods.<name>`.

    Raises:
      ValueError: when there is no such method.
    """
    methods = available_methods()
    if not isinstance(name, str) or name not in methods:
        raise ValueError(f"unknown config.method {name!r}; available: {', '.join(methods)}")
    return importlib.import_module(f"implicit_fields.methods.{name}")


def _check_common(config) -> None:
    """Checks the values of the shared sections against their meaning."""
    for key in ("seed", "train.num_steps", "train.prefetch"):
        config_utils.check_int(config, key, minimum=0)
    for key in ("train.eval_every", "train.checkpoint_every", "train.max_to_keep", "logging.log_every"):
        config_utils.check_int(config, key)
    threshold = config.field.threshold
    if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
        raise ValueError(f"config.field.threshold={threshold!r} must be a probability in (0, 1)")
    padding = config.field.padding
    if not (isinstance(padding, (int, float)) and math.isfinite(padding) and padding >= 0.0):
        raise ValueError(f"config.field.padding={padding!r} must be a finite number >= 0")
    lr = config.optim.learning_rate
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0.0):
        raise ValueError(f"config.optim.learning_rate={lr!r} must be a finite number > 0")
    if config.optim.schedule not in train_utils.SCHEDULES:
        raise ValueError(
            f"config.optim.schedule={config.optim.schedule!r} must be one of {train_utils.SCHEDULES}"
        )
    milestones = list(config.optim.milestones)
    if any(int(m) != m or m <= 0 for m in milestones) or milestones != sorted(set(milestones)):
        raise ValueError(
            f"config.optim.milestones={tuple(milestones)!r} must be increasing positive step numbers"
        )
    if config.generate.checkpoint not in CHECKPOINTS:
        raise ValueError(
            f"config.generate.checkpoint={config.generate.checkpoint!r} must be one of {CHECKPOINTS}"
        )


def check_config(config, source: str = "the config"):
    """Checks `config` against its method's schema and the meaning of its values; returns the method.

    Raises:
      ValueError: naming the first problem (unknown method or keys, a value
        out of its range), before any work starts.
    """
    method = load_method(config.get("method", None))
    config_utils.check_keys(config, method.get_config(), source=source)
    _check_common(config)
    if hasattr(method, "check_config"):
        method.check_config(config)
    return method


def load_run_config(workdir: str):
    """The config stored in a run's `workdir/config.json`, completed with its method's defaults."""
    stored = config_utils.read_run_config(workdir)
    method = load_method(stored.get("method", None))
    return config_utils.load_run_config(workdir, method.get_config())


@contextlib.contextmanager
def debug_switches(debug_config):
    """Applies `config.debug` for the duration of a `with` block (and resets it after)."""
    with contextlib.ExitStack() as stack:
        if debug_config.disable_jit:
            stack.enter_context(jax.disable_jit())
        if debug_config.nans:
            stack.enter_context(jax.debug_nans(True))
        yield


def is_lead_process() -> bool:
    """Whether this process writes files (the first of a multi-host run; always true on one host)."""
    return jax.process_index() == 0


# ---------------------------------------------------------------------------
# Batches.
# ---------------------------------------------------------------------------


def prefetch(
    batch_fn: Callable[[int], Mapping[str, np.ndarray]],
    start_step: int,
    num_steps: int,
    sharding: Optional[jax.sharding.Sharding] = None,
    buffer_size: int = 2,
) -> Iterator[Dict[str, jax.Array]]:
    """Yields `batch_fn(step)` for steps [start_step, num_steps), prepared ahead.

    A background thread builds the numpy batches and transfers them to the
    devices (`jax.make_array_from_process_local_data` with `sharding`: each
    process contributes its share of the global batch), keeping up to
    `buffer_size` ready so that the accelerator is not starved by the host
    (0: built in the consumer's thread, one at a time). An exception in the
    thread is re-raised in the consumer.
    """

    def make(step):
        batch = batch_fn(step)
        if sharding is not None:
            batch = jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
        return batch

    if buffer_size <= 0:
        for step in range(start_step, num_steps):
            yield make(step)
        return
    q: "queue.Queue" = queue.Queue(maxsize=buffer_size)
    stop = threading.Event()
    done = object()

    def worker():
        try:
            for step in range(start_step, num_steps):
                if stop.is_set():
                    return
                batch = make(step)
                while not stop.is_set():
                    try:
                        q.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(e)
            return
        q.put(done)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# ---------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------


def _mean_metrics(pending: List[Mapping[str, Any]]) -> Dict[str, float]:
    host = jax.device_get(pending)
    return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _check_finite(means: Mapping[str, float], step: int, ckpt: checkpointing.Checkpointer) -> None:
    bad = {k: means[k] for k in ("loss", "grad_norm") if k in means and not math.isfinite(means[k])}
    if bad:
        ckpt.wait()
        last = ckpt.latest_step()
        where = (
            f"the last good checkpoint (step {last}) is in {ckpt.directory}"
            if last is not None
            else ("no checkpoint was saved yet")
        )
        raise FloatingPointError(
            f"non-finite training {', '.join(f'{k} {v}' for k, v in bad.items())} in the steps up to "
            f"{step}; {where} (config.debug.nans=True finds the operation)"
        )


def train_and_evaluate(config, workdir: str, on_step: Optional[Callable[[int], None]] = None):
    """Trains (or resumes training of) `config`'s method in `workdir`.

    Args:
      config: the run's ConfigDict (checked against its method's schema).
      workdir: output folder: config.json, checkpoints/, best/, metrics.jsonl,
        tensorboard/, train_summary.json.
      on_step: optional callback called with the step number after each step
        (and after that step's checkpoint, if any).

    Returns:
      The final train state.
    """
    method = check_config(config)
    workdir = os.path.abspath(workdir)
    lead = is_lead_process()
    if lead:
        os.makedirs(workdir, exist_ok=True)
        summary.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))

    mesh = train_utils.create_mesh()
    repl, data_sharding = train_utils.shardings(mesh)
    init_key, loop_key = train_utils.rng_keys(config.seed)
    model = method.create_model(config)
    task = method.create_task(config, workdir, model, mesh)
    state = jax.device_put(method.init_state(config, model, init_key), repl)

    train = config.train
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), train.max_to_keep)
    metric = task.best_metric if task.eval_fn is not None else None
    best_ckpt = checkpointing.Checkpointer(os.path.join(workdir, "best"), max_to_keep=1) if metric else None
    state, _ = ckpt.restore(state)
    start_step = int(jax.device_get(state.step))
    best = -math.inf
    if best_ckpt is not None and best_ckpt.latest_step() is not None:
        best = float(best_ckpt.read_meta().get(f"val_{metric}", -math.inf))
    if start_step:
        logger.info(
            "resumed from step %d%s", start_step, f" (best val {metric} {best:.4f})" if metric else ""
        )

    step_fn = train_utils.create_train_step(task.loss_fn, mesh, loop_key)
    writer = summary.SummaryWriter(workdir, tensorboard=config.logging.tensorboard) if lead else None
    num_steps = train.num_steps
    bar = tqdm.tqdm(
        total=num_steps,
        initial=start_step,
        desc=f"train {config.method}",
        unit="step",
        disable=not (config.logging.progress and lead),
        dynamic_ncols=True,
    )
    t_last, step_last = time.perf_counter(), start_step
    pending: List[Mapping[str, Any]] = []
    try:
        batches = prefetch(task.batch_fn, start_step, num_steps, data_sharding, train.prefetch)
        for step, batch in zip(range(start_step + 1, num_steps + 1), batches):
            static = dict(task.static_fn(step - 1)) if task.static_fn is not None else {}
            state, metrics = step_fn(state, batch, tuple(sorted(static.items())))
            pending.append(metrics)
            bar.update(1)
            last = step == num_steps
            log_now = step % config.logging.log_every == 0 or last
            save_now = step % train.checkpoint_every == 0 or last
            eval_now = metric is not None and (step % train.eval_every == 0 or last)
            if log_now or save_now or eval_now:
                # Nothing non-finite is logged, validated or saved.
                means = _mean_metrics(pending)
                _check_finite(means, step, ckpt)
            if log_now:
                pending = []
                now = time.perf_counter()
                rate = (step - step_last) * task.items_per_step / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                scalars = {f"train/{k}": v for k, v in means.items()}
                scalars.update({f"train/{k}": float(v) for k, v in static.items()})
                if task.items_per_step:
                    scalars[f"train/{task.items_name}_per_second"] = rate
                if writer:
                    writer.write_scalars(step, scalars)
                shown = {"loss": f"{means['loss']:.4g}"}
                shown.update({k: f"{means[k]:.3f}" for k in task.progress_keys if k in means})
                if task.items_per_step:
                    shown[f"{task.items_name}/s"] = f"{rate:,.0f}"
                bar.set_postfix(shown, refresh=False)
            if eval_now:
                val = {k: float(v) for k, v in task.eval_fn(state).items()}
                if writer:
                    writer.write_scalars(step, {f"eval/{k}": v for k, v in val.items()})
                value = val[metric]
                if lead:
                    bar.write(f"step {step}: val {metric} {value:.4f} (best {max(best, value):.4f})")
                if math.isfinite(value) and value > best:
                    best = value
                    best_ckpt.save(state, {f"val_{metric}": best}, wait=True)
            if save_now:
                ckpt.save(state, {f"best_val_{metric}": best} if metric else None)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
        for c in (ckpt, best_ckpt):
            if c is not None:
                c.wait()
                c.close()
        if writer:
            writer.close()
    if lead:
        record = {"step": int(jax.device_get(state.step))}
        if metric:
            record[f"best_val_{metric}"] = best
        summary.write_json(os.path.join(workdir, "train_summary.json"), record)
    return state


# ---------------------------------------------------------------------------
# Inference and the modes.
# ---------------------------------------------------------------------------


def abstract_state(config):
    """The model and the shapes, dtypes and shardings of its train state, without initialising it.

    A restore target: `Checkpointer.restore` fills in every array, so
    inference skips the parameter initialisation (7 s for the image model on
    a CPU, against 0.5 s to trace it).
    """
    method = load_method(config.method)
    repl, _ = train_utils.shardings(train_utils.create_mesh())
    model = method.create_model(config)
    init_key, _ = train_utils.rng_keys(config.seed)
    shapes = jax.eval_shape(functools.partial(method.init_state, config, model), init_key)
    return model, jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def restore(config, workdir: str, which: str = "best"):
    """The model and the state of `workdir`'s best (or latest) checkpoint.

    Falls back to the latest checkpoint when no best model was saved.

    Returns:
      (model, state, meta): meta is the checkpoint's JSON record (with 'step').

    Raises:
      FileNotFoundError: when `workdir` holds no checkpoint.
    """
    if which not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {which!r}; use one of {CHECKPOINTS}")
    model, state = abstract_state(config)
    candidates = ["best", "checkpoints"] if which == "best" else ["checkpoints"]
    for sub in candidates:
        directory = os.path.join(workdir, sub)
        if os.path.isdir(directory):
            ckpt = checkpointing.Checkpointer(directory)
            try:
                if ckpt.latest_step() is not None:
                    state, meta = ckpt.restore(state)
                    return model, state, meta
            finally:
                ckpt.close()
    raise FileNotFoundError(
        f"no checkpoint in {workdir!r} (looked in {candidates}); train first (--mode train)"
    )


def run(config, workdir: str, mode: str = "all") -> Dict[str, Any]:
    """Runs `mode` ('train', 'generate', 'eval' or 'all') of `config`'s method in `workdir`.

    Returns:
      The metrics dict of the evaluation (empty without one, and on every
      process but the first, which alone writes meshes, pictures and metrics).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    method = check_config(config)
    workdir = os.path.abspath(workdir)
    result: Dict[str, Any] = {}
    with debug_switches(config.debug):
        if mode in ("train", "all"):
            train_and_evaluate(config, workdir)
        if not is_lead_process():
            return result
        if mode in ("generate", "all"):
            method.generate(config, workdir)
        if mode in ("eval", "all"):
            result = method.evaluate(config, workdir)
    return result
