"""The built-in dataset: procedural ShapeNet-like objects in the Occupancy Networks layout.

::

    DATASET/metadata.yaml
    DATASET/<synset>/{train,val,test}.lst
    DATASET/<synset>/<model_id>/points.npz      100k uniform points in the cube of side 1.1
    DATASET/<synset>/<model_id>/pointcloud.npz  100k surface points with normals
    DATASET/<synset>/<model_id>/shape.json      the normalised exact shape (Shape.to_dict())

Occupancies are exact (``Shape.contains`` of the normalised shape, evaluated at the stored
float16 coordinates, so rounding never flips a label). Every object's random stream is
derived from ``(seed, category index, object index)``, so a dataset is a function of its
seed whatever the number of workers. Objects are written to a temporary folder and renamed
when complete: an interrupted run leaves no half-written object, and re-running skips the
objects already there. The split lists and then ``metadata.yaml`` are written last, so a
dataset folder with a ``metadata.yaml`` is complete.
"""

import json
import multiprocessing
import os
import shutil

import numpy as np
from tqdm import tqdm

from implicit_fields.data import onet_format
from implicit_fields.shapes import CATEGORIES, category_synset, make_shape, normalize

__all__ = ["GENERATOR_VERSION", "generate_object", "generate_dataset", "split_counts", "model_id"]

GENERATOR_VERSION = 1
"""Bumped whenever the generators change; stored in every shape.json."""

_TMP_PREFIX = ".tmp-"
_SHAPE_FILE = "shape.json"
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
        dict with ``shape`` (the normalised :class:`~implicit_fields.shapes.Shape`),
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


def _usable_cores():
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
):
    """Generate (or complete) the built-in dataset in the Occupancy Networks layout.

    Objects of a category are split in index order (they are i.i.d.): the first ones go to
    train, then val, then test. With fewer objects than non-empty splits some ``.lst`` files
    stay empty (and :func:`~implicit_fields.data.onet_format.read_split` rejects them); use
    at least 3 objects per category for three non-empty splits.

    Args:
        out_dir: path of the dataset root (created if needed).
        categories: None for all of :data:`~implicit_fields.shapes.CATEGORIES`, or a list
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

    workers = _usable_cores() if num_workers is None else int(num_workers)
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
        raise ValueError(
            f"{folder} was generated with {stored}, not {params}; use another out_dir"
        )
