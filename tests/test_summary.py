"""The JSON-lines / TensorBoard metric writer (`implicit_fields.summary`)."""

import json
import os
import struct
import time

import numpy as np
import pytest
from tensorboardX.crc32c import crc32c
from tensorboardX.proto.event_pb2 import Event

from implicit_fields import summary


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_events(path):
    """The `Event` protos of a TFRecord file (uint64 length, masked CRC, data, masked CRC), CRCs checked."""
    data = open(path, "rb").read()
    events, i = [], 0
    while i < len(data):
        if len(data) - i < 12:
            raise ValueError(f"{path}: truncated record header")
        header = data[i : i + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[i + 8 : i + 12])
        if hcrc != _masked_crc(header):
            raise ValueError(f"{path}: bad length CRC")
        payload = data[i + 12 : i + 12 + length]
        tail = data[i + 12 + length : i + 16 + length]
        if len(payload) < length or len(tail) < 4:
            raise ValueError(f"{path}: truncated record")
        if struct.unpack("<I", tail)[0] != _masked_crc(payload):
            raise ValueError(f"{path}: bad data CRC")
        events.append(Event.FromString(payload))
        i += 16 + length
    return events


def _scalars(events):
    """[(step, tag, value)] of the scalar summaries in `events`, in file order."""
    return [(e.step, v.tag, v.simple_value) for e in events if e.HasField("summary") for v in e.summary.value]


def _f32(x):
    return float(np.float32(x))


def test_reader_checks_standard_crc32c(tmp_path):
    # The CRC-32C check value from RFC 3720: the reader's CRCs are the ones TensorBoard verifies.
    assert crc32c(b"123456789") == 0xE3069283
    with summary.SummaryWriter(str(tmp_path)) as w:
        w.write_scalars(1, {"a": 1.0})
    data = bytearray(open(w.event_path, "rb").read())
    data[-6] ^= 0xFF
    open(w.event_path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="CRC"):
        _read_events(w.event_path)


def test_json_lines_round_trip(tmp_path):
    t0 = time.time()
    w = summary.SummaryWriter(str(tmp_path))
    w.write_scalars(7, {"train/loss": 1.5, "eval/iou": np.float32(0.25), "n": 3})
    w.write_scalars(np.int64(8), {"train/loss": 0.1})
    w.close()
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [set(x) for x in lines] == [
        {"step", "time", "train/loss", "eval/iou", "n"},
        {"step", "time", "train/loss"},
    ]
    assert [x["step"] for x in lines] == [7, 8]
    assert lines[0]["train/loss"] == 1.5 and lines[0]["eval/iou"] == 0.25 and lines[0]["n"] == 3.0
    assert lines[1]["train/loss"] == 0.1
    assert t0 <= lines[0]["time"] <= lines[1]["time"] <= time.time()


def test_event_file_holds_exactly_the_scalars_written(tmp_path):
    w = summary.SummaryWriter(str(tmp_path))
    assert os.path.dirname(w.event_path) == str(tmp_path / "tensorboard")
    assert "tfevents" in os.path.basename(w.event_path)
    w.write_scalars(7, {"train/loss": 1.5, "eval/iou": 0.1, "odd tag (kept)": -3})
    w.write_scalars(8, {"train/loss": 1.25})
    w.close()
    assert os.listdir(tmp_path / "tensorboard") == [os.path.basename(w.event_path)]
    events = _read_events(w.event_path)
    assert events[0].file_version == "brain.Event:2"
    assert _scalars(events) == [
        (7, "train/loss", 1.5),
        (7, "eval/iou", _f32(0.1)),
        (7, "odd tag (kept)", -3.0),
        (8, "train/loss", 1.25),
    ]
    assert all(e.HasField("summary") for e in events[1:])
    # The events carry the wall times of the JSON lines.
    times = [json.loads(x)["time"] for x in open(tmp_path / "metrics.jsonl")]
    assert [e.wall_time for e in events[1:]] == pytest.approx([times[0]] * 3 + [times[1]])


def test_each_write_is_on_disk_before_close(tmp_path):
    w = summary.SummaryWriter(str(tmp_path))
    try:
        for step in range(3):
            w.write_scalars(step, {"loss": step / 2})
            assert _scalars(_read_events(w.event_path)) == [(s, "loss", s / 2) for s in range(step + 1)]
            assert len(open(tmp_path / "metrics.jsonl").readlines()) == step + 1
    finally:
        w.close()


def test_without_tensorboard_no_event_file_is_written(tmp_path):
    with summary.SummaryWriter(str(tmp_path), tensorboard=False) as w:
        w.write_scalars(1, {"loss": 2.0})
    assert w.event_path is None
    assert os.listdir(tmp_path) == ["metrics.jsonl"]
    assert json.loads(open(tmp_path / "metrics.jsonl").read())["loss"] == 2.0


def test_close_is_idempotent_and_rejects_later_writes(tmp_path):
    with summary.SummaryWriter(str(tmp_path / "run")) as w:
        w.write_scalars(1, {"loss": 2.0})
    w.close()  # Already closed by the `with`: a no-op.
    with pytest.raises(ValueError, match="closed"):
        w.write_scalars(2, {"loss": 1.0})
    assert len(open(tmp_path / "run" / "metrics.jsonl").readlines()) == 1
    assert _scalars(_read_events(w.event_path)) == [(1, "loss", 2.0)]


def test_a_resumed_run_appends(tmp_path, monkeypatch):
    # Both writers start in the same second of the same process: the second must not reuse the first's file.
    monkeypatch.setattr(summary.time, "time", lambda: 1_700_000_000.5)
    with summary.SummaryWriter(str(tmp_path)) as first:
        first.write_scalars(1, {"loss": 3.0})
    with summary.SummaryWriter(str(tmp_path)) as second:
        second.write_scalars(2, {"loss": 2.0})
    assert [json.loads(x)["step"] for x in open(tmp_path / "metrics.jsonl")] == [1, 2]
    assert first.event_path != second.event_path
    assert sorted(os.listdir(tmp_path / "tensorboard")) == sorted(
        os.path.basename(p) for p in (first.event_path, second.event_path)
    )
    assert _scalars(_read_events(first.event_path)) == [(1, "loss", 3.0)]
    assert _scalars(_read_events(second.event_path)) == [(2, "loss", 2.0)]
