"""NeRF's "Blender" (synthetic) data layout: a loader, a writer, and one loader for both layouts.

The layout of the NeRF synthetic scenes (``load_blender.py`` of the original NeRF)::

    SCENE/transforms_train.json   {"camera_angle_x": fov_x (radians),
    SCENE/transforms_val.json      "frames": [{"file_path": "./train/r_0",
    SCENE/transforms_test.json                 "transform_matrix": 4x4 camera-to-world}, ...]}
    SCENE/train/r_0.png ...       RGBA images (alpha = coverage), likewise val/, test/

``file_path`` is relative to SCENE and usually has no extension (``.png`` is appended
then). The camera frame is Blender's (OpenGL's): x right, y up, looking along -z. NeRF's
rays: with ``focal_px = 0.5 W / tan(0.5 camera_angle_x)`` the pixel of column ``i`` and
row ``j`` (its centre, ``+ 0.5``) has the camera-space direction
``((i + 0.5 - W / 2) / focal_px, -(j + 0.5 - H / 2) / focal_px, -1)``, rotated by
``c2w[:3, :3]``, from the origin ``c2w[:3, 3]``.

Conversion to our cameras (:mod:`implicit_fields.cameras`: OpenCV frame, pixel centres
at ``x = 2 col / (W - 1) - 1``, ``y = 2 row / (H - 1) - 1``): flipping the camera frame
(``F = diag(1, -1, -1, 1)``) puts that direction at camera depth 1 with
``X = (i + 0.5 - W / 2) / focal_px``, and ``fx X = 2 i / (W - 1) - 1 = 2 (i + 0.5 - W / 2) / (W - 1)``
holds for every column exactly when ``fx = 2 focal_px / (W - 1)`` (likewise
``fy = 2 focal_px / (H - 1)``; the principal point is the image centre). So
``camera_mat = diag(fx, fy, 1, 1)`` and ``world_mat = inv(c2w @ F)``: our rays are NeRF's,
pixel for pixel, parametrised by camera depth. The scenes are not in the unit cube (the
objects lie within about [-1.5, 1.5]^3): ``scale`` gives ``scale_mat = diag(s, s, s, 1)``,
so the field's unit cube covers the world's [-s / 2, s / 2]^3.

The images are composited on a background (NeRF's ``white_bkgd``:
``rgb * alpha + background * (1 - alpha)``) and the object masks are ``alpha >= 0.5``.
:func:`load_views` reads this layout or the multi-view layout of
:mod:`implicit_fields.data.multiview` (split by position there, as DVR does);
:func:`write_blender` writes a :class:`~implicit_fields.data.multiview.MultiViewData` in
this layout and :func:`write_builtin_scene` renders the built-in object into it.
"""

import json
import math
import os
import re
import shutil
import tempfile

import numpy as np
from PIL import Image

from implicit_fields import summary
from implicit_fields.data import builtin, multiview, onet_format, shapes
from implicit_fields.data.onet_format import DataFormatError

__all__ = [
    "LAYOUTS",
    "SPLITS",
    "SCENE_FILE",
    "BLENDER_SCENE_VERSION",
    "detect_layout",
    "transforms_path",
    "load_blender",
    "load_views",
    "write_blender",
    "write_builtin_scene",
]

LAYOUTS = ("blender", "multiview")
"""The layouts :func:`detect_layout` tells apart."""

SPLITS = ("train", "val", "test")
"""The splits of the NeRF synthetic scenes (and of :func:`load_views`)."""

SCENE_FILE = "scene.json"
"""The record of :func:`write_builtin_scene` (its parameters), next to the split files."""

BLENDER_SCENE_VERSION = 1
"""Stored in every scene.json; bumped when :func:`write_builtin_scene`'s output changes."""

_TMP_PREFIX = ".tmp-blender-"
_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera frame <-> OpenCV camera frame.
_RIGID_TOL = 1e-4  # Orthonormality of a camera's rotation.
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def transforms_path(folder, split):
    """The split file ``<folder>/transforms_<split>.json``."""
    return os.path.join(os.fspath(folder), f"transforms_{split}.json")


def _check_split_name(split):
    if not isinstance(split, str) or not _SPLIT_NAME.match(split):
        raise ValueError(f"split: must be a name of letters, digits, '_' or '-', got {split!r}")
    return split


def detect_layout(folder):
    """Which data layout a scene folder holds.

    Args:
        folder: the scene folder.

    Returns:
        ``'blender'`` when ``transforms_train.json`` exists (checked first), else
        ``'multiview'`` when ``cameras.npz`` exists.

    Raises:
        DataFormatError: naming the folder: missing, or neither layout's file in it.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataFormatError(f"{folder}: scene folder not found")
    if os.path.isfile(transforms_path(folder, "train")):
        return "blender"
    if os.path.isfile(os.path.join(folder, multiview.CAMERA_FILE)):
        return "multiview"
    raise DataFormatError(
        f"{folder}: neither the Blender layout (transforms_train.json) nor the multi-view layout "
        f"({multiview.CAMERA_FILE} with {multiview.IMAGE_DIR}/ and {multiview.MASK_DIR}/) is there"
    )


# --------------------------------------------------------------------------------------
# Cameras.
# --------------------------------------------------------------------------------------


def _rigid_problem(rot):
    """None when ``rot`` (3, 3) is a rotation within :data:`_RIGID_TOL`, else the problem."""
    err = float(np.abs(rot.T @ rot - np.eye(3)).max())
    if not err <= _RIGID_TOL:
        return f"its rotation part is not orthonormal (|R^T R - I| = {err:.3g} > {_RIGID_TOL:g})"
    if np.linalg.det(rot) < 0.0:
        return "its rotation part is a reflection (determinant -1)"
    return None


def _c2w_to_cameras(c2w, fov_x, height, width, scale):
    """Our (4, 4) camera_mat, world_mat, scale_mat of a Blender camera-to-world matrix."""
    focal_px = 0.5 * width / math.tan(0.5 * fov_x)
    camera_mat = np.diag([2.0 * focal_px / (width - 1), 2.0 * focal_px / (height - 1), 1.0, 1.0])
    world_mat = np.linalg.inv(c2w @ _FLIP)
    scale_mat = np.diag([scale, scale, scale, 1.0])
    return camera_mat, world_mat, scale_mat


# --------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------


def _read_json(path):
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: file not found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DataFormatError(f"{path}: unreadable JSON ({type(e).__name__}: {e})") from e


def _read_rgba(path):
    """(H, W, 3) uint8 RGB and (H, W) uint8 alpha (None without an alpha channel)."""
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            mode = im.mode
            with_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info)
            if mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA"):
                raise DataFormatError(
                    f"{path}: unsupported image mode {mode!r} (8-bit RGB(A) or grey expected)"
                )
            a = np.asarray(im.convert("RGBA" if with_alpha else "RGB"))
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - report any decoder failure with the file.
        raise DataFormatError(f"{path}: unreadable image ({type(e).__name__}: {e})") from e
    if a.ndim != 3 or a.dtype != np.uint8 or a.shape[0] < 2 or a.shape[1] < 2:
        raise DataFormatError(
            f"{path}: expected an 8-bit image of at least 2x2 pixels, got {a.shape} {a.dtype}"
        )
    return a[:, :, :3], (a[:, :, 3] if with_alpha else None)


def _check_background(background):
    try:
        bg = np.asarray(background, dtype=np.float64)
    except (TypeError, ValueError):
        bg = None
    if bg is None or bg.shape != (3,) or not np.all(np.isfinite(bg)) or bg.min() < 0.0 or bg.max() > 1.0:
        raise ValueError(f"background: must be 3 RGB values in [0, 1], got {background!r}")
    return bg


def _check_scale(scale):
    try:
        ok = not isinstance(scale, (bool, np.bool_)) and math.isfinite(float(scale)) and float(scale) > 0.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"scale: must be a finite number > 0, got {scale!r}")
    return float(scale)


def _frame_matrix(path, k, frame):
    """The checked (4, 4) camera-to-world matrix of frame ``k`` of the split file ``path``."""
    where = f"{path}: frames[{k}]"
    if "transform_matrix" not in frame:
        raise DataFormatError(f"{where}: no 'transform_matrix'")
    try:
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"{where}: 'transform_matrix' is not a 4x4 matrix of numbers ({e})") from e
    if c2w.shape != (4, 4):
        raise DataFormatError(f"{where}: 'transform_matrix' must be 4x4, got shape {c2w.shape}")
    if not np.all(np.isfinite(c2w)):
        raise DataFormatError(f"{where}: 'transform_matrix' has non-finite values")
    if not np.allclose(c2w[3], [0.0, 0.0, 0.0, 1.0], rtol=0.0, atol=1e-6):
        raise DataFormatError(
            f"{where}: 'transform_matrix' last row must be [0, 0, 0, 1], got {c2w[3].tolist()}"
        )
    problem = _rigid_problem(c2w[:3, :3])
    if problem:
        raise DataFormatError(f"{where}: 'transform_matrix' is not a rigid camera-to-world matrix: {problem}")
    return c2w


def load_blender(folder, split="train", scale=1.0, background=(1.0, 1.0, 1.0)):
    """Reads one split of a scene in NeRF's Blender layout as multi-view data.

    Images are composited on ``background`` (``rgb * a + background * (1 - a)``, ``a`` the
    alpha in [0, 1], NeRF's ``white_bkgd`` for the default white) and the masks are
    ``alpha >= 0.5`` (8-bit alpha >= 128). An image without an alpha channel (RGB or grey)
    is taken as it is, with a mask that is True everywhere. The cameras are converted
    exactly (module docstring): the rays of :func:`implicit_fields.cameras.pixels_to_rays`
    are NeRF's through the pixel centres.

    Args:
        folder: the scene folder.
        split: the split, ``transforms_<split>.json`` (``'train'``, ``'val'``, ``'test'``).
        scale: float > 0, ``scale_mat = diag(scale, scale, scale, 1)``: the field's unit
            cube covers the world's [-scale / 2, scale / 2]^3 (NeRF's synthetic objects
            lie within about [-1.5, 1.5]^3, so about 3).
        background: RGB in [0, 1] under the transparent pixels.

    Returns:
        :class:`~implicit_fields.data.multiview.MultiViewData` with ``depths`` None,
        ``view_ids`` the frame positions in the split file and ``image_files`` the paths
        read.

    Raises:
        DataFormatError: naming the file: a missing folder, split file or image, bad JSON,
            a missing or invalid ``camera_angle_x``, ``frames``, ``file_path`` or
            ``transform_matrix`` (not 4x4, not finite, not rigid: its rotation part not
            orthonormal within 1e-4 or a reflection), an unreadable image or images of
            differing sizes.
        ValueError: a bad ``split``, ``scale`` or ``background``.
    """
    folder = os.fspath(folder)
    _check_split_name(split)
    scale = _check_scale(scale)
    bg = _check_background(background)
    if not os.path.isdir(folder):
        raise DataFormatError(f"{folder}: scene folder not found")
    path = transforms_path(folder, split)
    if not os.path.isfile(path):
        present = sorted(
            f[11:-5] for f in os.listdir(folder) if f.startswith("transforms_") and f.endswith(".json")
        )
        raise DataFormatError(
            f"{path}: split file not found (the Blender layout's splits there: "
            f"{', '.join(present) or 'none'})"
        )
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise DataFormatError(f"{path}: expected a JSON object, got a JSON {type(meta).__name__}")
    fov = meta.get("camera_angle_x")
    if fov is None:
        raise DataFormatError(f"{path}: no 'camera_angle_x' (the horizontal field of view in radians)")
    if isinstance(fov, bool) or not isinstance(fov, (int, float)) or not 0.0 < float(fov) < math.pi:
        raise DataFormatError(f"{path}: 'camera_angle_x' must be a number in (0, pi) radians, got {fov!r}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataFormatError(f"{path}: 'frames' must be a non-empty list, got {frames!r:.80}")

    rgbs, masks, c2ws, files = [], [], [], []
    size = None
    for k, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise DataFormatError(f"{path}: frames[{k}] must be a JSON object, got {frame!r:.80}")
        file_path = frame.get("file_path")
        if not isinstance(file_path, str) or not file_path:
            raise DataFormatError(
                f"{path}: frames[{k}]: 'file_path' must be a non-empty string, got {file_path!r}"
            )
        c2ws.append(_frame_matrix(path, k, frame))
        image_path = os.path.normpath(os.path.join(folder, file_path))
        if not os.path.splitext(image_path)[1]:
            image_path += ".png"
        if not os.path.isfile(image_path):
            raise DataFormatError(f"{image_path}: image not found (frames[{k}] of {path})")
        rgb, alpha = _read_rgba(image_path)
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise DataFormatError(
                f"{image_path}: image size {rgb.shape[1]}x{rgb.shape[0]} differs from {size[1]}x{size[0]} "
                f"of {files[0]}"
            )
        a = np.ones(size) if alpha is None else alpha.astype(np.float64) / 255.0
        color = rgb.astype(np.float64) / 255.0 * a[:, :, None] + bg * (1.0 - a[:, :, None])
        rgbs.append(color.astype(np.float32))
        masks.append(np.ones(size, dtype=bool) if alpha is None else alpha >= 128)
        files.append(image_path)

    height, width = size
    mats = [_c2w_to_cameras(c2w, float(fov), height, width, scale) for c2w in c2ws]
    return multiview.MultiViewData(
        images=np.stack(rgbs),
        masks=np.stack(masks),
        depths=None,
        camera_mat=np.stack([m[0] for m in mats]),
        world_mat=np.stack([m[1] for m in mats]),
        scale_mat=np.stack([m[2] for m in mats]),
        view_ids=np.arange(len(frames), dtype=np.int64),
        image_files=files,
        folder=folder,
    )


def _subset(data, positions):
    """The views ``positions`` of a :class:`~implicit_fields.data.multiview.MultiViewData`."""
    p = np.asarray(positions, dtype=np.int64)
    return multiview.MultiViewData(
        images=data.images[p],
        masks=data.masks[p],
        depths=None if data.depths is None else data.depths[p],
        camera_mat=data.camera_mat[p],
        world_mat=data.world_mat[p],
        scale_mat=data.scale_mat[p],
        view_ids=data.view_ids[p],
        image_files=[data.image_files[i] for i in p],
        folder=data.folder,
    )


def load_views(folder, split="train", *, val_views=0, scale=1.0, background=(1.0, 1.0, 1.0)):
    """One loader for both layouts: the views of one split of a scene.

    The layout is :func:`detect_layout`'s. Blender layout: :func:`load_blender` of the
    split's ``transforms_<split>.json`` (``val_views`` is not used: the split files
    decide). Multi-view layout (one set of views, no split files): the split is by
    position, as DVR's training does: the last ``val_views`` views are held out, so
    ``'train'`` is the first ``V - val_views`` views and ``'val'`` and ``'test'`` are both
    the last ``val_views``; ``view_ids`` keep the camera indices of ``cameras.npz``.

    Args:
        folder: the scene folder.
        split: ``'train'``, ``'val'`` or ``'test'`` (Blender layout: any split file's name).
        val_views: int, held-out views of the multi-view layout, in [0, V) (at least 1
            for ``'val'`` and ``'test'``).
        scale: Blender layout only, see :func:`load_blender`; the multi-view layout's
            ``cameras.npz`` holds its own ``scale_mat``, so another value than 1 is an
            error there.
        background: Blender layout only, see :func:`load_blender`.

    Returns:
        :class:`~implicit_fields.data.multiview.MultiViewData`.

    Raises:
        DataFormatError: a missing folder or file, a folder of neither layout, or the
            loaders' errors (naming the file).
        ValueError: a bad ``split``, or ``val_views`` / ``scale`` that do not fit the
            multi-view scene.
    """
    layout = detect_layout(folder)
    if layout == "blender":
        return load_blender(folder, split, scale=scale, background=background)
    if split not in SPLITS:
        raise ValueError(
            f"split: must be one of {', '.join(SPLITS)} for the multi-view layout, got {split!r}"
        )
    if _check_scale(scale) != 1.0:
        raise ValueError(
            f"scale: {scale!r} applies to the Blender layout only; "
            f"{os.path.join(os.fspath(folder), multiview.CAMERA_FILE)} holds the multi-view scene's own "
            f"scale_mat"
        )
    val_views = onet_format.check_count("val_views", val_views, 0)
    data = multiview.load_multiview(folder)
    n = data.num_views
    if val_views >= n:
        raise ValueError(f"val_views: {val_views} holds out every view of the {n} of {folder}; must be < {n}")
    if split == "train":
        return _subset(data, np.arange(n - val_views))
    if val_views == 0:
        raise ValueError(f"val_views: 0 holds out no view of {folder}, so split {split!r} is empty")
    return _subset(data, np.arange(n - val_views, n))


# --------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------


def _view_name(data, v):
    name = f"view {v}"
    if v < len(data.image_files):
        name += f" ({data.image_files[v]})"
    return name


def _plan(data, splits):
    """Checks what :func:`write_blender` writes: (camera_angle_x, c2w (V, 4, 4), {split: positions})."""
    images = np.asarray(data.images)
    masks = np.asarray(data.masks)
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[0] < 1:
        raise ValueError(f"data.images: must be (V, H, W, 3) with V >= 1, got {images.shape}")
    n, height, width = images.shape[:3]
    if height < 2 or width < 2:
        raise ValueError(f"data.images: images must be at least 2x2, got {width}x{height}")
    if masks.shape != (n, height, width):
        raise ValueError(f"data.masks: must be {(n, height, width)} like the images, got {masks.shape}")
    mats = {}
    for key in ("camera_mat", "world_mat", "scale_mat"):
        m = np.asarray(getattr(data, key), dtype=np.float64)
        if m.shape != (n, 4, 4):
            raise ValueError(f"data.{key}: must be {(n, 4, 4)}, got {m.shape}")
        mats[key] = m
    if not isinstance(splits, dict) or not splits:
        raise ValueError(
            f"splits: must be a non-empty dict of split name -> view positions, got {splits!r:.80}"
        )
    if "train" not in splits:
        raise ValueError(
            f"splits: needs 'train' (transforms_train.json marks the layout), got "
            f"{', '.join(map(str, splits))}"
        )
    plan = {}
    used = set()
    for name, positions in splits.items():
        _check_split_name(name)
        p = np.asarray(positions)
        if p.ndim != 1 or p.size == 0 or not np.issubdtype(p.dtype, np.integer):
            raise ValueError(
                f"splits[{name!r}]: must be a non-empty sequence of view positions, got {positions!r:.80}"
            )
        if p.min() < 0 or p.max() >= n:
            raise ValueError(f"splits[{name!r}]: view positions must be in [0, {n}), got {p.tolist()}")
        if np.unique(p).size != p.size:
            raise ValueError(f"splits[{name!r}]: repeated view positions {p.tolist()}")
        plan[name] = p.astype(np.int64)
        used.update(int(v) for v in p)

    fov, c2ws = None, np.empty((n, 4, 4))
    focal0 = None
    for v in sorted(used):
        what = _view_name(data, v)
        if not (np.all(np.isfinite(images[v])) and images[v].min() >= 0.0 and images[v].max() <= 1.0):
            raise ValueError(f"{what}: image values must be finite and in [0, 1]")
        if not all(np.all(np.isfinite(m[v])) for m in mats.values()):
            raise ValueError(f"{what}: non-finite camera matrices")
        if not np.allclose(mats["scale_mat"][v], np.eye(4), rtol=0.0, atol=1e-12):
            raise ValueError(
                f"{what}: scale_mat is not the identity; the Blender layout has no object-to-world "
                f"transform (fold it into the cameras and the shape first)"
            )
        cm = mats["camera_mat"][v]
        fx, fy = cm[0, 0], cm[1, 1]
        off = cm - np.diag(np.diag(cm))
        if (
            not (fx > 0.0 and fy > 0.0)
            or np.abs(off).max() > 1e-9 * max(fx, fy)
            or cm[2, 2] != 1
            or cm[3, 3] != 1
        ):
            raise ValueError(
                f"{what}: camera_mat must be diag(fx, fy, 1, 1) with fx, fy > 0 (a centred principal "
                f"point, no skew) for the Blender layout, got {cm.tolist()}"
            )
        focal_x, focal_y = 0.5 * fx * (width - 1), 0.5 * fy * (height - 1)  # In pixels.
        if abs(focal_x - focal_y) > 1e-6 * focal_x:
            raise ValueError(
                f"{what}: non-square pixels (focal {focal_x:.6g} px in x, {focal_y:.6g} px in y for "
                f"{width}x{height} images: fx = {fx:.6g}, fy = {fy:.6g}); the Blender layout has one "
                f"field of view (camera_angle_x) and square pixels, fy = fx (W - 1) / (H - 1)"
            )
        if focal0 is None:
            focal0 = focal_x
            fov = 2.0 * math.atan(0.5 * width / focal_x)
        elif abs(focal_x - focal0) > 1e-6 * focal0:
            raise ValueError(
                f"{what}: focal length {focal_x:.6g} px differs from {focal0:.6g} px of "
                f"{_view_name(data, min(used))}; the Blender layout has one camera_angle_x per split file"
            )
        wm = mats["world_mat"][v]
        problem = None
        if not np.allclose(wm[3], [0.0, 0.0, 0.0, 1.0], rtol=0.0, atol=1e-12):
            problem = f"its last row is {wm[3].tolist()}, not [0, 0, 0, 1]"
        else:
            problem = _rigid_problem(wm[:3, :3])
        if problem:
            raise ValueError(f"{what}: world_mat is not a rigid world-to-camera matrix ({problem})")
        c2ws[v] = np.linalg.inv(wm) @ _FLIP
    return fov, c2ws, plan


def _write_files(out, data, fov, c2ws, plan):
    """Writes the split folders and files of a checked plan into the folder ``out``."""
    for name, positions in plan.items():
        os.makedirs(os.path.join(out, name))
        frames = []
        for k, v in enumerate(positions):
            rgb = np.rint(np.clip(np.asarray(data.images[v], dtype=np.float64), 0.0, 1.0) * 255.0)
            alpha = np.asarray(data.masks[v], dtype=bool).astype(np.uint8) * 255
            rgba = np.concatenate([rgb.astype(np.uint8), alpha[:, :, None]], axis=2)
            Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(os.path.join(out, name, f"r_{k}.png"))
            frames.append({"file_path": f"./{name}/r_{k}", "transform_matrix": c2ws[v].tolist()})
        summary.write_json(transforms_path(out, name), {"camera_angle_x": fov, "frames": frames}, indent=4)


def _clean_tmp(folder):
    for entry in os.listdir(folder):  # Leftovers of an interrupted run.
        if entry.startswith(_TMP_PREFIX):
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)


def _existing_splits(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(f[11:-5] for f in os.listdir(folder) if f.startswith("transforms_") and f.endswith(".json"))


def _swap_in(folder, new, splits, extra, replace):
    """Moves a scene written in ``new`` into ``folder``: the split files last (train the
    very last, the completion mark). With ``replace``, the split files of an existing scene
    go first and then its split folders; else nothing in ``folder`` may be in the way."""
    if not replace:
        _swap_in_check(folder, splits, extra)
    old = _existing_splits(folder)
    for s in sorted(old, key=lambda s: s != "train"):  # The completion mark first.
        os.remove(transforms_path(folder, s))
    for s in old:
        stale = os.path.join(folder, s)
        if s not in splits and _SPLIT_NAME.match(s) and os.path.isdir(stale):
            shutil.rmtree(stale)
    for entry in list(splits) + list(extra):
        final = os.path.join(folder, entry)
        if os.path.isdir(final) and not os.path.islink(final):
            shutil.rmtree(final)
        elif os.path.lexists(final):
            os.remove(final)
        os.rename(os.path.join(new, entry), final)
    for s in sorted(splits, key=lambda s: s == "train"):
        os.replace(transforms_path(new, s), transforms_path(folder, s))


def write_blender(folder, data, splits, overwrite=False):
    """Writes multi-view data in NeRF's Blender layout.

    Each split ``s`` gets ``s/r_<k>.png`` (RGBA: the RGB of the image, alpha 255 in the
    mask and 0 outside) for its ``k``-th view and ``transforms_s.json`` with
    ``camera_angle_x`` and each frame's ``file_path`` and ``transform_matrix`` (the inverse
    of :func:`load_blender`'s conversion), so that :func:`load_blender` with a background
    equal to the images' own gives the views back (cameras to rounding, images to 8 bits).
    Only cameras the layout expresses are written: ``scale_mat`` the identity (the layout
    has no object-to-world transform; a uniform scale is given to :func:`load_blender`
    instead), ``camera_mat = diag(fx, fy, 1, 1)`` (centred principal point) with square
    pixels (the same focal length in pixels along x and y), the same field of view in every
    view written and a rigid ``world_mat``.

    Everything is written into a temporary folder inside ``folder`` first and then moved in
    place, ``transforms_train.json`` last: a scene with that file is complete.

    Args:
        folder: the scene folder (created if needed).
        data: :class:`~implicit_fields.data.multiview.MultiViewData` (``depths`` are not
            written: the layout has none).
        splits: dict split name -> sequence of view positions in ``data`` (non-empty, no
            repeats within a split; splits may share views). Must hold ``'train'``.
        overwrite: replace an existing Blender scene in ``folder`` (its split files and
            split folders); else FileExistsError.

    Raises:
        ValueError: naming the view: a camera the layout cannot express, image values
            outside [0, 1]; or bad ``splits`` / array shapes.
        FileExistsError: ``folder`` holds a Blender scene already, or a split folder or
            file of the new scene exists (unless ``overwrite``), or is a file.
    """
    folder = os.fspath(folder)
    fov, c2ws, plan = _plan(data, splits)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"{folder}: is a file, not a scene folder")
    if not overwrite:  # Refuse before writing anything.
        _swap_in_check(folder, plan)
    os.makedirs(folder, exist_ok=True)
    _clean_tmp(folder)
    tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder)
    try:
        _write_files(tmp, data, fov, c2ws, plan)
        _swap_in(folder, tmp, plan, (), replace=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in_check(folder, splits, extra=()):
    """The refusals of :func:`_swap_in` without ``replace``, before anything is written."""
    if not os.path.isdir(folder):
        return
    old = _existing_splits(folder)
    if old:
        raise FileExistsError(
            f"{folder}: holds a Blender scene already ({', '.join(f'transforms_{s}.json' for s in old)}); "
            f"pass overwrite=True to replace it"
        )
    for t in list(splits) + list(extra):
        if os.path.lexists(os.path.join(folder, t)):
            raise FileExistsError(
                f"{os.path.join(folder, t)}: exists; the scene would replace it "
                f"(pass overwrite=True to allow that)"
            )


# --------------------------------------------------------------------------------------
# The built-in object as a Blender scene.
# --------------------------------------------------------------------------------------


def _json_value(x):
    """``x`` as it reads back from JSON (tuples as lists; other objects as their str)."""
    return json.loads(json.dumps(x, sort_keys=True, default=str))


def _check_builtin_record(folder, params):
    """Refuses a complete scene in ``folder`` that write_builtin_scene did not write with ``params``."""
    record_path = os.path.join(folder, SCENE_FILE)
    if not os.path.isfile(record_path):
        raise ValueError(
            f"{folder}: holds a Blender scene not written by write_builtin_scene (no {SCENE_FILE}); "
            f"use another folder"
        )
    try:
        with open(record_path, "r", encoding="utf-8") as f:
            stored = json.load(f)
        written = stored["params"]
        if not isinstance(written, dict):
            raise ValueError(f"'params' is a JSON {type(written).__name__}, not an object")
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{record_path}: unreadable scene record ({type(e).__name__}: {e})") from None
    differ = [
        f"{k}: written {written.get(k)!r}, asked {params[k]!r}"
        for k in sorted(set(params) | set(written))
        if written.get(k) != params.get(k)
    ]
    if differ:
        raise ValueError(
            f"{folder}: the built-in scene there was written with other parameters ({'; '.join(differ)}); "
            f"use another folder (or move that one away to write it again)"
        )


def _resolution(resolution):
    try:
        h, w = (
            (int(resolution), int(resolution)) if np.ndim(resolution) == 0 else (int(r) for r in resolution)
        )
    except (TypeError, ValueError):
        h = w = 0
    if h < 2 or w < 2:
        raise ValueError(f"resolution: must be an int or (H, W), at least 2, got {resolution!r}")
    return h, w


def write_builtin_scene(
    folder,
    category="sofa",
    index=0,
    seed=0,
    n_views=24,
    resolution=64,
    texture="stripes",
    val_views=4,
    test_views=None,
    progress=True,
    **render_kwargs,
):
    """Renders a built-in object and writes it as a scene in NeRF's Blender layout.

    The object is :func:`implicit_fields.data.builtin.generate_object`'s, rendered as DVR's
    built-in scene is (:func:`implicit_fields.data.multiview.write_multiview` with the seed
    ``[seed, index]``, into a temporary folder), then written with :func:`write_blender`:
    ``train`` is the first ``n_views - val_views`` views and ``val`` the last
    ``val_views``. NeRF's synthetic scenes have a separate test split; here ``test`` is the
    same held-out views as ``val`` unless ``test_views`` is given: then the last
    ``test_views`` views are ``test``, the ``val_views`` before them ``val`` and the rest
    ``train``. ``shape.json`` holds the exact shape (object space = world, ``scale`` 1 in
    :func:`load_blender`), for evaluation, and ``scene.json`` the parameters: a complete
    scene written with the same parameters is kept as it is, one written with others is
    refused (nothing is rendered over).

    Args:
        folder: the scene folder (created if needed).
        category: str, built-in category name or synset id.
        index: int >= 0, object index within the category.
        seed: int >= 0, dataset seed.
        n_views: int, views rendered in all.
        resolution: int, or (H, W) with H == W: the built-in renderer's cameras have
            fx == fy in [-1, 1] units, which for H != W are non-square pixels that the
            layout cannot express.
        texture: 'none' or 'stripes'.
        val_views: int >= 1, views held out for ``val``.
        test_views: None (``test`` = ``val``) or int >= 1, views held out for ``test``.
        progress: tqdm bar over the views rendered.
        **render_kwargs: further arguments of
            :func:`~implicit_fields.data.multiview.write_multiview` (``radius``,
            ``elevation_range``, ``focal``, ...), recorded in scene.json (JSON values).

    Returns:
        str, the scene folder.

    Raises:
        ValueError: bad arguments, or a scene in ``folder`` written with other parameters
            or not by this function.
        FileExistsError: files of the scene's names exist in ``folder`` that another
            writer put there.
    """
    folder = os.fspath(folder)
    synset = shapes.category_synset(category)
    index = onet_format.check_count("index", index, 0)
    seed = onet_format.check_count("seed", seed, 0)
    n_views = onet_format.check_count("n_views", n_views, 2)
    val_views = onet_format.check_count("val_views", val_views, 1)
    held = val_views
    if test_views is not None:
        test_views = onet_format.check_count("test_views", test_views, 1)
        held += test_views
    if held >= n_views:
        raise ValueError(
            f"val_views: {val_views} (+ test_views: {test_views}) leave no training view of n_views={n_views}"
        )
    height, width = _resolution(resolution)
    if height != width:
        raise ValueError(
            f"resolution: {height}x{width} is not square; the built-in renderer's cameras have fx == fy "
            f"in [-1, 1] units, which are non-square pixels for H != W, and the Blender layout has square "
            f"pixels"
        )
    params = _json_value(
        {
            "category": synset,
            "index": index,
            "seed": seed,
            "n_views": n_views,
            "resolution": [height, width],
            "texture": texture,
            "val_views": val_views,
            "test_views": test_views,
            "render_kwargs": render_kwargs,
        }
    )
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"{folder}: is a file, not a scene folder")
    if os.path.isfile(transforms_path(folder, "train")):
        _check_builtin_record(folder, params)
        return folder
    splits = {"train": np.arange(n_views - held)}
    splits["val"] = np.arange(n_views - held, n_views - held + val_views)
    splits["test"] = splits["val"] if test_views is None else np.arange(n_views - test_views, n_views)
    extra = (onet_format.SHAPE_FILE, SCENE_FILE)
    # A scene.json without transforms_train.json is our own interrupted write: replaced.
    partial = os.path.isfile(os.path.join(folder, SCENE_FILE))
    if not partial:
        _swap_in_check(folder, splits, extra)
    shape = builtin.generate_object(synset, index, seed=seed, num_points=1, num_surface_points=1)["shape"]
    os.makedirs(folder, exist_ok=True)
    _clean_tmp(folder)
    tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder)
    try:
        views_dir = os.path.join(tmp, "multiview")
        multiview.write_multiview(
            shape,
            views_dir,
            n_views=n_views,
            resolution=(height, width),
            seed=[seed, index],
            progress=progress,
            texture=texture,
            info={"category": synset, "index": index, "seed": seed},
            **render_kwargs,
        )
        data = multiview.load_multiview(views_dir, with_depth=False)
        fov, c2ws, plan = _plan(data, splits)
        scene = os.path.join(tmp, "scene")
        os.makedirs(scene)
        _write_files(scene, data, fov, c2ws, plan)
        summary.write_json(os.path.join(scene, onet_format.SHAPE_FILE), shape.to_dict(), indent=None)
        record = {
            "version": BLENDER_SCENE_VERSION,
            "multiview_version": multiview.MULTIVIEW_VERSION,
            "params": params,
        }
        summary.write_json(os.path.join(scene, SCENE_FILE), record, indent=2)
        _swap_in(folder, scene, plan, extra, replace=partial)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
