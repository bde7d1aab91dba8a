"""Multi-view data for Differentiable Volumetric Rendering: the layout, a writer and a loader.

The on-disk layout is the original's (DVR ``configs/default.yaml``: ``img_folder: image``,
``mask_folder: mask``, ``depth_folder: depth``; ``im2mesh/data/fields.py`` ``ImagesField``)::

    OBJECT/image/0000.png ...   RGB images (the original also reads .jpg)
    OBJECT/mask/0000.png ...    object masks (any non-zero first channel is the object)
    OBJECT/depth/0000.npy ...   optional camera-depth maps, float32 (H, W), inf where
                                no surface (or .exr, as the original stores them)
    OBJECT/cameras.npz          world_mat_i, camera_mat_i, scale_mat_i (+ *_inv_i),
                                see :mod:`implicit_fields.cameras`
    OBJECT/multiview.json       ours only: how the views were rendered (and the
                                appearance, so surface colours can be recomputed)

Files of each folder are matched by sorted position, as in the original (view ``i`` is
the ``i``-th file of ``image/`` and ``mask/`` and uses ``*_mat_i``). For the built-in
dataset, OBJECT is the object folder ``DATASET/<synset>/<model_id>/`` next to
``points.npz``, exactly where the original's ShapeNet renderings put them (its single-view
inputs live in ``img_choy2016/``, a separate folder). Depth maps are written as ``.npy``;
the original's OpenEXR depth maps (``.exr``, scanline with NONE / RLE / ZIPS / ZIP
compression) are read too, by our own reader (:mod:`implicit_fields.data.exr`).

The views are exact renders of :mod:`implicit_fields.data.shape_render` (the colours of
its :class:`~implicit_fields.data.shape_render.Appearance`, stored in ``multiview.json``,
so surface colours can be recomputed with its ``surface_color``); images and depth maps
are read with :mod:`implicit_fields.data.image_io` and cameras with
:func:`~implicit_fields.data.onet_format.load_cameras`.
"""

import dataclasses
import json
import os
import shutil
import zlib
from typing import List, Optional

import numpy as np
from tqdm import tqdm

from implicit_fields import cameras as cam_lib
from implicit_fields import vis
from implicit_fields.data import image_io, onet_format, shape_render
from implicit_fields.data.onet_format import DataFormatError

__all__ = [
    "IMAGE_DIR",
    "MASK_DIR",
    "DEPTH_DIR",
    "CAMERA_FILE",
    "INFO_FILE",
    "MULTIVIEW_VERSION",
    "write_multiview",
    "generate_multiview_dataset",
    "MultiViewData",
    "load_multiview",
    "sample_rays",
    "view_rays",
]

IMAGE_DIR = "image"
MASK_DIR = "mask"
DEPTH_DIR = "depth"
CAMERA_FILE = "cameras.npz"
INFO_FILE = "multiview.json"
MULTIVIEW_VERSION = 1
"""Bumped whenever the renderer's output changes; stored in every multiview.json."""

_TMP_PREFIX = ".tmp-multiview-"
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")


# --------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------


def _resolution(resolution):
    if np.ndim(resolution) == 0:
        h = w = int(resolution)
    else:
        h, w = (int(r) for r in resolution)
    if h < 2 or w < 2:
        raise ValueError(f"resolution must be at least 2x2, got {resolution}")
    return h, w


def write_multiview(
    shape,
    folder,
    n_views=24,
    resolution=64,
    seed=0,
    progress=True,
    texture="stripes",
    appearance=None,
    radius=2.0,
    elevation_range=(-20.0, 60.0),
    focal=None,
    info=None,
    material="diffuse",
):
    """Renders views of a shape and writes them in the original's multi-view layout.

    Writes ``image/0000.png`` (RGB), ``mask/0000.png`` (grey 0/255), ``depth/0000.npy``
    (float32 camera depth, inf background), ``cameras.npz`` and ``multiview.json`` into
    ``folder``. Everything is rendered into a temporary folder first; existing views
    are replaced only when the new ones are complete, and ``multiview.json`` (written
    last) marks a complete set. Cameras and colours are a function of ``seed``.

    Args:
        shape: :class:`~implicit_fields.data.shapes.Shape` in object space (unit cube).
        folder: output folder (created if needed).
        n_views: int, number of views.
        resolution: int or (H, W).
        seed: int, list of ints or SeedSequence.
        progress: show a tqdm bar over views.
        texture: 'none' or 'stripes' for the random appearance.
        appearance: :class:`~implicit_fields.data.shape_render.Appearance` overriding the
            random one.
        radius, elevation_range: camera placement (:func:`cameras.sample_views`).
        focal: float focal length; None fits the shape's bounding sphere (about the
            origin, plus 3%) into the image, the same for all views.
        info: optional JSON-able dict stored under ``"info"`` in multiview.json.
        material: 'diffuse' or 'specular' (view-dependent highlights) for the random
            appearance; a given ``appearance`` brings its own (asking for another
            non-diffuse one is a ValueError). A non-diffuse material is recorded as
            ``params["material"]``; a diffuse render's params are those written before
            there were materials (so :func:`generate_multiview_dataset` still
            recognises its renders), and a record without the key is diffuse.

    Returns:
        dict: the multiview.json content.
    """
    height, width = _resolution(resolution)
    n_views = onet_format.check_count("n_views", n_views, 1)
    seed_seq = np.random.SeedSequence(seed)
    cam_seed, app_seed = seed_seq.spawn(2)
    view_focal = shape_render.fit_focal(shape, radius) if focal is None else float(focal)
    cams = cam_lib.sample_views(n_views, radius, cam_seed, elevation_range, view_focal)
    if material not in shape_render.MATERIALS:
        raise ValueError(f"material must be one of {shape_render.MATERIALS}, got {material!r}")
    if appearance is None:
        num_prims = len(shape.primitives)
        appearance = shape_render.Appearance.random(num_prims, app_seed, texture, material=material)
    elif material != "diffuse" and getattr(appearance, "material", "diffuse") != material:
        raise ValueError(
            f"material={material!r} differs from the given appearance's material "
            f"{getattr(appearance, 'material', 'diffuse')!r}"
        )
    material = getattr(appearance, "material", "diffuse")
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    for entry in os.listdir(folder):  # Leftovers of an interrupted run.
        if entry.startswith(_TMP_PREFIX):
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}")
    for sub in (IMAGE_DIR, MASK_DIR, DEPTH_DIR):
        os.makedirs(os.path.join(tmp, sub))
    mask_fraction = []
    for i in tqdm(range(int(n_views)), disable=not progress, desc="views", unit="view"):
        view = shape_render.render_view(shape, cam_lib.camera_at(cams, i), height, width, appearance)
        name = f"{i:04d}"
        vis.write_png(os.path.join(tmp, IMAGE_DIR, name + ".png"), view["image"])
        vis.write_png(os.path.join(tmp, MASK_DIR, name + ".png"), view["mask"])
        np.save(os.path.join(tmp, DEPTH_DIR, name + ".npy"), view["depth"])
        mask_fraction.append(float(view["mask"].mean()))
    onet_format.save_cameras(os.path.join(tmp, CAMERA_FILE), cams)
    record = {
        "version": MULTIVIEW_VERSION,
        "params": {
            "n_views": int(n_views),
            "resolution": [height, width],
            "seed": (
                int(seed)
                if isinstance(seed, (int, np.integer))
                else [int(x) for x in seed]
                if isinstance(seed, (list, tuple))
                else str(seed)
            ),
            "texture": appearance.texture,
            "radius": float(radius),
            "elevation_range": [float(e) for e in elevation_range],
            "focal": None if focal is None else float(focal),
            **({} if material == "diffuse" else {"material": material}),
        },
        "appearance": appearance.to_dict(),
        "mask_fraction": mask_fraction,
        "depth_format": "npy float32 (H, W) camera depth, inf where no surface",
        "info": info,
    }
    with open(os.path.join(tmp, INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f)
    # Swap in: remove the completion marker first, move the new files, marker last.
    marker = os.path.join(folder, INFO_FILE)
    if os.path.exists(marker):
        os.remove(marker)
    for sub in (IMAGE_DIR, MASK_DIR, DEPTH_DIR):
        final = os.path.join(folder, sub)
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.rename(os.path.join(tmp, sub), final)
    os.replace(os.path.join(tmp, CAMERA_FILE), os.path.join(folder, CAMERA_FILE))
    os.replace(os.path.join(tmp, INFO_FILE), marker)
    shutil.rmtree(tmp, ignore_errors=True)
    return record


def _object_seed(seed, synset, model):
    return [int(seed), zlib.crc32(synset.encode()), zlib.crc32(model.encode())]


def generate_multiview_dataset(
    dataset_dir,
    categories=None,
    n_views=24,
    resolution=64,
    seed=0,
    texture="stripes",
    max_objects=None,
    overwrite=False,
    progress=True,
    **camera_kwargs,
):
    """Renders the objects of a built-in dataset to multi-view images (in place).

    Every object folder with a ``shape.json`` gains ``image/``, ``mask/``, ``depth/``,
    ``cameras.npz`` and ``multiview.json``. An object's cameras and colours derive from
    ``(seed, synset, model_id)``, so the result does not depend on which objects are
    rendered or in which order. Objects already rendered with the same parameters are
    skipped, so an interrupted run resumes.

    Args:
        dataset_dir: root of a built-in dataset (:mod:`implicit_fields.data.builtin`).
        categories: None for every category folder, or a list of synset ids / names.
        n_views: int, views per object.
        resolution: int or (H, W).
        seed: int >= 0.
        texture: 'none' or 'stripes'.
        max_objects: None, or render only the first this many objects per category.
        overwrite: re-render objects rendered with other parameters (else ValueError).
        progress: tqdm bar over objects.
        **camera_kwargs: ``radius``, ``elevation_range``, ``focal`` for
            :func:`write_multiview`.

    Returns:
        list of the object folders (rendered now or before).
    """
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise DataFormatError(f"{dataset_dir}: dataset folder not found")
    n_views = onet_format.check_count("n_views", n_views, 1)
    seed = onet_format.check_count("seed", seed, 0)
    if max_objects is not None:
        max_objects = onet_format.check_count("max_objects", max_objects, 1)
    objects, per_synset = [], {}
    for synset, model, _ in onet_format.object_folders(dataset_dir, categories):
        per_synset[synset] = per_synset.get(synset, 0) + 1
        if max_objects is None or per_synset[synset] <= int(max_objects):
            objects.append((synset, model))
    height, width = _resolution(resolution)
    done = []
    for synset, model in tqdm(objects, disable=not progress, desc="multi-view", unit="obj"):
        folder = os.path.join(dataset_dir, synset, model)
        obj_seed = _object_seed(seed, synset, model)
        params = {
            "n_views": int(n_views),
            "resolution": [height, width],
            "seed": obj_seed,
            "texture": texture,
            "radius": float(camera_kwargs.get("radius", 2.0)),
            "elevation_range": [float(e) for e in camera_kwargs.get("elevation_range", (-20.0, 60.0))],
            "focal": None if camera_kwargs.get("focal") is None else float(camera_kwargs["focal"]),
        }
        marker = os.path.join(folder, INFO_FILE)
        if os.path.exists(marker):
            try:
                with open(marker, "r", encoding="utf-8") as f:
                    old = json.load(f)
                if not isinstance(old, dict):
                    raise ValueError(f"a JSON {type(old).__name__}, not an object")
            except (OSError, ValueError) as e:
                if not overwrite:
                    raise DataFormatError(
                        f"{marker}: unreadable ({type(e).__name__}: {e}); pass overwrite=True to re-render"
                    ) from e
                old = {}
            if old.get("version") == MULTIVIEW_VERSION and old.get("params") == params:
                done.append(folder)
                continue
            if not overwrite:
                raise ValueError(
                    f"{marker}: rendered with {old.get('params')} (version {old.get('version')}), "
                    f"not {params}; pass overwrite=True to re-render"
                )
        write_multiview(
            onet_format.load_shape(folder),
            folder,
            n_views,
            (height, width),
            obj_seed,
            progress=False,
            texture=texture,
            info={"category": synset, "model_id": model},
            **camera_kwargs,
        )
        done.append(folder)
    return done


# --------------------------------------------------------------------------------------
# Loading (our data and the original's DTU / ShapeNet renderings).
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class MultiViewData:
    """The views of one object or scene.

    Attributes:
        images: (V, H, W, 3) float32 RGB in [0, 1].
        masks: (V, H, W) bool object masks.
        depths: (V, H, W) float32 camera depths (inf where unknown: inf, NaN or <= 0 in
            the file) or None.
        camera_mat, world_mat, scale_mat: (V, 4, 4) float64.
        view_ids: (V,) int64 camera index of each view in cameras.npz.
        image_files: list of the V image paths.
        folder: the folder read.
    """

    images: np.ndarray
    masks: np.ndarray
    depths: Optional[np.ndarray]
    camera_mat: np.ndarray
    world_mat: np.ndarray
    scale_mat: np.ndarray
    view_ids: np.ndarray
    image_files: List[str]
    folder: str

    @property
    def num_views(self):
        return self.images.shape[0]

    @property
    def height(self):
        return self.images.shape[1]

    @property
    def width(self):
        return self.images.shape[2]

    def camera(self, view):
        """dict of the (4, 4) matrices of one view."""
        return {k: getattr(self, k)[view] for k in cam_lib.CAMERA_KEYS}


def _list_files(folder, exts, what):
    if not os.path.isdir(folder):
        raise DataFormatError(f"{folder}: {what} folder not found")
    files = sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if os.path.splitext(f)[1].lower() in exts and not f.startswith(".")
    )
    if not files:
        raise DataFormatError(f"{folder}: no {what} files ({', '.join(exts)})")
    return files


def load_multiview(
    folder,
    image_folder=IMAGE_DIR,
    mask_folder=MASK_DIR,
    depth_folder=DEPTH_DIR,
    camera_file=CAMERA_FILE,
    with_mask=True,
    with_depth=None,
    n_views=0,
    ignore_image_idx=(),
):
    """Reads the multi-view layout (ours, DVR's ShapeNet renderings or its DTU scans).

    As in the original ``ImagesField``: files of each folder are sorted by name; view
    ``i`` of the sorted list uses ``*_mat_i`` of ``cameras.npz``; ``ignore_image_idx``
    drops sorted positions (the DTU configs) and ``n_views > 0`` keeps the first views
    left. cameras.npz may hold more views than there are images.

    Args:
        folder: object / scan folder.
        image_folder, mask_folder, depth_folder: sub-folder names.
        camera_file: camera file name.
        with_mask: read masks (else every pixel is foreground).
        with_depth: True requires depth maps, False skips them, None reads them when
            the depth folder exists.
        n_views: int, keep at most this many views (0: all).
        ignore_image_idx: sorted positions to drop.

    Returns:
        :class:`MultiViewData`.

    Raises:
        DataFormatError: naming the file or folder: missing folder, differing numbers
            of images / masks / depth maps / cameras, differing image sizes, unreadable
            files, invalid cameras.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataFormatError(f"{folder}: multi-view folder not found")
    image_dir = os.path.join(folder, image_folder)
    images = _list_files(image_dir, _IMAGE_EXTS, "image")
    total = len(images)

    def matching(sub, exts, what):
        files = _list_files(os.path.join(folder, sub), exts, what)
        if len(files) != total:
            raise DataFormatError(
                f"{os.path.join(folder, sub)}: {len(files)} {what} files for {total} images in {image_dir}"
            )
        return files

    masks = matching(mask_folder, (".png", ".jpg", ".jpeg"), "mask") if with_mask else None
    depth_dir = os.path.join(folder, depth_folder)
    if with_depth is None:
        with_depth = os.path.isdir(depth_dir)
    depths = matching(depth_folder, (".npy", ".exr"), "depth") if with_depth else None

    ignore = {int(i) for i in ignore_image_idx}
    keep = [i for i in range(total) if i not in ignore]
    if int(n_views) > 0:
        keep = keep[: int(n_views)]
    if not keep:
        raise DataFormatError(f"{image_dir}: no views left after ignore_image_idx / n_views")

    cam_path = os.path.join(folder, camera_file)
    cams = onet_format.load_cameras(cam_path)
    n_cams = cams["world_mat"].shape[0]
    if n_cams < total:
        raise DataFormatError(f"{cam_path}: {n_cams} cameras for {total} images in {image_dir}")

    rgb, msk, dep = [], [], []
    size = None
    for i in keep:
        image = image_io.read_rgb(images[i])
        if size is None:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise DataFormatError(
                f"{images[i]}: image size {image.shape[1]}x{image.shape[0]} differs from "
                f"{size[1]}x{size[0]} of {images[keep[0]]}"
            )
        rgb.append(image)
        for files, reader, out, what in (
            (masks, image_io.read_mask, msk, "mask"),
            (depths, image_io.read_depth, dep, "depth map"),
        ):
            if files is None:
                continue
            a = reader(files[i])
            if a.shape[:2] != size:
                raise DataFormatError(
                    f"{files[i]}: {what} size {a.shape[1]}x{a.shape[0]} differs from the image "
                    f"size {size[1]}x{size[0]} of {images[i]}"
                )
            out.append(a)
    images_arr = np.stack(rgb)
    masks_arr = np.stack(msk) if masks is not None else np.ones(images_arr.shape[:3], dtype=bool)
    view_ids = np.asarray(keep, dtype=np.int64)
    return MultiViewData(
        images=images_arr,
        masks=masks_arr,
        depths=np.stack(dep) if depths is not None else None,
        camera_mat=cams["camera_mat"][view_ids],
        world_mat=cams["world_mat"][view_ids],
        scale_mat=cams["scale_mat"][view_ids],
        view_ids=view_ids,
        image_files=[images[i] for i in keep],
        folder=folder,
    )


# --------------------------------------------------------------------------------------
# Rays for training and evaluation.
# --------------------------------------------------------------------------------------


def _rays_at(data, views, rows, cols):
    h, w = data.height, data.width
    n = views.shape[0]
    pixels = np.stack([2.0 * cols / (w - 1) - 1.0, 2.0 * rows / (h - 1) - 1.0], axis=1)
    origins = np.empty((n, 3))
    directions = np.empty((n, 3))
    for v in np.unique(views):
        sel = np.flatnonzero(views == v)
        o, d = cam_lib.pixels_to_rays(pixels[sel], data.camera_mat[v], data.world_mat[v], data.scale_mat[v])
        origins[sel], directions[sel] = o, d
    if data.depths is not None:
        depth = data.depths[views, rows, cols]
    else:
        depth = np.full(n, np.inf, dtype=np.float32)
    return {
        "origins": origins.astype(np.float32),
        "directions": directions.astype(np.float32),
        "pixels": pixels.astype(np.float32),
        "rgb": data.images[views, rows, cols],
        "mask": data.masks[views, rows, cols],
        "depth": depth.astype(np.float32),
        "view": views.astype(np.int32),
    }


def sample_rays(data, rng, n_pixels, views=None):
    """Random pixel rays for training (pixel centres, uniform over the chosen views).

    Args:
        data: :class:`MultiViewData`.
        rng: numpy Generator.
        n_pixels: int, number of rays.
        views: None for all views, or a sequence of view positions (0 .. V-1).

    Returns:
        dict of per-ray arrays: ``origins``, ``directions`` (n, 3) float32 (the ray
        parameter is camera depth), ``pixels`` (n, 2) float32 in [-1, 1], ``rgb`` (n, 3)
        float32, ``mask`` (n,) bool, ``depth`` (n,) float32 (inf where unknown) and
        ``view`` (n,) int32 (position in ``data``).
    """
    n = int(n_pixels)
    pool = np.arange(data.num_views) if views is None else np.asarray(views, dtype=np.int64)
    if pool.size == 0 or pool.min() < 0 or pool.max() >= data.num_views:
        raise ValueError(f"views must be non-empty positions in [0, {data.num_views})")
    v = pool[rng.integers(0, pool.size, n)]
    rows = rng.integers(0, data.height, n)
    cols = rng.integers(0, data.width, n)
    return _rays_at(data, v, rows, cols)


def view_rays(data, view):
    """All rays of one view, row-major (``reshape(H, W, ...)`` gives images back).

    Args:
        data: :class:`MultiViewData`.
        view: int position in ``data``.

    Returns:
        dict as :func:`sample_rays` with H * W rays.
    """
    h, w = data.height, data.width
    rows, cols = np.divmod(np.arange(h * w), w)
    return _rays_at(data, np.full(h * w, int(view), dtype=np.int64), rows, cols)
