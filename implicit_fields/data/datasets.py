"""Reading a dataset in the Occupancy Networks layout and sampling training items.

The layout is the original one (`DATASET/<category>/<model>/points.npz`,
`pointcloud.npz`, optionally `model.binvox`, `DATASET/<category>/<split>.lst`,
`DATASET/metadata.yaml`), so the built-in procedural data and the preprocessed
ShapeNet of the original code load through the same class. Everything here is
numpy; JAX only sees finished batches.

The conditioning input of an object depends on `config.data.input_type`
(`input_type` of the original configs): 'pointcloud' (noisy surface points),
'voxels' (the 32^3 `model.binvox` grid, as the original's `VoxelsField`), or
None / '' (an unconditional model: an empty input per object).
"""

import dataclasses
import os
import threading
from typing import Dict, List, Optional, Sequence

import numpy as np

from implicit_fields import binvox
from implicit_fields.data import onet_format

INPUT_TYPES = ("pointcloud", "voxels", None)
"""Supported `data.input_type` values (None: unconditional, no input)."""


def input_type_of(data_config) -> Optional[str]:
    """`data.input_type` normalised to 'pointcloud', 'voxels' or None ('' and None mean none).

    Raises:
      ValueError: for any other value.
    """
    kind = data_config.get("input_type", "pointcloud") or None
    if kind not in INPUT_TYPES:
        raise ValueError(f"unknown data.input_type {kind!r}; use 'pointcloud', 'voxels' or '' (none)")
    return kind


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """One object of a split: its category id and model id."""

    category: str
    model: str


class ShapesDataset:
    """The objects of one split, with lazily loaded (and optionally cached) arrays.

    Args:
      path: dataset root (holds one folder per category and, usually,
        `metadata.yaml`).
      split: 'train', 'val' or 'test' (reads `<category>/<split>.lst`).
      categories: category ids to use; None means all of `metadata.yaml`, or
        every sub-folder when there is no metadata file.
      cache: keep loaded arrays in memory (fast; about 1.2 MB per object).
      voxels: also load each object's `model.binvox` (voxel inputs).
      voxel_resolution: if set, the voxels per side every `model.binvox` must have.
    """

    def __init__(
        self,
        path: str,
        split: str,
        categories: Optional[Sequence[str]] = None,
        cache: bool = True,
        voxels: bool = False,
        voxel_resolution: Optional[int] = None,
    ):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"dataset folder {path!r} does not exist")
        self.path = path
        self.split = split
        metadata_file = os.path.join(path, "metadata.yaml")
        if os.path.exists(metadata_file):
            self.metadata = onet_format.read_metadata(path)
        else:
            self.metadata = {
                d: {"id": d, "name": d}
                for d in sorted(os.listdir(path))
                if os.path.isdir(os.path.join(path, d))
            }
        if categories:
            missing = [c for c in categories if c not in self.metadata]
            if missing:
                raise ValueError(
                    f"categories {missing} are not in dataset {path!r} "
                    f"(it has {sorted(self.metadata)})"
                )
            self.categories = list(categories)
        else:
            self.categories = sorted(self.metadata)
        if not self.categories:
            raise ValueError(f"dataset {path!r} has no categories")
        self.items: List[ModelRef] = []
        for category in self.categories:
            for model in onet_format.read_split(os.path.join(path, category), split):
                self.items.append(ModelRef(category, model))
        self.cache = cache
        self.voxels = voxels
        self.voxel_resolution = voxel_resolution
        self._cache: Dict[int, Dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.items)

    def category_name(self, category: str) -> str:
        """Human-readable name of a category id ('03001627' -> 'chair')."""
        return str(self.metadata.get(category, {}).get("name", category))

    def model_dir(self, index: int) -> str:
        item = self.items[index]
        return os.path.join(self.path, item.category, item.model)

    def load(self, index: int) -> Dict[str, np.ndarray]:
        """Loads one object's arrays.

        Returns:
          dict with 'points' float32 [N, 3] and 'occupancies' bool [N] (from
          points.npz), 'surface_points' and 'surface_normals' float32 [M, 3]
          (from pointcloud.npz), 'loc' [3] and 'scale' [] ; with `voxels`,
          also 'voxels' bool [R, R, R] (xyz order, from model.binvox).

        Raises:
          DataFormatError: a missing or malformed file (the message names it).
        """
        with self._lock:
            if index in self._cache:
                return self._cache[index]
        model_dir = self.model_dir(index)
        pts = onet_format.load_points_npz(os.path.join(model_dir, "points.npz"))
        pcl = onet_format.load_pointcloud_npz(os.path.join(model_dir, "pointcloud.npz"))
        data = {
            "points": pts["points"],
            "occupancies": pts["occupancies"],
            "surface_points": pcl["points"],
            "surface_normals": pcl["normals"],
            "loc": np.asarray(pts["loc"], np.float32),
            "scale": np.asarray(pts["scale"], np.float32),
        }
        if self.voxels:
            vox_path = os.path.join(model_dir, binvox.VOXELS_FILE)
            vox = binvox.read_binvox(vox_path)
            if len(set(vox.data.shape)) != 1:
                raise binvox.BinvoxError(f"{vox_path}: voxel grid must be cubic, got dims {vox.dims}")
            if self.voxel_resolution and vox.data.shape[0] != self.voxel_resolution:
                raise binvox.BinvoxError(
                    f"{vox_path}: voxel grid is {vox.data.shape[0]}^3 but data.voxel_resolution is "
                    f"{self.voxel_resolution}; use a dataset voxelised at that resolution"
                )
            data["voxels"] = vox.data
        if self.cache:
            with self._lock:
                self._cache[index] = data
        return data


def sample_item(
    data: Dict[str, np.ndarray],
    rng: np.random.Generator,
    num_points: int,
    num_inputs: int,
    input_noise: float,
    points_jitter: float = 1e-4,
    input_type: Optional[str] = "pointcloud",
) -> Dict[str, np.ndarray]:
    """The original's per-object training sample.

    `num_points` query points drawn with replacement from points.npz (plus
    `points_jitter` * N(0,1), as the original does for float16 files) with their
    occupancies, and the object's input (see `object_inputs`).

    Returns:
      dict 'points' float32 [num_points, 3], 'occupancies' float32
      [num_points], 'inputs' float32 [num_inputs, 3] (point cloud),
      [R, R, R] (voxels) or [0] (no input).
    """
    n = data["points"].shape[0]
    idx = rng.integers(0, n, size=num_points)
    points = data["points"][idx].astype(np.float32)
    if points_jitter:
        points = points + points_jitter * rng.standard_normal(points.shape).astype(np.float32)
    occ = data["occupancies"][idx].astype(np.float32)
    inputs = object_inputs(data, rng, num_inputs, input_noise, input_type)
    return {"points": points, "occupancies": occ, "inputs": inputs}


def object_inputs(
    data: Dict[str, np.ndarray],
    rng: np.random.Generator,
    num_inputs: int,
    input_noise: float,
    input_type: Optional[str] = "pointcloud",
) -> np.ndarray:
    """The conditioning input of one object.

    Returns:
      'pointcloud': `sample_inputs` (float32 [num_inputs, 3]); 'voxels': the
      voxel grid as float32 [R, R, R] (as the original's `VoxelsField`, no
      randomness); None: an empty float32 [0].
    """
    if input_type == "pointcloud":
        return sample_inputs(data, rng, num_inputs, input_noise)
    if input_type == "voxels":
        if "voxels" not in data:
            raise ValueError("voxel inputs requested but the dataset was opened without voxels=True")
        return data["voxels"].astype(np.float32)
    if input_type is None:
        return np.zeros((0,), np.float32)
    raise ValueError(f"unknown input type {input_type!r}; use 'pointcloud', 'voxels' or None")


def sample_inputs(data: Dict[str, np.ndarray], rng: np.random.Generator, num_inputs: int, input_noise: float):
    """`num_inputs` surface points (with replacement) plus N(0, input_noise^2) noise.

    Returns:
      float32 [num_inputs, 3].
    """
    m = data["surface_points"].shape[0]
    jdx = rng.integers(0, m, size=num_inputs)
    inputs = data["surface_points"][jdx].astype(np.float32)
    if input_noise:
        inputs = inputs + input_noise * rng.standard_normal(inputs.shape).astype(np.float32)
    return inputs


def eval_inputs(
    data: Dict[str, np.ndarray],
    index: int,
    num_inputs: int,
    input_noise: float,
    seed: int = 0,
    input_type: Optional[str] = "pointcloud",
):
    """The input of one evaluation object, deterministic in (seed, index).

    Returns:
      float32 [num_inputs, 3] for point clouds (see `object_inputs` for the others).
    """
    rng = np.random.default_rng([seed, 7919, index])
    return object_inputs(data, rng, num_inputs, input_noise, input_type)


def eval_query_points(data: Dict[str, np.ndarray], index: int, num_points: int, seed: int = 0):
    """Fixed query points of one evaluation object, deterministic in (seed, index).

    `num_points` of the object's points.npz points drawn without replacement
    (repeated cyclically if it has fewer), so any prefix is a uniform subsample.

    Returns:
      (points float32 [num_points, 3], occupancies float32 [num_points]).
    """
    rng = np.random.default_rng([seed, 104729, index])
    n = data["points"].shape[0]
    idx = rng.choice(n, size=min(num_points, n), replace=False)
    idx = np.resize(idx, num_points)
    return data["points"][idx].astype(np.float32), data["occupancies"][idx].astype(np.float32)


def from_config(data_config, split: str, cache: Optional[bool] = None) -> ShapesDataset:
    """The `split` of the dataset that `config.data` describes (`cache` defaults to data.cache).

    Voxels are loaded when `data.input_type` is 'voxels'.
    """
    return ShapesDataset(
        data_config.path,
        split,
        categories=list(data_config.categories) or None,
        cache=data_config.cache if cache is None else cache,
        voxels=input_type_of(data_config) == "voxels",
        voxel_resolution=data_config.get("voxel_resolution", None),
    )
