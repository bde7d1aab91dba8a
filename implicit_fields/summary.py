"""Metric logs: JSON lines and TensorBoard event files, with no TensorFlow.

`SummaryWriter` appends scalars to `metrics.jsonl` and to a TensorBoard event
file (TFRecord framing with masked CRC-32C, `Event` protos encoded by hand),
which `tensorboard --logdir` reads.
"""

import json
import os
import socket
import struct
import time
from typing import Dict, Optional


def _make_crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint((number << 3) | wire) + payload


def _len_field(number: int, payload: bytes) -> bytes:
    return _field(number, 2, _varint(len(payload)) + payload)


def encode_scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """The serialized `tensorflow.Event` proto of one scalar summary."""
    summary_value = _len_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", float(value)))
    summary = _len_field(1, summary_value)
    return (
        _field(1, 1, struct.pack("<d", wall_time))
        + _field(2, 0, _varint(int(step)))
        + _len_field(5, summary)
    )


def encode_record(data: bytes) -> bytes:
    """TFRecord framing: length, masked CRC of the length, data, masked CRC of the data."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked_crc(header)) + data + struct.pack("<I", _masked_crc(data))


def read_records(path: str):
    """Yields the payloads of a TFRecord file, checking both CRCs."""
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if not header:
                return
            if len(header) < 8:
                raise ValueError(f"{path}: truncated record header")
            (length,) = struct.unpack("<Q", header)
            (hcrc,) = struct.unpack("<I", f.read(4))
            if hcrc != _masked_crc(header):
                raise ValueError(f"{path}: bad length CRC")
            data = f.read(length)
            (dcrc,) = struct.unpack("<I", f.read(4))
            if dcrc != _masked_crc(data):
                raise ValueError(f"{path}: bad data CRC")
            yield data


class SummaryWriter:
    """Writes scalars to `<logdir>/metrics.jsonl` and a TensorBoard event file.

    Args:
      logdir: output folder (created).
      tensorboard: also write the event file under `<logdir>/tensorboard`.
    """

    def __init__(self, logdir: str, tensorboard: bool = True):
        os.makedirs(logdir, exist_ok=True)
        self.jsonl_path = os.path.join(logdir, "metrics.jsonl")
        self._jsonl = open(self.jsonl_path, "a")
        self._events = None
        self.event_path: Optional[str] = None
        if tensorboard:
            tb_dir = os.path.join(logdir, "tensorboard")
            os.makedirs(tb_dir, exist_ok=True)
            now = time.time()
            self.event_path = os.path.join(
                tb_dir, f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
            )
            self._events = open(self.event_path, "ab")
            version = _field(1, 1, struct.pack("<d", now)) + _len_field(3, b"brain.Event:2")
            self._events.write(encode_record(version))

    def write_scalars(self, step: int, scalars: Dict[str, float]) -> None:
        """Appends one JSON line and one TensorBoard event per scalar."""
        now = time.time()
        record = {"step": int(step), "time": now}
        record.update({k: float(v) for k, v in scalars.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._events is not None:
            for tag, value in scalars.items():
                self._events.write(encode_record(encode_scalar_event(tag, float(value), step, now)))
            self._events.flush()

    def close(self) -> None:
        self._jsonl.close()
        if self._events is not None:
            self._events.close()
