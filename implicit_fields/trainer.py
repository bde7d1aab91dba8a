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
import json
import logging
import math
import os
import pkgutil
import queue
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from implicit_fields import checkpointing, config_utils, meshing, summary, train_utils

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


def _check_types(config, reference, prefix: str = "config") -> None:
    """Each value has its default's kind (bool, integer, number, string, list): a typo'd type is
    named here rather than failing deep inside the work."""
    kinds = (
        (bool, lambda v: isinstance(v, bool), "True or False"),
        (int, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
        (float, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
        (str, lambda v: isinstance(v, str), "a string"),
        ((list, tuple), lambda v: isinstance(v, (list, tuple)), "a list"),
    )
    flat = config_utils._flatten(config)
    for key, default in config_utils._flatten(reference).items():
        value = flat.get(key, default)
        for kind, ok, name in kinds:
            if isinstance(default, kind) and not ok(value):
                raise ValueError(f"{prefix}.{key}={value!r} must be {name}")
            if isinstance(default, kind):
                break


def check_config(config, source: str = "the config"):
    """Checks `config` against its method's schema and the meaning of its values; returns the method.

    Raises:
      ValueError: naming the first problem (unknown method or keys, a value
        out of its range), before any work starts.
    """
    method = load_method(config.get("method", None))
    reference = method.get_config()
    config_utils.check_keys(config, reference, source=source)
    _check_types(config, reference)
    config_utils.check_values(config, config_utils.COMMON_CHECKS)
    train_utils.learning_rate_schedule(config.optim, config.train.num_steps)  # Its own cross-checks.
    if hasattr(method, "check_config"):
        method.check_config(config)
    return method


def load_run_config(workdir: str):
    """The config stored in a run's `workdir/config.json`, completed with its method's defaults."""
    stored = config_utils.read_run_config(workdir)
    method = load_method(stored.get("method", None))
    return config_utils.load_run_config(workdir, method.get_config())


# Keys a rerun may change without changing the state's shapes or the meaning of the run
# (prefixes end in '.'): how long and how often, logging, debugging, meshing and evaluation.
RESUMABLE_KEYS = (
    "train.num_steps",
    "train.eval_every",
    "train.checkpoint_every",
    "train.max_to_keep",
    "train.prefetch",
    "train.workers",
    "logging.",
    "debug.",
    "generate.",
    "eval.",
)


def _resumable(key: str, method) -> bool:
    keys = RESUMABLE_KEYS + tuple(getattr(method, "RESUMABLE_KEYS", ()))
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in keys)


def _plain(config) -> Dict[str, Any]:
    """A config as the flat {dotted key: JSON value} it is stored as."""
    as_json = json.loads(config.to_json_best_effort())
    return config_utils._flatten(as_json)


def has_checkpoint(workdir: str) -> bool:
    """Whether `workdir` holds a saved checkpoint (in checkpoints/ or best/), without opening it."""
    for sub in ("checkpoints", "best"):
        folder = os.path.join(workdir, sub)
        if os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder)):
            return True
    return False


def config_changes(config, workdir: str) -> Dict[str, Tuple[Any, Any]]:
    """How `config` differs from the run's own `workdir/config.json`: {key: (stored, new)}.

    Returns {} for a new workdir.

    Keys in `RESUMABLE_KEYS` (and a method package's own `RESUMABLE_KEYS`)
    may differ; any other difference changes the state's shapes or the
    meaning of the run (the model, the data, the seed, the optimiser, ...).

    Raises:
      ValueError: when such a key differs while the run has a checkpoint
        (listing every such key with both values), or when the run's
        `config.json` is unreadable.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return {}
    stored_method = config_utils.read_run_config(workdir).get("method", None)
    if stored_method != config.method:
        stored, new = {"method": stored_method}, {"method": config.method}
    else:
        stored, new = _plain(load_run_config(workdir)), _plain(config)
    changes = {k: (stored.get(k), new.get(k)) for k in sorted(set(stored) | set(new))}
    changes = {k: v for k, v in changes.items() if v[0] != v[1]}
    method = load_method(config.method)
    refused = {k: v for k, v in changes.items() if k == "method" or not _resumable(k, method)}
    if refused and has_checkpoint(workdir):
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ValueError(
            f"{path}: the config differs from the one this run was trained with in key(s) that change "
            f"its state or meaning: {listed}; use a new --workdir, or the run's own values "
            f"(nothing was written)"
        )
    return changes


def check_workdir(workdir: str, create: bool = True) -> str:
    """The absolute `workdir`, checked to be a folder this process can write.

    Args:
      workdir: the run's folder.
      create: make it if missing (training); else a missing one is an error
        (generation and evaluation need a trained run).

    Raises:
      NotADirectoryError, FileNotFoundError, PermissionError: naming the
        workdir and the problem.
    """
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir {workdir}: is a file, not a folder")
    if not create and not os.path.exists(workdir):
        raise FileNotFoundError(f"workdir {workdir}: does not exist; train first (--mode train)")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise PermissionError(f"workdir {workdir}: cannot write there ({e.strerror or e})") from None
    return workdir


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


def wait_for_all_processes(name: str) -> None:
    """A barrier: every process of a multi-host run waits here for the others (nothing on one host)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"implicit_fields:{name}")


def lead_first(name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """`fn(*args, **kwargs)` on the lead process, then, once it is done, on the others.

    For work that writes shared files, such as generating a built-in dataset:
    the other processes of a multi-host run wait, then find it done (or, on a
    host that does not share the lead's disk, do it for themselves) instead of
    writing the same files at the same time.
    """
    if jax.process_count() == 1:
        return fn(*args, **kwargs)
    result = fn(*args, **kwargs) if is_lead_process() else None
    wait_for_all_processes(f"lead_first:{name}")
    return result if is_lead_process() else fn(*args, **kwargs)


# ---------------------------------------------------------------------------
# Batches.
# ---------------------------------------------------------------------------


def host_batches(
    batch_fn: Callable[[int], Mapping[str, np.ndarray]],
    start_step: int,
    num_steps: int,
    workers: int = 0,
    buffer_size: int = 2,
) -> Iterator[Mapping[str, np.ndarray]]:
    """The numpy batches `batch_fn(step)` of steps [start_step, num_steps), in order.

    With `workers` > 0 they are built by that many worker processes: grain's
    `MapDataset.range(...).map(batch_fn)` with `mp_prefetch` (spawned
    processes, each sent `batch_fn` by cloudpickle, results through shared
    memory, read back in step order), `buffer_size` batches ahead per worker.
    A batch is a function of its step alone, so the batches are the same
    whatever the worker count, and a resumed run starts the workers at its
    step. `batch_fn` and what it holds must pickle (datasets drop their caches:
    each worker fills its own).
    """
    if workers <= 0:
        for step in range(start_step, num_steps):
            yield batch_fn(step)
        return
    if start_step >= num_steps:
        return
    try:
        import grain
        from absl import flags
    except ImportError as e:  # A dependency of the package; say what is missing all the same.
        raise ImportError(f"config.train.workers={workers} needs grain (pip install grain): {e}") from e
    # grain reads its absl flags (worker profiling and others) even where the program
    # parses none (a notebook, a test): their defaults then apply.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    options = grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=max(1, buffer_size))
    dataset = grain.MapDataset.range(start_step, num_steps).map(batch_fn).to_iter_dataset()
    iterator = iter(dataset.mp_prefetch(options))
    try:
        for batch in iterator:
            # Copies out of the workers' shared memory, which is freed with grain's array.
            yield {k: np.array(v) for k, v in batch.items()}
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def prefetch(
    batch_fn: Callable[[int], Mapping[str, np.ndarray]],
    start_step: int,
    num_steps: int,
    sharding: Optional[jax.sharding.Sharding] = None,
    buffer_size: int = 2,
    workers: int = 0,
) -> Iterator[Dict[str, jax.Array]]:
    """Yields `batch_fn(step)` for steps [start_step, num_steps), prepared ahead.

    The numpy batches come from `host_batches` (built here, or by `workers`
    worker processes). A background thread transfers them to the devices
    (`jax.make_array_from_process_local_data` with `sharding`: each process
    contributes its share of the global batch), keeping up to `buffer_size`
    ready so that the accelerator is not starved by the host (0: built in the
    consumer's thread, one at a time). An exception in the thread or a worker
    is re-raised in the consumer.
    """
    source = host_batches(batch_fn, start_step, num_steps, workers, buffer_size)

    def make(batch):
        if sharding is not None:
            batch = jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
        return batch

    if buffer_size <= 0:
        try:
            for batch in source:
                yield make(batch)
        finally:
            source.close()
        return
    q: "queue.Queue" = queue.Queue(maxsize=buffer_size)
    stop = threading.Event()
    done = object()

    def worker():
        try:
            for batch in source:
                if stop.is_set():
                    return
                batch = make(batch)
                while not stop.is_set():
                    try:
                        q.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(e)
            return
        finally:
            source.close()  # Stops the worker processes, if any, in this thread.
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


def _restore_best(best_ckpt, state, metric: str, lead: bool) -> float:
    """The validation value of the model in `best/` (-inf without one).

    The best model is read in full, so that an unreadable one is found now: it
    is moved aside (training goes on from `checkpoints/`, which is separate),
    and the next validation saves a new best model.
    """
    if best_ckpt.latest_step() is None:
        return -math.inf
    try:
        _, meta = best_ckpt.restore(_abstract_like(state), quarantine=True)
    except checkpointing.CheckpointError as e:
        if lead:
            logger.warning("%s; the next validation saves a new best model", e)
        for step in best_ckpt.all_steps():  # Every process: the lead moves it, all reopen the folder.
            best_ckpt.quarantine(step)
        return -math.inf
    return float(meta.get(f"val_{metric}", -math.inf))


def _abstract_like(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


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
    # Before anything is written: the workdir is usable, and a rerun trains the same run.
    if lead:
        workdir = check_workdir(workdir)
    changes = config_changes(config, workdir)

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
    # The newest intact checkpoint; unreadable ones are moved aside (never deleted), so
    # that their steps can be saved again.
    state, meta = ckpt.restore(state, quarantine=True)  # every process: see Checkpointer.quarantine
    start_step = int(jax.device_get(state.step))
    best = _restore_best(best_ckpt, state, metric, lead) if best_ckpt is not None else -math.inf
    if start_step:
        logger.info(
            "resumed from step %d%s", start_step, f" (best val {metric} {best:.4f})" if metric else ""
        )
    if lead:
        summary.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))
        if changes:
            record = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "resumed_from_step": start_step}
            record["changes"] = {k: {"old": a, "new": b} for k, (a, b) in changes.items()}
            with open(os.path.join(workdir, "config_changes.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            logger.info(
                "config changes recorded in config_changes.jsonl: %s",
                ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()),
            )
    if start_step >= train.num_steps:
        logger.info(
            "the run has %d steps (train.num_steps=%d): nothing to train", start_step, train.num_steps
        )

    step_fn = train_utils.create_train_step(task.loss_fn, mesh, loop_key, config.train.compute_dtype)
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
        batches = prefetch(task.batch_fn, start_step, num_steps, data_sharding, train.prefetch, train.workers)
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
    a CPU, against 0.5 s to trace it). The state is replicated on this
    process's devices: inference runs on one process (the lead of a
    multi-host run).
    """
    method = load_method(config.method)
    repl, _ = train_utils.shardings(train_utils.create_mesh(jax.local_devices()))
    model = method.create_model(config)
    init_key, _ = train_utils.rng_keys(config.seed)
    shapes = jax.eval_shape(functools.partial(method.init_state, config, model), init_key)
    return model, jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def restore(config, workdir: str, which: str = "best"):
    """The model and the state of `workdir`'s best (or latest) checkpoint.

    Falls back to the latest checkpoint when no best model was saved, and to
    the newest intact checkpoint when one cannot be read (logging which and
    why; nothing is moved or deleted).

    Returns:
      (model, state, meta): meta is the checkpoint's JSON record, with 'step'
      and 'checkpoint' (the folder it came from, e.g. 'best').

    Raises:
      FileNotFoundError: when `workdir` holds no checkpoint.
      checkpointing.CheckpointError: when none of them can be read.
    """
    if which not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {which!r}; use one of {CHECKPOINTS}")
    model, state = abstract_state(config)
    candidates = ["best", "checkpoints"] if which == "best" else ["checkpoints"]
    failures = []
    for sub in candidates:
        directory = os.path.join(workdir, sub)
        if not os.path.isdir(directory):
            continue
        ckpt = checkpointing.Checkpointer(directory, all_processes=False)
        try:
            if ckpt.latest_step() is None:
                continue
            try:
                restored, meta = ckpt.restore(state)
            except checkpointing.CheckpointError as e:
                failures.append(str(e))
                logger.warning("%s; falling back to %s", e, "checkpoints/" if sub == "best" else "nothing")
                continue
            if failures:
                logger.warning("using the checkpoint of step %s in %s instead", meta.get("step"), directory)
            return model, restored, dict(meta, checkpoint=sub)
        finally:
            ckpt.close()
    if failures:
        raise checkpointing.CheckpointError("; ".join(failures))
    raise FileNotFoundError(
        f"no checkpoint in {workdir!r} (looked in {candidates}); train first (--mode train)"
    )


# ---------------------------------------------------------------------------
# Generation records: which checkpoint made the meshes, and whether they are all there.
# ---------------------------------------------------------------------------


def mesh_provenance(meta: Mapping[str, Any]) -> List[str]:
    """The PLY header comments that name the checkpoint a mesh was made from (see `check_meshes`)."""
    return [f"implicit_fields checkpoint {meta.get('checkpoint', 'unknown')} step {meta.get('step')}"]


def _provenance_step(path: str) -> Optional[int]:
    for comment in meshing.read_ply_comments(path):
        parts = comment.split()
        if len(parts) == 5 and parts[:2] == ["implicit_fields", "checkpoint"] and parts[3] == "step":
            return int(parts[4]) if parts[4].lstrip("-").isdigit() else None
    return None


def start_generation(path: str, meta: Mapping[str, Any], **info) -> Dict[str, Any]:
    """Writes a generation's record before its first mesh: checkpoint, step, `complete: False`.

    A generation killed halfway thus leaves a record that says so, and
    `read_generation` refuses its meshes (they may mix two checkpoints).

    Args:
      path: the record's JSON file.
      meta: the checkpoint's record from `restore` ('checkpoint', 'step').
      info: more entries (the split, the settings, ...).
    """
    record = {
        "complete": False,
        "checkpoint": meta.get("checkpoint"),
        "checkpoint_step": meta.get("step"),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        **info,
    }
    summary.write_json(path, record, indent=1)
    return record


def finish_generation(path: str, record: Dict[str, Any], **results) -> Dict[str, Any]:
    """Completes `record` with `results` and marks it `complete` (written atomically)."""
    record = dict(record, **results, complete=True, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    summary.write_json(path, record, indent=1)
    return record


def read_generation(path: str) -> Dict[str, Any]:
    """A finished generation's record (`start_generation`, `finish_generation`).

    Raises:
      FileNotFoundError: there is no record (no generation yet).
      ValueError: the record is unreadable, was made before records named their
        checkpoint, or belongs to a generation that did not finish.
    """
    rerun = "rerun --mode generate"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: does not exist; run --mode generate first")
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid generation record ({e}); {rerun}") from None
    if not isinstance(record, dict) or "checkpoint_step" not in record:
        raise ValueError(f"{path}: made before generation records named their checkpoint; {rerun}")
    if not record.get("complete"):
        raise ValueError(
            f"{path}: the generation started {record.get('started')} from the checkpoint of step "
            f"{record.get('checkpoint_step')} did not finish, so its meshes may be incomplete or mix "
            f"checkpoints; {rerun}"
        )
    return record


def check_meshes(record: Mapping[str, Any], paths: Sequence[str], where: str) -> None:
    """Checks that every mesh of a generation exists and was made from the record's checkpoint.

    Args:
      record: from `read_generation`.
      paths: the meshes' files.
      where: the record's file, for the message.

    Raises:
      ValueError: naming the missing meshes, or those made from another checkpoint (a mixture).
    """
    step = record["checkpoint_step"]
    missing, mixed = [], []
    for path in paths:
        if not os.path.exists(path):
            missing.append(path)
            continue
        made = _provenance_step(path)
        if made != step:
            mixed.append(f"{path} (step {made})")
    problems = (
        (missing, "are missing"),
        (mixed, f"were made from another checkpoint than the record's (step {step})"),
    )
    for items, problem in problems:
        if items:
            shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
            raise ValueError(
                f"{where}: {len(items)} of its {len(paths)} meshes {problem}: {shown}; rerun --mode generate"
            )


def run(config, workdir: str, mode: str = "all") -> Dict[str, Any]:
    """Runs `mode` ('train', 'generate', 'eval' or 'all') of `config`'s method in `workdir`.

    Returns:
      The metrics dict of the evaluation (empty without one, and on every
      process but the first, which alone writes meshes, pictures and metrics;
      the others wait for it, so that no process leaves a multi-host run early).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    method = check_config(config)
    workdir = os.path.abspath(workdir)
    if is_lead_process():
        workdir = check_workdir(workdir, create=mode in ("train", "all"))
    if mode in ("generate", "eval"):
        config_changes(config, workdir)  # The run's own model and data, or a clear error.
    result: Dict[str, Any] = {}
    with debug_switches(config.debug):
        if mode in ("train", "all"):
            train_and_evaluate(config, workdir)
        if is_lead_process() and mode in ("generate", "all"):
            method.generate(config, workdir)
        if is_lead_process() and mode in ("eval", "all"):
            result = method.evaluate(config, workdir)
    # A process that exits first waits in JAX's shutdown barrier, which gives up after 5 minutes
    # and then stops every process: the others wait here for the lead's generation and evaluation.
    wait_for_all_processes(f"run:{mode}")
    return result


def load_generation(workdir: str) -> Dict[str, Any]:
    """The record of the finished generation in `workdir/meshes` (`start_generation` ... `finish_generation`).

    Raises:
      FileNotFoundError: when there is none (run --mode generate first).
      ValueError: when the generation did not finish, or a mesh it lists is
        missing or was made from another checkpoint (the meshes would mix two
        models); the message says to generate again.
    """
    path = os.path.join(workdir, "meshes", "generation.json")
    record = read_generation(path)
    objects = record.get("objects")
    if not isinstance(objects, list) or not objects:
        raise ValueError(f"{path}: lists no meshes; rerun --mode generate")
    check_meshes(record, [os.path.join(workdir, r["mesh"]) for r in objects], path)
    return record
