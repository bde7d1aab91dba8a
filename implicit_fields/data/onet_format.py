"""The Occupancy Networks on-disk format: writing and validated reading.

Layout (as in ``data/ShapeNet`` of the original code)::

    DATASET/metadata.yaml                 {synset: {id: synset, name: name}}
    DATASET/<synset>/{train,val,test}.lst  one model id a line
    DATASET/<synset>/<model_id>/points.npz      points (N,3) float16, occupancies
                                                 np.packbits(bool) uint8, loc (3,), scale
    DATASET/<synset>/<model_id>/pointcloud.npz  points, normals (N,3) float16, loc, scale
    DATASET/<synset>/<model_id>/shape.json      built-in objects only: the exact normalised
                                                 shape (:func:`load_shape`)

The multi-file layout of ConvONet's scenes (its synthetic rooms, ``multi_files``) holds
several files of each kind per scene, in the scene's own frame (no ``loc`` / ``scale``)::

    DATASET/<class>/<scene_id>/points_iou/points_iou_%02d.npz   points (N,3) float16,
        occupancies np.packbits(bool), z_scale, semantics (N,) int (optional here)
    DATASET/<class>/<scene_id>/pointcloud/pointcloud_%02d.npz   points, normals (N,3) float16,
        semantics (N,) int (optional here)
    DATASET/<class>/<scene_id>/item_dict.npz                    the scene's recipe

:func:`detect_layout` tells the two layouts apart from the files an object folder holds;
:func:`multi_files` lists a scene's numbered files.

Camera matrices of rendered views are stored in the original's ``cameras.npz`` (DVR's
layout: ``world_mat_i``, ``camera_mat_i``, ``scale_mat_i`` and their inverses;
:func:`save_cameras`, :func:`load_cameras`), beside the images of an ``img_choy2016/``
folder or of a multi-view folder (:mod:`implicit_fields.data.multiview`). The matrices
follow the convention of :mod:`implicit_fields.cameras`.

Readers validate everything and raise :class:`DataFormatError` with the file path and the
problem in the message. Every ``.npz`` / ``.npy`` goes through :func:`open_npz` /
:func:`load_npy`, which check the file's signature first and never load pickled objects
(random bytes are "not a valid .npz file", not numpy's hint to load them unsafely).
Loading never adds jitter (the original loader's 1e-4 noise belongs to the point sampler).
"""

import io
import json
import os

import numpy as np
import yaml

from implicit_fields.data.shapes import Shape, category_synset

__all__ = [
    "DataFormatError",
    "POINTS_FILE",
    "POINTCLOUD_FILE",
    "METADATA_FILE",
    "SPLITS",
    "write_points_npz",
    "load_points_npz",
    "write_pointcloud_npz",
    "load_pointcloud_npz",
    "read_split",
    "write_split",
    "read_metadata",
    "write_metadata",
    "SHAPE_FILE",
    "TMP_PREFIX",
    "load_shape",
    "object_folders",
    "save_cameras",
    "load_cameras",
    "open_npz",
    "npz_array",
    "load_npz",
    "load_npy",
    "LAYOUT_ONET",
    "LAYOUT_MULTI",
    "POINTS_IOU_DIR",
    "MULTI_POINTCLOUD_DIR",
    "ITEM_DICT_FILE",
    "detect_layout",
    "multi_file",
    "multi_files",
    "write_points_iou_npz",
    "load_points_iou_npz",
    "write_multi_pointcloud_npz",
    "load_multi_pointcloud_npz",
]

POINTS_FILE = "points.npz"
POINTCLOUD_FILE = "pointcloud.npz"
METADATA_FILE = "metadata.yaml"
SPLITS = ("train", "val", "test")
SHAPE_FILE = "shape.json"
"""A built-in object's exact normalised shape (``Shape.to_dict()`` plus how it was made)."""
TMP_PREFIX = ".tmp-"
"""Prefix of the temporary folders that writers fill and then rename into place; readers
skip them."""

# The keys of a camera dict, as implicit_fields.cameras.CAMERA_KEYS (not imported from
# there: that module imports JAX, which reading data does not need).
_CAMERA_KEYS = ("camera_mat", "world_mat", "scale_mat")


class DataFormatError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


# --------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------


def _fail(path, problem):
    raise DataFormatError(f"{os.fspath(path)}: {problem}")


def _check_points(path, name, array):
    a = np.asarray(array)
    if a.ndim != 2 or a.shape[1] != 3:
        _fail(path, f"'{name}' must have shape (N, 3), got {a.shape} ({a.dtype})")
    if a.shape[0] == 0:
        _fail(path, f"'{name}' is empty (shape {a.shape})")
    if not np.issubdtype(a.dtype, np.floating):
        _fail(path, f"'{name}' must be floating point, got dtype {a.dtype}")
    finite = np.isfinite(a)
    if not finite.all():
        bad = int((~finite.all(axis=1)).sum())
        _fail(path, f"'{name}' contains NaN/inf values ({bad} of {a.shape[0]} rows)")
    return a


def _check_loc_scale(path, loc, scale):
    loc = np.asarray(loc)
    scale = np.asarray(scale)
    if loc.shape != (3,) or not np.issubdtype(loc.dtype, np.number):
        _fail(path, f"'loc' must be a numeric (3,) array, got shape {loc.shape} ({loc.dtype})")
    if scale.size != 1 or scale.ndim > 1 or not np.issubdtype(scale.dtype, np.number):
        _fail(path, f"'scale' must be a numeric scalar, got shape {scale.shape} ({scale.dtype})")
    if not np.all(np.isfinite(loc)):
        _fail(path, f"'loc' contains NaN/inf values: {loc.tolist()}")
    s = float(scale.reshape(()))
    if not (np.isfinite(s) and s > 0.0):
        _fail(path, f"'scale' must be finite and > 0, got {s}")
    return loc.astype(np.float64), s


def _to_float16(path, name, array):
    a = np.asarray(array, dtype=np.float64)
    with np.errstate(over="ignore"):
        h = a.astype(np.float16)
    if not np.all(np.isfinite(h)):
        _fail(path, f"'{name}' overflows float16 (|value| > 65504)")
    return h


def _write_npz(path, **arrays):
    """np.savez to exactly ``path`` (np.savez would append '.npz' to other names)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # A zip with members, an empty zip.
_NPY_SIGNATURE = b"\x93NUMPY"


def _numpy_problem(error):
    """A numpy reader's error as text, without numpy's hint about loading pickled data."""
    text = f"{type(error).__name__}: {error}"
    if "pickle" in text.lower():
        return "it holds Python objects (pickled data), not plain arrays; such files are never loaded"
    return text


def _check_signature(path, kind):
    """Fail unless ``path`` is a non-empty regular file that starts like a ``kind`` file.

    Args:
        path: the file.
        kind: '.npz' (a zip archive) or '.npy'.
    """
    if not os.path.exists(path):
        _fail(path, "file not found")
    if not os.path.isfile(path):
        _fail(path, "not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        _fail(path, f"cannot read the file ({type(e).__name__}: {e.strerror or e})")
    if not head:
        _fail(path, f"not a valid {kind} file (the file is empty)")
    if kind == ".npz":
        if not any(head.startswith(sig) for sig in _ZIP_SIGNATURES):
            what = "a single .npy array" if head.startswith(_NPY_SIGNATURE) else f"bytes {head[:4]!r}"
            _fail(path, f"not a valid .npz file (it starts with {what}, not the zip signature of an .npz)")
    elif not head.startswith(_NPY_SIGNATURE):
        what = "a zip archive (.npz)" if head[:4] in _ZIP_SIGNATURES else f"bytes {head[:6]!r}"
        _fail(path, f"not a valid .npy file (it starts with {what}, not the .npy signature)")


def open_npz(path):
    """Opens an ``.npz`` archive for reading (use it in a ``with`` statement).

    Never loads pickled objects; every problem is a :class:`DataFormatError` that names the
    file (no numpy hint about ``allow_pickle``).

    Args:
        path: the file.

    Returns:
        ``np.lib.npyio.NpzFile`` (read its arrays with :func:`npz_array`).

    Raises:
        DataFormatError: a missing, empty or unreadable file, or one that is not an .npz.
    """
    path = os.fspath(path)
    _check_signature(path, ".npz")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - zipfile, OSError, EOFError, ValueError on bad input.
        _fail(path, f"not a valid .npz file ({_numpy_problem(e)})")
    if not isinstance(data, np.lib.npyio.NpzFile):
        _fail(path, f"not a valid .npz file (it holds a single {type(data).__name__}, not a zip)")
    return data


def npz_array(path, data, key):
    """One array of an open ``.npz`` (:func:`open_npz`); a corrupt member names the file and key."""
    try:
        return data[key]
    except Exception as e:  # noqa: BLE001 - truncated or corrupt member: zipfile/zlib/ValueError.
        problem = _numpy_problem(e)
        _fail(os.fspath(path), f"cannot read key '{key}' (corrupt, truncated or not an array: {problem})")


def load_npz(path):
    """Every array of an ``.npz`` file, validated as :func:`open_npz` (no pickled objects).

    Returns:
        dict key -> ndarray.

    Raises:
        DataFormatError: naming the file and the problem.
    """
    with open_npz(path) as data:
        return {k: npz_array(path, data, k) for k in data.files}


def load_npy(path):
    """The array of an ``.npy`` file (no pickled objects).

    Raises:
        DataFormatError: a missing, empty, truncated or unreadable file, or not an .npy.
    """
    path = os.fspath(path)
    _check_signature(path, ".npy")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - truncated header or data, bad version, object arrays.
        _fail(path, f"not a valid .npy file ({_numpy_problem(e)})")


def _load_npz(path, required, optional=()):
    """Open an npz, check its keys and read them all.

    Returns:
        dict key -> ndarray for the ``required`` keys and the ``optional`` keys present.
    """
    path = os.fspath(path)
    with open_npz(path) as data:
        found = sorted(data.files)
        missing = [k for k in required if k not in found]
        if missing:
            _fail(path, f"missing key(s) {missing}; keys found: {found}")
        return {k: npz_array(path, data, k) for k in list(required) + [k for k in optional if k in found]}


# --------------------------------------------------------------------------------------
# points.npz and pointcloud.npz.
# --------------------------------------------------------------------------------------


def write_points_npz(path, points, occupancies, loc, scale, num_uniform=None):
    """Write ``points.npz`` exactly as the original ``sample_mesh.py --packbits --float16``.

    Args:
        path: file path (written as given, no suffix added).
        points: (N, 3) float, stored as float16.
        occupancies: (N,) bool (or 0/1), stored as ``np.packbits`` uint8 (ceil(N / 8),).
        loc: (3,) float, stored as float64.
        scale: float > 0, stored as a float64 scalar.
        num_uniform: optional int in [0, N], stored as the extra key ``num_uniform``
            (ours, see `load_points_npz`); None writes the original's keys only.
    """
    pts = _check_points(path, "points", points)
    occ = np.asarray(occupancies)
    if occ.shape != (pts.shape[0],):
        _fail(path, f"'occupancies' must have shape ({pts.shape[0]},), got {occ.shape}")
    if occ.dtype != np.bool_:
        if not np.all((occ == 0) | (occ == 1)):
            _fail(path, "'occupancies' must be boolean (0/1)")
        occ = occ.astype(bool)
    loc, scale = _check_loc_scale(path, loc, scale)
    extra = {}
    if num_uniform is not None:
        if not 0 <= int(num_uniform) <= pts.shape[0]:
            _fail(path, f"'num_uniform' must be in [0, {pts.shape[0]}], got {num_uniform}")
        extra["num_uniform"] = np.int64(num_uniform)
    _write_npz(
        path,
        points=_to_float16(path, "points", pts),
        occupancies=np.packbits(occ),
        loc=loc,
        scale=np.float64(scale),
        **extra,
    )


def _unpack_occupancies(path, occ, n):
    """Stored occupancies (packbits uint8 or (n,) bool) -> (n,) bool, validated."""
    if occ.dtype == np.bool_:
        if occ.shape != (n,):
            _fail(path, f"boolean 'occupancies' must have shape ({n},), got {occ.shape}")
        return occ
    if occ.dtype == np.uint8:
        if occ.ndim != 1:
            _fail(path, f"packed 'occupancies' must be 1-D uint8, got shape {occ.shape}")
        need = (n + 7) // 8
        if occ.size < need:
            _fail(
                path,
                f"packed 'occupancies' too short: {occ.size} bytes for {n} points (need {need})",
            )
        return np.unpackbits(occ)[:n].astype(bool)
    _fail(path, f"'occupancies' must be packbits uint8 or bool, got dtype {occ.dtype}")


def load_points_npz(path):
    """Read and validate a ``points.npz``.

    Occupancies may be packed (uint8, ``np.packbits``) as in the released data, or a plain
    (N,) bool array (the original script without ``--packbits``).

    Args:
        path: file path.

    Returns:
        dict with ``points`` (N, 3) float32, ``occupancies`` (N,) bool, ``loc`` (3,)
        float64 and ``scale`` float; plus ``num_uniform`` int when the file has that key
        (files of :mod:`implicit_fields.data.prepare`: the first ``num_uniform`` points
        are uniform in the box, the rest near the surface).

    Raises:
        DataFormatError: naming ``path`` and the problem.
    """
    d = _load_npz(path, ("points", "occupancies", "loc", "scale"), optional=("num_uniform",))
    pts = _check_points(path, "points", d["points"])
    n = pts.shape[0]
    occ = _unpack_occupancies(path, d["occupancies"], n)
    loc, scale = _check_loc_scale(path, d["loc"], d["scale"])
    out = {"points": pts.astype(np.float32), "occupancies": occ, "loc": loc, "scale": scale}
    if "num_uniform" in d:
        nu = np.asarray(d["num_uniform"])
        if nu.shape != () or not np.issubdtype(nu.dtype, np.integer) or not 0 <= int(nu) <= n:
            _fail(path, f"'num_uniform' must be an integer in [0, {n}], got {nu.dtype} {nu.shape}: {nu}")
        out["num_uniform"] = int(nu)
    return out


def write_pointcloud_npz(path, points, normals, loc, scale):
    """Write ``pointcloud.npz`` (float16 points and normals, as the original).

    Args:
        path: file path (written as given).
        points: (N, 3) float surface points.
        normals: (N, 3) float normals.
        loc: (3,) float.
        scale: float > 0.
    """
    pts = _check_points(path, "points", points)
    nrm = _check_points(path, "normals", normals)
    if nrm.shape != pts.shape:
        _fail(path, f"'normals' shape {nrm.shape} does not match 'points' shape {pts.shape}")
    loc, scale = _check_loc_scale(path, loc, scale)
    _write_npz(
        path,
        points=_to_float16(path, "points", pts),
        normals=_to_float16(path, "normals", nrm),
        loc=loc,
        scale=np.float64(scale),
    )


def load_pointcloud_npz(path):
    """Read and validate a ``pointcloud.npz``.

    Args:
        path: file path.

    Returns:
        dict with ``points`` (N, 3) float32, ``normals`` (N, 3) float32 (as stored, not
        renormalised), ``loc`` (3,) float64 and ``scale`` float.

    Raises:
        DataFormatError: naming ``path`` and the problem.
    """
    d = _load_npz(path, ("points", "normals", "loc", "scale"))
    pts = _check_points(path, "points", d["points"])
    nrm = _check_points(path, "normals", d["normals"])
    if nrm.shape != pts.shape:
        _fail(path, f"'normals' shape {nrm.shape} does not match 'points' shape {pts.shape}")
    loc, scale = _check_loc_scale(path, d["loc"], d["scale"])
    return {
        "points": pts.astype(np.float32),
        "normals": nrm.astype(np.float32),
        "loc": loc,
        "scale": scale,
    }


# --------------------------------------------------------------------------------------
# The multi-file layout (ConvONet scenes).
# --------------------------------------------------------------------------------------

LAYOUT_ONET = "onet"
"""An object folder with ``points.npz`` and ``pointcloud.npz``."""
LAYOUT_MULTI = "multi"
"""A scene folder with ``points_iou/points_iou_XX.npz`` and ``pointcloud/pointcloud_XX.npz``."""
POINTS_IOU_DIR = "points_iou"
MULTI_POINTCLOUD_DIR = "pointcloud"
ITEM_DICT_FILE = "item_dict.npz"
"""A synthetic room's recipe (the original's ``item_dict.npz``)."""


def detect_layout(folder):
    """The layout of one object folder, from the files it holds.

    Returns:
        :data:`LAYOUT_ONET` when it has ``points.npz``, else :data:`LAYOUT_MULTI` when it
        has a ``points_iou/`` or ``pointcloud/`` folder, else None.
    """
    folder = os.fspath(folder)
    if os.path.isfile(os.path.join(folder, POINTS_FILE)):
        return LAYOUT_ONET
    if any(os.path.isdir(os.path.join(folder, d)) for d in (POINTS_IOU_DIR, MULTI_POINTCLOUD_DIR)):
        return LAYOUT_MULTI
    return None


def multi_file(folder, kind, index):
    """Path of file ``index`` of a kind (``POINTS_IOU_DIR`` or ``MULTI_POINTCLOUD_DIR``) of a scene."""
    return os.path.join(os.fspath(folder), kind, f"{kind}_{int(index):02d}.npz")


def multi_files(folder, kind):
    """The numbered files of one kind of a scene, ``<kind>/<kind>_00.npz`` onwards.

    Args:
        folder: the scene folder.
        kind: ``POINTS_IOU_DIR`` or ``MULTI_POINTCLOUD_DIR``.

    Returns:
        list of paths, file 0 first.

    Raises:
        DataFormatError: the sub-folder is missing or has no such files, or they are not
            numbered 00 .. K-1 (the message names the folder and the numbers found).
    """
    sub = os.path.join(os.fspath(folder), kind)
    if not os.path.isdir(sub):
        _fail(sub, f"folder not found (a scene of the multi-file layout needs {kind}/{kind}_00.npz ...)")
    prefix, numbers = f"{kind}_", []
    for name in os.listdir(sub):
        stem, ext = os.path.splitext(name)
        if ext == ".npz" and stem.startswith(prefix) and stem[len(prefix) :].isdigit():
            numbers.append(int(stem[len(prefix) :]))
    numbers.sort()
    if not numbers:
        _fail(sub, f"no {kind}_XX.npz files")
    if numbers != list(range(len(numbers))):
        _fail(sub, f"{kind}_XX.npz files must be numbered 00 .. {len(numbers) - 1:02d}, found {numbers}")
    return [multi_file(folder, kind, i) for i in numbers]


def _check_semantics(path, semantics, n):
    sem = np.asarray(semantics)
    if sem.shape != (n,) or not np.issubdtype(sem.dtype, np.integer):
        _fail(path, f"'semantics' must be an integer ({n},) array, got {sem.dtype} {sem.shape}")
    return sem


def write_points_iou_npz(path, points, occupancies, semantics, z_scale=0.0):
    """Write a ``points_iou_XX.npz`` as the original's synthetic-room script does.

    Args:
        path: file path (written as given).
        points: (N, 3) float, stored as float16.
        occupancies: (N,) bool, stored as ``np.packbits`` uint8.
        semantics: (N,) int, a label per point, stored as int64.
        z_scale: float, stored as a float64 scalar (the original's rooms: 0, no rescaling).
    """
    pts = _check_points(path, "points", points)
    occ = np.asarray(occupancies)
    if occ.shape != (pts.shape[0],) or occ.dtype != np.bool_:
        _fail(path, f"'occupancies' must be a bool ({pts.shape[0]},) array, got {occ.dtype} {occ.shape}")
    sem = _check_semantics(path, semantics, pts.shape[0])
    _write_npz(
        path,
        points=_to_float16(path, "points", pts),
        occupancies=np.packbits(occ),
        z_scale=np.float64(z_scale),
        semantics=sem.astype(np.int64),
    )


def load_points_iou_npz(path):
    """Read and validate a ``points_iou_XX.npz`` of the multi-file layout.

    Returns:
        dict with ``points`` (N, 3) float32, ``occupancies`` (N,) bool, and ``semantics``
        (N,) int64 and ``z_scale`` float when the file has them.

    Raises:
        DataFormatError: naming ``path`` and the problem.
    """
    d = _load_npz(path, ("points", "occupancies"), optional=("semantics", "z_scale"))
    pts = _check_points(path, "points", d["points"])
    out = {
        "points": pts.astype(np.float32),
        "occupancies": _unpack_occupancies(path, d["occupancies"], pts.shape[0]),
    }
    if "semantics" in d:
        out["semantics"] = _check_semantics(path, d["semantics"], pts.shape[0]).astype(np.int64)
    if "z_scale" in d:
        z = np.asarray(d["z_scale"])
        if z.size != 1 or not np.issubdtype(z.dtype, np.number) or not np.isfinite(z).all():
            _fail(path, f"'z_scale' must be a finite number, got {z.dtype} {z.shape}")
        out["z_scale"] = float(z.reshape(()))
    return out


def write_multi_pointcloud_npz(path, points, normals, semantics):
    """Write a ``pointcloud_XX.npz`` of the multi-file layout (float16 points and normals).

    Args:
        path: file path (written as given).
        points: (N, 3) float surface points.
        normals: (N, 3) float normals.
        semantics: (N,) int, a label per point, stored as int64.
    """
    pts = _check_points(path, "points", points)
    nrm = _check_points(path, "normals", normals)
    if nrm.shape != pts.shape:
        _fail(path, f"'normals' shape {nrm.shape} does not match 'points' shape {pts.shape}")
    sem = _check_semantics(path, semantics, pts.shape[0])
    _write_npz(
        path,
        points=_to_float16(path, "points", pts),
        normals=_to_float16(path, "normals", nrm),
        semantics=sem.astype(np.int64),
    )


def load_multi_pointcloud_npz(path):
    """Read and validate a ``pointcloud_XX.npz`` of the multi-file layout.

    Returns:
        dict with ``points`` and ``normals`` (N, 3) float32, and ``semantics`` (N,) int64
        when the file has it.

    Raises:
        DataFormatError: naming ``path`` and the problem.
    """
    d = _load_npz(path, ("points", "normals"), optional=("semantics",))
    pts = _check_points(path, "points", d["points"])
    nrm = _check_points(path, "normals", d["normals"])
    if nrm.shape != pts.shape:
        _fail(path, f"'normals' shape {nrm.shape} does not match 'points' shape {pts.shape}")
    out = {"points": pts.astype(np.float32), "normals": nrm.astype(np.float32)}
    if "semantics" in d:
        out["semantics"] = _check_semantics(path, d["semantics"], pts.shape[0]).astype(np.int64)
    return out


# --------------------------------------------------------------------------------------
# Split lists and metadata.
# --------------------------------------------------------------------------------------


def _split_path(category_dir, split):
    if not isinstance(split, str) or not split or os.sep in split or "/" in split:
        raise ValueError(f"invalid split name {split!r}")
    return os.path.join(os.fspath(category_dir), f"{split}.lst")


def check_count(name, value, minimum):
    """An integer argument >= ``minimum`` (ValueError naming ``name`` otherwise)."""
    try:
        ok = not isinstance(value, (bool, np.bool_)) and float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or int(value) < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def read_split(category_dir, split):
    """Model ids of a split, from ``<category_dir>/<split>.lst``.

    Args:
        category_dir: path of a category folder.
        split: str, e.g. ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        list[str] of model ids in file order (blank lines ignored).

    Raises:
        DataFormatError: the file is missing, unreadable, empty or has malformed ids.
    """
    path = _split_path(category_dir, split)
    if not os.path.isfile(path):
        _fail(path, f"split file not found (split {split!r})")
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        _fail(path, f"cannot read split file ({type(e).__name__}: {e})")
    ids = [line.strip() for line in lines if line.strip()]
    if not ids:
        _fail(path, f"split file is empty (split {split!r} has no model ids)")
    for i, model_id in enumerate(ids):
        if any(c.isspace() for c in model_id) or "/" in model_id or "\\" in model_id:
            _fail(path, f"malformed model id {model_id!r} (entry {i + 1})")
    return ids


def write_split(category_dir, split, model_ids):
    """Write ``<category_dir>/<split>.lst`` (one id a line), atomically.

    Args:
        category_dir: path of an existing category folder.
        split: str split name.
        model_ids: iterable of str ids (an empty list writes an empty file, which
            :func:`read_split` rejects).
    """
    path = _split_path(category_dir, split)
    ids = [str(m) for m in model_ids]
    for model_id in ids:
        if not model_id or any(c.isspace() for c in model_id) or "/" in model_id:
            raise ValueError(f"{path}: malformed model id {model_id!r}")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(f"{m}\n" for m in ids))
    os.replace(tmp, path)


def read_metadata(dataset_dir):
    """Read ``<dataset_dir>/metadata.yaml``.

    All scalars are read as strings, so synset ids such as ``03001627`` never turn into
    (octal) integers.

    Args:
        dataset_dir: path of the dataset root.

    Returns:
        dict ``{synset_id: {"id": synset_id, "name": name}}`` in file order.

    Raises:
        DataFormatError: the file is missing, not YAML, or not of that form.
    """
    path = os.path.join(os.fspath(dataset_dir), METADATA_FILE)
    if not os.path.isfile(path):
        _fail(path, "metadata file not found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.load(f, Loader=yaml.BaseLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        _fail(path, f"malformed metadata.yaml ({type(e).__name__}: {e})")
    if not isinstance(data, dict) or not data:
        kind = "empty" if not data else f"a {type(data).__name__}"
        _fail(path, f"malformed metadata.yaml: expected a non-empty mapping, got {kind}")
    out = {}
    for key, value in data.items():
        if not isinstance(value, dict):
            _fail(path, f"malformed metadata.yaml: entry {key!r} must be a mapping with 'name'")
        if "name" not in value or not isinstance(value["name"], str) or not value["name"]:
            _fail(path, f"malformed metadata.yaml: entry {key!r} has no 'name'")
        if "id" in value and value["id"] != key:
            _fail(path, f"malformed metadata.yaml: entry {key!r} has id {value['id']!r}")
        out[key] = {"id": key, "name": value["name"]}
    return out


def write_metadata(dataset_dir, categories):
    """Write ``<dataset_dir>/metadata.yaml`` in the original form, atomically.

    Args:
        dataset_dir: path of an existing dataset root.
        categories: dict ``{synset_id: name}``.
    """
    data = {str(k): {"id": str(k), "name": str(v)} for k, v in categories.items()}
    path = os.path.join(os.fspath(dataset_dir), METADATA_FILE)
    buf = io.StringIO()
    yaml.safe_dump(data, buf, default_flow_style=False, sort_keys=False)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Built-in objects (shape.json).
# --------------------------------------------------------------------------------------


def load_shape(object_folder):
    """The exact normalised shape of a built-in object (its ``shape.json``).

    Args:
        object_folder: ``DATASET/<synset>/<model_id>``.

    Returns:
        :class:`~implicit_fields.data.shapes.Shape` in the object's normalised coordinates
        (those of ``points.npz``).

    Raises:
        DataFormatError: a missing or invalid ``shape.json`` (the message names it).
    """
    path = os.path.join(os.fspath(object_folder), SHAPE_FILE)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return Shape.from_dict(json.load(f))
    except FileNotFoundError as e:
        raise DataFormatError(f"{path}: file not found (not a built-in object?)") from e
    except (ValueError, TypeError, KeyError) as e:
        raise DataFormatError(f"{path}: not a valid shape ({e})") from e


def object_folders(dataset_dir, categories=None):
    """(synset, model id, folder) of every built-in object (a folder with shape.json).

    Args:
        dataset_dir: dataset root.
        categories: None for every category folder, or names/synsets (str or list).

    Raises:
        DataFormatError: a requested category folder is missing.
    """
    dataset_dir = os.fspath(dataset_dir)
    if categories is None:
        synsets = sorted(
            d
            for d in os.listdir(dataset_dir)
            if os.path.isdir(os.path.join(dataset_dir, d)) and not d.startswith(".")
        )
    else:
        if isinstance(categories, str):
            categories = [categories]
        synsets = [category_synset(c) for c in categories]
    out = []
    for synset in synsets:
        cat_dir = os.path.join(dataset_dir, synset)
        if not os.path.isdir(cat_dir):
            raise DataFormatError(f"{cat_dir}: category folder not found")
        for entry in sorted(os.listdir(cat_dir)):
            folder = os.path.join(cat_dir, entry)
            if not entry.startswith(TMP_PREFIX) and os.path.isfile(os.path.join(folder, SHAPE_FILE)):
                out.append((synset, entry, folder))
    return out


# --------------------------------------------------------------------------------------
# cameras.npz.
# --------------------------------------------------------------------------------------


def _stack(cams, key, default=None):
    m = cams.get(key, default)
    if m is None:
        raise ValueError(f"camera dict is missing {key!r}")
    m = np.asarray(m, dtype=np.float64)
    return m[None] if m.ndim == 2 else m


def save_cameras(path, cams):
    """Writes ``cameras.npz`` in the original's layout (atomically).

    Keys per view ``i``: ``world_mat_i``, ``camera_mat_i``, ``scale_mat_i`` and their
    inverses ``world_mat_inv_i``, ``camera_mat_inv_i``, ``scale_mat_inv_i`` (the DVR
    ShapeNet renderings and the DTU files carry these too), float64 (4, 4).

    Args:
        path: output file.
        cams: dict with ``camera_mat``, ``world_mat`` and optionally ``scale_mat``
            (identity when missing), each (4, 4) or (V, 4, 4).
    """
    cm = _stack(cams, "camera_mat")
    wm = _stack(cams, "world_mat")
    sm = _stack(cams, "scale_mat", np.eye(4))
    if sm.shape[0] == 1 and cm.shape[0] > 1:
        sm = np.repeat(sm, cm.shape[0], axis=0)
    if not (cm.shape == wm.shape == sm.shape and cm.shape[1:] == (4, 4)):
        raise ValueError(
            f"camera matrices must be (V, 4, 4) of equal V, got camera_mat {cm.shape}, "
            f"world_mat {wm.shape}, scale_mat {sm.shape}"
        )
    arrays = {}
    for i in range(cm.shape[0]):
        for name, m in (("world_mat", wm[i]), ("camera_mat", cm[i]), ("scale_mat", sm[i])):
            arrays[f"{name}_{i}"] = m
            arrays[f"{name}_inv_{i}"] = np.linalg.inv(m)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _check_matrix(path, key, m):
    m = np.asarray(m)
    if m.shape == (3, 4):  # A bare 3x4 projection / extrinsics: pad the affine row.
        m = np.concatenate([m, np.array([[0.0, 0.0, 0.0, 1.0]])], axis=0)
    if m.shape != (4, 4):
        raise DataFormatError(f"{path}: '{key}' must have shape (4, 4), got {m.shape}")
    if not np.issubdtype(m.dtype, np.number):
        raise DataFormatError(f"{path}: '{key}' must be numeric, got dtype {m.dtype}")
    m = m.astype(np.float64)
    if not np.all(np.isfinite(m)):
        raise DataFormatError(f"{path}: '{key}' contains NaN/inf values")
    scale = max(float(np.abs(m[3]).max()), 1e-300)
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6 * scale, rtol=0.0):
        raise DataFormatError(
            f"{path}: '{key}' must be affine (last row [0, 0, 0, 1]), got last row {m[3].tolist()}"
        )
    cond = np.linalg.cond(m)
    if not np.isfinite(cond) or cond > 1e12:
        raise DataFormatError(f"{path}: '{key}' is singular (condition number {cond:.3g})")
    return m


def load_cameras(path, n=None):
    """Reads and validates ``cameras.npz`` (original layout).

    Args:
        path: the ``cameras.npz`` file.
        n: number of views to read (views 0 .. n-1); None reads views 0, 1, ... as long
            as ``world_mat_i`` exists.

    Returns:
        dict with ``camera_mat``, ``world_mat``, ``scale_mat``: (V, 4, 4) float64
        (``scale_mat`` is the identity where ``scale_mat_i`` is missing, as in the
        original loader). 3x4 matrices are padded with the row [0, 0, 0, 1].

    Raises:
        DataFormatError: naming the file and the problem: missing file or key, wrong
            shape, non-finite entries, non-affine or singular matrix.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataFormatError(f"{path}: camera file not found")
    arrays = load_npz(path)
    if n is None:
        n = 0
        while f"world_mat_{n}" in arrays:
            n += 1
        if n == 0:
            raise DataFormatError(f"{path}: no 'world_mat_0' key (keys: {sorted(arrays)[:8]})")
    n = int(n)
    out = {k: [] for k in _CAMERA_KEYS}
    for i in range(n):
        for name in ("world_mat", "camera_mat", "scale_mat"):
            key = f"{name}_{i}"
            if key not in arrays:
                if name == "scale_mat":
                    out[name].append(np.eye(4))
                    continue
                raise DataFormatError(f"{path}: missing key '{key}' (need {n} views)")
            out[name].append(_check_matrix(path, key, arrays[key]))
    return {k: np.stack(v) if v else np.zeros((0, 4, 4)) for k, v in out.items()}
