"""Textured objects in Texture Fields' layout: procedural appearances, the writer and the loader.

Texture Fields (Oechsle et al., ICCV 2019) learns a field ``t(p, shape code, image code) -> RGB``
supervised by posed images with ground-truth depth: every depth pixel is lifted to its 3D
surface point, the field is evaluated there and the result is composited over a white
background with the mask (finite depth). Its ShapeNet car data has one folder per object::

    <object>/input_image/000.jpg .. 016.jpg   17 condition views (resized to 224, nearest)
    <object>/image/000.png .. 009.png         10 random views
    <object>/depth/000.exr .. 009.exr         their camera depths (inf: no surface)
    <object>/depth/cameras.npz                camera_mat_i, world_mat_i (3 x 4; i = position
                                              of the file in the sorted listing)
    <object>/visualize/image/*.png            views on a circle,
    <object>/visualize/depth/*.exr            with their depths
    <object>/visualize/depth/cameras.npz      and cameras
    <object>/pointcloud.npz                   points, normals

with category folders holding ``train.lst`` / ``val.lst`` / ``test.lst`` as in the
Occupancy Networks layout.

The built-in version (:func:`ensure_textured_dataset`) adds these folders to the objects of
the built-in ONet dataset (:mod:`implicit_fields.data.builtin`), rendered exactly from
each object's ``shape.json`` (:func:`implicit_fields.data.shape_render.render_view`) with
a :class:`TexturedAppearance`: per-part colours from a per-category palette and a
procedural solid texture per part. Per object it writes::

    input_image/000.jpg ..     n_input_views random views (Pillow JPEG quality 95, white
                               background, input_resolution) and input_image/cameras.npz
    image/000.png ..           n_views random views (image_resolution)
    depth/000.exr .., depth/cameras.npz
    visualize/image/000.png .., visualize/depth/000.exr .., visualize/depth/cameras.npz
                               n_visualize_views views at elevation 20 degrees, azimuths
                               30 + 360 i / n degrees
    texture.json               the appearance (TexturedAppearance.to_dict()), the
                               parameters and the writer's version; written last

Our ``cameras.npz`` hold 4 x 4 matrices in the convention of :mod:`implicit_fields.cameras`
(``onet_format.save_cameras``: ``camera_mat_i``, ``world_mat_i``, ``scale_mat_i`` = identity
and their inverses); the original's hold 3 x 4 matrices, which the loader converts with
:func:`implicit_fields.cameras.from_texture_fields`. Depth maps are float32 OpenEXR
(``image_io.write_depth``; ``.npy`` depth maps are read too), images PNG or JPEG.

Exactness: every pixel of our renders is one ray through the pixel centre (no
anti-aliasing), so ``cameras.depth_to_points(depth, world_mat, camera_mat)`` of a view lies
on the exact surface (up to float32 depth rounding; see :func:`csg_distance`) and the
colour ``shape_render.surface_color(shape, appearance, points)`` there is the pixel's up
to 8-bit rounding, except where the owning part is ambiguous (points within float
rounding of two parts' boundaries). The loader keeps this under nearest-neighbour
resizing (see :func:`load_textured_object`).

An object is rendered into a temporary folder and moved into place; ``texture.json``,
written last, marks it complete, so an interrupted run resumes and never leaves a
half-written object. Objects rendered with other parameters are refused, not rendered
over. Everything is a function of ``(seed, synset, model_id)``, whatever the number of
workers.
"""

import json
import os
import shutil
import threading
import zlib

import numpy as np
from PIL import Image

from implicit_fields import cameras as cam_lib
from implicit_fields import vis
from implicit_fields.data import builtin, datasets, image_io, onet_format, shape_render
from implicit_fields.data.onet_format import DataFormatError
from implicit_fields.data.shapes import CATEGORIES, Shape, category_synset

__all__ = [
    "TEXTURE_KINDS",
    "PALETTES",
    "TexturedAppearance",
    "csg_distance",
    "TEXTURED_VERSION",
    "TEXTURE_FILE",
    "INPUT_DIR",
    "IMAGE_DIR",
    "DEPTH_DIR",
    "VISUALIZE_DIR",
    "CAMERA_FILE",
    "render_textured_object",
    "textured_params",
    "load_appearance",
    "ensure_textured_dataset",
    "check_dataset_folder",
    "nearest_indices",
    "resize_nearest",
    "load_textured_object",
    "TexturedDataset",
]

TEXTURED_VERSION = 1
"""Bumped whenever the textured renders change; stored in every texture.json."""

TEXTURE_FILE = "texture.json"
INPUT_DIR = "input_image"
IMAGE_DIR = "image"
DEPTH_DIR = "depth"
VISUALIZE_DIR = "visualize"
CAMERA_FILE = "cameras.npz"

_IMAGE_EXTS = (".png", ".jpg", ".jpeg")
_DEPTH_EXTS = (".exr", ".npy")
_TMP = onet_format.TMP_PREFIX + "textured-"  # Temporary render folder inside an object.
_SWAP_MARKER = ".textured-swap"  # Present while a render is moved into place.
_OUTPUTS = (INPUT_DIR, IMAGE_DIR, DEPTH_DIR, VISUALIZE_DIR)  # What a render moves into place.
_SETTINGS = {  # Fixed settings of the writer, stored in texture.json.
    "radius": 2.0,
    "view_elevation_range": [-20.0, 60.0],
    "input_elevation_range": [10.0, 40.0],
    "visualize_elevation": 20.0,
    "visualize_azimuth_offset": 30.0,
    "jpeg_quality": 95,
}
_SEED_TAG = 2019  # Separates an object's textured streams from its other renders'.


# --------------------------------------------------------------------------------------
# Appearance.
# --------------------------------------------------------------------------------------

TEXTURE_KINDS = ("stripes", "checkers", "gradient", "noise")
"""The procedural solid textures of :class:`TexturedAppearance`."""

PALETTES = {
    "airplane": [
        (0.88, 0.88, 0.86),  # white
        (0.72, 0.74, 0.78),  # light grey
        (0.58, 0.6, 0.64),  # silver
        (0.14, 0.2, 0.42),  # navy
        (0.68, 0.12, 0.1),  # red
        (0.3, 0.32, 0.35),  # dark grey
        (0.38, 0.58, 0.82),  # sky blue
    ],
    "bench": [
        (0.55, 0.35, 0.2),  # wood
        (0.4, 0.26, 0.15),  # dark wood
        (0.2, 0.4, 0.25),  # park green
        (0.14, 0.14, 0.15),  # cast iron
        (0.6, 0.6, 0.57),  # stone
        (0.72, 0.55, 0.35),  # light wood
    ],
    "car": [
        (0.75, 0.08, 0.08),  # red
        (0.1, 0.24, 0.6),  # blue
        (0.09, 0.09, 0.11),  # black
        (0.88, 0.88, 0.86),  # white
        (0.68, 0.7, 0.73),  # silver
        (0.9, 0.74, 0.1),  # yellow
        (0.1, 0.44, 0.25),  # green
        (0.9, 0.45, 0.1),  # orange
    ],
    "chair": [
        (0.6, 0.4, 0.22),  # wood
        (0.35, 0.22, 0.12),  # dark wood
        (0.6, 0.15, 0.15),  # red fabric
        (0.2, 0.3, 0.55),  # blue fabric
        (0.13, 0.13, 0.14),  # black
        (0.86, 0.86, 0.84),  # white plastic
        (0.5, 0.5, 0.5),  # grey
    ],
    "lamp": [
        (0.75, 0.6, 0.3),  # brass
        (0.1, 0.1, 0.11),  # black
        (0.88, 0.88, 0.86),  # white
        (0.66, 0.68, 0.7),  # steel
        (0.9, 0.82, 0.64),  # shade beige
        (0.7, 0.15, 0.1),  # red
        (0.25, 0.45, 0.4),  # teal
    ],
    "mug": [
        (0.9, 0.9, 0.88),  # white
        (0.72, 0.12, 0.12),  # red
        (0.16, 0.3, 0.62),  # blue
        (0.92, 0.78, 0.2),  # yellow
        (0.2, 0.5, 0.3),  # green
        (0.12, 0.12, 0.13),  # black
        (0.75, 0.4, 0.25),  # terracotta
        (0.9, 0.64, 0.7),  # pink
    ],
    "sofa": [
        (0.5, 0.5, 0.52),  # grey fabric
        (0.78, 0.7, 0.55),  # beige
        (0.45, 0.25, 0.13),  # brown leather
        (0.15, 0.2, 0.4),  # navy
        (0.4, 0.45, 0.25),  # olive
        (0.45, 0.1, 0.15),  # burgundy
        (0.22, 0.22, 0.23),  # charcoal
    ],
    "table": [
        (0.7, 0.5, 0.3),  # oak
        (0.4, 0.26, 0.15),  # walnut
        (0.82, 0.65, 0.42),  # pine
        (0.45, 0.18, 0.12),  # mahogany
        (0.88, 0.88, 0.86),  # white
        (0.12, 0.12, 0.13),  # black
        (0.55, 0.56, 0.58),  # metal
    ],
}
"""Plausible RGB colours (in [0, 1]) per built-in category name."""

_ALL_COLORS = [c for palette in PALETTES.values() for c in palette]

_SHARPNESS = {"stripes": 3.0, "checkers": 4.0, "noise": 1.5}  # tanh steepness of the soft edges.
# Frequencies (periods per unit length of the normalised object, whose longest edge is 1):
# a few periods across an object, so the textures are learnable from 128 x 128 views.
_FREQUENCIES = {"stripes": (2.0, 4.0), "checkers": (1.0, 2.5), "gradient": (0.8, 1.5), "noise": (1.0, 3.0)}


def _soft_sign(s, sharpness):
    """Maps s in [-1, 1] to [0, 1] by a smoothed step (exactly 0 and 1 at s = -1, 1)."""
    return 0.5 + 0.5 * np.tanh(sharpness * s) / np.tanh(sharpness)


def _orthonormal(v):
    """A right-handed orthonormal frame (3, 3) whose first row is along v."""
    a0 = v / np.linalg.norm(v)
    helper = np.eye(3)[int(np.argmin(np.abs(a0)))]
    a1 = np.cross(a0, helper)
    a1 /= np.linalg.norm(a1)
    return np.stack([a0, a1, np.cross(a0, a1)])


def _group_primitives(shape, num_samples=20000, tol=1e-9):
    """Part index per primitive (consecutive from 0, in order of first primitive).

    One part holds the primitives of equal kind, size and sign (the legs of a table) and
    the primitives whose boundaries coincide on a patch of the surface (coplanar faces of
    two boxes, say): found as pairs with ``|sdf| < tol`` at the same surface sample (a
    fixed seed). Such a patch has no well-defined owner (the renderer and
    ``surface_color`` may pick either primitive), so both must look the same there.
    """
    prims = shape.primitives
    parent = list(range(len(prims)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):
        parent[max(find(i), find(j))] = min(find(i), find(j))

    first_of = {}
    for k, prim in enumerate(prims):
        sizes = tuple(
            tuple(np.round(np.atleast_1d(getattr(prim, p)).astype(np.float64), 6).tolist())
            for p in prim._params
        )
        union(k, first_of.setdefault((k >= len(shape.positives), prim.kind, sizes), k))
    if len(prims) > 1:
        points, _ = shape.sample_surface(num_samples, np.random.default_rng(0))
        near = np.stack(
            [
                np.abs(shape_render._local_sdf(p, (points - p.translation[None, :]) @ p.rotation)) < tol
                for p in prims
            ],
            axis=1,
        )
        for row in np.unique(near[near.sum(axis=1) > 1], axis=0):
            idx = np.flatnonzero(row)
            for j in idx[1:]:
                union(int(idx[0]), int(j))
    roots = [find(k) for k in range(len(prims))]
    index = {r: i for i, r in enumerate(dict.fromkeys(roots))}
    return np.asarray([index[r] for r in roots], dtype=np.int64)


class TexturedAppearance:
    """Per-part colours with a procedural solid texture, under view-independent shading.

    The interface of :class:`~implicit_fields.data.shape_render.Appearance`, so
    ``shape_render.render_view`` and ``shape_render.surface_color`` take it as they are.
    A surface point ``p`` owned by primitive ``k`` has the albedo
    ``(1 - m_k(p)) colors[k] + m_k(p) second_colors[k]`` with the mix ``m_k(p)`` in [0, 1]
    of its texture (``a_j = axes[k, j]``, ``f_j = frequencies[k, j]``,
    ``phi_j = phases[k, j]``, ``s_j = sin(2 pi f_j a_j . p + phi_j)``):

    * ``stripes``: ``soft(s_0)``, planar stripes with smoothed edges;
    * ``checkers``: ``soft(s_0 s_1 s_2)``, a smoothed 3D checkerboard (orthonormal axes);
    * ``gradient``: ``smoothstep(clip(0.5 + f_0 a_0 . p + phi_0, 0, 1))``, a linear ramp
      (``phi_0`` is an offset here, not an angle);
    * ``noise``: ``soft((s_0 + s_1 + s_2) / 3)``, smooth noise from three sinusoids;

    where ``soft(s) = 0.5 + 0.5 tanh(c s) / tanh(c)`` (``c`` 3, 4 and 1.5 for stripes,
    checkers and noise). Everything is analytic, so renders are exact. The colour is the
    albedo times the fixed Lambert shading of ``Appearance.shading`` (object-space
    lights), so it does not depend on the view and a field of position can represent it.

    Args:
        colors: (P, 3) RGB in [0, 1], one per primitive of the shape (``Shape.primitives``
            order; negatives colour the cut faces).
        second_colors: (P, 3) RGB in [0, 1], the texture's other colour.
        kinds: P names from :data:`TEXTURE_KINDS`.
        axes: (P, 3, 3) directions (rows; normalised here unless of unit length).
        frequencies: (P, 3) periods per unit length (for gradients: the slope).
        phases: (P, 3) radians (for gradients: the offset of the ramp).
    """

    texture = "procedural"

    def __init__(self, colors, second_colors, kinds, axes, frequencies, phases):
        self.colors = np.asarray(colors, dtype=np.float64)
        if self.colors.ndim != 2 or self.colors.shape[1] != 3:
            raise ValueError(f"TexturedAppearance: colors must have shape (P, 3), got {self.colors.shape}")
        p = self.colors.shape[0]
        self.second_colors = np.asarray(second_colors, dtype=np.float64)
        self.kinds = [str(k) for k in kinds]
        axes = np.asarray(axes, dtype=np.float64)
        self.frequencies = np.asarray(frequencies, dtype=np.float64)
        self.phases = np.asarray(phases, dtype=np.float64)
        if (
            self.second_colors.shape != (p, 3)
            or len(self.kinds) != p
            or axes.shape != (p, 3, 3)
            or self.frequencies.shape != (p, 3)
            or self.phases.shape != (p, 3)
        ):
            raise ValueError(
                f"TexturedAppearance: need one row per primitive ({p}): second_colors "
                f"{self.second_colors.shape}, kinds {len(self.kinds)}, axes {axes.shape}, frequencies "
                f"{self.frequencies.shape}, phases {self.phases.shape}"
            )
        bad = sorted(set(self.kinds) - set(TEXTURE_KINDS))
        if bad:
            raise ValueError(f"TexturedAppearance: unknown texture kinds {bad}; known: {list(TEXTURE_KINDS)}")
        for name, a in (("colors", self.colors), ("second_colors", self.second_colors)):
            if not np.all(np.isfinite(a)) or a.min(initial=0.0) < 0.0 or a.max(initial=0.0) > 1.0:
                raise ValueError(f"TexturedAppearance: {name} must lie in [0, 1]")
        norms = np.linalg.norm(axes, axis=2, keepdims=True)
        if not (np.all(np.isfinite(axes)) and np.all(norms > 0.0)):
            raise ValueError("TexturedAppearance: axes must be finite non-zero vectors")
        if not (np.all(np.isfinite(self.frequencies)) and np.all(np.isfinite(self.phases))):
            raise ValueError("TexturedAppearance: frequencies and phases must be finite")
        # Unit rows are kept bit for bit, so to_dict / from_dict round trips exactly.
        self.axes = np.where(np.abs(norms - 1.0) > 1e-12, axes / norms, axes)
        self._kind_index = np.array([TEXTURE_KINDS.index(k) for k in self.kinds], dtype=np.int64)

    @classmethod
    def random(cls, shape, seed=0, category=None):
        """Deterministic colours and textures for a shape.

        Primitives of equal kind, size and sign (the legs of a table, the wheels of a
        car), and primitives whose boundaries coincide on part of the surface (coplanar
        faces, where which primitive owns a point is a matter of rounding), form one part
        and share colour and texture. The object takes 2 or 3 colours of its category's
        palette (:data:`PALETTES`); the first part gets the first, each other part one of
        them (the first more often). A part's second colour is another palette colour, or
        a darker or lighter shade of its colour. Texture kinds are drawn uniformly.

        Args:
            shape: :class:`~implicit_fields.data.shapes.Shape`, or an int number of
                primitives (then each primitive is its own part).
            seed: int, list of ints or numpy SeedSequence.
            category: name or synset of a built-in category (its palette), or None (the
                union of all palettes).

        Returns:
            :class:`TexturedAppearance`.
        """
        if isinstance(shape, Shape):
            groups = _group_primitives(shape)
        else:
            groups = np.arange(int(shape), dtype=np.int64)
        if groups.size == 0:
            raise ValueError("TexturedAppearance.random: a shape needs at least one primitive")
        palette = np.asarray(
            PALETTES[CATEGORIES[category_synset(category)]] if category is not None else _ALL_COLORS,
            dtype=np.float64,
        )
        rng = np.random.default_rng(seed)
        n_groups = int(groups.max()) + 1
        chosen = palette[rng.permutation(len(palette))[: int(rng.integers(2, 4))]]
        pick = rng.integers(0, len(chosen), n_groups)
        main = np.concatenate([[True], rng.random(n_groups - 1) < 0.4])  # The first part and 40% of the rest.
        pick = np.where(main, 0, pick)
        first = chosen[pick]
        second = np.empty_like(first)
        mode = rng.integers(0, 3, n_groups)
        other = palette[rng.integers(0, len(palette), n_groups)]
        same = np.all(np.abs(other - first) < 1e-9, axis=1)
        mode = np.where((mode == 0) & same, 1, mode)
        darker = first * rng.uniform(0.4, 0.7, (n_groups, 1))
        lighter = first + (1.0 - first) * rng.uniform(0.35, 0.6, (n_groups, 1))
        second[:] = np.where((mode == 0)[:, None], other, np.where((mode == 1)[:, None], darker, lighter))
        kinds = [TEXTURE_KINDS[i] for i in rng.integers(0, len(TEXTURE_KINDS), n_groups)]
        axes = np.empty((n_groups, 3, 3))
        freqs = np.empty((n_groups, 3))
        phases = np.empty((n_groups, 3))
        for g in range(n_groups):
            dirs = rng.standard_normal((3, 3))
            axes[g] = _orthonormal(dirs[0]) if kinds[g] == "checkers" else dirs
            lo, hi = _FREQUENCIES[kinds[g]]
            freqs[g] = rng.uniform(lo, hi, 3)
            phases[g] = rng.uniform(0.0, 2.0 * np.pi, 3)
            if kinds[g] == "gradient":
                phases[g, 0] = rng.uniform(-0.2, 0.2)
        return cls(
            first[groups],
            second[groups],
            [kinds[g] for g in groups],
            axes[groups],
            freqs[groups],
            phases[groups],
        )

    def to_dict(self):
        """JSON-able dict (inverse: :meth:`from_dict`)."""
        return {
            "type": "textured",
            "colors": self.colors.tolist(),
            "second_colors": self.second_colors.tolist(),
            "kinds": list(self.kinds),
            "axes": self.axes.tolist(),
            "frequencies": self.frequencies.tolist(),
            "phases": self.phases.tolist(),
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a dict of :meth:`to_dict` (names the missing keys).
        """
        keys = ("colors", "second_colors", "kinds", "axes", "frequencies", "phases")
        if not isinstance(d, dict) or d.get("type") != "textured":
            raise ValueError("not a TexturedAppearance dict (needs 'type': 'textured')")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ValueError(f"TexturedAppearance dict is missing keys {missing}")
        return cls(*(d[k] for k in keys))

    def mix(self, points, prim_index):
        """The texture's mix ``m_k(p)`` in [0, 1] at points (N, 3) owned by primitives (N,)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        k = np.asarray(prim_index, dtype=np.int64).reshape(-1)
        if k.size and (k.min() < 0 or k.max() >= self.colors.shape[0]):
            raise ValueError(f"primitive index out of range [0, {self.colors.shape[0]})")
        proj = np.einsum("nij,nj->ni", self.axes[k], p)  # (N, 3): a_j . p
        f, phi = self.frequencies[k], self.phases[k]
        s = np.sin(2.0 * np.pi * f * proj + phi)
        kind = self._kind_index[k]
        m = np.empty(p.shape[0])
        for i, name in enumerate(TEXTURE_KINDS):
            sel = kind == i
            if not sel.any():
                continue
            if name == "stripes":
                m[sel] = _soft_sign(s[sel, 0], _SHARPNESS[name])
            elif name == "checkers":
                m[sel] = _soft_sign(s[sel, 0] * s[sel, 1] * s[sel, 2], _SHARPNESS[name])
            elif name == "gradient":
                t = np.clip(0.5 + f[sel, 0] * proj[sel, 0] + phi[sel, 0], 0.0, 1.0)
                m[sel] = t * t * (3.0 - 2.0 * t)
            else:  # noise
                m[sel] = _soft_sign(s[sel].mean(axis=1), _SHARPNESS[name])
        return np.clip(m, 0.0, 1.0)

    def albedo(self, points, prim_index):
        """Albedo (N, 3) in [0, 1] at surface points (N, 3) owned by primitives (N,) int."""
        k = np.asarray(prim_index, dtype=np.int64).reshape(-1)
        m = self.mix(points, k)[:, None]
        return (1.0 - m) * self.colors[k] + m * self.second_colors[k]

    shading = staticmethod(shape_render.Appearance.shading)

    def color(self, points, normals, prim_index):
        """Shaded colour (N, 3) in [0, 1] of surface points with their normals and owners."""
        return self.albedo(points, prim_index) * self.shading(np.asarray(normals, dtype=np.float64))[:, None]


def csg_distance(shape, points):
    """A distance bound of a CSG shape: zero exactly on its surface, 1-Lipschitz.

    ``max(min_i d_i(p), -min_j e_j(p))`` with ``d_i`` / ``e_j`` the exact signed distances
    of the positives / negatives: negative inside, positive outside, and
    ``|csg_distance(p)| <= dist(p, surface)``, so a point lifted from a depth map lies on
    the surface to within float precision iff this is ~0 there (1e-4 is generous for
    float32 depths of an object in the unit cube).

    Args:
        shape: :class:`~implicit_fields.data.shapes.Shape`.
        points: (..., 3) points.

    Returns:
        (...,) float64.
    """
    pts = np.asarray(points, dtype=np.float64)
    flat = pts.reshape(-1, 3)

    def sdf(prim):
        return shape_render._local_sdf(prim, (flat - prim.translation[None, :]) @ prim.rotation)

    d = np.min([sdf(p) for p in shape.positives], axis=0)
    if shape.negatives:
        d = np.maximum(d, -np.min([sdf(p) for p in shape.negatives], axis=0))
    return d.reshape(pts.shape[:-1])


# --------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------


def textured_params(
    image_resolution, input_resolution, n_views=10, n_input_views=17, n_visualize_views=5, seed=0
):
    """The parameters of a textured render, validated (stored in texture.json).

    Returns:
        dict with these keys (ints).

    Raises:
        ValueError: naming the argument that is not an integer in range.
    """
    return {
        "seed": onet_format.check_count("seed", seed, 0),
        "image_resolution": onet_format.check_count("image_resolution", image_resolution, 2),
        "input_resolution": onet_format.check_count("input_resolution", input_resolution, 2),
        "n_views": onet_format.check_count("n_views", n_views, 1),
        "n_input_views": onet_format.check_count("n_input_views", n_input_views, 1),
        "n_visualize_views": onet_format.check_count("n_visualize_views", n_visualize_views, 1),
    }


def _object_seed(seed, synset, model):
    return [int(seed), zlib.crc32(synset.encode()), zlib.crc32(model.encode()), _SEED_TAG]


def _circle_cameras(n, radius, elevation, azimuth_offset, focal):
    """``n`` cameras at one elevation, azimuths ``offset + 360 i / n`` degrees (the eye
    placement of ``cameras.sample_views``)."""
    az = np.radians(azimuth_offset + 360.0 * np.arange(n) / n)
    el = np.radians(elevation)
    eyes = radius * np.stack([np.cos(el) * np.sin(az), np.full(n, np.sin(el)), -np.cos(el) * np.cos(az)], 1)
    cams = [cam_lib.look_at_camera(e, focal=focal) for e in eyes]
    return {k: np.stack([c[k] for c in cams]) for k in cam_lib.CAMERA_KEYS}


def _write_jpeg(path, image, quality):
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="JPEG", quality=int(quality))


def _render_set(shape, appearance, cams, resolution, image_dir, depth_dir, jpeg_quality=None):
    """Renders every view of ``cams``: images (PNG, or JPEG with a quality) and depth maps."""
    os.makedirs(image_dir)
    if depth_dir is not None:
        os.makedirs(depth_dir)
    n = cams["world_mat"].shape[0]
    for i in range(n):
        view = shape_render.render_view(shape, cam_lib.camera_at(cams, i), resolution, resolution, appearance)
        if jpeg_quality is None:
            vis.write_png(os.path.join(image_dir, f"{i:03d}.png"), view["image"])
        else:
            _write_jpeg(os.path.join(image_dir, f"{i:03d}.jpg"), view["image"], jpeg_quality)
        if depth_dir is not None:
            image_io.write_depth(os.path.join(depth_dir, f"{i:03d}.exr"), view["depth"])
    onet_format.save_cameras(
        os.path.join(depth_dir if depth_dir is not None else image_dir, CAMERA_FILE), cams
    )


def _object_category(folder):
    """The built-in category of an object folder (its shape.json, else the folder name)."""
    try:
        with open(os.path.join(folder, onet_format.SHAPE_FILE), "r", encoding="utf-8") as f:
            category = json.load(f).get("category")
        return category_synset(category)
    except (OSError, ValueError, AttributeError, TypeError):
        synset = os.path.basename(os.path.dirname(os.path.abspath(folder)))
        return synset if synset in CATEGORIES else None


def render_textured_object(
    folder, image_resolution, input_resolution, n_views=10, n_input_views=17, n_visualize_views=5, seed=0
):
    """Renders the textured views of one built-in object into its folder (see the module doc).

    The object's appearance and cameras derive from ``(seed, synset, model_id)`` (the
    names of the folder and its parent). Everything goes to a temporary folder first and
    is then moved into place; ``texture.json`` is written last. Existing outputs of an
    earlier render are replaced: :func:`ensure_textured_dataset` decides whether that is
    allowed.

    Args:
        folder: the object folder (holds ``shape.json``).
        image_resolution: int, side of the random and the visualisation views.
        input_resolution: int, side of the condition views.
        n_views, n_input_views, n_visualize_views: int >= 1, view counts.
        seed: int >= 0, dataset seed.

    Returns:
        dict, the texture.json record.
    """
    params = textured_params(
        image_resolution, input_resolution, n_views, n_input_views, n_visualize_views, seed
    )
    folder = os.fspath(folder)
    shape = onet_format.load_shape(folder)
    synset = os.path.basename(os.path.dirname(os.path.abspath(folder)))
    model = os.path.basename(os.path.abspath(folder))
    obj_seed = _object_seed(params["seed"], synset, model)
    app_seed, view_seed, input_seed = np.random.SeedSequence(obj_seed).spawn(3)
    category = _object_category(folder)
    appearance = TexturedAppearance.random(shape, app_seed, category)
    s = _SETTINGS
    focal = shape_render.fit_focal(shape, s["radius"])
    views = cam_lib.sample_views(params["n_views"], s["radius"], view_seed, s["view_elevation_range"], focal)
    inputs = cam_lib.sample_views(
        params["n_input_views"], s["radius"], input_seed, s["input_elevation_range"], focal
    )
    circle = _circle_cameras(
        params["n_visualize_views"],
        s["radius"],
        s["visualize_elevation"],
        s["visualize_azimuth_offset"],
        focal,
    )
    for entry in os.listdir(folder):  # Leftovers of an interrupted run.
        if entry.startswith(_TMP):
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)
    tmp = os.path.join(folder, f"{_TMP}{os.getpid()}")
    os.makedirs(tmp)
    try:
        res, in_res = params["image_resolution"], params["input_resolution"]
        _render_set(shape, appearance, inputs, in_res, os.path.join(tmp, INPUT_DIR), None, s["jpeg_quality"])
        _render_set(shape, appearance, views, res, os.path.join(tmp, IMAGE_DIR), os.path.join(tmp, DEPTH_DIR))
        vis_dir = os.path.join(tmp, VISUALIZE_DIR)
        _render_set(
            shape, appearance, circle, res, os.path.join(vis_dir, IMAGE_DIR), os.path.join(vis_dir, DEPTH_DIR)
        )
        record = {
            "version": TEXTURED_VERSION,
            "params": params,
            "settings": dict(s),
            "category": category,
            "model_id": model,
            "object_seed": obj_seed,
            "focal": float(focal),
            "appearance": appearance.to_dict(),
        }
        marker = os.path.join(folder, TEXTURE_FILE)
        swap = os.path.join(folder, _SWAP_MARKER)
        with open(swap, "w", encoding="utf-8") as f:  # Until texture.json: the outputs are ours.
            f.write("textured views being moved into place\n")
        if os.path.exists(marker):
            os.remove(marker)
        for name in _OUTPUTS:
            final = os.path.join(folder, name)
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.rename(os.path.join(tmp, name), final)
        with open(os.path.join(tmp, TEXTURE_FILE), "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(os.path.join(tmp, TEXTURE_FILE), marker)
        os.remove(swap)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def load_appearance(folder):
    """The exact shape and appearance of a rendered built-in object (ground truth for tests).

    Args:
        folder: an object folder with ``shape.json`` and ``texture.json``.

    Returns:
        (:class:`~implicit_fields.data.shapes.Shape`, :class:`TexturedAppearance`).

    Raises:
        DataFormatError: a missing or invalid file (named).
    """
    path = os.path.join(os.fspath(folder), TEXTURE_FILE)
    try:
        with open(path, "r", encoding="utf-8") as f:
            appearance = TexturedAppearance.from_dict(json.load(f).get("appearance"))
    except FileNotFoundError as e:
        raise DataFormatError(f"{path}: file not found (object not rendered with textures)") from e
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise DataFormatError(f"{path}: not a valid texture record ({e})") from e
    return onet_format.load_shape(folder), appearance


def _render_task(task):
    folder, params = task
    render_textured_object(
        folder,
        params["image_resolution"],
        params["input_resolution"],
        params["n_views"],
        params["n_input_views"],
        params["n_visualize_views"],
        params["seed"],
    )
    return folder


def _object_state(folder, params):
    """'done', 'todo', or a problem (str) that forbids rendering the object."""
    marker = os.path.join(folder, TEXTURE_FILE)
    swap = os.path.join(folder, _SWAP_MARKER)
    if os.path.exists(marker):
        try:
            with open(marker, "r", encoding="utf-8") as f:
                old = json.load(f)
            if not isinstance(old, dict):
                raise ValueError(f"a JSON {type(old).__name__}, not an object")
        except (OSError, ValueError) as e:
            problem = f"{type(e).__name__}: {e}"
            return f"{marker}: unreadable ({problem}); remove it and the textured views to render again"
        differ = []
        if old.get("version") != TEXTURED_VERSION:
            differ.append(
                f"version: rendered by writer version {old.get('version')}, this is {TEXTURED_VERSION}"
            )
        stored = old.get("params") if isinstance(old.get("params"), dict) else {}
        for key, value in params.items():
            if stored.get(key) != value:
                differ.append(f"{key}: rendered with {stored.get(key)}, asked {value}")
        if old.get("settings") != _SETTINGS and not differ:
            differ.append(f"settings: rendered with {old.get('settings')}, this writer uses {_SETTINGS}")
        if differ:
            return f"{marker}: rendered with other parameters ({'; '.join(differ)})"
        if os.path.exists(swap):
            os.remove(swap)  # Interrupted after texture.json was written.
        return "done"
    if not os.path.exists(swap):
        present = [name + "/" for name in _OUTPUTS if os.path.exists(os.path.join(folder, name))]
        if present:
            other = (
                " (DVR multi-view renders: multiview.json)"
                if os.path.exists(os.path.join(folder, "multiview.json"))
                else ""
            )
            return (
                f"{folder}: holds {', '.join(present)} not written by the textured writer{other} (no "
                f"{TEXTURE_FILE}); rendering would replace them"
            )
    return "todo"


def _check_onet_dataset(path, synsets, objects_per_category, seed, num_points, num_surface_points):
    """Refuses a built-in ONet dataset generated with other settings (read from its files)."""
    present = sorted(
        d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")
    )
    differ = []
    missing = [s for s in synsets if s not in present]
    if missing:
        differ.append(f"categories: {missing} missing (it has {present})")
    first = next((s for s in synsets if s in present), None)
    if first is not None:
        cat_dir = os.path.join(path, first)
        listed = []
        for split in onet_format.SPLITS:
            split_file = os.path.join(cat_dir, f"{split}.lst")
            if os.path.exists(split_file):
                with open(split_file, encoding="utf-8") as f:
                    listed += [line.strip() for line in f if line.strip()]
        if len(set(listed)) != objects_per_category:
            differ.append(f"objects_per_category: it has {len(set(listed))}, asked {objects_per_category}")
        if listed:
            shape_file = os.path.join(cat_dir, sorted(listed)[0], onet_format.SHAPE_FILE)
            try:
                with open(shape_file, "r", encoding="utf-8") as f:
                    generator = json.load(f).get("generator") or {}
            except (OSError, ValueError, AttributeError) as e:
                raise DataFormatError(f"{shape_file}: unreadable ({type(e).__name__}: {e})") from e
            for key, asked in (
                ("seed", seed),
                ("num_points", num_points),
                ("num_surface_points", num_surface_points),
            ):
                if key in generator and generator[key] != asked:
                    differ.append(f"{key}: it has {generator[key]}, asked {asked}")
    if differ:
        raise ValueError(
            f"{path}: the built-in dataset there was generated with other settings ({'; '.join(differ)}); "
            f"use another path (or move that folder away to generate it again)"
        )


def ensure_textured_dataset(
    path,
    *,
    categories,
    objects_per_category,
    num_points,
    num_surface_points,
    image_resolution,
    input_resolution,
    n_views=10,
    n_input_views=17,
    n_visualize_views=5,
    seed=0,
    num_workers=None,
    progress=True,
):
    """The built-in dataset with textured views in Texture Fields' layout; made if missing.

    Generates the built-in ONet dataset at ``path`` when it has no ``metadata.yaml``
    (:func:`implicit_fields.data.builtin.generate_dataset`; one exists is checked against
    these settings), then renders the textured views (:func:`render_textured_object`) of
    every object of ``categories`` that lacks them. Complete objects rendered with the
    same parameters are kept, so an interrupted run resumes; objects rendered with other
    parameters, or whose folders hold other files where the views go, are refused before
    anything is rendered.

    Args:
        path: dataset root.
        categories: None (or empty) for every built-in category, or names / synset ids.
        objects_per_category: int >= 1.
        num_points, num_surface_points: int >= 1, points per object (points.npz,
            pointcloud.npz).
        image_resolution: int >= 2, side of the random and the visualisation views.
        input_resolution: int >= 2, side of the condition views.
        n_views, n_input_views, n_visualize_views: int >= 1.
        seed: int >= 0, of the shapes and of the renders.
        num_workers: worker processes; None = usable cores; 0 or 1 = in-process (workers
            are spawned: a script needs the ``if __name__ == "__main__":`` guard).
        progress: show tqdm progress bars.

    Returns:
        str, ``path``.

    Raises:
        ValueError: a bad argument (named), or the dataset or an object was made with
            other settings (the message lists the differing parameters).
    """
    path = os.fspath(path)
    params = textured_params(
        image_resolution, input_resolution, n_views, n_input_views, n_visualize_views, seed
    )
    n_obj = onet_format.check_count("objects_per_category", objects_per_category, 1)
    num_points = onet_format.check_count("num_points", num_points, 1)
    num_surface_points = onet_format.check_count("num_surface_points", num_surface_points, 1)
    if isinstance(categories, str):
        categories = [categories]
    if not categories:
        synsets = list(CATEGORIES)
    else:
        synsets = list(dict.fromkeys(category_synset(c) for c in categories))
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{path}: is a file, not a dataset folder")
    if os.path.exists(os.path.join(path, onet_format.METADATA_FILE)):
        _check_onet_dataset(path, synsets, n_obj, params["seed"], num_points, num_surface_points)
    else:
        builtin.generate_dataset(
            path,
            categories=synsets,
            objects_per_category=n_obj,
            seed=params["seed"],
            num_points=num_points,
            num_surface_points=num_surface_points,
            num_workers=num_workers,
            progress=progress,
        )
    tasks, problems = [], []
    for _, _, folder in onet_format.object_folders(path, synsets):
        state = _object_state(folder, params)
        if state == "todo":
            tasks.append((folder, params))
        elif state != "done":
            problems.append(state)
    if problems:
        more = f" (and {len(problems) - 1} more objects)" if len(problems) > 1 else ""
        raise ValueError(
            f"{problems[0]}{more}; nothing was rendered: use another dataset path, or remove the textured "
            f"views ({', '.join(n + '/' for n in _OUTPUTS)}, {TEXTURE_FILE}) of those objects"
        )
    builtin._run_tasks(_render_task, tasks, num_workers, progress, "textured views")
    return path


# --------------------------------------------------------------------------------------
# Loading (our renders and the original's data).
# --------------------------------------------------------------------------------------


def check_dataset_folder(path):
    """The path of an existing dataset folder in Texture Fields' layout (not generated).

    Returns:
        str, ``path``.

    Raises:
        FileNotFoundError: no such folder.
        NotADirectoryError: ``path`` is a file.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{path}: is a file, not a dataset folder")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such dataset folder")
    return path


def nearest_indices(n_src, n_dst):
    """Source indices of a nearest-neighbour resize from ``n_src`` to ``n_dst`` samples.

    Output sample ``i`` takes source ``floor((i + 0.5) * n_src / n_dst)`` (computed in
    integers), what the original's ``ResizeImage(order=0)`` (skimage ``resize`` with
    ``order=0``) picks.

    Returns:
        (n_dst,) int64.
    """
    i = np.arange(int(n_dst), dtype=np.int64)
    return np.minimum(((2 * i + 1) * int(n_src)) // (2 * int(n_dst)), int(n_src) - 1)


def resize_nearest(image, size):
    """Nearest-neighbour resize of an (H, W, ...) array to (size, size, ...) (:func:`nearest_indices`)."""
    image = np.asarray(image)
    if size is None or image.shape[:2] == (size, size):
        return image
    return image[nearest_indices(image.shape[0], size)][:, nearest_indices(image.shape[1], size)]


def _pixel_fit(n_src, n_dst):
    """(a, b) with ``x_src ~= a x_dst + b`` for the [-1, 1] pixel coordinates of the
    nearest-resized samples (exact when the picked source indices are evenly spaced)."""
    if n_src == n_dst:
        return 1.0, 0.0
    x_dst = 2.0 * np.arange(n_dst) / (n_dst - 1) - 1.0
    x_src = 2.0 * nearest_indices(n_src, n_dst) / (n_src - 1) - 1.0
    a, b = np.polyfit(x_dst, x_src, 1)
    return float(a), float(b)


def _list(folder, exts, what):
    if not os.path.isdir(folder):
        raise DataFormatError(f"{folder}: {what} folder not found")
    files = sorted(
        f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in exts and not f.startswith(".")
    )
    if not files:
        raise DataFormatError(f"{folder}: no {what} files ({', '.join(exts)})")
    return [os.path.join(folder, f) for f in files]


def _read_images(folder, size, what):
    """uint8 (V, size, size, 3) of the images of a folder, nearest-resized; and their sizes."""
    out, sizes = [], []
    for path in _list(folder, _IMAGE_EXTS, what):
        rgb = np.rint(image_io.read_rgb(path) * 255.0).astype(np.uint8)
        sizes.append(rgb.shape[:2])
        out.append(resize_nearest(rgb, size))
    shapes = {a.shape for a in out}
    if len(shapes) != 1:
        raise DataFormatError(
            f"{folder}: images of different sizes {sorted(shapes)} (pass a size to resize them)"
        )
    return np.stack(out), sizes


def _camera(path, arrays, name, i):
    key = f"{name}_{i}"
    if key not in arrays:
        raise DataFormatError(f"{path}: missing key '{key}' (one camera per view, in sorted file order)")
    m = np.asarray(arrays[key])
    if m.shape not in ((3, 4), (4, 4)) or not np.issubdtype(m.dtype, np.number):
        raise DataFormatError(f"{path}: '{key}' must be a (3, 4) or (4, 4) matrix, got {m.dtype} {m.shape}")
    m = m.astype(np.float64)
    if not np.all(np.isfinite(m)):
        raise DataFormatError(f"{path}: '{key}' contains NaN/inf values")
    return m


def _read_views(folder, which, size):
    """Images, depths and cameras (ours) of the image/ or visualize/ views."""
    base = folder if which == "image" else os.path.join(folder, VISUALIZE_DIR)
    image_dir, depth_dir = os.path.join(base, IMAGE_DIR), os.path.join(base, DEPTH_DIR)
    image_files = _list(image_dir, _IMAGE_EXTS, "image")
    depth_files = _list(depth_dir, _DEPTH_EXTS, "depth")
    if len(image_files) != len(depth_files):
        raise DataFormatError(
            f"{image_dir}: {len(image_files)} images but {depth_dir} has {len(depth_files)} depth maps"
        )
    cam_path = os.path.join(depth_dir, CAMERA_FILE)
    if not os.path.isfile(cam_path):
        raise DataFormatError(f"{cam_path}: camera file not found")
    arrays = onet_format.load_npz(cam_path)
    images, depths, world, camera = [], [], [], []
    for i, (image_file, depth_file) in enumerate(zip(image_files, depth_files)):
        rgb = np.rint(image_io.read_rgb(image_file) * 255.0).astype(np.uint8)
        depth = image_io.read_depth(depth_file)
        if depth.shape != rgb.shape[:2]:
            raise DataFormatError(
                f"{depth_file}: depth map of size {depth.shape[1]}x{depth.shape[0]} but its image "
                f"{image_file} is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        h, w = depth.shape
        if h < 2 or w < 2:
            raise DataFormatError(f"{depth_file}: depth map of size {w}x{h}; views need at least 2x2 pixels")
        s = size
        if s is None:
            if h != w:
                raise DataFormatError(
                    f"{image_file}: image is {w}x{h}, not square (pass a size to resize it)"
                )
            s = h
        k = _camera(cam_path, arrays, "camera_mat", i)
        rt = _camera(cam_path, arrays, "world_mat", i)
        if k.shape == (3, 4) and rt.shape == (3, 4):  # The original's cameras, for side s.
            converted = cam_lib.from_texture_fields(k, rt, s)
            rt, k = (np.asarray(converted[key], dtype=np.float64) for key in ("world_mat", "camera_mat"))
        elif k.shape == (4, 4) and rt.shape == (4, 4):  # Ours: fold scale_mat in, fit the resize.
            if f"scale_mat_{i}" in arrays:
                rt = rt @ _camera(cam_path, arrays, "scale_mat", i)
            (ax, bx), (ay, by) = _pixel_fit(w, s), _pixel_fit(h, s)
            fit = np.array([[1 / ax, 0, -bx / ax, 0], [0, 1 / ay, -by / ay, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
            k = fit @ k
        else:
            raise DataFormatError(
                f"{cam_path}: camera_mat_{i} is {k.shape[0]}x{k.shape[1]} but world_mat_{i} is "
                f"{rt.shape[0]}x{rt.shape[1]} (both 3x4, Texture Fields', or both 4x4, ours)"
            )
        for name, m in (("world_mat", rt), ("camera_mat", k)):
            if (
                not np.allclose(m[3], [0, 0, 0, 1])
                or not np.isfinite(np.linalg.cond(m))
                or np.linalg.cond(m) > 1e12
            ):
                raise DataFormatError(f"{cam_path}: {name}_{i} is not an invertible affine matrix")
        images.append(resize_nearest(rgb, s))
        depths.append(resize_nearest(depth, s))
        world.append(rt)
        camera.append(k)
    return {
        "images": np.stack(images),
        "depths": np.stack(depths).astype(np.float32),
        "world_mat": np.stack(world).astype(np.float32),
        "camera_mat": np.stack(camera).astype(np.float32),
    }


def _read_pointcloud(folder):
    path = os.path.join(folder, onet_format.POINTCLOUD_FILE)
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: file not found")
    out = {}
    with onet_format.open_npz(path) as data:
        for key in ("points", "normals"):
            if key not in data.files:
                raise DataFormatError(f"{path}: missing key '{key}' (keys found: {sorted(data.files)})")
            a = onet_format.npz_array(path, data, key)
            if a.ndim != 2 or a.shape[1] != 3 or a.shape[0] == 0 or not np.issubdtype(a.dtype, np.floating):
                raise DataFormatError(
                    f"{path}: '{key}' must be a non-empty float (N, 3) array, got {a.dtype} {a.shape}"
                )
            out[key] = a.astype(np.float32)
    if out["points"].shape != out["normals"].shape:
        raise DataFormatError(
            f"{path}: 'normals' {out['normals'].shape} do not match 'points' {out['points'].shape}"
        )
    if not (np.all(np.isfinite(out["points"])) and np.all(np.isfinite(out["normals"]))):
        raise DataFormatError(f"{path}: points or normals contain NaN/inf values")
    return out


def _read_object(folder, image_size, input_size, which):
    """An object's arrays with uint8 images (the compact form the dataset caches)."""
    if which not in ("image", "visualize"):
        raise ValueError(f"which must be 'image' or 'visualize', got {which!r}")
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataFormatError(f"{folder}: object folder not found")
    image_size = None if image_size is None else onet_format.check_count("image_size", image_size, 2)
    input_size = None if input_size is None else onet_format.check_count("input_size", input_size, 2)
    data = _read_views(folder, which, image_size)
    data["input_images"], _ = _read_images(os.path.join(folder, INPUT_DIR), input_size, "input image")
    data.update(_read_pointcloud(folder))
    return data


def _expand(data):
    out = dict(data)
    for key in ("images", "input_images"):
        out[key] = data[key].astype(np.float32) / np.float32(255.0)
    return out


def load_textured_object(folder, image_size=128, input_size=224, which="image"):
    """One object of Texture Fields' layout (ours or the original's), resized.

    Images and depth maps are resized by nearest neighbour (:func:`resize_nearest`; depth
    is never interpolated), as the original's ``ResizeImage(order=0)``. The cameras
    match the resized depth maps: the original's 3 x 4 cameras are converted with
    ``cameras.from_texture_fields(K, W, image_size)`` (so ``cameras.depth_to_points``
    gives the original's ``depth_map_to_3d`` points); ours (4 x 4, pixels in [-1, 1]
    whatever the resolution) get their intrinsics composed with the affine map from the
    resized pixel coordinates to those of the source pixels nearest resizing picked,
    which is exact for integer down-sampling factors (and the identity at the rendered
    size), so lifted points stay on the surface. At other ratios (up-sampling, 64 -> 48)
    the picked pixels are not evenly spaced and the fit is a least-squares one: lifted
    points are then off by up to about half a source pixel.

    Args:
        folder: the object folder.
        image_size: int side of the views (None: as stored; square views).
        input_size: int side of the condition views (None: as stored).
        which: 'image' (``image/`` and ``depth/``) or 'visualize' (``visualize/image/``
            and ``visualize/depth/``).

    Returns:
        dict with ``images`` (V, S, S, 3) float32 in [0, 1], ``depths`` (V, S, S) float32
        camera depth (inf where no surface), ``world_mat`` and ``camera_mat`` (V, 4, 4)
        float32 (the convention of :mod:`implicit_fields.cameras`; ``scale_mat`` folded
        into ``world_mat``), ``input_images`` (V_in, s, s, 3) float32 in [0, 1] (the
        sorted ``input_image/`` files) and ``points``, ``normals`` (N, 3) float32 (all of
        ``pointcloud.npz``). View ``i`` is the i-th image and depth file in sorted order
        with camera ``i``.

    Raises:
        DataFormatError: a missing or malformed file (named), differing numbers of images
            and depth maps, a depth map of another size than its image.
        ValueError: a bad argument.
    """
    return _expand(_read_object(folder, image_size, input_size, which))


def _known_synset(category):
    """The synset of a built-in category name (a dataset without metadata.yaml names folders by id)."""
    try:
        return category_synset(category)
    except ValueError:
        return category


class TexturedDataset(datasets.CachedDataset):
    """The objects of one split of a dataset in Texture Fields' layout.

    Objects are listed from ``<category>/<split>.lst`` (categories from
    ``metadata.yaml``, or every sub-folder without one), and checked up front (a stat
    per file) for the files a load needs, so a missing object is reported when the
    dataset is opened.

    Args:
        path: dataset root.
        split: 'train', 'val' or 'test'.
        categories: None for all, or category ids / names (names of ``metadata.yaml``, or
            of the built-in categories: 'car' is 02958343).
        image_size: side of the views (:func:`load_textured_object`).
        input_size: side of the condition views.
        cache: keep loaded objects in memory (images as uint8).
        which: 'image' or 'visualize', the views :meth:`load` reads.

    Raises:
        FileNotFoundError: no dataset folder.
        ValueError: unknown categories.
        DataFormatError: a missing category folder or split file, or listed objects
            lacking files (the message names the split file, the objects and the files).
    """

    def __init__(
        self, path, split, categories=None, image_size=128, input_size=224, cache=True, which="image"
    ):
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path}: dataset folder not found")
        if which not in ("image", "visualize"):
            raise ValueError(f"which must be 'image' or 'visualize', got {which!r}")
        self.path, self.split, self.which = path, split, which
        self.image_size, self.input_size, self.cache = image_size, input_size, cache
        if not os.path.exists(os.path.join(path, onet_format.METADATA_FILE)) and os.path.isfile(
            os.path.join(path, f"{split}.lst")
        ):
            # The original's class folder (its cars: synthetic_cars_nospecular/{train,val,test}.lst
            # and the objects directly inside, `Shapes3dClassDataset`): one unnamed category.
            if categories:
                raise ValueError(
                    f"categories: {categories} given, but {path} is one class folder ({split}.lst in it)"
                )
            self.metadata = {"": {"id": "", "name": os.path.basename(os.path.normpath(path))}}
        elif os.path.exists(os.path.join(path, onet_format.METADATA_FILE)):
            self.metadata = onet_format.read_metadata(path)
        else:
            self.metadata = {
                d: {"id": d, "name": d}
                for d in sorted(os.listdir(path))
                if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")
            }
        by_name = {v["name"]: k for k, v in self.metadata.items()}
        if categories:
            if isinstance(categories, str):
                categories = [categories]
            ids = [c if c in self.metadata else by_name.get(c) or _known_synset(c) for c in categories]
            missing = [c for c, i in zip(categories, ids) if i not in self.metadata]
            if missing:
                raise ValueError(
                    f"categories: {missing} are not in dataset {path} (it has {sorted(self.metadata)})"
                )
            self.categories = ids
        else:
            self.categories = sorted(self.metadata)
        if not self.categories:
            raise ValueError(f"{path}: the dataset has no categories")
        self.items = []
        for category in self.categories:
            cat_dir = os.path.join(path, category)
            if not os.path.isdir(cat_dir):
                raise DataFormatError(f"{cat_dir}: category folder not found")
            models = onet_format.read_split(cat_dir, split)
            datasets.check_object_files(cat_dir, split, models, self.required_files())
            self.items.extend((category, m) for m in models)
        self._cache = {}
        self._lock = threading.Lock()

    def required_files(self):
        """The files (and, ending in '/', folders) an object needs."""
        base = "" if self.which == "image" else VISUALIZE_DIR + "/"
        return [
            INPUT_DIR + "/",
            f"{base}{IMAGE_DIR}/",
            f"{base}{DEPTH_DIR}/{CAMERA_FILE}",
            onet_format.POINTCLOUD_FILE,
        ]

    def __len__(self):
        return len(self.items)

    @property
    def names(self):
        """``<category>/<model>`` of every object, in index order."""
        return [f"{c}/{m}" if c else m for c, m in self.items]

    def category_name(self, category):
        """Human-readable name of a category id."""
        return str(self.metadata.get(category, {}).get("name", category))

    def model_dir(self, index):
        """The folder of object ``index``."""
        category, model = self.items[index]
        return os.path.join(self.path, category, model)

    def load(self, index):
        """The arrays of object ``index`` (:func:`load_textured_object`; float32 images)."""
        index = int(index)
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"object index {index} out of range for {len(self.items)} objects")
        index %= len(self.items)
        with self._lock:
            data = self._cache.get(index)
        if data is None:
            data = _read_object(self.model_dir(index), self.image_size, self.input_size, self.which)
            if self.cache:
                with self._lock:
                    self._cache[index] = data
        return _expand(data)

    __getitem__ = load
