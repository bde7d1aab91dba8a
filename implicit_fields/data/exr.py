"""A small OpenEXR reader and writer, for the depth maps of Texture Fields' data.

The original stores its depth maps as OpenEXR (Blender's renders, read with imageio's
FreeImage plugin). We read and write the subset such files use, with numpy and zlib only:

* single-part **scanline** images (no tiles, no deep data, no multi-part files), the size
  from the ``dataWindow`` attribute, chunks placed by their own ``y`` coordinate (so any
  ``lineOrder``);
* compression **NONE** (0), **RLE** (1), **ZIPS** (2, one scanline per chunk) and **ZIP**
  (3, 16 scanlines per chunk); a chunk whose stored size equals its raw size is raw, as
  OpenEXR writes chunks that do not compress;
* pixel types **UINT** (0), **HALF** (1) and **FLOAT** (2), all returned as float32 (HALF
  and FLOAT exactly; UINT rounds above 2**24), full resolution channels only (x / y
  sampling 1).

Layout (the OpenEXR file-layout document): the magic ``76 2f 31 01``, a version word
(2, plus flag bits: 0x200 tiled, 0x400 long names, 0x800 deep, 0x1000 multi-part), the
header (``name\\0 type\\0 int32 size, value`` attributes ended by a NUL), a table of
uint64 chunk offsets, then the chunks (``int32 y, int32 size, data``). Within a chunk,
scanline by scanline, each channel's values in the header's (sorted) channel order,
little-endian. ZIP and RLE data are, once inflated (zlib) or run-length decoded, a
"predicted" byte stream (``t[i] = t[i-1] + t[i] - 128``) of the interleaved bytes (the
first half holds the bytes at even positions, the second half those at odd positions).

Everything else (PIZ, PXR24, B44, DWA compression, tiles, ...) and any truncated or
garbled file raises :class:`~implicit_fields.data.onet_format.DataFormatError` naming the
file and the problem.
"""

import os
import struct
import uuid
import zlib

import numpy as np

from implicit_fields.data.onet_format import DataFormatError

__all__ = ["read_exr", "write_exr", "WRITE_COMPRESSIONS"]

_MAGIC = b"\x76\x2f\x31\x01"
_TILED, _LONG_NAMES, _DEEP, _MULTIPART = 0x200, 0x400, 0x800, 0x1000
_COMPRESSION_NAMES = ("NONE", "RLE", "ZIPS", "ZIP", "PIZ", "PXR24", "B44", "B44A", "DWAA", "DWAB")
_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16}  # The compressions we read.
_PIXEL_TYPES = {0: ("UINT", np.dtype("<u4")), 1: ("HALF", np.dtype("<f2")), 2: ("FLOAT", np.dtype("<f4"))}
_MAX_PIXELS = 1 << 28  # Per channel; a garbled header must not make us allocate terabytes.
_MAX_RATIO = {0: 1, 1: 64, 2: 1100, 3: 1100}  # Raw / stored bytes at most (deflate: ~1032).
_CONVERT_HINT = (
    "re-save it as a single-part scanline OpenEXR with ZIP compression (e.g. Blender's 'ZIP' codec, "
    "or `oiiotool IN.exr --compression zip -o OUT.exr`)"
)

WRITE_COMPRESSIONS = ("none", "zips", "zip")
"""Compressions :func:`write_exr` can write."""

_WRITE_CODES = {"none": 0, "zips": 2, "zip": 3}


# --------------------------------------------------------------------------------------
# Byte-stream filters shared by ZIP and RLE.
# --------------------------------------------------------------------------------------


def _unpredict_deinterleave(buf):
    """Undoes OpenEXR's predictor then its byte interleaving (uint8 array in and out)."""
    t = np.frombuffer(buf, dtype=np.uint8).copy()
    if t.size > 1:
        t[1:] ^= 0x80  # (t - 128) mod 256; the running sum mod 256 then undoes the predictor.
        t = np.cumsum(t, dtype=np.uint8)
    half = (t.size + 1) // 2
    out = np.empty_like(t)
    out[0::2] = t[:half]
    out[1::2] = t[half:]
    return out


def _interleave_predict(raw):
    """OpenEXR's byte interleaving then its predictor (inverse of :func:`_unpredict_deinterleave`)."""
    raw = np.frombuffer(raw, dtype=np.uint8)
    t = np.concatenate([raw[0::2], raw[1::2]])
    out = t.copy()
    out[1:] = (t[1:].astype(np.int16) - t[:-1].astype(np.int16) + 128) & 0xFF
    return out.tobytes()


def _rle_decode(data, expected):
    """OpenEXR's run-length decoding: a signed count byte ``c``; ``c < 0``: ``-c`` literal
    bytes follow; ``c >= 0``: the next byte repeated ``c + 1`` times. None if malformed."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i] - 256 if data[i] > 127 else data[i]
        if c < 0:
            if i + 1 - c > n:
                return None
            out += data[i + 1 : i + 1 - c]
            i += 1 - c
        else:
            if i + 1 >= n:
                return None
            out += data[i + 1 : i + 2] * (c + 1)
            i += 2
        if len(out) > expected:
            return None
    return bytes(out)


# --------------------------------------------------------------------------------------
# Reading.
# --------------------------------------------------------------------------------------


class _Cursor:
    """Bounds-checked little-endian reads of a byte string; DataFormatError when short."""

    def __init__(self, path, data, pos=0):
        self.path, self.data, self.pos = path, data, pos

    def fail(self, problem):
        raise DataFormatError(f"{self.path}: {problem}")

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.data):
            self.fail(f"truncated OpenEXR file ({len(self.data)} bytes; it ends inside the {what})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt, what):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def cstring(self, what, limit=256):
        end = self.data.find(b"\0", self.pos, self.pos + limit + 1)
        if end < 0:
            if self.pos + limit + 1 > len(self.data):
                self.fail(f"truncated OpenEXR file ({len(self.data)} bytes; it ends inside the {what})")
            self.fail(f"malformed OpenEXR header: {what} longer than {limit} bytes")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"malformed OpenEXR header: {what} {raw[:40]!r} is not UTF-8")


def _parse_channels(cur, value):
    """The ``chlist`` attribute: [(name, pixel type code)] in file order."""
    sub = _Cursor(cur.path, value)
    channels = []
    while True:
        name = sub.cstring("channel list")
        if not name:
            break
        ptype, _linear, _r0, _r1, _r2, xs, ys = sub.unpack("iBBBBii", "channel list")
        if ptype not in _PIXEL_TYPES:
            cur.fail(f"channel {name!r} has unknown pixel type {ptype} (UINT 0, HALF 1, FLOAT 2 are read)")
        if (xs, ys) != (1, 1):
            cur.fail(f"channel {name!r} is subsampled ({xs}x{ys}); only full-resolution channels are read")
        channels.append((name, ptype))
    if not channels:
        cur.fail("OpenEXR file has no channels")
    if len({n for n, _ in channels}) != len(channels):
        cur.fail("OpenEXR channel list names a channel twice")
    return channels


def _parse_header(cur):
    """Magic, version and the attributes we need: channels, compression, data window."""
    if not cur.data:
        cur.fail("empty file, not an OpenEXR image")
    magic = cur.take(4, "magic number") if len(cur.data) >= 4 else cur.data
    if magic != _MAGIC:
        got = bytes(magic[:4]).hex(" ")
        cur.fail(f"not an OpenEXR file (magic bytes {got}, expected 76 2f 31 01)")
    (version,) = cur.unpack("I", "version field")
    if version & 0xFF != 2:
        cur.fail(f"unsupported OpenEXR version {version & 0xFF} (2 is read)")
    flags = ((_MULTIPART, "multi-part"), (_DEEP, "deep"), (_TILED, "tiled"))
    kinds = [k for bit, k in flags if version & bit]
    if kinds:
        cur.fail(f"{' '.join(kinds)} OpenEXR images are not supported; {_CONVERT_HINT}")
    attrs = {}
    while True:
        name = cur.cstring("header")
        if not name:
            break
        type_name = cur.cstring("header")
        (size,) = cur.unpack("i", "header")
        if size < 0:
            cur.fail(f"malformed OpenEXR header: attribute {name!r} has size {size}")
        attrs[name] = (type_name, cur.take(size, f"header attribute {name!r}"))

    def attribute(name, type_name, size=None):
        if name not in attrs:
            cur.fail(f"malformed OpenEXR header: no {name!r} attribute")
        got_type, value = attrs[name]
        if got_type != type_name or (size is not None and len(value) != size):
            cur.fail(f"malformed OpenEXR header: attribute {name!r} is a {got_type} of {len(value)} bytes")
        return value

    if "type" in attrs and attrs["type"][1].rstrip(b"\0") != b"scanlineimage":
        kind = attrs["type"][1].rstrip(b"\0").decode("latin-1")
        cur.fail(f"OpenEXR part type {kind!r} is not supported (scanline images only); {_CONVERT_HINT}")
    (compression,) = struct.unpack("<B", attribute("compression", "compression", 1))
    if compression not in _LINES_PER_CHUNK:
        known = compression < len(_COMPRESSION_NAMES)
        name = _COMPRESSION_NAMES[compression] if known else f"code {compression}"
        cur.fail(
            f"OpenEXR compression {name} is not supported (NONE, RLE, ZIPS and ZIP are read); {_CONVERT_HINT}"
        )
    channels = _parse_channels(cur, attribute("channels", "chlist"))
    x0, y0, x1, y1 = struct.unpack("<4i", attribute("dataWindow", "box2i", 16))
    width, height = x1 - x0 + 1, y1 - y0 + 1
    if width < 1 or height < 1 or width * height > _MAX_PIXELS:
        cur.fail(f"malformed OpenEXR header: data window ({x0}, {y0})-({x1}, {y1}) has size {width}x{height}")
    return channels, compression, y0, width, height


def read_exr(path):
    """Reads the channels of a scanline OpenEXR image.

    Args:
        path: the ``.exr`` file.

    Returns:
        dict channel name -> float32 (H, W) array, in the file's (sorted) channel order;
        H x W is the data window. HALF and FLOAT values are exact (inf and NaN kept).

    Raises:
        DataFormatError: a missing, truncated or garbled file, or one we do not read (tiled,
            deep, multi-part, subsampled channels, PIZ / PXR24 / B44 / DWA compression);
            the message names the file and the problem.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    except OSError as e:
        raise DataFormatError(f"{path}: unreadable file ({e.strerror or e})") from e
    cur = _Cursor(path, data)
    channels, compression, y0, width, height = _parse_header(cur)
    lines = _LINES_PER_CHUNK[compression]
    n_chunks = -(-height // lines)
    offsets = np.frombuffer(cur.take(8 * n_chunks, "chunk offset table"), dtype="<u8")
    table_end = cur.pos
    widths = [width * _PIXEL_TYPES[t][1].itemsize for _, t in channels]
    row_bytes = sum(widths)
    if height * row_bytes > _MAX_RATIO[compression] * len(data) + (1 << 16):
        cur.fail(
            f"garbled OpenEXR header: a {width}x{height} image of {len(channels)} channel(s) cannot fit "
            f"in {len(data)} bytes of {_COMPRESSION_NAMES[compression]} data"
        )
    out = [np.empty((height, width), dtype=_PIXEL_TYPES[t][1]) for _, t in channels]
    seen = np.zeros(n_chunks, dtype=bool)
    for offset in offsets:
        if not table_end <= offset <= len(data) - 8:
            cur.fail(
                f"truncated or garbled OpenEXR file: chunk offset {int(offset)} outside the data "
                f"({table_end}..{len(data)} bytes)"
            )
        chunk = _Cursor(path, data, int(offset))
        y, size = chunk.unpack("ii", "chunk header")
        block, rest = divmod(y - y0, lines)
        if rest or not 0 <= block < n_chunks or seen[block]:
            cur.fail(f"garbled OpenEXR file: chunk at offset {int(offset)} has scanline y={y}")
        seen[block] = True
        n_lines = min(lines, height - block * lines)
        expected = n_lines * row_bytes
        if size < 0 or size > expected or (compression == 0 and size != expected):
            cur.fail(f"garbled OpenEXR file: chunk y={y} holds {size} bytes for {expected} bytes of pixels")
        raw = chunk.take(size, f"chunk y={y}")
        if size < expected:  # Stored raw when compressing did not help.
            raw = _decompress(cur, raw, compression, expected, y)
        else:
            raw = np.frombuffer(raw, dtype=np.uint8)
        rows = raw.reshape(n_lines, row_bytes)
        start = 0
        for a, w in zip(out, widths):
            values = np.ascontiguousarray(rows[:, start : start + w]).view(a.dtype)
            a[block * lines : block * lines + n_lines] = values
            start += w
    # Every chunk was placed once (duplicates are refused), so every scanline is filled.
    return {name: a.astype(np.float32) for (name, _), a in zip(channels, out)}


def _decompress(cur, data, compression, expected, y):
    """The raw bytes (uint8 array of ``expected`` bytes) of a ZIP/ZIPS/RLE chunk."""
    problem = ""
    if compression == 1:
        buf = _rle_decode(data, expected)
        if buf is None:
            problem = "malformed run-length data"
    else:
        try:
            inflater = zlib.decompressobj()
            buf = inflater.decompress(data, expected)
            if inflater.unconsumed_tail:
                problem = f"inflates to more than {expected} bytes"
            elif not inflater.eof:
                problem = "incomplete zlib stream"
        except zlib.error as e:
            buf, problem = None, f"corrupt zlib data: {e}"
    if not problem and len(buf) != expected:
        problem = f"{len(buf)} bytes of pixels instead of {expected}"
    if problem:
        cur.fail(f"garbled {_COMPRESSION_NAMES[compression]} data in OpenEXR chunk y={y} ({problem})")
    return _unpredict_deinterleave(buf)


# --------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------


def _attribute(name, type_name, value):
    return name.encode() + b"\0" + type_name.encode() + b"\0" + struct.pack("<i", len(value)) + value


def write_exr(path, channels, compression="zip"):
    """Writes float32 channels as a scanline OpenEXR image, atomically.

    The file is written to a temporary file in the same folder and renamed over ``path``
    (an existing file is replaced only once the new one is complete). Values are stored as
    FLOAT, so :func:`read_exr` gives them back bit for bit (inf and NaN included).

    Args:
        path: the ``.exr`` file to write.
        channels: dict name -> (H, W) array (converted to float32), all of one shape, H
            and W >= 1; names are non-empty and at most 255 bytes of UTF-8 without NUL.
            They are stored in sorted order, as OpenEXR requires.
        compression: ``"zip"`` (16 scanlines per chunk, zlib; Blender's default),
            ``"zips"`` (one scanline per chunk) or ``"none"``.

    Raises:
        ValueError: bad channels or compression (the message names ``path``).
        OSError: the file cannot be written.
    """
    path = os.fspath(path)
    code = _WRITE_CODES.get(str(compression).lower())
    if code is None:
        raise ValueError(f"{path}: unknown OpenEXR compression {compression!r} (one of {WRITE_COMPRESSIONS})")
    if not isinstance(channels, dict) or not channels:
        raise ValueError(f"{path}: write_exr needs a non-empty dict of channels")
    arrays, shape, long_names = {}, None, False
    for name, value in channels.items():
        raw_name = str(name).encode("utf-8")
        if not isinstance(name, str) or not raw_name or b"\0" in raw_name or len(raw_name) > 255:
            raise ValueError(f"{path}: bad OpenEXR channel name {name!r}")
        long_names |= len(raw_name) > 31
        a = np.asarray(value, dtype=np.float32)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1 or a.shape[0] * a.shape[1] > _MAX_PIXELS:
            raise ValueError(f"{path}: channel {name!r} must be (H, W) with H, W >= 1, got shape {a.shape}")
        if shape is not None and a.shape != shape:
            raise ValueError(f"{path}: channel {name!r} has shape {a.shape}, others {shape}")
        shape = a.shape
        arrays[raw_name] = a.astype("<f4")
    height, width = shape
    names = sorted(arrays)
    chlist = b"".join(n + b"\0" + struct.pack("<iBBBBii", 2, 0, 0, 0, 0, 1, 1) for n in names) + b"\0"
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join(
        [
            _MAGIC,
            struct.pack("<I", 2 | (_LONG_NAMES if long_names else 0)),
            _attribute("channels", "chlist", chlist),
            _attribute("compression", "compression", bytes([code])),
            _attribute("dataWindow", "box2i", window),
            _attribute("displayWindow", "box2i", window),
            _attribute("lineOrder", "lineOrder", b"\0"),
            _attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
            _attribute("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0)),
            _attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)),
            b"\0",
        ]
    )
    lines = _LINES_PER_CHUNK[code]
    # Scanline-major, then channel: (H, C, W) float32 bytes.
    pixels = np.stack([arrays[n] for n in names], axis=1)
    chunks = []
    for y in range(0, height, lines):
        raw = pixels[y : y + lines].tobytes()
        if code != 0:
            packed = zlib.compress(_interleave_predict(raw), 6)
            raw = packed if len(packed) < len(raw) else raw  # OpenEXR keeps chunks that do not shrink raw.
        chunks.append(struct.pack("<ii", y, len(raw)) + raw)
    offsets, pos = [], len(header) + 8 * len(chunks)
    for c in chunks:
        offsets.append(pos)
        pos += len(c)
    blob = header + np.asarray(offsets, dtype="<u8").tobytes() + b"".join(chunks)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
