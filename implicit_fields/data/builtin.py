"""The built-in dataset: procedural ShapeNet-like objects in the Occupancy Networks layout.

::

    DATASET/metadata.yaml
    DATASET/<synset>/{train,val,test}.lst
    DATASET/<synset>/<model_id>/points.npz      100k uniform points in the cube of side 1.1
    DATASET/<synset>/<model_id>/pointcloud.npz  100k surface points with normals
    DATASET/<synset>/<model_id>/shape.json      the normalised exact shape (Shape.to_dict();
                                                read by onet_format.load_shape)
    DATASET/<synset>/<model_id>/model.binvox    optional 32^3 voxelisation (add_voxels)
    DATASET/<synset>/<model_id>/img_choy2016/   optional renders 000.png..023.png and
                                                cameras.npz (add_images)

Occupancies are exact (``Shape.contains`` of the normalised shape, evaluated at the stored
float16 coordinates, so rounding never flips a label). Every object's random stream is
derived from ``(seed, category index, object index)``, so a dataset is a function of its
seed whatever the number of workers. Objects are written to a temporary folder and renamed
when complete: an interrupted run leaves no half-written object, and re-running skips the
objects already there. The split lists and then ``metadata.yaml`` are written last, so a
dataset folder with a ``metadata.yaml`` is complete.

Voxelisations (the input of the voxel super-resolution model) are computed from the exact
``shape.json`` in the original's convention (``im2mesh/utils/voxels.py``,
``VoxelGrid.from_mesh(..., method='ray')`` of the normalised mesh): a grid over the unit cube
[-0.5, 0.5]^3, written as ``model.binvox`` in xyz order, where a voxel is occupied when the
solid meets it (the original marks voxels whose centre is inside plus voxels the surface
crosses). :func:`add_voxels` adds them to an existing dataset folder; ``generate_dataset``
does so with ``voxel_resolution > 0``.

Single-view images (the input of the single-image model) follow the original's
``img_choy2016`` layout: 24 views ``000.png`` .. ``023.png`` (the original's are 137 x 137
JPEGs; ours are lossless PNGs, and the reader takes both) on a white background, with
``cameras.npz`` (``world_mat_i``, ``camera_mat_i``, in the DVR convention of
:mod:`implicit_fields.cameras`). They are exact renders of ``shape.json``
(:func:`implicit_fields.data.shape_render.render_view`); cameras and colours derive from
``(seed, synset, model_id)``. :func:`add_images` adds them to an existing dataset folder.
"""

import json
import logging
import multiprocessing
import os
import shutil
import zlib

import numpy as np
from tqdm import tqdm

from implicit_fields import cameras as cam_lib
from implicit_fields import vis
from implicit_fields.data import binvox, datasets, onet_format, shape_render
from implicit_fields.data.shapes import CATEGORIES, category_synset, make_shape, normalize

logger = logging.getLogger(__name__)

__all__ = [
    "GENERATOR_VERSION",
    "generate_object",
    "generate_dataset",
    "split_counts",
    "usable_cores",
    "model_id",
    "voxelize_shape",
    "add_voxels",
    "IMAGES_DIR",
    "IMAGES_VERSION",
    "write_images",
    "images_done",
    "render_images",
    "add_images",
    "ensure_dataset",
]

GENERATOR_VERSION = 1
"""Bumped whenever the generators change; stored in every shape.json."""

_TMP_PREFIX = onet_format.TMP_PREFIX  # Readers (onet_format.object_folders) skip these folders.
_SHAPE_FILE = onet_format.SHAPE_FILE
_BOX_SIZE = 1.1  # Side of the cube of uniform points (the original points_padding 0.1).


def model_id(index):
    """Model id of the object with a given index (str, e.g. ``"obj_000042"``)."""
    return f"obj_{int(index):06d}"


def _object_rngs(seed, category_index, object_index):
    ss = np.random.SeedSequence([int(seed), int(category_index), int(object_index)])
    return [np.random.default_rng(s) for s in ss.spawn(3)]


def generate_object(category, index, seed=0, num_points=100_000, num_surface_points=100_000):
    """Generate one object of the built-in dataset in memory.

    Args:
        category: str, name or synset id.
        index: int >= 0, object index within the category.
        seed: int >= 0, dataset seed.
        num_points: int, uniform points in [-0.55, 0.55]^3.
        num_surface_points: int, surface samples.

    Returns:
        dict with ``shape`` (the normalised :class:`~implicit_fields.data.shapes.Shape`),
        ``loc`` (3,) float64, ``scale`` float, ``points`` (num_points, 3) float16,
        ``occupancies`` (num_points,) bool, ``surface_points`` and ``normals``
        (num_surface_points, 3) float64.
    """
    synset = category_synset(category)
    category_index = list(CATEGORIES).index(synset)
    shape_rng, points_rng, surface_rng = _object_rngs(seed, category_index, index)
    shape, loc, scale = normalize(make_shape(synset, shape_rng))
    half = _BOX_SIZE / 2.0
    points = points_rng.uniform(-half, half, (int(num_points), 3)).astype(np.float16)
    occupancies = shape.contains(points.astype(np.float64))
    surface, normals = shape.sample_surface(int(num_surface_points), surface_rng)
    return {
        "shape": shape,
        "loc": loc,
        "scale": scale,
        "points": points,
        "occupancies": occupancies,
        "surface_points": surface,
        "normals": normals,
    }


def _generator_params(seed, category_index, object_index, num_points, num_surface_points):
    return {
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "category_index": int(category_index),
        "object_index": int(object_index),
        "num_points": int(num_points),
        "num_surface_points": int(num_surface_points),
    }


def _write_object(task):
    """Generate one object and write it atomically; returns its final folder."""
    cat_dir = task["category_dir"]
    final = os.path.join(cat_dir, task["model_id"])
    if os.path.isdir(final):
        return final
    obj = generate_object(
        task["synset"],
        task["object_index"],
        task["seed"],
        task["num_points"],
        task["num_surface_points"],
    )
    tmp = os.path.join(cat_dir, f"{_TMP_PREFIX}{task['model_id']}-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    onet_format.write_points_npz(
        os.path.join(tmp, onet_format.POINTS_FILE),
        obj["points"],
        obj["occupancies"],
        obj["loc"],
        obj["scale"],
    )
    onet_format.write_pointcloud_npz(
        os.path.join(tmp, onet_format.POINTCLOUD_FILE),
        obj["surface_points"],
        obj["normals"],
        obj["loc"],
        obj["scale"],
    )
    record = {
        "category": task["synset"],
        "category_name": CATEGORIES[task["synset"]],
        "model_id": task["model_id"],
        "loc": obj["loc"].tolist(),
        "scale": float(obj["scale"]),
        "generator": task["params"],
    }
    record.update(obj["shape"].to_dict())
    with open(os.path.join(tmp, _SHAPE_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f)
    try:
        os.rename(tmp, final)
    except OSError:
        if not os.path.isdir(final):
            raise
        shutil.rmtree(tmp)  # Another run finished it first.
    return final


def split_counts(n, fractions):
    """Objects per split: largest remainders; every split with a positive fraction gets at
    least one object when ``n`` allows (with too few objects, larger fractions first).

    Args:
        n: int, number of objects.
        fractions: sequence of non-negative floats summing to 1.

    Returns:
        list[int] summing to ``n``.
    """
    f = np.asarray(fractions, dtype=np.float64)
    raw = f * n
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    # Give empty splits with a positive fraction one object each, largest fraction first,
    # taken from the largest split while it has more than one.
    for i in np.argsort(-f, kind="stable"):
        if f[i] > 0 and counts[i] == 0 and counts.max() > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    return counts.tolist()


def usable_cores():
    """Number of CPU cores this process may run on (the default number of workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not on Linux.
        return os.cpu_count() or 1


def generate_dataset(
    out_dir,
    categories=None,
    objects_per_category=125,
    seed=0,
    num_points=100_000,
    num_surface_points=100_000,
    split_fractions=(0.7, 0.1, 0.2),
    num_workers=None,
    progress=True,
    voxel_resolution=0,
):
    """Generate (or complete) the built-in dataset in the Occupancy Networks layout.

    Objects of a category are split in index order (they are i.i.d.): the first ones go to
    train, then val, then test. With fewer objects than non-empty splits some ``.lst`` files
    stay empty (and :func:`~implicit_fields.data.onet_format.read_split` rejects them); use
    at least 3 objects per category for three non-empty splits.

    Args:
        out_dir: path of the dataset root (created if needed).
        categories: None for all of :data:`~implicit_fields.data.shapes.CATEGORIES`, or a list
            of names / synset ids.
        objects_per_category: int >= 1.
        seed: int >= 0.
        num_points: int >= 1, uniform points per object in points.npz.
        num_surface_points: int >= 1, surface points per object in pointcloud.npz.
        split_fractions: (train, val, test) non-negative fractions summing to 1.
        num_workers: worker processes; None = usable cores; 0 or 1 = in-process. Workers
            are spawned (safe after JAX is imported), so a script calling this with workers
            needs the usual ``if __name__ == "__main__":`` guard.
        progress: show a tqdm progress bar.
        voxel_resolution: int >= 0; if positive, also write each object's
            ``model.binvox`` at that resolution (see :func:`add_voxels`).

    Returns:
        str, ``out_dir``.

    Raises:
        ValueError: bad arguments, or ``out_dir`` holds objects generated with other
            parameters (seed, point counts or generator version).
    """
    out_dir = os.fspath(out_dir)
    if categories is None:
        synsets = list(CATEGORIES)
    else:
        if isinstance(categories, str):
            categories = [categories]
        synsets = list(dict.fromkeys(category_synset(c) for c in categories))
    if int(objects_per_category) < 1:
        raise ValueError(f"objects_per_category must be >= 1, got {objects_per_category}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if int(num_points) < 1 or int(num_surface_points) < 1:
        raise ValueError("num_points and num_surface_points must be >= 1")
    fractions = np.asarray(split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"split_fractions must be 3 non-negative numbers summing to 1, got {split_fractions}"
        )
    n_obj = int(objects_per_category)

    os.makedirs(out_dir, exist_ok=True)
    names = {}
    if os.path.exists(os.path.join(out_dir, onet_format.METADATA_FILE)):
        names = {k: v["name"] for k, v in onet_format.read_metadata(out_dir).items()}
    names.update({s: CATEGORIES[s] for s in synsets})

    tasks, done = [], 0
    all_synsets = list(CATEGORIES)
    for synset in synsets:
        cat_index = all_synsets.index(synset)
        cat_dir = os.path.join(out_dir, synset)
        os.makedirs(cat_dir, exist_ok=True)
        for entry in os.listdir(cat_dir):  # Leftovers of an interrupted run.
            if entry.startswith(_TMP_PREFIX):
                shutil.rmtree(os.path.join(cat_dir, entry), ignore_errors=True)
        for i in range(n_obj):
            mid = model_id(i)
            params = _generator_params(seed, cat_index, i, num_points, num_surface_points)
            final = os.path.join(cat_dir, mid)
            if os.path.isdir(final):
                _check_existing(final, params)
                done += 1
                continue
            tasks.append(
                {
                    "category_dir": cat_dir,
                    "synset": synset,
                    "model_id": mid,
                    "object_index": i,
                    "seed": int(seed),
                    "num_points": int(num_points),
                    "num_surface_points": int(num_surface_points),
                    "params": params,
                }
            )

    workers = usable_cores() if num_workers is None else int(num_workers)
    workers = max(1, min(workers, len(tasks)))
    with tqdm(
        total=len(tasks) + done,
        initial=done,
        disable=not progress,
        desc="built-in dataset",
        unit="obj",
    ) as bar:
        if workers == 1:
            for task in tasks:
                _write_object(task)
                bar.update(1)
        elif tasks:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_object, tasks, chunksize=1):
                    bar.update(1)

    if voxel_resolution:
        add_voxels(out_dir, voxel_resolution, categories=synsets, num_workers=num_workers, progress=progress)
    counts = split_counts(n_obj, fractions)
    for synset in synsets:
        cat_dir = os.path.join(out_dir, synset)
        start = 0
        for split, count in zip(onet_format.SPLITS, counts):
            onet_format.write_split(cat_dir, split, [model_id(i) for i in range(start, start + count)])
            start += count
    # Written last: a dataset with a metadata.yaml is complete.
    onet_format.write_metadata(out_dir, names)
    return out_dir


def _check_existing(folder, params):
    path = os.path.join(folder, _SHAPE_FILE)
    try:
        with open(path, "r", encoding="utf-8") as f:
            stored = json.load(f).get("generator")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read an existing object ({e}); remove {folder}") from e
    if stored != params:
        raise ValueError(f"{folder} was generated with {stored}, not {params}; use another out_dir")


# --------------------------------------------------------------------------------------
# Voxelisations.
# --------------------------------------------------------------------------------------


def _run_tasks(fn, tasks, num_workers, progress, desc):
    """Runs `fn` over `tasks` on a spawn pool (or inline for one worker) with a bar."""
    if not tasks:
        return 0
    workers = usable_cores() if num_workers is None else int(num_workers)
    workers = max(1, min(workers, len(tasks)))
    with tqdm(total=len(tasks), disable=not progress, desc=desc, unit="obj") as bar:
        if workers == 1:
            for task in tasks:
                fn(task)
                bar.update(1)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for _ in pool.imap_unordered(fn, tasks, chunksize=1):
                    bar.update(1)
    return len(tasks)


def voxelize_shape(shape, resolution=32, subdivisions=4, num_surface_points=200_000, seed=0):
    """Voxelise an exact shape on the unit cube [-0.5, 0.5]^3 (the original's ``ray`` method).

    Voxel (i, j, k) covers ``[-0.5 + i/R, -0.5 + (i+1)/R]`` along x (likewise j along y, k
    along z) and is occupied when the solid meets it: the original marks a voxel when its
    centre is inside or the surface crosses it. Here a voxel is occupied when any point of a
    ``subdivisions + 1`` lattice per voxel edge (corners, faces and interior, so the centre is
    included for even ``subdivisions``) is inside, or when one of ``num_surface_points``
    area-uniform surface samples falls in it (which catches parts thinner than the lattice
    spacing).

    Args:
        shape: :class:`~implicit_fields.data.shapes.Shape` in normalised coordinates.
        resolution: int >= 1, voxels per side.
        subdivisions: int >= 1, lattice cells per voxel edge.
        num_surface_points: int >= 0, surface samples.
        seed: int, seed of the surface samples.

    Returns:
        bool (resolution, resolution, resolution) array, xyz order.
    """
    res, sub = int(resolution), int(subdivisions)
    if res < 1 or sub < 1:
        raise ValueError(f"resolution and subdivisions must be >= 1, got {resolution}, {subdivisions}")
    n = res * sub + 1
    axis = np.arange(n, dtype=np.float64) / (res * sub) - 0.5
    occ = np.zeros((res, res, res), dtype=bool)
    # Lattice in x slabs to bound memory; lattice point (a, b, c) lies in the voxels
    # floor((a - 1) / sub) .. floor(a / sub) along each axis (two of them on a voxel face).
    yz = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    inside = np.zeros((n, n, n), dtype=bool)
    for a in range(n):
        pts = np.concatenate([np.full((yz.shape[0], 1), axis[a]), yz], axis=1)
        inside[a] = shape.contains(pts).reshape(n, n)
    for axis_index in range(3):
        # Reduce each axis from lattice points to voxels: voxel v takes points v*sub..(v+1)*sub.
        moved = np.moveaxis(inside, axis_index, 0)
        windows = np.stack([moved[s : s + res * sub : sub] for s in range(sub + 1)])
        inside = np.moveaxis(windows.any(axis=0), 0, axis_index)
    occ |= inside
    if num_surface_points:
        surface, _ = shape.sample_surface(int(num_surface_points), np.random.default_rng(seed))
        idx = np.floor((surface + 0.5) * res).astype(np.int64)
        idx = idx[((idx >= 0) & (idx < res)).all(axis=1)]
        occ[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return occ


def _write_voxels(task):
    """Voxelise one object folder from its shape.json; returns the binvox path."""
    folder, resolution = task
    out = os.path.join(folder, binvox.VOXELS_FILE)
    if os.path.exists(out):
        return out
    binvox.write_binvox(out, voxelize_shape(onet_format.load_shape(folder), resolution))
    return out


def add_voxels(dataset_dir, resolution=32, categories=None, num_workers=None, progress=True):
    """Write ``model.binvox`` for every object of a built-in dataset folder that lacks one.

    Works on a complete or a partly generated dataset: every ``<synset>/<model_id>`` folder
    holding a ``shape.json`` gets its voxelisation (atomically written; existing files are
    kept, so an interrupted run resumes).

    Args:
        dataset_dir: dataset root.
        resolution: int >= 1, voxels per side (the original: 32).
        categories: None for every category folder, or a list of names / synset ids.
        num_workers: worker processes; None = usable cores; 0 or 1 = in-process.
        progress: show a tqdm progress bar.

    Returns:
        int, the number of files written.

    Raises:
        ValueError: a folder's shape.json is unreadable, or a category folder is missing.
    """
    tasks = [
        (folder, int(resolution))
        for _, _, folder in onet_format.object_folders(dataset_dir, categories)
        if not os.path.exists(os.path.join(folder, binvox.VOXELS_FILE))
    ]
    return _run_tasks(_write_voxels, tasks, num_workers, progress, "voxelise")


# --------------------------------------------------------------------------------------
# Single-view renders (img_choy2016).
# --------------------------------------------------------------------------------------

IMAGES_DIR = "img_choy2016"
"""Folder of an object's single-view renders, as in the original's ShapeNet data."""

_IMAGES_INFO = "images.json"  # Ours: how the renders were made; written last (completion marker).
IMAGES_VERSION = 1
"""Bumped whenever the single-view renders change; stored in every images.json."""


def write_images(folder, images, cameras, record):
    """Write an ``img_choy2016`` folder: ``000.png`` ..., ``cameras.npz`` and ``images.json``.

    The layout every single-view render of ours has (built-in shapes here, real meshes in
    :mod:`implicit_fields.data.prepare`). Files go to a temporary folder beside ``folder``
    first, which replaces ``folder`` when complete (``images.json`` is written last), so
    an interrupted run never leaves a half-written folder.

    Args:
        folder: output folder, ``<object>/img_choy2016``.
        images: iterable of V uint8 (H, W, 3) RGB images (consumed one at a time).
        cameras: dict with ``camera_mat``, ``world_mat`` (and ``scale_mat``), (V, 4, 4).
        record: JSON-able dict written to ``images.json`` (how the images were made; must
            hold ``version``, ``n_views`` and ``resolution``, which decide whether a later
            run keeps the folder).

    Returns:
        dict, ``record``.
    """
    folder = os.fspath(folder)
    parent = os.path.dirname(folder) or "."
    tmp = os.path.join(parent, f"{_TMP_PREFIX}{os.path.basename(folder)}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    count = 0
    for i, image in enumerate(images):
        vis.write_png(os.path.join(tmp, f"{i:03d}.png"), image)
        count += 1
    n_cams = np.asarray(cameras["world_mat"]).reshape(-1, 4, 4).shape[0]
    if count != n_cams or count != int(record.get("n_views", -1)):
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(
            f"{folder}: {count} images, {n_cams} cameras and n_views={record.get('n_views')} must agree"
        )
    onet_format.save_cameras(os.path.join(tmp, "cameras.npz"), cameras)
    with open(os.path.join(tmp, _IMAGES_INFO), "w", encoding="utf-8") as f:
        json.dump(record, f)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.rename(tmp, folder)
    return record


def render_images(
    shape, folder, n_views=24, resolution=64, seed=0, radius=2.0, elevation_range=(10.0, 40.0), texture="none"
):
    """Render ``n_views`` views of a shape into ``folder`` in the ``img_choy2016`` layout.

    Writes ``000.png`` ... (RGB, white background), ``cameras.npz`` and ``images.json``
    (the parameters; written last) with :func:`write_images`.

    Args:
        shape: :class:`~implicit_fields.data.shapes.Shape` in normalised coordinates.
        folder: output folder, ``<object>/img_choy2016``.
        n_views: int >= 1.
        resolution: int, image side in pixels.
        seed: int or list of ints: cameras and colours.
        radius: camera distance from the origin.
        elevation_range: degrees, (low, high).
        texture: 'none' or 'stripes' (:class:`~implicit_fields.data.shape_render.Appearance`).

    Returns:
        dict, the images.json record.
    """
    cam_seed, app_seed = np.random.SeedSequence(seed).spawn(2)
    focal = shape_render.fit_focal(shape, radius)
    cams = cam_lib.sample_views(int(n_views), radius, cam_seed, elevation_range, focal)
    appearance = shape_render.Appearance.random(len(shape.primitives), app_seed, texture)
    views = (
        shape_render.render_view(shape, cam_lib.camera_at(cams, i), resolution, resolution, appearance)
        for i in range(int(n_views))
    )
    record = {
        "version": IMAGES_VERSION,
        "n_views": int(n_views),
        "resolution": int(resolution),
        "seed": [int(x) for x in np.atleast_1d(seed)],
        "radius": float(radius),
        "elevation_range": [float(e) for e in elevation_range],
        "texture": texture,
    }
    return write_images(folder, (view["image"] for view in views), cams, record)


def _write_images(task):
    """Render one object folder's img_choy2016 from its shape.json."""
    folder, n_views, resolution, seed = task
    render_images(onet_format.load_shape(folder), os.path.join(folder, IMAGES_DIR), n_views, resolution, seed)
    return folder


def images_done(folder, n_views, resolution):
    """Whether ``folder/img_choy2016`` is complete with these view count and resolution.

    Args:
        folder: an object folder.
        n_views, resolution: the wanted parameters.

    Returns:
        bool: ``images.json`` exists (so the folder is complete), from this version of
        the writer, with these ``n_views`` and ``resolution``.
    """
    marker = os.path.join(folder, IMAGES_DIR, _IMAGES_INFO)
    try:
        with open(marker, "r", encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        old.get("version") == IMAGES_VERSION
        and old.get("n_views") == int(n_views)
        and old.get("resolution") == int(resolution)
    )


def add_images(
    dataset_dir, n_views=24, resolution=64, categories=None, seed=0, num_workers=None, progress=True
):
    """Render ``img_choy2016/`` for every object of a built-in dataset folder that lacks it.

    Objects whose renders were made with another view count or resolution are rendered
    again; complete ones are kept, so an interrupted run resumes. An object's cameras and
    colours depend only on ``(seed, synset, model_id)``.

    Args:
        dataset_dir: dataset root.
        n_views: int >= 1, views per object (the original: 24).
        resolution: int, image side in pixels (the original: 137, resized to 224).
        categories: None for every category folder, or a list of names / synset ids.
        seed: int >= 0.
        num_workers: worker processes; None = usable cores; 0 or 1 = in-process.
        progress: show a tqdm progress bar.

    Returns:
        int, the number of objects rendered.
    """
    tasks = []
    for synset, entry, folder in onet_format.object_folders(dataset_dir, categories):
        if not images_done(folder, n_views, resolution):
            obj_seed = [int(seed), zlib.crc32(synset.encode()), zlib.crc32(entry.encode()), 2016]
            tasks.append((folder, int(n_views), int(resolution), obj_seed))
    return _run_tasks(_write_images, tasks, num_workers, progress, "render images")


def _check_generated_with(data_config) -> None:
    """Refuses a built-in dataset generated with other settings than `data_config` asks for.

    What was generated is read from the files (the categories, the objects listed in a
    category's splits, the point counts of its first object), so that datasets of any
    earlier version are checked too. Nothing is generated over: the message lists each
    differing key, what the dataset has and what was asked.
    """
    path = data_config.path
    asked = [category_synset(c) for c in data_config.builtin_categories] or list(CATEGORIES)
    present = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    missing = [c for c in asked if c not in present]
    differ = []
    if missing:
        differ.append(f"config.data.builtin_categories: {missing} missing (it has {present})")
    first = next((c for c in asked if c in present), None)
    if first is not None:
        folder = os.path.join(path, first)
        listed = []
        for split in ("train", "val", "test"):
            split_file = os.path.join(folder, f"{split}.lst")
            if os.path.exists(split_file):
                with open(split_file, encoding="utf-8") as f:
                    listed += [line.strip() for line in f if line.strip()]
        count = len(set(listed))
        if count != data_config.builtin_objects_per_category:
            differ.append(
                f"config.data.builtin_objects_per_category: it has {count}, asked "
                f"{data_config.builtin_objects_per_category}"
            )
        if listed:
            obj = os.path.join(folder, sorted(listed)[0])
            for key, name in (
                ("builtin_num_points", "points.npz"),
                ("builtin_num_surface_points", "pointcloud.npz"),
            ):
                file = os.path.join(obj, name)
                if os.path.exists(file):
                    with onet_format.open_npz(file) as data:
                        n = int(data["points"].shape[0])
                    if n != data_config[key]:
                        differ.append(f"config.data.{key}: it has {n}, asked {data_config[key]}")
    if differ:
        raise ValueError(
            f"config.data.path={path!r}: the built-in dataset there was generated with other settings "
            f"({'; '.join(differ)}); use another config.data.path (or move that folder away to generate "
            f"it again)"
        )


def ensure_dataset(data_config, progress: bool = True) -> str:
    """Returns the dataset path of `data_config`, generating the built-in dataset there if it is missing.

    With `data.builtin`, a folder without `metadata.yaml` gets the built-in
    dataset (`generate_dataset` with the config's categories, object count and
    point counts, seed 0); with voxel inputs (`data.input_type='voxels'`)
    objects without a `model.binvox` get one, and with image inputs ('img')
    objects without `img_choy2016/` renders get them. Without `data.builtin`
    the folder must exist.

    Raises:
      FileNotFoundError: when the folder is missing and `data.builtin` is off.
      ValueError: when built-in renders are asked for in another folder than `IMAGES_DIR`.
    """
    path = data_config.path
    input_type = datasets.input_type_of(data_config)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"config.data.path={path!r}: is a file, not a dataset folder")
    if data_config.builtin and os.path.exists(os.path.join(path, onet_format.METADATA_FILE)):
        _check_generated_with(data_config)
    if not os.path.exists(os.path.join(path, onet_format.METADATA_FILE)):
        if not data_config.builtin:
            if not os.path.isdir(path):
                raise FileNotFoundError(
                    f"config.data.path={path!r}: no such dataset folder (config.data.builtin=True "
                    f"generates the built-in dataset there)"
                )
            return path
        logger.info("generating the built-in dataset at %s", path)
        generate_dataset(
            path,
            categories=list(data_config.builtin_categories) or None,
            objects_per_category=data_config.builtin_objects_per_category,
            seed=0,
            num_points=data_config.builtin_num_points,
            num_surface_points=data_config.builtin_num_surface_points,
            progress=progress,
            voxel_resolution=data_config.voxel_resolution if input_type == "voxels" else 0,
        )
    elif input_type == "voxels" and data_config.builtin:
        added = add_voxels(
            path,
            data_config.voxel_resolution,
            categories=list(data_config.categories) or None,
            progress=progress,
        )
        if added:
            logger.info("added %d voxelisations to %s", added, path)
    if input_type == "img" and data_config.builtin:
        if data_config.img_folder != IMAGES_DIR:
            raise ValueError(
                f"built-in renders are written to {IMAGES_DIR!r}, "
                f"not data.img_folder={data_config.img_folder!r}"
            )
        added = add_images(
            path,
            data_config.img_n_views,
            data_config.builtin_img_resolution,
            categories=list(data_config.categories) or None,
            progress=progress,
        )
        if added:
            logger.info("rendered the views of %d objects in %s", added, path)
    return path
