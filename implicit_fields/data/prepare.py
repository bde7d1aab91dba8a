"""Turning a folder of real meshes (OFF, OBJ, PLY, STL) into the Occupancy Networks layout.

::

    DATASET/metadata.yaml                       one category (id and name given)
    DATASET/<category>/{train,val,test}.lst     seeded random permutation of the converted ids
    DATASET/<category>/<model_id>/points.npz     occupancy points, see below
    DATASET/<category>/<model_id>/pointcloud.npz surface points with face normals
    DATASET/<category>/<model_id>/model.binvox   32^3 voxels over [-0.5, 0.5]^3 (xyz order)
    DATASET/<category>/<model_id>/mesh.json      source file, loc, scale, labeller, checks
    DATASET/<category>/<model_id>/img_choy2016/  renderings 000.png ... with cameras.npz
    DATASET/<category>/prepare.json             the parameters and split fractions (see Reruns)
    DATASET/prepare_report.json                  converted and skipped meshes (with reasons)

**Normalisation** follows the original's ``scripts/sample_mesh.py``: ``loc`` is the centre
of the mesh's bounding box, ``scale`` its largest extent, and everything stored is
``(world - loc) / scale`` (so ``points * scale + loc`` gives world coordinates back);
``loc`` and ``scale`` are saved in ``points.npz`` and ``pointcloud.npz``.

**Occupancy points** (``points.npz``): the first ``num_uniform`` (default: half) are uniform
in the cube of side 1.1 (the original's padding 0.1), the rest are surface samples plus
N(0, ``surface_sigma``^2) noise (sigma 0.01 in normalised units, the original's surface
sampling). The uniform part comes first and its size is stored as the extra key
``num_uniform``; the mesh evaluation (:mod:`implicit_fields.evaluation`) and the
validation IoU of training measure IoU on those uniform points only, as the original does
on ShapeNet's all-uniform files (:func:`implicit_fields.data.datasets.iou_points`), while
training samples from all of them. Readers that only know
``points``/``occupancies``/``loc``/``scale`` ignore the key. Labels are
computed at the float16-rounded coordinates that are stored, so rounding never flips one.

**Inside test.** Two independent tests:

* the generalised winding number ``w(p) = sum_t Omega_t(p) / (4 pi)`` (solid angles of the
  triangles, Van Oosterom and Strackee's formula; vectorised numpy in chunks), inside when
  ``|w| > 0.5``. It is exact on closed meshes whatever their orientation, and degrades
  gracefully with small holes (a missing face only moves ``w`` by its solid angle);
* ray parity (:func:`implicit_fields.inside_mesh.contains`) along each of the three axes
  with a majority vote; a small hole flips at most the rays that pass through it.

The winding number costs O(points x faces) (measured: about 15 million point-triangle
pairs a second on one CPU core), so it labels all points when ``points x faces <=
winding_budget`` (3e7: meshes up to 300 faces for 100k points) and the three-axis vote
(hash-accelerated: 0.5 s for 100k points on a 1,280-face sphere) labels larger meshes. Either way both tests
are evaluated on a check set of uniform points (4,096, or ``3e7 / faces`` but at least 512 for large meshes)
and the mesh is **broken, reported and skipped** when

* it cannot be read, has no faces, non-finite or all-degenerate triangles, or a zero extent;
* more than ``ambiguous_tolerance`` (1%) of the check points have an ambiguous winding
  number (``0.25 < |w| < 0.75``: the surface is open, e.g. a patch or a large hole);
* the two tests disagree on more than ``disagreement_tolerance`` (1%) of the check points
  (large holes, self-intersections, nested or inconsistent shells);
* it encloses (almost) no volume (fewer than 0.1% of the check points inside).

**Renderings** (``img_choy2016/``, the input of the single-image model; ``render_views``
0 turns them off) are written exactly as the built-in dataset's
(:func:`implicit_fields.data.builtin.write_images`: ``000.png`` ... on a white background,
``cameras.npz`` in the DVR convention of :mod:`implicit_fields.cameras`, ``images.json``):
``render_views`` views (default 24, as the original) of ``render_resolution`` pixels
(default 64; the original's are 137, resized to 224 when loaded) of the normalised mesh,
rasterised by :mod:`implicit_fields.data.mesh_render` with the built-in renders' shading
and a random per-object colour. Cameras are :func:`implicit_fields.cameras.sample_views`
at distance 2, elevations 10..40 degrees, with the focal length fitted to the mesh's
bounding sphere about the origin (as the built-in renders); cameras and colour derive
from the object's seed.

**Arguments** are all checked before any work (:class:`ArgumentError` names the bad one).

**Reruns.** Objects are written to a temporary folder and renamed when complete; a rerun
skips the objects already there (the skipped meshes are tried again) and adds
renderings to objects that lack them, so an interrupted run completes. The parameters
that decide an object's files (seed, point counts, surface fraction and sigma, voxel
resolution, render views and resolution) are recorded in its ``mesh.json`` (with a
CRC of its source mesh), and with the split fractions in ``<category>/prepare.json``. A
rerun with other values, or with a changed source mesh, stops before any work with
:class:`ParameterMismatchError`, which lists each differing parameter (old -> new) and
the objects concerned; with ``rebuild`` (``--rebuild``) those objects are converted again
(only their renderings when only the rendering parameters differ; with 0 views those
are removed) and the splits rewritten. Nothing else is touched: an object whose mesh now
fails keeps its old files and is left out of the splits (reported as ``rebuild_failed``).

**Small datasets.** A split that would get no object (one or two meshes for three
splits, or a fraction of 0) reuses the train objects (all objects when train itself
gets none), so that training (train and val) and evaluation (test) run even on one
mesh, e.g. to overfit it; the report's ``reused_splits`` and the printed summary say
so. The splits, the report, ``prepare.json`` and ``metadata.yaml`` are written last.
"""

import json
import multiprocessing
import os
import re
import shutil
import time
import zlib

import numpy as np
from tqdm import tqdm

from implicit_fields import cameras as cam_lib
from implicit_fields import inside_mesh, metrics
from implicit_fields.data import binvox, builtin, mesh_render, onet_format, shape_render

__all__ = [
    "MESH_EXTENSIONS",
    "MeshError",
    "ArgumentError",
    "ParameterMismatchError",
    "find_meshes",
    "load_mesh",
    "normalize_mesh",
    "winding_number",
    "contains_ray_vote",
    "label_points",
    "check_inside_tests",
    "voxelize_mesh",
    "render_mesh_images",
    "prepare_object",
    "prepare_dataset",
]

MESH_EXTENSIONS = (".off", ".obj", ".ply", ".stl")
REPORT_FILE = "prepare_report.json"
MESH_INFO_FILE = "mesh.json"
PREPARE_VERSION = 1
_TMP_PREFIX = ".tmp-"
_BOX_SIZE = 1.1  # Side of the cube of uniform points (the original's padding 0.1).
_IMAGE_SEED_TAG = 2016  # Mixed into the object seed for the renderings' cameras and colour.


class MeshError(ValueError):
    """A mesh is unusable; the message says why (it is reported and skipped)."""


# --------------------------------------------------------------------------------------
# Loading and normalisation.
# --------------------------------------------------------------------------------------


def load_mesh(path):
    """Read a triangle mesh (scenes are concatenated, polygons triangulated).

    The raw file is checked first: non-finite vertex coordinates, no faces and face
    indices outside the vertex list are reported as such (before trimesh's processing,
    which would silently drop the faces at a NaN vertex and leave an open mesh). Then
    duplicate vertices are merged and degenerate (zero-area) triangles dropped.

    Args:
        path: .off, .obj, .ply or .stl file.

    Returns:
        (vertices float64 [V, 3], faces int64 [F, 3]).

    Raises:
        MeshError: a missing, empty or unreadable file, non-finite vertex coordinates, no
            faces, face indices out of range, or only degenerate faces.
    """
    import trimesh  # imported lazily: only mesh preparation needs it

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MeshError("file not found" if not os.path.exists(path) else "not a regular file")
    if os.path.getsize(path) == 0:
        raise MeshError("empty file (0 bytes)")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".obj":
        _check_obj_zero_index(path)  # trimesh would read index 0 as some other vertex.
    plain_reader = {".off": _read_off, ".obj": _read_obj}.get(ext)
    try:
        with np.errstate(all="ignore"):  # Normals of NaN vertices; reported below.
            mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as e:  # trimesh raises many kinds on garbage input.
        if plain_reader is None:
            raise MeshError(f"cannot read the file ({type(e).__name__}: {e})") from e
        try:  # trimesh fails on some valid OFF files (polygons, per-element colours).
            vertices, faces = plain_reader(path)
        except MeshError:  # The plain reader says what is wrong (e.g. face indices).
            raise
        except Exception as e2:  # noqa: BLE001 - reported with both errors.
            raise MeshError(
                f"cannot read the file (trimesh: {type(e).__name__}: {e}; "
                f"plain reader: {type(e2).__name__}: {e2})"
            ) from e2
    else:
        if not isinstance(mesh, trimesh.Trimesh):
            raise MeshError(f"no faces (the file holds a {type(mesh).__name__}, not a triangle mesh)")
        vertices, faces = mesh.vertices, mesh.faces
    return _clean_mesh(vertices, faces)


def _check_obj_zero_index(path):
    """MeshError when an OBJ face uses vertex index 0 (OBJ indices start at 1; negative ones count back)."""
    with open(path, "rb") as f:
        data = f.read()
    zero = re.search(rb"^[ \t]*f[ \t](?:[^\n#]*?[ \t])?[+-]?0+(?=[/\s#]|$)", data, re.M)
    if zero:
        end = data.find(b"\n", zero.start())
        line = data[zero.start() : end if end >= 0 else len(data)].decode("utf-8", "replace").strip()
        raise MeshError(f"face indices out of range: OBJ indices start at 1, a face uses 0 ({line[:80]!r})")


def _check_face_indices(faces, num_vertices):
    """MeshError when a face refers to a vertex outside ``0 .. num_vertices - 1``."""
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    bad = ((faces < 0) | (faces >= num_vertices)).any(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MeshError(
            f"face indices out of range: {int(bad.sum())} of {faces.shape[0]} faces refer to vertices "
            f"outside 0..{num_vertices - 1} (face {first}: {faces[first].tolist()})"
        )


def _clean_mesh(vertices, faces):
    """Check a raw mesh (finite vertices, faces, index range), merge vertices, drop zero-area faces."""
    import trimesh

    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MeshError(
            f"non-finite vertex coordinates: {int(bad.sum())} of {vertices.shape[0]} vertices have NaN "
            f"or inf (vertex {first}: {vertices[first].tolist()})"
        )
    if faces.shape[0] == 0:
        raise MeshError(f"no faces ({vertices.shape[0]} vertices and no triangles)")
    _check_face_indices(faces, vertices.shape[0])
    mesh = trimesh.Trimesh(vertices, faces, process=True)  # Merges duplicate vertices.
    vertices = np.asarray(mesh.vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, np.int64).reshape(-1, 3)
    if faces.shape[0] == 0:
        raise MeshError("no faces left after merging duplicate vertices (all faces are degenerate)")
    tri = vertices[faces]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    extent = float(np.max(vertices.max(0) - vertices.min(0)))
    keep = area2 > 1e-12 * max(extent, 1e-300) ** 2
    if not keep.any():
        raise MeshError(f"all {faces.shape[0]} faces are degenerate (zero area)")
    return vertices, faces[keep]


def _read_off(path):
    """A plain (C/N)OFF reader: polygons are fan-triangulated, colours and comments ignored.

    Returns:
        (vertices float64 [V, 3], faces int64 [F, 3]).

    Raises:
        MeshError: face indices out of range.
        ValueError, IndexError: a malformed file.
    """
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        lines = [ln.split("#", 1)[0].split() for ln in f]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ValueError("no OFF header (the file holds only blanks and comments)")
    head = lines.pop(0)
    if not head[0].upper().endswith("OFF"):
        raise ValueError(f"no OFF header (found {head[0]!r})")
    counts = head[1:] if len(head) > 1 else lines.pop(0)
    n_vertices, n_faces = int(counts[0]), int(counts[1])
    vertices = np.array([[float(x) for x in ln[:3]] for ln in lines[:n_vertices]], np.float64)
    faces = []
    for ln in lines[n_vertices : n_vertices + n_faces]:
        idx = [int(x) for x in ln[1 : 1 + int(ln[0])]]
        faces += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
    if vertices.shape != (n_vertices, 3):
        raise ValueError(f"the header announces {n_vertices} vertices but the file holds fewer or short ones")
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    _check_face_indices(faces, n_vertices)
    return vertices, faces


def _read_obj(path):
    """A plain OBJ reader: ``v`` and ``f`` lines (``f 1/2/3 ...``, negative = relative), polygons
    fan-triangulated, everything else ignored.

    Returns:
        (vertices float64 [V, 3], faces int64 [F, 3]).

    Raises:
        MeshError: face indices out of range (OBJ indices start at 1; 0 is invalid).
        ValueError: a malformed line.
    """
    vertices, faces = [], []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            parts = line.split("#", 1)[0].split()
            if not parts or parts[0] not in ("v", "f"):
                continue
            if parts[0] == "v":
                if len(parts) < 4:
                    raise ValueError(f"line {number}: a vertex needs 3 coordinates")
                vertices.append([float(x) for x in parts[1:4]])
                continue
            idx = []
            for token in parts[1:]:
                i = int(token.split("/")[0])
                idx.append(i - 1 if i > 0 else len(vertices) + i if i < 0 else -1)
            faces += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    _check_face_indices(faces, len(vertices))
    return np.asarray(vertices, np.float64).reshape(-1, 3), faces


def normalize_mesh(vertices):
    """The original's normalisation: bounding-box centre and largest extent.

    Args:
        vertices: float [V, 3], world coordinates.

    Returns:
        (normalised vertices float64 [V, 3] in [-0.5, 0.5]^3, loc float64 (3,), scale float),
        with ``normalised = (world - loc) / scale``.

    Raises:
        MeshError: zero extent.
    """
    vertices = np.asarray(vertices, np.float64)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    loc = (lo + hi) / 2.0
    scale = float(np.max(hi - lo))
    if not (np.isfinite(scale) and scale > 0):
        raise MeshError(f"zero or non-finite extent ({scale})")
    return (vertices - loc) / scale, loc, scale


# --------------------------------------------------------------------------------------
# Inside tests.
# --------------------------------------------------------------------------------------


def winding_number(vertices, faces, points, chunk_pairs=250_000):
    """Generalised winding number of a triangle mesh at query points.

    ``w(p) = sum_t Omega_t(p) / (4 pi)`` with the signed solid angle of each triangle
    (Van Oosterom and Strackee): ``tan(Omega / 2) = a.(b x c) / (|a||b||c| + (a.b)|c| +
    (b.c)|a| + (c.a)|b|)`` for the corners ``a, b, c`` relative to ``p``. +-1 inside a closed
    mesh (sign = orientation), 0 outside, fractional near holes of an open one.

    Args:
        vertices: float [V, 3].
        faces: int [F, 3].
        points: float [N, 3].
        chunk_pairs: point-triangle pairs per numpy chunk (about 150 bytes each; small
            chunks stay in cache and run fastest).

    Returns:
        float64 [N].
    """
    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    points = np.asarray(points, np.float64).reshape(-1, 3)
    tri = vertices[faces]  # (F, 3, 3)
    n, f = points.shape[0], faces.shape[0]
    out = np.zeros(n, np.float64)
    if n == 0 or f == 0:
        return out
    per_chunk = max(1, int(chunk_pairs) // f)
    corners = [[tri[:, k, i] for i in range(3)] for k in range(3)]  # [corner][axis] (F,)
    for start in range(0, n, per_chunk):
        p = points[start : start + per_chunk]
        # Corner coordinates relative to the points, one (n, F) array per corner and axis.
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = [
            [corners[k][i][None, :] - p[:, i : i + 1] for i in range(3)] for k in range(3)
        ]
        la = np.sqrt(ax * ax + ay * ay + az * az)
        lb = np.sqrt(bx * bx + by * by + bz * bz)
        lc = np.sqrt(cx * cx + cy * cy + cz * cz)
        det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        den = (
            la * lb * lc
            + (ax * bx + ay * by + az * bz) * lc
            + (bx * cx + by * cy + bz * cz) * la
            + (cx * ax + cy * ay + cz * az) * lb
        )
        out[start : start + per_chunk] = np.arctan2(det, den).sum(axis=1) / (2.0 * np.pi)
    return out


def contains_ray_vote(vertices, faces, points):
    """Ray-parity inside test along x, y and z with a majority vote.

    :func:`implicit_fields.inside_mesh.contains` (both directions along one axis must cross
    an odd number of times) for each axis, by permuting coordinates; a point is inside when
    at least two of the three axes say so. A small hole flips only the rays through it.

    Args:
        vertices: float [V, 3].
        faces: int [F, 3].
        points: float [N, 3].

    Returns:
        (inside bool [N], votes int [N] in 0..3).
    """
    vertices = np.asarray(vertices, np.float64)
    points = np.asarray(points, np.float64)
    votes = np.zeros(points.shape[0], np.int64)
    for perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        votes += inside_mesh.contains(vertices[:, perm], faces, points[:, perm])
    return votes >= 2, votes


def label_points(vertices, faces, points, winding_budget=3e7):
    """Occupancy of query points: winding number when affordable, else the ray vote.

    Args:
        vertices, faces: the (normalised) mesh.
        points: float [N, 3].
        winding_budget: use the winding number when ``N * F`` is at most this.

    Returns:
        (bool [N], str: 'winding_number' or 'ray_vote').
    """
    points = np.asarray(points, np.float64)
    if points.shape[0] * faces.shape[0] <= winding_budget:
        return np.abs(winding_number(vertices, faces, points)) > 0.5, "winding_number"
    return contains_ray_vote(vertices, faces, points)[0], "ray_vote"


def check_inside_tests(
    vertices,
    faces,
    rng,
    num_check=4096,
    check_budget=3e7,
    ambiguous_tolerance=0.01,
    disagreement_tolerance=0.01,
    min_inside=0.001,
):
    """Compare the winding number with the ray vote on uniform points; raise when broken.

    Args:
        vertices, faces: the normalised mesh.
        rng: np.random.Generator for the check points.
        num_check: most check points (uniform in the cube of side 1.1).
        check_budget: at most ``check_budget / F`` check points (at least 512).
        ambiguous_tolerance: largest fraction with ``0.25 < |w| < 0.75``.
        disagreement_tolerance: largest fraction where the two tests disagree.
        min_inside: smallest fraction of check points inside.

    Returns:
        dict of check statistics (fractions ambiguous, disagreeing and inside, count).

    Raises:
        MeshError: the mesh fails a check (the message gives the numbers).
    """
    n = int(min(num_check, max(512, check_budget // max(faces.shape[0], 1))))
    half = _BOX_SIZE / 2.0
    pts = rng.uniform(-half, half, (n, 3))
    w = np.abs(winding_number(vertices, faces, pts))
    by_winding = w > 0.5
    by_rays, _ = contains_ray_vote(vertices, faces, pts)
    stats = {
        "check_points": n,
        "ambiguous": float(np.mean((w > 0.25) & (w < 0.75))),
        "disagreement": float(np.mean(by_winding != by_rays)),
        "inside": float(np.mean(by_winding)),
    }
    if stats["ambiguous"] > ambiguous_tolerance:
        raise MeshError(
            f"not closed: the winding number is ambiguous (0.25 < |w| < 0.75) at "
            f"{stats['ambiguous']:.1%} of {n} check points (open surface or large holes)"
        )
    if stats["disagreement"] > disagreement_tolerance:
        raise MeshError(
            f"winding number and ray parity disagree at {stats['disagreement']:.1%} of {n} "
            "check points (holes, self-intersections or inconsistent shells)"
        )
    if stats["inside"] < min_inside:
        raise MeshError(f"encloses no volume ({stats['inside']:.2%} of {n} check points inside)")
    return stats


def voxelize_mesh(vertices, faces, resolution=32, num_surface_points=200_000, seed=0, winding_budget=3e7):
    """Voxelise a normalised mesh on [-0.5, 0.5]^3, aligned with the built-in voxels.

    Voxel (i, j, k) covers ``[-0.5 + i/R, -0.5 + (i+1)/R]`` along x (j: y, k: z), as in
    :func:`implicit_fields.data.builtin.voxelize_shape`; it is occupied when its centre is
    inside (:func:`label_points`) or a surface sample falls in it (the original's ``ray``
    method marks centres inside plus voxels the surface crosses).

    Returns:
        bool [R, R, R], xyz order.
    """

    res = int(resolution)
    centres = binvox.voxel_centers(res).astype(np.float64)
    occ = label_points(vertices, faces, centres, winding_budget)[0].reshape(res, res, res)
    if num_surface_points:
        surface, _ = metrics.sample_mesh_surface(vertices, faces, int(num_surface_points), seed)
        idx = np.floor((surface + 0.5) * res).astype(np.int64)
        idx = idx[((idx >= 0) & (idx < res)).all(axis=1)]
        occ[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return occ


def render_mesh_images(
    vertices,
    faces,
    n_views=24,
    resolution=64,
    seed=0,
    radius=2.0,
    elevation_range=(10.0, 40.0),
    texture="none",
):
    """Single-view renderings of a normalised mesh, as ``builtin.render_images`` makes them.

    Cameras: :func:`implicit_fields.cameras.sample_views` with the focal length fitted to
    the mesh (:func:`implicit_fields.data.mesh_render.fit_focal`); colour:
    ``shape_render.Appearance.random(1, ...)``; both from ``seed``.

    Args:
        vertices: float [V, 3] normalised vertices.
        faces: int [F, 3].
        n_views: int >= 1.
        resolution: int >= 2, image side in pixels.
        seed: int or list of ints.
        radius: camera distance from the origin.
        elevation_range: degrees, (low, high).
        texture: 'none' or 'stripes'.

    Returns:
        (images uint8 [n_views, R, R, 3], cameras dict of (n_views, 4, 4) matrices, the
        ``images.json`` record for :func:`implicit_fields.data.builtin.write_images`).
    """

    n_views, resolution = int(n_views), int(resolution)
    if n_views < 1 or resolution < 2:
        raise ValueError(f"need n_views >= 1 and resolution >= 2, got {n_views}, {resolution}")
    cam_seed, app_seed = np.random.SeedSequence(seed).spawn(2)
    focal = mesh_render.fit_focal(vertices, radius)
    cams = cam_lib.sample_views(n_views, radius, cam_seed, elevation_range, focal)
    appearance = shape_render.Appearance.random(1, app_seed, texture)
    images = mesh_render.render_mesh_views(vertices, faces, cams, resolution, resolution, appearance)["image"]
    record = {
        "version": builtin.IMAGES_VERSION,
        "n_views": n_views,
        "resolution": resolution,
        "seed": [int(x) for x in np.atleast_1d(seed)],
        "radius": float(radius),
        "elevation_range": [float(e) for e in elevation_range],
        "texture": texture,
        "renderer": "mesh_render",
    }
    return images, {k: cams[k] for k in cam_lib.CAMERA_KEYS}, record


def _image_seed(seed):
    return [int(seed), _IMAGE_SEED_TAG]


# --------------------------------------------------------------------------------------
# One object.
# --------------------------------------------------------------------------------------


def prepare_object(
    path,
    seed=0,
    num_points=100_000,
    num_surface_points=100_000,
    surface_fraction=0.5,
    surface_sigma=0.01,
    voxel_resolution=32,
    winding_budget=3e7,
    render_views=24,
    render_resolution=64,
):
    """Convert one mesh file in memory.

    Args:
        path: mesh file.
        seed: int, the object's random seed.
        num_points: occupancy points in points.npz.
        num_surface_points: surface points in pointcloud.npz.
        surface_fraction: fraction of the occupancy points near the surface (after the
            uniform ones).
        surface_sigma: std of the near-surface noise, normalised units.
        voxel_resolution: voxels per side (0: none).
        winding_budget: see :func:`label_points`.
        render_views: renderings (0: none), see :func:`render_mesh_images`.
        render_resolution: their side in pixels.

    Returns:
        dict: ``loc`` (3,), ``scale``, ``points`` float16 [num_points, 3], ``occupancies``
        bool, ``num_uniform`` int, ``surface_points``/``normals`` float64, ``voxels`` bool
        [R, R, R] or None, ``images`` uint8 [render_views, R, R, 3], ``cameras`` and
        ``images_record`` (all three None without renderings), ``info`` (labeller,
        checks, face count, seconds).

    Raises:
        ArgumentError: a bad argument (its ``argument`` names it).
        MeshError: the mesh is broken (the message says why).
    """

    t0 = time.time()
    _object_params(  # ArgumentError naming a bad argument, before any work.
        seed,
        num_points,
        num_surface_points,
        surface_fraction,
        surface_sigma,
        voxel_resolution,
        render_views,
        render_resolution,
    )
    _number("winding_budget", winding_budget, 0.0, low_open=True)
    check_rng, uniform_rng, near_rng, surface_rng = [
        np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4)
    ]
    world_vertices, faces = load_mesh(path)
    vertices, loc, scale = normalize_mesh(world_vertices)
    checks = check_inside_tests(vertices, faces, check_rng)

    num_points = int(num_points)
    num_near = int(round(num_points * float(surface_fraction)))
    num_uniform = num_points - num_near
    half = _BOX_SIZE / 2.0
    uniform = uniform_rng.uniform(-half, half, (num_uniform, 3))
    near, _ = metrics.sample_mesh_surface(vertices, faces, num_near, near_rng)
    near = near + surface_sigma * near_rng.standard_normal(near.shape)
    points = np.concatenate([uniform, near]).astype(np.float16)
    occupancies, labeller = label_points(vertices, faces, points.astype(np.float64), winding_budget)

    surface, normals = metrics.sample_mesh_surface(vertices, faces, int(num_surface_points), surface_rng)
    voxels = None
    if voxel_resolution:
        voxels = voxelize_mesh(
            vertices, faces, voxel_resolution, seed=int(seed), winding_budget=winding_budget
        )
    images = cams = images_record = None
    if render_views:
        images, cams, images_record = render_mesh_images(
            vertices, faces, render_views, render_resolution, _image_seed(seed)
        )
    info = {
        "num_vertices": int(world_vertices.shape[0]),
        "num_faces": int(faces.shape[0]),
        "labeller": labeller,
        "checks": checks,
        "inside_fraction_uniform": float(occupancies[:num_uniform].mean()) if num_uniform else None,
        "seconds": round(time.time() - t0, 2),
    }
    return {
        "loc": loc,
        "scale": scale,
        "points": points,
        "occupancies": occupancies,
        "num_uniform": num_uniform,
        "surface_points": surface,
        "normals": normals,
        "voxels": voxels,
        "images": images,
        "cameras": cams,
        "images_record": images_record,
        "info": info,
    }


def _object_seed(seed, mid):
    return int(np.random.SeedSequence([int(seed), zlib.crc32(mid.encode("utf-8"))]).generate_state(1)[0])


# --------------------------------------------------------------------------------------
# Arguments and recorded parameters.
# --------------------------------------------------------------------------------------


class ArgumentError(ValueError):
    """A bad argument of :func:`prepare_dataset`; ``argument`` is its name, ``problem`` what is wrong."""

    def __init__(self, argument, problem):
        self.argument, self.problem = argument, problem
        super().__init__(f"{argument}: {problem}")


class ParameterMismatchError(ValueError):
    """A rerun asks for other parameters than the existing objects or splits were made with.

    Attributes:
        folder: the category folder.
        differences: list of (parameter, old values (list), new value); ``source`` for
            objects whose source mesh changed, ``mesh.json`` for objects without readable
            recorded parameters.
        objects: the model ids concerned (sorted).
        total: number of objects in the folder.
    """

    def __init__(self, folder, differences, objects, total):
        self.folder, self.differences, self.objects, self.total = folder, differences, objects, total
        super().__init__(self.describe())

    def describe(self, name=lambda key: key, rebuild="rebuild=True"):
        """The message, with ``name(parameter)`` for each parameter and ``rebuild`` for the remedy."""
        changes = []
        for key, old, new in self.differences:
            if key == "mesh.json":
                changes.append(
                    f"{len(old)} object(s) have no readable {MESH_INFO_FILE} with their parameters"
                )
            elif key == "source":
                changes.append(f"the source mesh of {len(old)} object(s) changed ({_first(old)})")
            else:
                changes.append(f"{name(key)} {', '.join(_show(v) for v in old)} -> {_show(new)}")
        if self.objects:
            which = f" ({len(self.objects)} of {self.total} objects: {_first(self.objects)})"
        else:
            which = " (the split files)"
        return (
            f"{self.folder}: was prepared with other parameters: {'; '.join(changes)}{which}; rerun with "
            f"the same values, or pass {rebuild} to regenerate what they change"
        )


def _first(items, n=3):
    items = list(items)
    return ", ".join(str(i) for i in items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _show(value):
    if isinstance(value, (list, tuple)):
        return ",".join(_show(v) for v in value)
    return "none" if value is None else str(value)


def _integer(name, value, minimum):
    """``value`` as an int >= ``minimum``, else ArgumentError naming ``name``."""
    try:
        ok = not isinstance(value, (bool, np.bool_)) and float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ArgumentError(name, f"must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ArgumentError(name, f"must be >= {minimum}, got {int(value)}")
    return int(value)


def _number(name, value, low, high=None, low_open=False):
    """``value`` as a finite float in [low, high] ((low, high] with ``low_open``)."""
    try:
        v = float(value)
        ok = not isinstance(value, (bool, np.bool_))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ArgumentError(name, f"must be a number, got {value!r}")
    interval = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else f'{high}]'}"
    if not np.isfinite(v) or v < low or (low_open and v == low) or (high is not None and v > high):
        raise ArgumentError(name, f"must be in {interval}, got {value}")
    return v


def _split_fractions(value):
    """(train, val, test) fractions: 3 non-negative numbers summing to 1 (a list or 'a,b,c')."""
    text = value if isinstance(value, str) else ",".join(str(v) for v in np.ravel(np.asarray(value, object)))
    parts = [p.strip() for p in text.split(",")]
    try:
        fractions = [float(p) for p in parts]
    except ValueError:
        raise ArgumentError("split_fractions", f"must be 3 numbers (train,val,test), got {text!r}") from None
    if len(fractions) != 3:
        raise ArgumentError(
            "split_fractions", f"must be 3 numbers (train,val,test), got {len(fractions)}: {text!r}"
        )
    if not all(np.isfinite(f) and f >= 0 for f in fractions):
        raise ArgumentError("split_fractions", f"must be non-negative finite numbers, got {text!r}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ArgumentError("split_fractions", f"must sum to 1, got {text!r} (sum {sum(fractions):g})")
    return fractions


def _object_params(
    seed, num_points, num_surface_points, surface_fraction, surface_sigma, voxel_resolution, views, resolution
):
    """The validated parameters that decide an object's files (recorded in its mesh.json)."""
    return {
        "version": PREPARE_VERSION,
        "seed": _integer("seed", seed, 0),
        "num_points": _integer("num_points", num_points, 1),
        "num_surface_points": _integer("num_surface_points", num_surface_points, 1),
        "surface_fraction": _number("surface_fraction", surface_fraction, 0.0, 1.0),
        "surface_sigma": _number("surface_sigma", surface_sigma, 0.0),
        "voxel_resolution": _integer("voxel_resolution", voxel_resolution, 0),
        "render_views": _integer("render_views", views, 0),
        "render_resolution": _integer("render_resolution", resolution, 2),
    }


def _comparable(params):
    """Recorded parameters without those that change nothing (the resolution of no renderings)."""
    out = dict(params)
    if not out.get("render_views"):
        out.pop("render_resolution", None)
    return out


_RENDER_KEYS = ("render_views", "render_resolution")


def _differing(old, new):
    """Keys whose (comparable) values differ between two parameter dicts."""
    old, new = _comparable(old), _comparable(new)
    keys = set(old) | set(new)
    if "render_resolution" not in old or "render_resolution" not in new:  # No views on one side.
        keys.discard("render_resolution")
    return sorted(k for k in keys if old.get(k) != new.get(k))


def _input_meshes(input_dir):
    """(model_id, path) of the input: a folder searched recursively, or one mesh file."""
    if input_dir is None or os.fspath(input_dir) == "":
        raise ArgumentError("input_dir", "no folder given (empty path)")
    path = os.fspath(input_dir)
    if not os.path.exists(path):
        raise ArgumentError("input_dir", f"{path}: no such folder")
    if os.path.isfile(path):
        if os.path.splitext(path)[1].lower() not in MESH_EXTENSIONS:
            raise ArgumentError("input_dir", f"{path}: not a folder or a {'/'.join(MESH_EXTENSIONS)} file")
        return [(_sanitize(os.path.splitext(os.path.basename(path))[0]), path)]
    if not os.path.isdir(path):
        raise ArgumentError("input_dir", f"{path}: not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ArgumentError("input_dir", f"{path}: cannot read the folder (permission denied)")
    meshes = find_meshes(path)
    if not meshes:
        raise ArgumentError(
            "input_dir", f"{path}: no {'/'.join(MESH_EXTENSIONS)} files in it (searched recursively)"
        )
    return meshes


def _check_output(out_dir, category):
    """The dataset root and category folder can be created or written; returns the category folder."""
    if out_dir is None or os.fspath(out_dir) == "":
        raise ArgumentError("out_dir", "no folder given (empty path)")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ArgumentError("out_dir", f"{out_dir}: exists and is not a folder")
    existing = os.path.abspath(out_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ArgumentError("out_dir", f"{out_dir}: cannot be created ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArgumentError("out_dir", f"{out_dir}: cannot write in {existing} (permission denied)")
    if not isinstance(category, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", category):
        raise ArgumentError(
            "category", f"must be a folder name of letters, digits, '_', '-' and '.', got {category!r}"
        )
    cat_dir = os.path.join(out_dir, category)
    if os.path.exists(cat_dir) and not os.path.isdir(cat_dir):
        raise ArgumentError("category", f"{cat_dir}: exists and is not a folder")
    if os.path.isdir(cat_dir) and not os.access(cat_dir, os.W_OK | os.X_OK):
        raise ArgumentError("out_dir", f"{cat_dir}: cannot write in it (permission denied)")
    if os.path.exists(os.path.join(out_dir, onet_format.METADATA_FILE)):
        onet_format.read_metadata(out_dir)  # A malformed one stops here, before any work.
    return cat_dir


def _read_json(path):
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    """Writes JSON atomically (a temporary file renamed into place)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _file_crc(path):
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _object_ids(cat_dir):
    """Model ids of the object folders (with points.npz) of a category folder."""
    if not os.path.isdir(cat_dir):
        return []
    return sorted(
        e
        for e in os.listdir(cat_dir)
        if not e.startswith(".") and os.path.isfile(os.path.join(cat_dir, e, onet_format.POINTS_FILE))
    )


def _restore_interrupted(cat_dir):
    """Clean up after an interrupted run: unfinished objects go, replaced ones come back."""
    for entry in os.listdir(cat_dir):
        path = os.path.join(cat_dir, entry)
        if entry.startswith(_OLD_PREFIX):  # .rebuild-old-<id>-<pid>: the object being replaced.
            final = os.path.join(cat_dir, entry[len(_OLD_PREFIX) :].rsplit("-", 1)[0])
            if not os.path.exists(final):
                os.rename(path, final)
            else:
                shutil.rmtree(path, ignore_errors=True)
        elif entry.startswith(_TMP_PREFIX):  # A new object not finished.
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------
# One object on disk.
# --------------------------------------------------------------------------------------

_OLD_PREFIX = ".rebuild-old-"


def _write_object(task):
    """Convert, keep, rebuild or re-render one object (``task['action']``); returns a report record.

    Actions: 'convert' (a new object, written to a temporary folder and renamed), 'keep'
    (made with these parameters; missing renderings are added), 'rebuild' (made with
    other parameters or from a changed mesh: converted again and swapped in; the old
    object stays when the mesh now fails), 'render' (only the rendering parameters
    differ: ``img_choy2016/`` is rendered again, or removed with no views).
    """

    final = os.path.join(task["category_dir"], task["model_id"])
    record = {"model_id": task["model_id"], "source": task["source"]}
    p = task["params"]
    action = task["action"]
    if action == "keep":
        record["status"] = "exists"
        views, resolution = p["render_views"], p["render_resolution"]
        if views and not builtin.images_done(final, views, resolution):
            try:
                _render_existing(final, task)
                record["rendered"] = True
            except Exception as e:  # noqa: BLE001 - reported; the object itself stays.
                record["render_error"] = f"{type(e).__name__}: {e}"
        return record
    if action == "render":
        try:
            if p["render_views"]:
                _render_existing(final, task)
            else:
                shutil.rmtree(os.path.join(final, builtin.IMAGES_DIR), ignore_errors=True)
        except Exception as e:  # noqa: BLE001 - reported; the object keeps its old renderings.
            return dict(record, status="rebuild_failed", reason=f"renderings: {type(e).__name__}: {e}")
        info_path = os.path.join(final, MESH_INFO_FILE)
        _write_json(info_path, dict(_read_json(info_path) or {}, params=p))
        return dict(record, status="rerendered")
    try:
        obj = prepare_object(
            task["source"],
            seed=_object_seed(p["seed"], task["model_id"]),
            num_points=p["num_points"],
            num_surface_points=p["num_surface_points"],
            surface_fraction=p["surface_fraction"],
            surface_sigma=p["surface_sigma"],
            voxel_resolution=p["voxel_resolution"],
            winding_budget=task["winding_budget"],
            render_views=p["render_views"],
            render_resolution=p["render_resolution"],
        )
    except Exception as e:  # noqa: BLE001 - any failure of one mesh is reported, not fatal.
        reason = str(e) if isinstance(e, MeshError) else f"unexpected error ({type(e).__name__}: {e})"
        if action == "rebuild":
            return dict(record, status="rebuild_failed", reason=f"{reason} (the old object is kept)")
        return dict(record, status="skipped", reason=reason)
    tmp = os.path.join(task["category_dir"], f"{_TMP_PREFIX}{task['model_id']}-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    onet_format.write_points_npz(
        os.path.join(tmp, onet_format.POINTS_FILE),
        obj["points"],
        obj["occupancies"],
        obj["loc"],
        obj["scale"],
        num_uniform=obj["num_uniform"],
    )
    onet_format.write_pointcloud_npz(
        os.path.join(tmp, onet_format.POINTCLOUD_FILE),
        obj["surface_points"],
        obj["normals"],
        obj["loc"],
        obj["scale"],
    )
    if obj["voxels"] is not None:
        binvox.write_binvox(os.path.join(tmp, binvox.VOXELS_FILE), obj["voxels"])
    if obj["images"] is not None:
        builtin.write_images(
            os.path.join(tmp, builtin.IMAGES_DIR), obj["images"], obj["cameras"], obj["images_record"]
        )
    info = dict(
        obj["info"],
        source=os.path.abspath(task["source"]),
        source_crc32=_file_crc(task["source"]),
        loc=obj["loc"].tolist(),
        scale=obj["scale"],
        num_uniform=obj["num_uniform"],
        params=p,
    )
    with open(os.path.join(tmp, MESH_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    if action == "rebuild" and os.path.isdir(final):
        # The old object is moved aside (an interrupted run puts it back) and removed last.
        old = os.path.join(task["category_dir"], f"{_OLD_PREFIX}{task['model_id']}-{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
            shutil.rmtree(tmp)
    return dict(
        record,
        status="rebuilt" if action == "rebuild" else "converted",
        seconds=obj["info"]["seconds"],
        faces=obj["info"]["num_faces"],
        labeller=obj["info"]["labeller"],
    )


def _render_existing(folder, task):
    """(Re-)render ``img_choy2016/`` of a converted object from its source mesh.

    The mesh is normalised with the ``loc`` and ``scale`` stored in the object's
    points.npz, so the renders match its other files; nothing else is touched.
    """

    stored = onet_format.load_points_npz(os.path.join(folder, onet_format.POINTS_FILE))
    world, faces = load_mesh(task["source"])
    vertices = (world - stored["loc"]) / stored["scale"]
    images, cams, rec = render_mesh_images(
        vertices,
        faces,
        task["params"]["render_views"],
        task["params"]["render_resolution"],
        _image_seed(_object_seed(task["params"]["seed"], task["model_id"])),
    )
    builtin.write_images(os.path.join(folder, builtin.IMAGES_DIR), images, cams, rec)


# --------------------------------------------------------------------------------------
# A folder of meshes.
# --------------------------------------------------------------------------------------


def _sanitize(name):
    """A model id from a file stem: letters, digits, '_', '-', '.'; never a name the category uses."""
    mid = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "mesh"
    reserved = {_PARAMS_FILE} | {f"{split}.lst" for split in onet_format.SPLITS}
    return f"{mid}_mesh" if mid in reserved else mid


def find_meshes(input_dir):
    """Mesh files under ``input_dir`` (recursive) and their model ids.

    Ids are the sanitised file stems; stems shared by several files get their extension
    appended (``sphere_off``, ``sphere_ply``).

    Returns:
        list of (model_id, path), sorted by id.
    """
    paths = []
    for root, _, files in os.walk(os.fspath(input_dir)):
        for name in files:
            if os.path.splitext(name)[1].lower() in MESH_EXTENSIONS:
                paths.append(os.path.join(root, name))
    paths.sort()
    stems = [_sanitize(os.path.splitext(os.path.basename(p))[0]) for p in paths]
    counts = {s: stems.count(s) for s in stems}
    out, used = [], set()
    for p, s in zip(paths, stems):
        mid = s if counts[s] == 1 else f"{s}_{os.path.splitext(p)[1][1:].lower()}"
        base, k = mid, 1
        while mid in used:  # Same stem and extension in different sub-folders.
            mid, k = f"{base}_{k}", k + 1
        used.add(mid)
        out.append((mid, p))
    return sorted(out)


def _plan(cat_dir, meshes, params, split_fractions, rebuild):
    """What to do with every object, decided before any work.

    Compares the parameters recorded in each existing object's mesh.json (and the
    split fractions in the category's ``prepare.json``) with the new ones.

    Returns:
        (tasks: list of (model_id, source, action), stale model ids, splits_changed).

    Raises:
        ParameterMismatchError: something differs and not ``rebuild``.
        ArgumentError: an input mesh's folder exists but is not an object (``out_dir``), or
            ``rebuild`` but an object to rebuild has no source mesh any more (``rebuild``).
    """
    sources = dict(meshes)
    existing = _object_ids(cat_dir)
    # Input ids whose folder exists without points.npz: not an object, never replaced.
    foreign = [mid for mid in sources if mid not in existing and os.path.lexists(os.path.join(cat_dir, mid))]
    if foreign:
        raise ArgumentError(
            "out_dir",
            f"{cat_dir}: {len(foreign)} mesh(es) of the input would be written where a file or folder "
            f"without {onet_format.POINTS_FILE} exists ({_first(foreign)}); move them away or use another "
            "output folder",
        )
    changes, stale, actions = {}, [], {}
    for mid in existing:
        info = _read_json(os.path.join(cat_dir, mid, MESH_INFO_FILE))
        recorded = info.get("params") if isinstance(info, dict) else None
        if not isinstance(recorded, dict):
            changes.setdefault("mesh.json", []).append(mid)
            stale.append(mid)
            actions[mid] = "rebuild"
            continue
        keys = _differing(recorded, params)
        for key in keys:
            old = _comparable(recorded).get(key)
            values = changes.setdefault(key, [])
            if old not in values:
                values.append(old)
        source_changed = (
            mid in sources and "source_crc32" in info and (info["source_crc32"] != _file_crc(sources[mid]))
        )
        if source_changed:
            changes.setdefault("source", []).append(mid)
        if keys or source_changed:
            stale.append(mid)
            render_only = not source_changed and set(keys) <= set(_RENDER_KEYS)
            actions[mid] = "render" if render_only else "rebuild"
        if mid not in sources and mid in actions:
            sources[mid] = info.get("source")
    record = _read_json(os.path.join(cat_dir, _PARAMS_FILE))
    old_fractions = record.get("split_fractions") if isinstance(record, dict) else None
    splits_changed = old_fractions is not None and [float(f) for f in old_fractions] != list(split_fractions)
    if splits_changed:
        changes["split_fractions"] = [old_fractions]
    if changes and not rebuild:
        differences = []
        for key, old in sorted(changes.items(), key=lambda kv: (kv[0] in ("mesh.json", "source"), kv[0])):
            new = list(split_fractions) if key == "split_fractions" else params.get(key)
            differences.append((key, old, new))
        raise ParameterMismatchError(cat_dir, differences, sorted(stale), len(existing))
    lost = [mid for mid in stale if not sources.get(mid) or not os.path.isfile(sources[mid])]
    if lost:
        raise ArgumentError(
            "rebuild",
            f"{cat_dir}: cannot regenerate {len(lost)} object(s) whose source mesh is not in the input "
            f"and not at its recorded path: {_first(lost)}; give them in the input, or use another "
            "category or output folder",
        )
    tasks = [
        (mid, sources[mid], actions.get(mid, "keep" if mid in existing else "convert")) for mid in sources
    ]
    return sorted(tasks), sorted(stale), splits_changed


def _assign_splits(ids, fractions, seed):
    """Splits of the sorted ``ids``: a seeded permutation cut by ``fractions``.

    A split that gets no object (fewer objects than splits, or a fraction of 0) reuses
    the train objects (all objects when train itself gets none), so training, which
    needs train and val, and evaluation, which reads test, work even on one mesh.

    Returns:
        (splits {split: sorted ids}, reused {split: what it reuses}).
    """

    order = np.random.default_rng(int(seed)).permutation(len(ids))
    counts = builtin.split_counts(len(ids), fractions)
    splits, start = {}, 0
    for split, count in zip(onet_format.SPLITS, counts):
        splits[split] = sorted(ids[i] for i in order[start : start + count])
        start += count
    reused = {}
    if not splits["train"]:
        splits["train"], reused["train"] = list(ids), "all objects"
    for split in onet_format.SPLITS[1:]:
        if not splits[split]:
            splits[split], reused[split] = list(splits["train"]), "the train objects"
    return splits, reused


_PARAMS_FILE = "prepare.json"


def _usable_cores():

    return builtin.usable_cores()


def prepare_dataset(
    input_dir,
    out_dir,
    category="real",
    category_name=None,
    num_points=100_000,
    num_surface_points=100_000,
    surface_fraction=0.5,
    surface_sigma=0.01,
    voxel_resolution=32,
    split_fractions=(0.7, 0.1, 0.2),
    seed=0,
    num_workers=None,
    progress=True,
    winding_budget=3e7,
    render_views=24,
    render_resolution=64,
    rebuild=False,
):
    """Convert every mesh of a folder into a one-category dataset (see the module doc).

    Every argument is checked before any work. The parameters that decide the files are
    recorded in each object's ``mesh.json`` and, with the split fractions, in
    ``<category>/prepare.json``; a rerun with other values stops with
    :class:`ParameterMismatchError` (listing old -> new) unless ``rebuild``, which
    regenerates the objects they change (or only their renderings) and rewrites the
    splits. A rerun with the same values completes an interrupted one.

    Args:
        input_dir: folder searched recursively for .off/.obj/.ply/.stl files (or one
            mesh file).
        out_dir: dataset root (created; an existing one is completed).
        category: category id (folder name).
        category_name: name in metadata.yaml (default: ``category``).
        num_points, num_surface_points, surface_fraction, surface_sigma, voxel_resolution,
        winding_budget, render_views, render_resolution: see :func:`prepare_object`
        (renderings go to ``<model_id>/img_choy2016/``; 0 views: none).
        split_fractions: (train, val, test) fractions summing to 1 (or 'a,b,c'); objects
            are assigned by a permutation seeded with ``seed``. A split that would be
            empty reuses the train objects (see :func:`_assign_splits`; reported).
        seed: int >= 0.
        num_workers: worker processes (spawned); None = usable cores; 0 or 1 = in-process.
        progress: tqdm progress bar.
        rebuild: regenerate what differs from the recorded parameters (never anything
            else; objects whose mesh now fails are kept and left out of the splits).

    Returns:
        dict report: ``converted`` (ids), ``skipped`` (list of {model_id, source, reason}),
        ``rebuilt`` (ids), ``rebuild_failed`` and ``render_errors`` (as ``skipped``),
        ``splits`` {split: ids}, ``reused_splits`` {split: what it reuses}, ``seconds``.
        Also written to ``out_dir/prepare_report.json``.

    Raises:
        ArgumentError: a bad argument (``argument`` names it), no mesh files, or no mesh
            could be converted (``input_dir``).
        ParameterMismatchError: the existing objects or splits were made with other
            parameters and not ``rebuild``.
        DataFormatError: a malformed ``metadata.yaml`` in ``out_dir``.
    """
    t0 = time.time()
    params = _object_params(
        seed,
        num_points,
        num_surface_points,
        surface_fraction,
        surface_sigma,
        voxel_resolution,
        render_views,
        render_resolution,
    )
    fractions = _split_fractions(split_fractions)
    winding_budget = _number("winding_budget", winding_budget, 0.0, low_open=True)
    workers = _usable_cores() if num_workers is None else _integer("num_workers", num_workers, 0)
    if category_name is not None and (not isinstance(category_name, str) or not category_name.strip()):
        raise ArgumentError("category_name", f"must be a non-empty string, got {category_name!r}")
    cat_dir = _check_output(out_dir, category)
    meshes = _input_meshes(input_dir)
    out_dir = os.fspath(out_dir)
    made = [d for d in (out_dir, cat_dir) if not os.path.exists(d)]
    if os.path.isdir(cat_dir):
        _restore_interrupted(cat_dir)
    plan, stale, splits_changed = _plan(cat_dir, meshes, params, fractions, rebuild)
    os.makedirs(cat_dir, exist_ok=True)
    tasks = [
        {
            "category_dir": cat_dir,
            "model_id": mid,
            "source": path,
            "action": action,
            "winding_budget": winding_budget,
            "params": params,
        }
        for mid, path, action in plan
    ]
    workers = max(1, min(workers, len(tasks)))
    records = []
    with tqdm(total=len(tasks), disable=not progress, desc="prepare meshes", unit="mesh") as bar:
        if workers == 1:
            for task in tasks:
                records.append(_write_object(task))
                bar.update(1)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for rec in pool.imap_unordered(_write_object, tasks, chunksize=1):
                    records.append(rec)
                    bar.update(1)
    records.sort(key=lambda r: r["model_id"])
    usable = ("converted", "exists", "rebuilt", "rerendered")
    converted = [r["model_id"] for r in records if r["status"] in usable]
    skipped = [r for r in records if r["status"] == "skipped"]
    failed = [r for r in records if r["status"] == "rebuild_failed"]
    if not converted:
        for d in reversed(made):  # Folders this run created and left empty.
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        reasons = "; ".join(f"{os.path.basename(r['source'])}: {r['reason']}" for r in (skipped + failed)[:3])
        more = len(skipped) + len(failed) - 3
        raise ArgumentError(
            "input_dir",
            f"{input_dir}: none of its {len(records)} mesh file(s) could be converted ({reasons}"
            + (f"; and {more} more" if more > 0 else "")
            + ")",
        )

    # Splits over every object of the category folder made with these parameters (also
    # those of earlier runs); objects whose rebuild failed keep old parameters: left out.
    left_out = {r["model_id"] for r in failed}
    ids = [mid for mid in _object_ids(cat_dir) if mid not in left_out]
    splits, reused = _assign_splits(ids, fractions, params["seed"])
    for split in onet_format.SPLITS:
        onet_format.write_split(cat_dir, split, splits[split])

    def listed(rows, key):
        return [{"model_id": r["model_id"], "source": r["source"], "reason": r[key]} for r in rows]

    report = {
        "input": os.path.abspath(os.fspath(input_dir)),
        "category": category,
        "params": params,
        "split_fractions": fractions,
        "converted": converted,
        "skipped": listed(skipped, "reason"),
        "rebuilt": [r["model_id"] for r in records if r["status"] in ("rebuilt", "rerendered")],
        "rebuild_failed": listed(failed, "reason"),
        "render_errors": listed([r for r in records if "render_error" in r], "render_error"),
        "records": records,
        "splits": splits,
        "reused_splits": reused,
        "seconds": round(time.time() - t0, 1),
    }
    _write_json(os.path.join(out_dir, REPORT_FILE), report)
    _write_json(
        os.path.join(cat_dir, _PARAMS_FILE),
        {"version": PREPARE_VERSION, "params": params, "split_fractions": fractions, "splits": splits},
    )
    names = {}
    if os.path.exists(os.path.join(out_dir, onet_format.METADATA_FILE)):
        names = {k: v["name"] for k, v in onet_format.read_metadata(out_dir).items()}
    names[category] = category_name or category
    onet_format.write_metadata(out_dir, names)  # Written last: the dataset is complete.
    return report
