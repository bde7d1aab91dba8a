"""Config validation, CLI errors, and the JSON-lines / TensorBoard writer."""

import json
import os
import struct
import subprocess
import sys

import pytest

from experiments.configs import default, quickstart, tiny
from implicit_fields import config_utils, summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_configs_only_use_known_keys():
    for mod in (default, quickstart, tiny):
        config_utils.check_keys(mod.get_config(), default.get_config())


def test_unknown_key_in_a_config_is_a_clear_error():
    config = tiny.get_config()
    config.train.lerning_rate = 1e-3
    with pytest.raises(ValueError, match=r"'train.lerning_rate'.*did you mean"):
        config_utils.check_keys(config, default.get_config(), source="my_config.py")


def test_cli_rejects_an_unknown_key_on_the_command_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable, "-m", "experiments.main",
            "--config", "experiments/configs/tiny.py",
            "--workdir", str(tmp_path / "w"),
            "--config.train.no_such_key=3",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "no_such_key" in proc.stderr


def test_cli_rejects_an_unknown_key_in_a_config_file(tmp_path):
    cfg = tmp_path / "bad_config.py"
    cfg.write_text(
        "from experiments.configs import tiny\n"
        "def get_config():\n"
        "    c = tiny.get_config()\n"
        "    c.model.hiden = 3\n"
        "    return c\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.main", "--config", str(cfg), "--workdir", str(tmp_path / "w")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "unknown config key" in proc.stderr and "model.hiden" in proc.stderr
    assert not os.path.exists(tmp_path / "w" / "checkpoints")


def _parse_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        shift += 7
        if not b & 0x80:
            return value, i


def _parse_fields(buf):
    """Minimal protobuf reader: {field_number: [values]}."""
    out, i = {}, 0
    while i < len(buf):
        tag, i = _parse_varint(buf, i)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            v, i = _parse_varint(buf, i)
        elif wire == 1:
            v, i = buf[i : i + 8], i + 8
        elif wire == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            n, i = _parse_varint(buf, i)
            v, i = buf[i : i + n], i + n
        out.setdefault(num, []).append(v)
    return out


def test_crc32c_known_value():
    # The CRC-32C check value from RFC 3720.
    assert summary.crc32c(b"123456789") == 0xE3069283


def test_summary_writer_round_trip(tmp_path):
    w = summary.SummaryWriter(str(tmp_path))
    w.write_scalars(7, {"train/loss": 1.5, "eval/iou": 0.25})
    w.write_scalars(8, {"train/loss": 1.25})
    w.close()
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [x["step"] for x in lines] == [7, 8] and lines[0]["eval/iou"] == 0.25
    records = list(summary.read_records(w.event_path))
    assert _parse_fields(records[0])[3] == [b"brain.Event:2"]
    scalars = []
    for rec in records[1:]:
        ev = _parse_fields(rec)
        step = ev[2][0]
        value = _parse_fields(_parse_fields(ev[5][0])[1][0])
        scalars.append((step, value[1][0].decode(), struct.unpack("<f", value[2][0])[0]))
    assert scalars == [(7, "train/loss", 1.5), (7, "eval/iou", 0.25), (8, "train/loss", 1.25)]
    # A corrupted record is detected.
    data = bytearray(open(w.event_path, "rb").read())
    data[-6] ^= 0xFF
    open(w.event_path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="CRC"):
        list(summary.read_records(w.event_path))
