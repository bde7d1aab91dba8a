"""Reading the image files of our data layouts: RGB views, object masks and depth maps.

The readers of the single-view ``img_choy2016/`` folders (:mod:`implicit_fields.data.datasets`)
and of the multi-view layout (:mod:`implicit_fields.data.multiview`). Images (PNG or JPEG,
as the original's renderings) are decoded by Pillow, as the original's loaders do; depth
maps are ``.npy`` arrays. Every failure is a
:class:`~implicit_fields.data.onet_format.DataFormatError` whose message names the file.
"""

import os

import numpy as np
from PIL import Image

from implicit_fields.data.onet_format import DataFormatError, load_npy

__all__ = ["read_rgb", "read_mask", "read_depth"]


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


def read_depth(path):
    """A camera-depth map stored as ``.npy`` (float (H, W), or (H, W, C) using channel 0).

    Args:
        path: the depth file (``.exr`` files are reported: reading OpenEXR needs a
            dependency we do not have).

    Returns:
        float32 [H, W] camera depth, inf where unknown (inf, NaN or <= 0 in the file).

    Raises:
        DataFormatError: an ``.exr`` file, a missing or unreadable file, one that is not an
            ``.npy`` (random bytes, an .npz, pickled objects), a non-float array or one of
            another shape.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".exr":
        raise DataFormatError(
            f"{path}: OpenEXR depth maps cannot be read (no EXR dependency); convert them to "
            ".npy float32 (H, W) with inf where there is no surface"
        )
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
