"""Reading the image files of our data layouts: RGB views, object masks and depth maps.

The readers of the single-view ``img_choy2016/`` folders (:mod:`implicit_fields.data.datasets`),
of the multi-view layout (:mod:`implicit_fields.data.multiview`) and of Texture Fields'
layout (:mod:`implicit_fields.data.textured`). Images (PNG or JPEG, as the original's
renderings) are decoded by Pillow, as the original's loaders do; depth maps are ``.npy``
arrays or OpenEXR images (Texture Fields' ``depth/*.exr``, read and written by
:mod:`implicit_fields.data.exr`). Every failure is a
:class:`~implicit_fields.data.onet_format.DataFormatError` whose message names the file.
"""

import os
import uuid

import numpy as np
from PIL import Image

from implicit_fields.data import exr
from implicit_fields.data.onet_format import DataFormatError, load_npy

__all__ = ["read_rgb", "read_mask", "read_depth", "write_depth", "DEPTH_CHANNELS", "EXR_BACKGROUND"]

DEPTH_CHANNELS = ("R", "Y", "Z", "B", "G")
"""Channels of an OpenEXR depth map, by preference. The original reads its depth maps with
imageio (FreeImage gives R, G, B) and keeps channel 0 (``ImageToDepthValue``): R. Its
Blender renders hold the depth in all of R, G and B; Y (luminance) and Z (a depth pass)
files are read too."""

EXR_BACKGROUND = 65504.0
"""OpenEXR depths at or above this value (the largest half float) are unknown, as inf. Blender
writes no-hit pixels as inf in the original's half-float files (and 1e10, or its saturated
half value 65504, in other set-ups); no object depth comes near it."""


def _decode(path, rgb=False):
    """Pixel array of an image file: with ``rgb`` converted to RGB (as the original's
    ``Image.open(...).convert("RGB")``), else the raw values (as its mask loader)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB") if rgb else im)
    except Exception as e:  # noqa: BLE001 - report any decoder failure with the file.
        raise DataFormatError(f"{path}: unreadable image ({type(e).__name__}: {e})") from e


def read_rgb(path):
    """An RGB image (PNG or JPEG; grey is repeated, alpha dropped).

    Args:
        path: the image file.

    Returns:
        float32 [H, W, 3] in [0, 1] (the 8-bit values / 255).

    Raises:
        DataFormatError: an unreadable file or one that is not an 8-bit image.
    """
    path = os.fspath(path)
    a = _decode(path, rgb=True)
    if a.dtype != np.uint8:
        raise DataFormatError(f"{path}: expected 8-bit image, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise DataFormatError(f"{path}: unsupported image shape {a.shape}")
    a = a[:, :, :1] if a.shape[2] in (1, 2) else a[:, :, :3]  # Alpha dropped, as PIL RGB.
    return np.broadcast_to(a, a.shape[:2] + (3,)).astype(np.float32) / 255.0


def read_mask(path):
    """An object mask: any non-zero value of the first channel is the object.

    Args:
        path: the mask image (PNG or JPEG, grey or colour).

    Returns:
        bool [H, W].

    Raises:
        DataFormatError: an unreadable file.
    """
    path = os.fspath(path)
    a = _decode(path)
    a = a.reshape(a.shape[0], a.shape[1], -1)[:, :, 0]
    return a != 0


def _exr_depth(path):
    """The depth channel of an OpenEXR file (:data:`DEPTH_CHANNELS`), background as inf."""
    channels = exr.read_exr(path)
    name = next((c for c in DEPTH_CHANNELS if c in channels), None)
    if name is None:
        passes = [c for c in channels if c.rsplit(".", 1)[-1] == "Z"]  # A multi-layer Z pass.
        if len(passes) == 1:
            name = passes[0]
        elif len(channels) == 1:
            name = next(iter(channels))
        else:
            raise DataFormatError(
                f"{path}: which OpenEXR channel holds the depth? None of {list(DEPTH_CHANNELS)} among "
                f"{sorted(channels)}; keep only the depth channel"
            )
    a = channels[name]
    return np.where(a < EXR_BACKGROUND, a, np.inf)


def read_depth(path):
    """A camera-depth map: ``.npy`` (float (H, W), or (H, W, C) using channel 0) or OpenEXR.

    An ``.exr`` file (:func:`implicit_fields.data.exr.read_exr`: scanline, NONE / RLE / ZIP(S)
    compression, HALF / FLOAT / UINT) gives its channel R as the original's loader does,
    else Y, Z, B, G (:data:`DEPTH_CHANNELS`), else a single ``*.Z`` channel or the only
    channel; values at or above :data:`EXR_BACKGROUND` (65504) are Blender's background.

    Args:
        path: the depth file, ``.exr`` or ``.npy`` (any other extension is read as .npy).

    Returns:
        float32 [H, W] camera depth, inf where unknown (inf, NaN or <= 0 in the file, and
        for OpenEXR >= 65504).

    Raises:
        DataFormatError: a missing or unreadable file, one that is not an ``.npy`` (random
            bytes, an .npz, pickled objects), a non-float array or one of another shape; a
            truncated, garbled or unsupported OpenEXR file (tiled, PIZ compression, ...)
            or one whose depth channel is ambiguous.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".exr":
        a = _exr_depth(path)
    else:
        a = load_npy(path)  # DataFormatError naming the file: missing, empty, not an .npy, ...
        if not np.issubdtype(a.dtype, np.floating):
            raise DataFormatError(f"{path}: depth must be a float array, got dtype {a.dtype}")
        if a.ndim == 3 and a.shape[2] >= 1:
            a = a[:, :, 0]
        if a.ndim != 2:
            raise DataFormatError(f"{path}: depth must have shape (H, W), got {a.shape}")
    # Unknown depth is inf (the original's get_mask); NaN and non-positive values (a 0
    # background in other renderers' maps) are unknown too.
    return np.where(np.isfinite(a) & (a > 0), a, np.inf).astype(np.float32)


def write_depth(path, depth):
    """Writes a camera-depth map that :func:`read_depth` reads back exactly, atomically.

    ``.exr``: FLOAT channels R, G and B all holding the depth, ZIP-compressed (the
    original's loader takes channel R); ``.npy``: float32 (H, W). Unknown depth (inf, NaN
    or <= 0) is stored as inf.

    Args:
        path: the file, ``.exr`` or ``.npy``.
        depth: (H, W) float camera depth, inf where there is no surface.

    Raises:
        ValueError: another extension, a depth that is not (H, W), or (``.exr``) a finite
            depth >= :data:`EXR_BACKGROUND`, which would read back as background.
        OSError: the file cannot be written.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".exr", ".npy"):
        raise ValueError(f"{path}: depth maps are written as .exr or .npy, not {ext or 'no extension'!r}")
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"{path}: depth must have shape (H, W), got {d.shape}")
    d = np.where(np.isfinite(d) & (d > 0), d, np.float32(np.inf))
    if ext == ".exr":
        if np.any(d[np.isfinite(d)] >= EXR_BACKGROUND):
            raise ValueError(
                f"{path}: depth values >= {EXR_BACKGROUND:g} would be read back as background (no surface)"
            )
        exr.write_exr(path, {"R": d, "G": d, "B": d}, compression="zip")
        return
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp.npy")
    try:
        np.save(tmp, d)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
