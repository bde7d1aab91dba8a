"""Turning a folder of real meshes (OFF, OBJ, PLY, STL) into the Occupancy Networks layout.

::

    DATASET/metadata.yaml                       one category (id and name given)
    DATASET/<category>/{train,val,test}.lst     seeded random permutation of the converted ids
    DATASET/<category>/<model_id>/points.npz     occupancy points, see below
    DATASET/<category>/<model_id>/pointcloud.npz surface points with face normals
    DATASET/<category>/<model_id>/model.binvox   32^3 voxels over [-0.5, 0.5]^3 (xyz order)
    DATASET/<category>/<model_id>/mesh.json      source file, loc, scale, labeller, checks
    DATASET/<category>/<model_id>/img_choy2016/  renderings 000.png ... with cameras.npz
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

Objects are written to a temporary folder and renamed when complete; re-running skips the
objects already there (the skipped ones are tried again), except that an existing object
whose ``img_choy2016/`` is missing or was rendered with another view count or resolution
gets it (re-)rendered from its source mesh (with the stored ``loc`` and ``scale``); its
other files are left alone. The splits, the report and ``metadata.yaml`` are written last.
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

    Degenerate (zero-area) triangles are dropped and duplicate vertices merged.

    Args:
        path: .off, .obj, .ply or .stl file.

    Returns:
        (vertices float64 [V, 3], faces int64 [F, 3]).

    Raises:
        MeshError: unreadable file, no faces, non-finite vertices or only degenerate faces.
    """
    import trimesh  # imported lazily: only mesh preparation needs it

    path = os.fspath(path)
    try:
        mesh = trimesh.load(path, force="mesh", process=True)
    except Exception as e:  # trimesh raises many kinds on garbage input.
        if not path.lower().endswith(".off"):
            raise MeshError(f"cannot read the file ({type(e).__name__}: {e})") from e
        try:  # trimesh fails on some valid OFF files (polygons, per-element colours).
            mesh = trimesh.Trimesh(*_read_off(path), process=True)
        except Exception as e2:  # noqa: BLE001 - reported with both errors.
            raise MeshError(
                f"cannot read the file (trimesh: {type(e).__name__}: {e}; "
                f"plain OFF reader: {type(e2).__name__}: {e2})"
            ) from e2
    if not isinstance(mesh, trimesh.Trimesh):
        raise MeshError(f"not a triangle mesh (got {type(mesh).__name__})")
    vertices = np.asarray(mesh.vertices, np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, np.int64).reshape(-1, 3)
    if faces.shape[0] == 0 or vertices.shape[0] == 0:
        raise MeshError("no faces")
    if not np.all(np.isfinite(vertices)):
        raise MeshError("non-finite vertex coordinates")
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
    """
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        lines = [ln.split("#", 1)[0].split() for ln in f]
    lines = [ln for ln in lines if ln]
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
    if vertices.shape != (n_vertices, 3) or (faces and np.max(faces) >= n_vertices):
        raise ValueError("inconsistent vertex count or face indices")
    return vertices, np.asarray(faces, np.int64).reshape(-1, 3)


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
        MeshError: the mesh is broken (the message says why).
    """
    t0 = time.time()
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


def _write_object(task):
    """Convert one mesh and write its folder atomically; returns a report record."""
    final = os.path.join(task["category_dir"], task["model_id"])
    record = {"model_id": task["model_id"], "source": task["source"]}
    p = task["params"]
    if os.path.isdir(final):
        record["status"] = "exists"
        views, resolution = p["render_views"], p["render_resolution"]
        if views and not builtin.images_done(final, views, resolution):
            try:
                _render_existing(final, task)
                record["rendered"] = True
            except Exception as e:  # noqa: BLE001 - reported; the object itself stays.
                record["render_error"] = f"{type(e).__name__}: {e}"
        return record
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
    except MeshError as e:
        return dict(record, status="skipped", reason=str(e))
    except Exception as e:  # noqa: BLE001 - any failure of one mesh is reported, not fatal.
        return dict(record, status="skipped", reason=f"unexpected error ({type(e).__name__}: {e})")
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
        loc=obj["loc"].tolist(),
        scale=obj["scale"],
        num_uniform=obj["num_uniform"],
        params=task["params"],
    )
    with open(os.path.join(tmp, MESH_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    try:
        os.rename(tmp, final)
    except OSError:
        if not os.path.isdir(final):
            raise
        shutil.rmtree(tmp)
    return dict(
        record,
        status="converted",
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
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "mesh"


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
):
    """Convert every mesh of a folder into a one-category dataset (see the module doc).

    Args:
        input_dir: folder searched recursively for .off/.obj/.ply/.stl files.
        out_dir: dataset root (created; an existing one is completed).
        category: category id (folder name).
        category_name: name in metadata.yaml (default: ``category``).
        num_points, num_surface_points, surface_fraction, surface_sigma, voxel_resolution,
        winding_budget, render_views, render_resolution: see :func:`prepare_object`
        (renderings go to ``<model_id>/img_choy2016/``; 0 views: none).
        split_fractions: (train, val, test) fractions summing to 1; objects are assigned by
            a permutation seeded with ``seed``.
        seed: int >= 0.
        num_workers: worker processes (spawned); None = usable cores; 0 or 1 = in-process.
        progress: tqdm progress bar.

    Returns:
        dict report: ``converted`` (ids), ``skipped`` (list of {model_id, source, reason}),
        ``render_errors`` (existing objects whose renderings could not be added, same
        form), ``splits`` {split: ids}, ``seconds``. Also written to ``out_dir/prepare_report.json``.

    Raises:
        ValueError: bad arguments, no mesh files, or no mesh could be converted.
    """
    t0 = time.time()
    out_dir = os.fspath(out_dir)
    fractions = np.asarray(split_fractions, np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"split_fractions must be 3 non-negative numbers summing to 1, got {split_fractions}"
        )
    if not 0.0 <= float(surface_fraction) <= 1.0:
        raise ValueError(f"surface_fraction must be in [0, 1], got {surface_fraction}")
    if int(num_points) < 1 or int(num_surface_points) < 1:
        raise ValueError("num_points and num_surface_points must be >= 1")
    if int(render_views) < 0 or (int(render_views) and int(render_resolution) < 2):
        raise ValueError(
            f"render_views must be >= 0 and render_resolution >= 2, got {render_views}, {render_resolution}"
        )
    meshes = find_meshes(input_dir)
    if not meshes:
        raise ValueError(f"{input_dir}: no {'/'.join(MESH_EXTENSIONS)} files found")
    cat_dir = os.path.join(out_dir, category)
    os.makedirs(cat_dir, exist_ok=True)
    for entry in os.listdir(cat_dir):  # Leftovers of an interrupted run.
        if entry.startswith(_TMP_PREFIX):
            shutil.rmtree(os.path.join(cat_dir, entry), ignore_errors=True)
    params = {
        "version": PREPARE_VERSION,
        "seed": int(seed),
        "num_points": int(num_points),
        "num_surface_points": int(num_surface_points),
        "surface_fraction": float(surface_fraction),
        "surface_sigma": float(surface_sigma),
        "voxel_resolution": int(voxel_resolution),
        "render_views": int(render_views),
        "render_resolution": int(render_resolution),
    }
    tasks = [
        {
            "category_dir": cat_dir,
            "model_id": mid,
            "source": path,
            "winding_budget": float(winding_budget),
            "params": params,
        }
        for mid, path in meshes
    ]
    workers = builtin.usable_cores() if num_workers is None else int(num_workers)
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
    converted = [r["model_id"] for r in records if r["status"] in ("converted", "exists")]
    skipped = [r for r in records if r["status"] == "skipped"]
    if not converted:
        raise ValueError(f"{input_dir}: no mesh could be converted; skipped: {skipped}")

    # Splits over every object in the category folder (also those of earlier runs).
    ids = sorted(
        e
        for e in os.listdir(cat_dir)
        if not e.startswith(_TMP_PREFIX) and os.path.isfile(os.path.join(cat_dir, e, onet_format.POINTS_FILE))
    )
    order = np.random.default_rng(int(seed)).permutation(len(ids))
    counts = builtin.split_counts(len(ids), fractions)
    splits, start = {}, 0
    for split, count in zip(onet_format.SPLITS, counts):
        splits[split] = sorted(ids[i] for i in order[start : start + count])
        onet_format.write_split(cat_dir, split, splits[split])
        start += count
    report = {
        "input": os.path.abspath(os.fspath(input_dir)),
        "category": category,
        "params": params,
        "converted": converted,
        "skipped": [
            {"model_id": r["model_id"], "source": r["source"], "reason": r["reason"]} for r in skipped
        ],
        "render_errors": [
            {"model_id": r["model_id"], "source": r["source"], "reason": r["render_error"]}
            for r in records
            if "render_error" in r
        ],
        "records": records,
        "splits": splits,
        "seconds": round(time.time() - t0, 1),
    }
    tmp = os.path.join(out_dir, f"{REPORT_FILE}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, REPORT_FILE))
    names = {}
    if os.path.exists(os.path.join(out_dir, onet_format.METADATA_FILE)):
        names = {k: v["name"] for k, v in onet_format.read_metadata(out_dir).items()}
    names[category] = category_name or category
    onet_format.write_metadata(out_dir, names)  # Written last: the dataset is complete.
    return report
