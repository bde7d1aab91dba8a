"""Metric logs: JSON lines and TensorBoard event files, with no TensorFlow.

`SummaryWriter` appends scalars to `metrics.jsonl` and to a TensorBoard event
file, which `tensorboard --logdir` reads. The event file is written with
tensorboardX (its `Event`/`Summary` protos and its `RecordWriter` for the
TFRecord framing), which needs no TensorFlow. The writing is synchronous: each
`write_scalars` call is on disk when it returns (tensorboardX's own
`SummaryWriter` queues events for a background thread, and its `flush` does not
wait for them), so a killed run keeps what it logged.

`write_text` and `write_json` write a run's records (config, metrics, generation
records) atomically: a temporary file, then a rename, so a killed run never
leaves a half-written file.
"""

import json
import os
import socket
import time
from typing import Dict, Optional

from tensorboardX import RecordWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically (a temporary file beside it, then a rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, obj, indent: int = 2) -> None:
    """Writes `obj` as JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=indent))


def _new_event_path(tb_dir: str, now: float) -> str:
    """A fresh `events.out.tfevents.*` path in `tb_dir` (`RecordWriter` truncates, so never reuse one)."""
    base = os.path.join(tb_dir, f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}")
    path, n = base, 0
    while os.path.exists(path):
        n += 1
        path = f"{base}.{n}"
    return path


class SummaryWriter:
    """Writes scalars to `<logdir>/metrics.jsonl` and a TensorBoard event file.

    `metrics.jsonl` is appended to (a resumed run continues it); each writer
    starts a new event file under `<logdir>/tensorboard`, whose path is
    `event_path` (None without TensorBoard). Usable as a context manager.

    Args:
      logdir: output folder (created).
      tensorboard: also write the event file under `<logdir>/tensorboard`.
    """

    def __init__(self, logdir: str, tensorboard: bool = True):
        os.makedirs(logdir, exist_ok=True)
        self.jsonl_path = os.path.join(logdir, "metrics.jsonl")
        self.event_path: Optional[str] = None
        self._events: Optional[RecordWriter] = None
        if tensorboard:
            tb_dir = os.path.join(logdir, "tensorboard")
            os.makedirs(tb_dir, exist_ok=True)
            now = time.time()
            self.event_path = _new_event_path(tb_dir, now)
            self._events = RecordWriter(self.event_path)
            self._events.write(Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
            self._events.flush()
        self._jsonl = open(self.jsonl_path, "a")
        self._closed = False

    def write_scalars(self, step: int, scalars: Dict[str, float]) -> None:
        """Appends one JSON line and one TensorBoard event per scalar, flushed to disk."""
        if self._closed:
            raise ValueError(f"SummaryWriter({os.path.dirname(self.jsonl_path)!r}) is closed")
        now = time.time()
        record = {"step": int(step), "time": now}
        record.update({k: float(v) for k, v in scalars.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._events is not None:
            for tag, value in scalars.items():
                summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
                event = Event(wall_time=now, step=int(step), summary=summary)
                self._events.write(event.SerializeToString())
            self._events.flush()

    def close(self) -> None:
        """Closes the files; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._jsonl.close()
        if self._events is not None:
            self._events.close()

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
