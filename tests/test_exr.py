"""Tests of the OpenEXR reader and writer and of OpenEXR depth maps (image_io).

``tests/data/texture_fields_depth_000.exr`` is a real depth map of Texture Fields' demo
(see ``tests/data/README.md``). Hand-built files below are assembled byte by byte from the
OpenEXR file-layout document, with plain-Python filters independent of the module's.
"""

import os
import struct
import zlib

import numpy as np
import pytest

from implicit_fields.data import exr, image_io
from implicit_fields.data.onet_format import DataFormatError

DEMO = os.path.join(os.path.dirname(__file__), "data", "texture_fields_depth_000.exr")


def _special_floats(shape, seed):
    """float32 values with inf, -inf, NaN, -0.0, subnormals and extremes sprinkled in."""
    rng = np.random.default_rng(seed)
    a = rng.normal(1.5, 0.5, shape).astype(np.float32)
    special = np.array([np.inf, -np.inf, np.nan, -0.0, 1e-40, -3e-39, 3.4e38, 65504.0, 1e10], np.float32)
    flat = a.reshape(-1)
    idx = rng.choice(flat.size, size=min(flat.size, special.size), replace=False)
    flat[idx] = special[: idx.size]
    return a


def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


# --------------------------------------------------------------------------------------
# Round trips.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "zips", "zip", "ZIP"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (1, 9), (16, 5), (17, 3), (40, 33)])
def test_round_trip_is_bit_exact(tmp_path, compression, shape):
    path = tmp_path / "d.exr"
    channels = {"R": _special_floats(shape, 0), "G": _special_floats(shape, 1), "B": np.full(shape, np.inf)}
    exr.write_exr(path, channels, compression=compression)
    got = exr.read_exr(path)
    assert list(got) == ["B", "G", "R"]  # Sorted, as OpenEXR stores them.
    for name, value in channels.items():
        assert got[name].dtype == np.float32 and got[name].shape == shape
        np.testing.assert_array_equal(_bits(got[name]), _bits(value))
    assert not [f for f in os.listdir(tmp_path) if f != "d.exr"]  # No temporary file left.


@pytest.mark.parametrize("compression", ["zips", "zip"])
def test_incompressible_chunks_are_stored_raw(tmp_path, compression):
    # Random bits do not deflate: OpenEXR (and we) store such chunks raw, the file as large
    # as an uncompressed one; a constant image deflates.
    noise = np.random.default_rng(3).integers(0, 2**32, (20, 11), dtype=np.uint32).view(np.float32)
    smooth = np.full((20, 11), 1.25, np.float32)
    for name, a in (("noise", noise), ("smooth", smooth)):
        exr.write_exr(tmp_path / f"{name}.exr", {"Z": a}, compression=compression)
        exr.write_exr(tmp_path / f"{name}-none.exr", {"Z": a}, compression="none")
        np.testing.assert_array_equal(_bits(exr.read_exr(tmp_path / f"{name}.exr")["Z"]), _bits(a))
    size = {f: os.path.getsize(tmp_path / f) for f in os.listdir(tmp_path)}
    # Uncompressed: header + 20 offsets + 20 chunk headers (y, size) + the pixels.
    header = size["noise-none.exr"] - 20 * 8 - 20 * 8 - noise.nbytes
    chunks = 20 if compression == "zips" else 2
    assert size["noise.exr"] == header + chunks * 16 + noise.nbytes
    assert size["smooth.exr"] < header + chunks * 16 + smooth.nbytes / 2


def test_write_replaces_an_existing_file_atomically(tmp_path):
    path = tmp_path / "d.exr"
    exr.write_exr(path, {"R": np.ones((3, 4))})
    exr.write_exr(path, {"Y": np.full((2, 2), 2.0)})
    assert list(exr.read_exr(path)) == ["Y"]
    assert os.listdir(tmp_path) == ["d.exr"]


@pytest.mark.parametrize(
    "channels, compression, problem",
    [
        ({"R": np.ones((2, 2))}, "piz", "unknown OpenEXR compression 'piz'"),
        ({}, "zip", "non-empty dict"),
        ({"R": np.ones((2, 2)), "G": np.ones((2, 3))}, "zip", "has shape (2, 3)"),
        ({"R": np.ones(4)}, "zip", "must be (H, W)"),
        ({"R": np.ones((0, 3))}, "zip", "must be (H, W)"),
        ({"": np.ones((2, 2))}, "zip", "bad OpenEXR channel name"),
        ({"a\0b": np.ones((2, 2))}, "zip", "bad OpenEXR channel name"),
    ],
)
def test_write_errors_name_the_file(tmp_path, channels, compression, problem):
    with pytest.raises(ValueError) as err:
        exr.write_exr(tmp_path / "w.exr", channels, compression=compression)
    assert str(tmp_path / "w.exr") in str(err.value) and problem in str(err.value)
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------------------
# Hand-built files.
# --------------------------------------------------------------------------------------


def _attr(name, type_name, value):
    return name.encode() + b"\0" + type_name.encode() + b"\0" + struct.pack("<i", len(value)) + value


def _spec_filter(raw):
    """Interleave (even bytes first, then odd) then predict (d[i] = t[i] - t[i-1] + 128)."""
    t = raw[0::2] + raw[1::2]
    return bytes([t[0]] + [(t[i] - t[i - 1] + 128) & 0xFF for i in range(1, len(t))]) if t else b""


def _spec_rle(data):
    """Run-length coding: runs of >= 3 equal bytes as (count - 1, byte), else literals (-n, bytes)."""
    out, i = bytearray(), 0
    while i < len(data):
        run = 1
        while i + run < len(data) and data[i + run] == data[i] and run < 128:
            run += 1
        if run >= 3:
            out += bytes([run - 1, data[i]])
            i += run
            continue
        j = i
        while (
            j < len(data)
            and j - i < 127
            and not (j + 2 < len(data) and data[j] == data[j + 1] == data[j + 2])
        ):
            j += 1
        out += bytes([(-(j - i)) & 0xFF]) + data[i:j]
        i = j
    return bytes(out)


def _hand_built(channels, compression, y0=0, x0=0, raw_lines=(), version=2, extra=b"", reverse=False):
    """An OpenEXR file: ``channels`` [(name, pixel type, (H, W) array)] in sorted order;
    compression 0 NONE, 1 RLE, 2 ZIPS (one line per chunk); lines in ``raw_lines`` are
    stored uncompressed (as OpenEXR does when compressing does not help)."""
    height, width = channels[0][2].shape
    fmt = {0: "<u4", 1: "<f2", 2: "<f4"}
    chlist = b"".join(
        n.encode() + b"\0" + struct.pack("<iBBBBii", t, 0, 0, 0, 0, 1, 1) for n, t, _ in channels
    )
    window = struct.pack("<4i", x0, y0, x0 + width - 1, y0 + height - 1)
    header = (
        b"\x76\x2f\x31\x01"
        + struct.pack("<I", version)
        + _attr("channels", "chlist", chlist + b"\0")
        + _attr("compression", "compression", bytes([compression]))
        + _attr("dataWindow", "box2i", window)
        + _attr("displayWindow", "box2i", window)
        + _attr("lineOrder", "lineOrder", bytes([1 if reverse else 0]))
        + _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
        + extra
        + b"\0"
    )
    chunks = []
    for row in range(height):
        with np.errstate(over="ignore"):  # Values beyond the half range become inf on purpose.
            raw = b"".join(a[row].astype(fmt[t]).tobytes() for _, t, a in channels)
        packed = raw
        if compression == 2:
            packed = zlib.compress(_spec_filter(raw))
        elif compression == 1:
            packed = _spec_rle(_spec_filter(raw))
        if row not in raw_lines and len(packed) < len(raw):  # Else stored raw, as OpenEXR does.
            raw = packed
        chunks.append(struct.pack("<ii", y0 + row, len(raw)) + raw)
    order = list(range(height))[::-1] if reverse else list(range(height))
    offsets, pos = {}, len(header) + 8 * height
    for row in order:
        offsets[row] = pos
        pos += len(chunks[row])
    table = b"".join(struct.pack("<Q", offsets[row]) for row in range(height))
    return header + table + b"".join(chunks[row] for row in order)


def _half_uint_float(height=4, width=40):
    """Channels of each pixel type, with runs of equal values (so that they compress)."""
    rng = np.random.default_rng(7)
    half = np.repeat(rng.normal(1.0, 0.4, (height, width // 10)), 10, axis=1).astype(np.float16)
    half[0, 0], half[1, 2], half[-1, -1] = np.inf, -np.float16(0.0), np.float16(65504.0)
    half[0, 1] = np.float16(6e-8)  # A half subnormal.
    uint = np.repeat(rng.integers(0, 2**24, (height, width // 8)), 8, axis=1).astype(np.uint32)
    uint[0, 0] = 2**24
    flt = np.repeat(rng.normal(0.0, 1e3, (height, width // 10)), 10, axis=1).astype(np.float32)
    flt[1, 1] = np.nan
    return [("A", 0, uint), ("Y", 1, half), ("Z", 2, flt)]


@pytest.mark.parametrize("compression", [0, 1, 2])
@pytest.mark.parametrize("raw_lines", [(), (1, 2)])
@pytest.mark.parametrize("reverse", [False, True])
def test_reads_hand_built_half_uint_float(tmp_path, compression, raw_lines, reverse):
    channels = _half_uint_float()
    path = tmp_path / "h.exr"
    data = _hand_built(channels, compression, y0=-3, x0=5, raw_lines=raw_lines, reverse=reverse)
    if compression:  # The compressed lines did shrink.
        assert len(data) < len(_hand_built(channels, 0, y0=-3, x0=5)) - 30 * (4 - len(raw_lines))
    path.write_bytes(data)
    got = exr.read_exr(path)
    assert list(got) == ["A", "Y", "Z"]
    for name, _, value in channels:
        assert got[name].dtype == np.float32 and got[name].shape == (4, 40)
        np.testing.assert_array_equal(_bits(got[name]), _bits(value.astype(np.float32)))


def test_long_rle_runs(tmp_path):
    # Runs of 128 equal bytes and long literal stretches (RLE's limits), 300 pixels wide.
    a = np.zeros((2, 300), np.float16)
    a[0, 100:] = np.random.default_rng(0).normal(size=200)
    path = tmp_path / "r.exr"
    path.write_bytes(_hand_built([("Y", 1, a)], 1))
    np.testing.assert_array_equal(exr.read_exr(path)["Y"], a.astype(np.float32))


# --------------------------------------------------------------------------------------
# The original's depth map.
# --------------------------------------------------------------------------------------


def test_texture_fields_demo_depth():
    channels = exr.read_exr(DEMO)  # Blender: HALF R, G, B (the depth in each), ZIP.
    assert list(channels) == ["B", "G", "R"]
    for a in channels.values():
        assert a.shape == (256, 256)
        np.testing.assert_array_equal(a, channels["R"])
    r = channels["R"]
    np.testing.assert_array_equal(r, r.astype(np.float16).astype(np.float32))  # Half values.
    assert set(np.unique(r[~np.isfinite(r)])) == {np.inf}  # The background is +inf.
    depth = image_io.read_depth(DEMO)
    assert depth.dtype == np.float32 and depth.shape == (256, 256)
    on = np.isfinite(depth)
    np.testing.assert_array_equal(depth[on], r[on])
    # A car, 1.3 to 1.7 units from a camera 1.53 from the origin, in the middle of the view.
    assert on.sum() == 10824
    assert depth[on].min() == pytest.approx(1.2988, abs=1e-4)
    assert depth[on].max() == pytest.approx(1.6836, abs=1e-4)
    rows, cols = np.nonzero(on)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (87, 175, 48, 208)
    assert on[128, 128] and not on[0, 0] and not on[255, 255]


# --------------------------------------------------------------------------------------
# Depth maps through image_io.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names, used",
    [
        (("R", "G", "B"), "R"),  # The original's channel 0 (imageio gives R, G, B).
        (("B", "G", "R", "A"), "R"),
        (("Y",), "Y"),
        (("Z",), "Z"),
        (("G", "Z"), "Z"),
        (("B", "G"), "B"),
        (("depth",), "depth"),
        (("ViewLayer.Combined.A", "ViewLayer.Depth.Z"), "ViewLayer.Depth.Z"),
    ],
)
def test_read_depth_exr_channel(tmp_path, names, used):
    channels = {n: np.full((3, 5), 1.0 + i, np.float32) for i, n in enumerate(names)}
    exr.write_exr(tmp_path / "d.exr", channels)
    np.testing.assert_array_equal(image_io.read_depth(tmp_path / "d.exr"), channels[used])


def test_read_depth_exr_ambiguous_channels(tmp_path):
    exr.write_exr(tmp_path / "d.exr", {"u": np.ones((2, 2)), "v": np.ones((2, 2))})
    with pytest.raises(DataFormatError, match=r"d.exr: which OpenEXR channel holds the depth"):
        image_io.read_depth(tmp_path / "d.exr")


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, 0.0, -1.0, 65504.0, 1e10, 3e38])
@pytest.mark.parametrize("pixel_type", [1, 2])
def test_read_depth_exr_unknown_is_inf(tmp_path, value, pixel_type):
    a = np.full((2, 3), 1.5, np.float32)
    a[1, 2] = value
    a[0, 0] = 65400.0 if pixel_type == 2 else 65472.0  # Below the sentinel: a depth.
    (tmp_path / "d.exr").write_bytes(_hand_built([("R", pixel_type, a)], 2))
    got = image_io.read_depth(tmp_path / "d.exr")
    assert got.dtype == np.float32 and np.isposinf(got[1, 2])
    assert got[0, 0] == a[0, 0].astype(np.float16 if pixel_type == 1 else np.float32)
    assert np.all(got[0, 1:] == 1.5) and np.all(got[1, :2] == 1.5)


@pytest.mark.parametrize("ext", [".exr", ".npy"])
@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (20, 17)])
def test_write_depth_round_trip(tmp_path, ext, shape):
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 3.0, shape).astype(np.float32)
    unknown = rng.random(shape) < 0.3
    depth[unknown] = rng.choice(np.array([np.inf, np.nan, 0.0, -2.0], np.float32), unknown.sum())
    path = tmp_path / f"d{ext}"
    image_io.write_depth(path, depth)
    got = image_io.read_depth(path)
    expected = np.where(unknown, np.inf, depth).astype(np.float32)
    np.testing.assert_array_equal(_bits(got), _bits(expected))
    if ext == ".exr":  # R, G and B all the depth, as the original's renders.
        channels = exr.read_exr(path)
        assert list(channels) == ["B", "G", "R"]
        for a in channels.values():
            np.testing.assert_array_equal(_bits(a), _bits(expected))
    else:
        assert np.load(path).dtype == np.float32
    assert os.listdir(tmp_path) == [f"d{ext}"]


@pytest.mark.parametrize(
    "name, depth, problem",
    [
        ("d.png", np.ones((2, 2)), "written as .exr or .npy"),
        ("d", np.ones((2, 2)), "written as .exr or .npy"),
        ("d.exr", np.ones(3), "depth must have shape (H, W)"),
        ("d.npy", np.ones((2, 2, 1)), "depth must have shape (H, W)"),
        ("d.exr", np.array([[1.0, 70000.0]]), "would be read back as background"),
        ("d.exr", np.array([[65504.0]]), "would be read back as background"),
    ],
)
def test_write_depth_errors(tmp_path, name, depth, problem):
    with pytest.raises(ValueError) as err:
        image_io.write_depth(tmp_path / name, depth)
    assert str(tmp_path / name) in str(err.value) and problem in str(err.value)
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------------------
# Bad files.
# --------------------------------------------------------------------------------------


def _patched(data, old, new):
    assert data.count(old) == 1
    return data.replace(old, new)


def _demo_bytes():
    with open(DEMO, "rb") as f:
        return f.read()


def _table_at(data):
    """Where the chunk offset table starts: after the last attribute (xDensity) and the NUL."""
    return data.index(b"xDensity\0float\0") + len(b"xDensity\0float\0") + 4 + 4 + 1


def _corrupt_chunk(data):
    """The demo with bytes of its 8th chunk's deflate stream flipped."""
    b = bytearray(data)
    (offset,) = struct.unpack_from("<Q", data, _table_at(data) + 7 * 8)
    for i in range(offset + 30, offset + 60):
        b[i] ^= 0x5A
    return bytes(b)


def _bad_offset(data):
    at = _table_at(data) + 3 * 8
    return data[:at] + struct.pack("<Q", 2**40) + data[at + 8 :]


def _with_compression(data, code):
    at = data.index(b"compression\0compression\0") + 28  # The attribute's value byte.
    return data[:at] + bytes([code]) + data[at + 1 :]


def _patch_window(data, x1, y1):
    """The demo with its dataWindow set to (0, 0)-(x1, y1)."""
    at = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4
    return data[:at] + struct.pack("<4i", 0, 0, x1, y1) + data[at + 16 :]


def _version(flags):
    return lambda d: _patched(d, b"\x02\x00\x00\x00channels", struct.pack("<I", flags) + b"channels")


def _hand_zips(d):
    return _hand_built(_half_uint_float(), 2)


_BAD_FILES = {
    "empty": (lambda d: b"", "empty file, not an OpenEXR image"),
    "png": (lambda d: b"\x89PNG\r\n\x1a\n" + bytes(100), "not an OpenEXR file (magic bytes 89 50 4e 47"),
    "short-magic": (lambda d: d[:2], "not an OpenEXR file (magic bytes 76 2f"),
    "cut-4": (lambda d: d[:4], "truncated OpenEXR file (4 bytes; it ends inside the version field)"),
    "cut-30": (
        lambda d: d[:30],
        "truncated OpenEXR file (30 bytes; it ends inside the header attribute 'channels')",
    ),
    "cut-150": (lambda d: d[:150], "truncated OpenEXR file (150 bytes; it ends inside the header"),
    "cut-400": (
        lambda d: d[:400],
        "truncated OpenEXR file (400 bytes; it ends inside the chunk offset table)",
    ),
    "cut-1355": (lambda d: d[:1355], "chunk offset 1353 outside the data (464..1355 bytes)"),
    "cut-2000": (lambda d: d[:2000], "truncated OpenEXR file (2000 bytes; it ends inside the chunk y=96)"),
    "cut-last": (lambda d: d[:-1], "truncated OpenEXR file (8624 bytes; it ends inside the chunk y=240)"),
    "bad-offset": (_bad_offset, "chunk offset 1099511627776 outside the data (464..8625 bytes)"),
    "corrupt-zlib": (_corrupt_chunk, "garbled ZIP data in OpenEXR chunk y=112 (corrupt zlib data"),
    "PIZ": (lambda d: _with_compression(d, 4), "OpenEXR compression PIZ is not supported"),
    "PXR24": (lambda d: _with_compression(d, 5), "OpenEXR compression PXR24 is not supported"),
    "B44": (lambda d: _with_compression(d, 6), "OpenEXR compression B44 is not supported"),
    "DWAA": (lambda d: _with_compression(d, 8), "OpenEXR compression DWAA is not supported"),
    "DWAB": (lambda d: _with_compression(d, 9), "OpenEXR compression DWAB is not supported"),
    "code-42": (lambda d: _with_compression(d, 42), "OpenEXR compression code 42 is not supported"),
    "zip-as-zips": (
        lambda d: _with_compression(d, 2),
        "chunk offset 464 outside the data (2384..8625 bytes)",
    ),
    "zips-as-none": (
        lambda d: _with_compression(_hand_zips(d), 0),
        "chunk y=0 holds 119 bytes for 400 bytes of pixels",
    ),
    "zips-as-zip": (lambda d: _with_compression(_hand_zips(d), 3), "(400 bytes of pixels instead of 1600)"),
    "tiled": (_version(0x202), "tiled OpenEXR images are not supported"),
    "deep": (_version(0x802), "deep OpenEXR images are not supported"),
    "multi-part": (_version(0x1002), "multi-part OpenEXR images are not supported"),
    "version-3": (_version(3), "unsupported OpenEXR version 3"),
    "huge-window": (
        lambda d: _patch_window(d, 16383, 16383),
        "a 16384x16384 image of 3 channel(s) cannot fit in 8625 bytes of ZIP data",
    ),
    "empty-window": (lambda d: _patch_window(d, -1, 255), "data window (0, 0)-(-1, 255) has size 0x256"),
    "no-window": (lambda d: _patched(d, b"dataWindow", b"dataWindoX"), "no 'dataWindow' attribute"),
    "deep-type": (
        lambda d: _hand_built([("Y", 1, np.ones((2, 2)))], 2, extra=_attr("type", "string", b"deepscanline")),
        "part type 'deepscanline' is not supported",
    ),
    "pixel-type": (
        lambda d: _patched(_hand_built([("Y", 1, np.ones((2, 2)))], 0), b"Y\0\x01\0\0\0", b"Y\0\x07\0\0\0"),
        "channel 'Y' has unknown pixel type 7",
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_bad_files_name_the_file(tmp_path, case):
    build, problem = _BAD_FILES[case]
    path = tmp_path / "bad.exr"
    path.write_bytes(build(_demo_bytes()))
    for read in (exr.read_exr, image_io.read_depth):
        with pytest.raises(DataFormatError) as err:
            read(path)
        assert str(err.value).startswith(f"{path}: ") and problem in str(err.value), str(err.value)
        if "not supported" in problem:
            assert "ZIP compression" in str(err.value)  # How to convert.


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match=r"nothere.exr: file not found"):
        image_io.read_depth(tmp_path / "nothere.exr")
