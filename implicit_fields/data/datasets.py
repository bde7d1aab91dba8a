"""Reading a dataset in the Occupancy Networks layout and sampling training items.

The layout is the original one (`DATASET/<category>/<model>/points.npz`,
`pointcloud.npz`, optionally `model.binvox` and `img_choy2016/`,
`DATASET/<category>/<split>.lst`,
`DATASET/metadata.yaml`), so the built-in procedural data and the preprocessed
ShapeNet of the original code load through the same class. Everything here is
numpy; JAX only sees finished batches.

The conditioning input of an object depends on `config.data.input_type`
(`input_type` of the original configs): 'pointcloud' (noisy surface points),
'voxels' (the 32^3 `model.binvox` grid, as the original's `VoxelsField`), 'img'
(one view of `img_choy2016/`, as the original's `ImagesField`: a random view of
the object's renders in training, view 0 in evaluation), or None / '' (an
unconditional model: an empty input per object). With `data.img_with_camera`
(the original's `ImagesField(with_camera=True)`) an image item also carries the
chosen view's `world_mat` and `camera_mat` from the folder's `cameras.npz`, as
'inputs.world_mat' and 'inputs.camera_mat' (the original's batch keys; float32
[4, 4] in the convention of `implicit_fields.cameras`, whose [-1, 1] pixel units
make them independent of `img_size`). Models ignore them.

ConvONet's multi-file layout (its synthetic rooms, `implicit_fields.data.rooms`)
loads through the same class: a scene folder with `points_iou/points_iou_XX.npz`
and `pointcloud/pointcloud_XX.npz` instead of `points.npz` and `pointcloud.npz`
(`onet_format.detect_layout` tells them apart from the files of the first listed
object). A scene's item holds the arrays of its files 00, which evaluation uses
(as `eval_query_points`, `eval_inputs`, `iou_points` read them); in training
`sample_item` draws one points file and one point-cloud file per item from its
rng (independently, as the original's fields with `multi_files` do) and reads
them from disk.
"""

import dataclasses
import os
import threading
from typing import Dict, List, Optional, Sequence

import numpy as np

from implicit_fields.data import binvox, image_io, onet_format

INPUT_TYPES = ("pointcloud", "voxels", "img", None)
"""Supported `data.input_type` values (None: unconditional, no input)."""


def input_type_of(data_config) -> Optional[str]:
    """`data.input_type` normalised to 'pointcloud', 'voxels', 'img' or None ('' and None mean none).

    Raises:
      ValueError: for any other value.
    """
    kind = data_config.get("input_type", "pointcloud") or None
    if kind not in INPUT_TYPES:
        raise ValueError(f"unknown data.input_type {kind!r}; use 'pointcloud', 'voxels', 'img' or '' (none)")
    return kind


CAMERA_KEYS = ("inputs.world_mat", "inputs.camera_mat")
"""Item keys of the chosen view's camera matrices with `data.img_with_camera`."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
"""Image files read from an `img_choy2016` folder (decoded by Pillow)."""


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an [H, W, C] image to [size, size, C] (pixel centres aligned).

    Downsampling by more than 2x first averages over the covered source pixels
    (an area filter), so small renders of large images do not alias.

    Returns:
      float32 [size, size, C].
    """
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image

    def weights(n_in):
        # [size, n_in] interpolation matrix: tent filter widened by the scale when shrinking.
        scale = n_in / size
        support = max(scale, 1.0)
        centres = (np.arange(size) + 0.5) * scale - 0.5
        d = np.abs(np.arange(n_in)[None, :] - centres[:, None]) / support
        wts = np.maximum(0.0, 1.0 - d)
        return (wts / wts.sum(axis=1, keepdims=True)).astype(np.float32)

    return np.einsum("ih,hwc,jw->ijc", weights(h), image, weights(w)).astype(np.float32)


def load_images(folder: str, size: Optional[int] = None) -> np.ndarray:
    """The views of an `img_choy2016` folder (`000.jpg` .. or `000.png` ..), in file order.

    Args:
      folder: the object's `img_choy2016` folder.
      size: if set, every view is resized to [size, size] (the original: 224).

    Returns:
      uint8 [V, H, W, 3] RGB.

    Raises:
      DataFormatError: a missing folder, no images or an unreadable image (the message
        names the file).
    """
    if not os.path.isdir(folder):
        raise onet_format.DataFormatError(f"{folder}: image folder not found")
    files = sorted(
        f
        for f in os.listdir(folder)
        if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS and not f.startswith(".")
    )
    if not files:
        raise onet_format.DataFormatError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    views = []
    for name in files:
        rgb = image_io.read_rgb(os.path.join(folder, name))  # float32 [H, W, 3] in [0, 1]
        if size:
            rgb = resize_image(rgb, int(size))
        views.append(np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8))
    shapes = {v.shape for v in views}
    if len(shapes) != 1:
        raise onet_format.DataFormatError(f"{folder}: views of different sizes {sorted(shapes)}")
    return np.stack(views)


def load_image_cameras(folder: str, num_views: int) -> Dict[str, np.ndarray]:
    """The camera matrices of the views of an `img_choy2016` folder (its `cameras.npz`).

    View `i` (the i-th image in file order) uses `world_mat_i` and `camera_mat_i`, as
    the original's `ImagesField`.

    Args:
      folder: the object's `img_choy2016` folder.
      num_views: number of images in it.

    Returns:
      dict 'world_mat' and 'camera_mat': float32 [num_views, 4, 4].

    Raises:
      DataFormatError: a missing or malformed `cameras.npz`, or fewer cameras than
        images (the message names the file).
    """
    path = os.path.join(folder, "cameras.npz")
    if not os.path.isfile(path):
        raise onet_format.DataFormatError(f"{path}: camera file not found (needed by data.img_with_camera)")
    cams = onet_format.load_cameras(path)  # Views 0, 1, ... as long as world_mat_i exists.
    available = cams["world_mat"].shape[0]
    if available < num_views:
        raise onet_format.DataFormatError(f"{path}: {available} cameras for {num_views} images in {folder}")
    return {k: cams[k][:num_views].astype(np.float32) for k in ("world_mat", "camera_mat")}


def image_view(data: Dict[str, np.ndarray], rng: np.random.Generator, train: bool) -> int:
    """The view an image item uses: drawn from `rng` in training, else view 0."""
    return int(rng.integers(0, data["images"].shape[0])) if train else 0


def view_cameras(data: Dict[str, np.ndarray], view: int) -> Dict[str, np.ndarray]:
    """The item entries `CAMERA_KEYS` of one view (float32 [4, 4] each).

    Raises:
      ValueError: the dataset was opened without `img_with_camera`.
    """
    if "world_mat" not in data:
        raise ValueError("camera matrices requested but the dataset was opened without img_with_camera=True")
    return {"inputs.world_mat": data["world_mat"][view], "inputs.camera_mat": data["camera_mat"][view]}


def check_object_files(category_dir: str, split: str, models: Sequence[str], required: Sequence[str]) -> None:
    """Checks (a stat each) that every object of a split has the files a dataset needs.

    Args:
      category_dir: the category folder; split: the split's name (for the message).
      models: the object folders the split lists.
      required: file names, and folder names ending in '/', relative to an object folder.

    Raises:
      DataFormatError: naming the split file, how many objects lack files, and the
        first few of them with what they lack.
    """
    problems = []
    for model in models:
        folder = os.path.join(category_dir, model)
        if not os.path.isdir(folder):
            problems.append(f"{model} (no object folder)")
            continue
        missing = [
            name
            for name in required
            if not (os.path.isdir if name.endswith("/") else os.path.isfile)(os.path.join(folder, name))
        ]
        if missing:
            problems.append(f"{model} (missing {', '.join(missing)})")
    if problems:
        shown = 5
        listed = "; ".join(problems[:shown])
        if len(problems) > shown:
            listed += f"; and {len(problems) - shown} more"
        raise onet_format.DataFormatError(
            f"{os.path.join(category_dir, split + '.lst')}: {len(problems)} of the {len(models)} "
            f"objects it lists lack files this dataset needs ({', '.join(required)}): {listed}"
        )


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """One object of a split: its category id and model id."""

    category: str
    model: str


class CachedDataset:
    """Pickling of a dataset with a `_cache` and a `_lock`: worker processes (`train.workers`)
    receive it without the lock, and without the cache, which each worker fills for itself."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class ShapesDataset(CachedDataset):
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
      images: also load each object's single-view images (image inputs).
      img_folder: the images' sub-folder of an object (original: 'img_choy2016').
      img_size: if set, images are resized to img_size x img_size on loading.
      img_with_camera: with `images`, also load the views' camera matrices from
        the images' `cameras.npz` (see `load_image_cameras`).

    Opening checks up front (a stat per file) that every object the split lists has
    the files these options need (`required_files`), so a missing object is found
    before training starts, not when it is first sampled.

    Raises:
      FileNotFoundError: no dataset folder.
      ValueError: unknown categories, or none.
      DataFormatError: a category folder or split file is missing, a split file is
        empty or malformed, or listed objects lack files (the message names the split
        file, the first few objects and what they lack, and how many there are).
    """

    def __init__(
        self,
        path: str,
        split: str,
        categories: Optional[Sequence[str]] = None,
        cache: bool = True,
        voxels: bool = False,
        voxel_resolution: Optional[int] = None,
        images: bool = False,
        img_folder: str = "img_choy2016",
        img_size: Optional[int] = None,
        img_with_camera: bool = False,
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
                if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")
            }
        if categories:
            missing = [c for c in categories if c not in self.metadata]
            if missing:
                raise ValueError(
                    f"data.categories: {missing} are not in dataset {path!r} (it has {sorted(self.metadata)})"
                )
            self.categories = list(categories)
        else:
            self.categories = sorted(self.metadata)
        if not self.categories:
            raise ValueError(f"dataset {path!r} has no categories")
        self.cache = cache
        self.voxels = voxels
        self.voxel_resolution = voxel_resolution
        self.images = images
        self.img_folder = img_folder
        self.img_size = img_size
        self.img_with_camera = img_with_camera
        self.items: List[ModelRef] = []
        self.layout: Optional[str] = None
        listed_in = "metadata.yaml" if os.path.exists(metadata_file) else "the categories asked for"
        for category in self.categories:
            category_dir = os.path.join(path, category)
            if not os.path.isdir(category_dir):
                raise onet_format.DataFormatError(
                    f"{category_dir}: category folder not found (category {category!r} is in {listed_in})"
                )
            models = onet_format.read_split(category_dir, split)
            if self.layout is None:
                self.layout = _detect_layout(category_dir, models)
            self._check_objects(category_dir, split, models)
            self.items.extend(ModelRef(category, model) for model in models)
        self._cache: Dict[int, Dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def required_files(self) -> List[str]:
        """The files (and, ending in '/', folders) every object needs with these options."""
        if self.layout == onet_format.LAYOUT_MULTI:
            kinds = (onet_format.POINTS_IOU_DIR, onet_format.MULTI_POINTCLOUD_DIR)
            files = [onet_format.multi_file("", kind, 0) for kind in kinds]
        else:
            files = [onet_format.POINTS_FILE, onet_format.POINTCLOUD_FILE]
        if self.voxels:
            files.append(binvox.VOXELS_FILE)
        if self.images:
            files.append(self.img_folder + "/")
            if self.img_with_camera:
                files.append(f"{self.img_folder}/cameras.npz")
        return files

    def _check_objects(self, category_dir: str, split: str, models: Sequence[str]) -> None:
        """Checks that every object of a split has the files the options need (`check_object_files`)."""
        check_object_files(category_dir, split, models, self.required_files())

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
          (from pointcloud.npz), 'loc' [3] and 'scale' []; 'num_uniform' int
          when points.npz has it (see `iou_points`). A scene of the multi-file
          layout gives the same keys from its files 00 (`loc` 0 and `scale` 1:
          the files are in the scene's frame) plus 'points_files' and
          'pointcloud_files', the paths of all its files (str [K]), which
          `sample_item` draws from; with `voxels`,
          also 'voxels' bool [R, R, R] (xyz order, from model.binvox); with
          `images`, also 'images' uint8 [V, H, W, 3] (see `load_images`), and
          with `img_with_camera` 'world_mat' and 'camera_mat' float32 [V, 4, 4].

        Raises:
          DataFormatError: a missing or malformed file (the message names it).
        """
        with self._lock:
            if index in self._cache:
                return self._cache[index]
        model_dir = self.model_dir(index)
        if self.layout == onet_format.LAYOUT_MULTI:
            data = load_scene(model_dir)
        else:
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
            if "num_uniform" in pts:
                data["num_uniform"] = pts["num_uniform"]
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
        if self.images:
            data["images"] = load_images(os.path.join(model_dir, self.img_folder), self.img_size)
            if self.img_with_camera:
                img_dir = os.path.join(model_dir, self.img_folder)
                data.update(load_image_cameras(img_dir, data["images"].shape[0]))
        if self.cache:
            with self._lock:
                self._cache[index] = data
        return data


def _detect_layout(category_dir: str, models: Sequence[str]) -> str:
    """The layout of a split: that of its first listed object folder that exists (ONet's if none)."""
    for model in models:
        folder = os.path.join(category_dir, model)
        if os.path.isdir(folder):
            return onet_format.detect_layout(folder) or onet_format.LAYOUT_ONET
    return onet_format.LAYOUT_ONET


def load_scene(folder: str) -> Dict[str, np.ndarray]:
    """One scene of the multi-file layout: the arrays of its files 00 and the paths of all files.

    Returns:
      dict with the keys of an ONet item ('points', 'occupancies', 'surface_points',
      'surface_normals', 'loc' zeros [3], 'scale' 1) read from
      `points_iou/points_iou_00.npz` and `pointcloud/pointcloud_00.npz`, plus
      'points_files' and 'pointcloud_files' (str [K], file 00 first).

    Raises:
      DataFormatError: a missing, misnumbered or malformed file (the message names it).
    """
    points_files = onet_format.multi_files(folder, onet_format.POINTS_IOU_DIR)
    pointcloud_files = onet_format.multi_files(folder, onet_format.MULTI_POINTCLOUD_DIR)
    pts = onet_format.load_points_iou_npz(points_files[0])
    pcl = onet_format.load_multi_pointcloud_npz(pointcloud_files[0])
    return {
        "points": pts["points"],
        "occupancies": pts["occupancies"],
        "surface_points": pcl["points"],
        "surface_normals": pcl["normals"],
        "loc": np.zeros(3, np.float32),
        "scale": np.asarray(1.0, np.float32),
        "points_files": np.asarray(points_files),
        "pointcloud_files": np.asarray(pointcloud_files),
    }


def draw_scene_files(data: Dict[str, np.ndarray], rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """A training view of a multi-file scene: one points file and one point-cloud file drawn from `rng`.

    The points file is drawn first, then the point-cloud file (independently, as the
    original's `PointsField` and `PointCloudField` with `multi_files` each draw one).
    A drawn file 00 reuses `data`'s arrays; another is read from disk. Items of the
    ONet layout (no 'points_files') are returned unchanged and draw nothing.

    Returns:
      dict with `data`'s keys, 'points' / 'occupancies' and 'surface_points' /
      'surface_normals' those of the drawn files.
    """
    if "points_files" not in data:
        return data
    i = int(rng.integers(0, len(data["points_files"])))
    j = int(rng.integers(0, len(data["pointcloud_files"])))
    out = dict(data)
    if i:
        pts = onet_format.load_points_iou_npz(str(data["points_files"][i]))
        out.update(points=pts["points"], occupancies=pts["occupancies"])
    if j:
        pcl = onet_format.load_multi_pointcloud_npz(str(data["pointcloud_files"][j]))
        out.update(surface_points=pcl["points"], surface_normals=pcl["normals"])
    return out


def sample_item(
    data: Dict[str, np.ndarray],
    rng: np.random.Generator,
    num_points: int,
    num_inputs: int,
    input_noise: float,
    points_jitter: float = 1e-4,
    input_type: Optional[str] = "pointcloud",
    with_camera: bool = False,
) -> Dict[str, np.ndarray]:
    """The original's per-object training sample.

    `num_points` query points drawn with replacement from points.npz (plus
    `points_jitter` * N(0,1), as the original does for float16 files) with their
    occupancies, and the object's input (see `object_inputs`). A scene of the
    multi-file layout first draws its files from `rng` (`draw_scene_files`).

    Returns:
      dict 'points' float32 [num_points, 3], 'occupancies' float32
      [num_points], 'inputs' float32 [num_inputs, 3] (point cloud),
      [R, R, R] (voxels), [H, W, 3] (a random view) or [0] (no input); with
      `with_camera` (image inputs only) also the view's `CAMERA_KEYS` entries.
    """
    data = draw_scene_files(data, rng)
    n = data["points"].shape[0]
    idx = rng.integers(0, n, size=num_points)
    points = data["points"][idx].astype(np.float32)
    if points_jitter:
        points = points + points_jitter * rng.standard_normal(points.shape).astype(np.float32)
    occ = data["occupancies"][idx].astype(np.float32)
    if with_camera:
        if input_type != "img":
            raise ValueError(f"with_camera needs image inputs, not input type {input_type!r}")
        view = image_view(data, rng, train=True)  # The draw object_inputs would make.
        inputs = object_inputs(data, rng, num_inputs, input_noise, input_type, train=True, view=view)
        return {"points": points, "occupancies": occ, "inputs": inputs, **view_cameras(data, view)}
    inputs = object_inputs(data, rng, num_inputs, input_noise, input_type, train=True)
    return {"points": points, "occupancies": occ, "inputs": inputs}


def object_inputs(
    data: Dict[str, np.ndarray],
    rng: np.random.Generator,
    num_inputs: int,
    input_noise: float,
    input_type: Optional[str] = "pointcloud",
    train: bool = True,
    view: Optional[int] = None,
) -> np.ndarray:
    """The conditioning input of one object.

    Returns:
      'pointcloud': `sample_inputs` (float32 [num_inputs, 3]); 'voxels': the
      voxel grid as float32 [R, R, R] (as the original's `VoxelsField`, no
      randomness); 'img': one view as float32 [H, W, 3] in [0, 1], `view` when
      given, else a view drawn from `rng` when `train`, else view 0
      (`image_view`, the original's `ImagesField`); None: an empty float32 [0].
    """
    if input_type == "pointcloud":
        return sample_inputs(data, rng, num_inputs, input_noise)
    if input_type == "voxels":
        if "voxels" not in data:
            raise ValueError("voxel inputs requested but the dataset was opened without voxels=True")
        return data["voxels"].astype(np.float32)
    if input_type == "img":
        if "images" not in data:
            raise ValueError("image inputs requested but the dataset was opened without images=True")
        if view is None:
            view = image_view(data, rng, train)
        return data["images"][view].astype(np.float32) / 255.0
    if input_type is None:
        return np.zeros((0,), np.float32)
    raise ValueError(f"unknown input type {input_type!r}; use 'pointcloud', 'voxels', 'img' or None")


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
    return object_inputs(data, rng, num_inputs, input_noise, input_type, train=False)


def iou_points(data: Dict[str, np.ndarray]):
    """The points.npz points that IoU is measured on: the uniform ones.

    The original measures IoU on ShapeNet's points.npz, whose points are all uniform in
    the box (so are the built-in dataset's). Files of `implicit_fields.data.prepare`
    hold uniform points first and near-surface points after them, and store the count
    of the former as `num_uniform`; then only those are used. Without the key (or with
    `num_uniform` 0: no uniform points at all) every point is used.

    Returns:
      (points [K, 3], occupancies [K]): views of `data`'s arrays.
    """
    k = int(data.get("num_uniform", 0) or 0)
    if k <= 0:
        return data["points"], data["occupancies"]
    return data["points"][:k], data["occupancies"][:k]


def eval_query_points(data: Dict[str, np.ndarray], index: int, num_points: int, seed: int = 0):
    """Fixed query points of one evaluation object, deterministic in (seed, index).

    `num_points` of the object's IoU points (`iou_points`: the uniform points of
    points.npz) drawn without replacement (repeated cyclically if it has fewer), so
    any prefix is a uniform subsample.

    Returns:
      (points float32 [num_points, 3], occupancies float32 [num_points]).
    """
    rng = np.random.default_rng([seed, 104729, index])
    points, occupancies = iou_points(data)
    n = points.shape[0]
    idx = rng.choice(n, size=min(num_points, n), replace=False)
    idx = np.resize(idx, num_points)
    return points[idx].astype(np.float32), occupancies[idx].astype(np.float32)


def from_config(data_config, split: str, cache: Optional[bool] = None) -> ShapesDataset:
    """The `split` of the dataset that `config.data` describes (`cache` defaults to data.cache).

    Voxels are loaded when `data.input_type` is 'voxels', images when it is 'img'
    (with their cameras when `data.img_with_camera`).

    Raises:
      ValueError: `data.img_with_camera` without image inputs.
    """
    with_camera = bool(data_config.get("img_with_camera", False))
    if with_camera and input_type_of(data_config) != "img":
        raise ValueError(
            f"data.img_with_camera needs data.input_type 'img', got {data_config.get('input_type')!r}"
        )
    return ShapesDataset(
        data_config.path,
        split,
        categories=list(data_config.categories) or None,
        cache=data_config.cache if cache is None else cache,
        voxels=input_type_of(data_config) == "voxels",
        voxel_resolution=data_config.get("voxel_resolution", None),
        images=input_type_of(data_config) == "img",
        img_folder=data_config.get("img_folder", "img_choy2016"),
        img_size=data_config.get("img_size", None),
        img_with_camera=with_camera,
    )
