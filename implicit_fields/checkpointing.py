"""Orbax checkpoints of the train state: save periodically, restore the newest intact one.

The state is saved as a plain dict of arrays ('step', 'params',
'batch_stats', 'opt_state') plus a small JSON record, under an absolute path
(Orbax requires one). `restore` takes the freshly initialised state (or its
`jax.ShapeDtypeStruct`s, for inference) as the target, so the restored arrays
have the same structure, dtypes and shardings.

A checkpoint that cannot be read (a truncated or corrupt file, a disk that
filled up) does not stop a run while an older one is intact: `restore` and
`read_meta` fall back to the newest checkpoint that reads, and log which one
was skipped and why. Nothing is deleted: training moves a skipped checkpoint
aside (`quarantine`) into `<folder>.corrupt/`, so that its step can be saved
again. Only when no checkpoint reads is there an error, naming each one.
"""

import json
import logging
import os
import re
import shutil
import sys
import time
import zlib
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """No checkpoint of a folder could be read (the message names each one and why)."""


class _FailedReadFilter(logging.Filter):
    """Drops asyncio's "exception was never retrieved" reports of Orbax's failed array reads.

    They come later, when the read's tasks are garbage collected, each with a TensorStore
    traceback; the failure itself was reported in one line when it happened.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "exception was never retrieved" not in text:
            return True
        detail = f"{text} {record.exc_info[1] if record.exc_info else ''}"
        return not ("async_deserialize" in detail or "tensorstore" in detail.lower() or "OCDBT" in detail)


_FAILED_READ_FILTER = _FailedReadFilter()


def _silence_reports_of_failed_reads() -> None:
    """Silences the reports of the array reads still in flight when an Orbax read fails.

    Orbax reads a checkpoint with asyncio and TensorStore. When one read fails, the
    event loop closes while the others are still running, and each of them reports as it
    finishes: "Event loop is closed" through `sys.excepthook`, then "exception was
    never retrieved" through the `asyncio` logger, with the whole TensorStore spec:
    thousands of lines for one truncated file, some printed long after the fallback. The
    failure itself is reported in one line (`Checkpointer`); these two kinds of report
    are dropped (from the first checkpoint read on), and everything else passes as before.
    """
    asyncio_logger = logging.getLogger("asyncio")
    if _FAILED_READ_FILTER not in asyncio_logger.filters:
        asyncio_logger.addFilter(_FAILED_READ_FILTER)
    if getattr(sys.excepthook, "_drops_closed_loop_reports", False):
        return

    def closed_loop(value) -> bool:
        return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"

    previous_excepthook, previous_unraisablehook = sys.excepthook, sys.unraisablehook

    def excepthook(kind, value, traceback):  # TensorStore's threads print through it.
        if not closed_loop(value):
            previous_excepthook(kind, value, traceback)

    def unraisablehook(unraisable):
        if not closed_loop(unraisable.exc_value):
            previous_unraisablehook(unraisable)

    excepthook._drops_closed_loop_reports = True
    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook


def _unparsable_json(folder: str) -> Optional[str]:
    """The first file under `folder` that looks like JSON but does not parse (None if none)."""
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                if os.path.getsize(path) > 50_000_000:
                    continue
                with open(path, "rb") as f:
                    head = f.read(1)
                    if head not in (b"{", b"["):
                        continue
                    f.seek(0)
                    json.loads(f.read().decode("utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                return path
    return None


def _reason(error: BaseException, folder: Optional[str] = None) -> str:
    """The first line of an error, short (TensorStore's messages run to many lines).

    A JSON error names the file that does not parse (found under `folder`).
    """
    if isinstance(error, json.JSONDecodeError) and folder is not None:
        bad = _unparsable_json(folder)
        if bad is not None:
            return f"{bad}: not valid JSON ({error.msg}: line {error.lineno} column {error.colno})"
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    # TensorStore names the damaged file deep in a long message: keep that part only.
    message = str(error)
    at = message.rfind('local file "')
    pattern = r'local file "([^"]+)": (.*?)(?= \[tensorstore_spec|$)'
    found = re.match(pattern, message[at:], re.M) if at >= 0 else None
    if found:
        path, problem = found.groups()
        return f"{path}: {problem.strip().rstrip(':;,')}"
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _state_to_tree(state) -> Dict[str, Any]:
    step = state.step
    return {
        "step": step if isinstance(step, jax.ShapeDtypeStruct) else jnp.asarray(step),
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
    }


def checksum(tree) -> Optional[str]:
    """CRC-32 of the bytes of every array of `tree` (in tree order), as 8 hex digits.

    Saved in each checkpoint's record and compared on restore: a data file
    that still decodes but holds other values is caught too. A multi-host
    array is read from this process's copy when it is replicated; None when
    some array is split over processes (no process holds all of it).
    """
    crc = 0
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                return None
            leaf = leaf.addressable_data(0)
        crc = zlib.crc32(np.ascontiguousarray(jax.device_get(leaf)).tobytes(), crc)
    return f"{crc:08x}"


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
      all_processes: every process of a multi-host run uses it together
        (training: each saves its part, and they wait for one another);
        False: this process alone reads it (inference on the lead process),
        without waiting for the others; the folder must exist.
    """

    def __init__(self, directory: str, max_to_keep: int = 2, all_processes: bool = True):
        self.directory = os.path.abspath(directory)
        self.max_to_keep = max_to_keep
        self.all_processes = all_processes
        self.skipped: List[Tuple[int, str]] = []  # (step, reason) of checkpoints that did not read
        self.manager = self._manager()

    def _manager(self):
        alone = {}
        if not self.all_processes:  # Its own primary host, in a group of one: no barriers.
            me = jax.process_index()
            alone["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me}
            )
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.max_to_keep, create=self.all_processes, **alone
        )
        return ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def all_steps(self) -> List[int]:
        """The steps of the finished checkpoints, oldest first."""
        return sorted(int(s) for s in self.manager.all_steps())

    def path(self, step: int) -> str:
        """The folder of the checkpoint at `step`."""
        return os.path.join(self.directory, str(step))

    def quarantine(self, step: int) -> str:
        """Moves the checkpoint at `step` aside, into `<directory>.corrupt/` (nothing is deleted).

        In a multi-host run with `all_processes`, every process calls it (each found the same
        checkpoint unreadable): the lead process moves the folder while the others wait, then all
        reopen the folder together (opening it is a barrier of its own).

        Returns:
          Where it now is (on the other processes: the folder it went into).
        """
        self.manager.wait_until_finished()
        target_dir = self.directory + ".corrupt"
        together = self.all_processes and jax.process_count() > 1
        target = target_dir
        if not together or jax.process_index() == 0:
            os.makedirs(target_dir, exist_ok=True)
            target = os.path.join(target_dir, f"{step}_{time.strftime('%Y%m%d-%H%M%S')}")
            suffix = 0
            while os.path.exists(target + (f"_{suffix}" if suffix else "")):
                suffix += 1
            target += f"_{suffix}" if suffix else ""
            shutil.move(self.path(step), target)
            logger.warning("moved the unreadable checkpoint %s to %s", self.path(step), target)
        if together:
            multihost_utils.sync_global_devices(f"implicit_fields:quarantine:{self.directory}:{step}")
        self.manager.close()
        self.manager = self._manager()
        return target

    def _newest_that_reads(self, read, step: Optional[int], quarantine: bool):
        """`read(step)` of `step`, or (step None) of the newest checkpoint that reads.

        Returns:
          (step, result), or (None, None) when there is no checkpoint.

        Raises:
          CheckpointError: naming each checkpoint that failed, when none read.
        """
        if step is not None:
            try:
                return step, self._read_quietly(read, step)
            except Exception as e:  # noqa: BLE001 - any failure to read is reported by name
                reason = _reason(e, self.path(step))
                raise CheckpointError(f"checkpoint {self.path(step)} cannot be read: {reason}") from e
        failures = []
        for candidate in reversed(self.all_steps()):
            try:
                result = self._read_quietly(read, candidate)
            except Exception as e:  # noqa: BLE001 - a corrupt checkpoint: fall back to an older one
                reason = _reason(e, self.path(candidate))
                failures.append((candidate, reason))
                logger.warning("checkpoint %s cannot be read (%s)", self.path(candidate), reason)
                continue
            if failures:
                logger.warning(
                    "fell back to the checkpoint of step %d in %s (skipped unreadable step(s) %s)",
                    candidate,
                    self.directory,
                    ", ".join(str(s) for s, _ in failures),
                )
            self._skip(failures, quarantine)
            return candidate, result
        if failures:
            self._skip(failures, quarantine=False)
            details = "; ".join(f"{self.path(s)}: {r}" for s, r in failures)
            raise CheckpointError(f"no checkpoint in {self.directory} can be read ({details})")
        return None, None

    @staticmethod
    def _read_quietly(read, step):
        """`read(step)`, without the flood of reports of its other reads should one fail."""
        _silence_reports_of_failed_reads()
        return read(step)

    def _skip(self, failures, quarantine: bool) -> None:
        self.skipped.extend(failures)
        if quarantine:
            for failed, _ in failures:
                self.quarantine(failed)

    def save(self, state, meta: Optional[Dict[str, Any]] = None, wait: bool = False) -> None:
        """Saves `state` under its step (asynchronously unless `wait`)."""
        step = int(jax.device_get(state.step))
        tree = _state_to_tree(state)
        meta = dict(meta or {}, step=step)
        crc = checksum(tree)
        if crc is not None:
            meta["checksum"] = crc
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        if wait:
            self.manager.wait_until_finished()

    def restore(
        self, state, step: Optional[int] = None, quarantine: bool = False
    ) -> Tuple[Any, Dict[str, Any]]:
        """Restores the checkpoint at `step` (default: the newest that reads) into the structure of `state`.

        Args:
          state: the target: a train state, or its `jax.ShapeDtypeStruct`s.
          step: a given step (an error if it does not read); None: the newest
            checkpoint that reads, skipping (and logging) unreadable ones.
          quarantine: move the skipped checkpoints aside (training does, so
            that their steps can be saved again).

        Returns:
          (restored_state, meta) or (state, {}) when there is no checkpoint.

        Raises:
          CheckpointError: when `step` (or, with None, every checkpoint) cannot be read.
        """
        target = _abstract(_state_to_tree(state))

        def read(s):
            restored = self.manager.restore(
                s,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
            )
            meta = restored["meta"]
            if meta is not None and not isinstance(meta, dict):
                raise ValueError(f"its record is a {type(meta).__name__}, not a JSON object")
            saved = (meta or {}).get("checksum")
            if saved is not None and saved != checksum(restored["state"]):
                raise ValueError(f"its arrays do not match the checksum saved with them ({saved})")
            return restored

        found, restored = self._newest_that_reads(read, step, quarantine)
        if found is None:
            return state, {}
        tree = restored["state"]
        new_state = state.replace(
            step=tree["step"],
            params=tree["params"],
            batch_stats=tree["batch_stats"],
            opt_state=tree["opt_state"],
        )
        return new_state, dict(restored["meta"] or {})

    def read_meta(self, step: Optional[int] = None) -> Dict[str, Any]:
        """The JSON record of the checkpoint at `step` (default: the newest that reads), without its arrays.

        Returns {} when there is no checkpoint; raises `CheckpointError` as `restore` does.
        """

        def read(s):
            meta = self.manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            if meta is not None and not isinstance(meta, dict):
                raise ValueError(f"its record is a {type(meta).__name__}, not a JSON object")
            return dict(meta or {})

        found, meta = self._newest_that_reads(read, step, quarantine=False)
        return meta if found is not None else {}

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
