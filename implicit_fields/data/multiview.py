"""Multi-view data for Differentiable Volumetric Rendering: exact renders and a loader.

The on-disk layout is the original's (DVR ``configs/default.yaml``: ``img_folder: image``,
``mask_folder: mask``, ``depth_folder: depth``; ``im2mesh/data/fields.py`` ``ImagesField``)::

    OBJECT/image/0000.png ...   RGB images (the original also reads .jpg)
    OBJECT/mask/0000.png ...    object masks (any non-zero first channel is the object)
    OBJECT/depth/0000.npy ...   optional camera-depth maps, float32 (H, W), inf where
                                no surface (the original stores .exr; see below)
    OBJECT/cameras.npz          world_mat_i, camera_mat_i, scale_mat_i (+ *_inv_i),
                                see :mod:`implicit_fields.cameras`
    OBJECT/multiview.json       ours only: how the views were rendered (and the
                                appearance, so surface colours can be recomputed)

Files of each folder are matched by sorted position, as in the original (view ``i`` is
the ``i``-th file of ``image/`` and ``mask/`` and uses ``*_mat_i``). For the built-in
dataset, OBJECT is the object folder ``DATASET/<synset>/<model_id>/`` next to
``points.npz``, exactly where the original's ShapeNet renderings put them (its single-view
inputs live in ``img_choy2016/``, a separate folder). Depth maps are written as ``.npy``
because reading OpenEXR needs a dependency we do not have; ``.exr`` depth folders are
reported with a clear error (convert them to .npy float32 with inf background).

The renderer is exact: every primitive of a :class:`~implicit_fields.shapes.Shape` gives
its ray intervals in closed form (slabs for boxes, quadratics for spheres, cylinders and
capsules, a companion-matrix quartic with Newton polishing for tori), and the one-level
CSG (union of positives minus union of negatives) picks the first point where the ray
enters the occupied set. Depth is float64-exact before the float32 cast, so thin parts
are never missed and masks equal the set of rays that meet the shape. Colours are a
per-primitive base colour (optionally with a solid stripe texture) times view-independent
Lambert shading under two fixed world-space lights, so a surface point has the same
colour in every view (what DVR's photo-consistency assumes); the background is white.
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
from implicit_fields.data import builtin
from implicit_fields.data.builtin import load_shape  # noqa: F401 - re-exported (see __all__)
from implicit_fields.data.onet_format import DataFormatError
from implicit_fields.shapes import Box, Capsule, Cylinder, Sphere, Torus

__all__ = [
    "IMAGE_DIR",
    "MASK_DIR",
    "DEPTH_DIR",
    "CAMERA_FILE",
    "INFO_FILE",
    "MULTIVIEW_VERSION",
    "Appearance",
    "trace",
    "surface_color",
    "render_view",
    "render_views",
    "write_multiview",
    "load_shape",
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
# Exact ray intervals of the primitives (local frames, float64).
# --------------------------------------------------------------------------------------


def _dot(a, b):
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def _clean(t0, t1):
    """Empty intervals (t0 > t1 or NaN) become (inf, -inf)."""
    empty = ~(t0 <= t1)
    return np.where(empty, np.inf, t0), np.where(empty, -np.inf, t1)


def _slab(o, d, lo, hi):
    """Rays (N, k) against the box lo <= x <= hi (k,): (t0, t1) of shape (N,)."""
    zero = d == 0.0
    safe = np.where(zero, 1.0, d)
    ta = (lo - o) / safe
    tb = (hi - o) / safe
    inside = (o >= lo) & (o <= hi)
    t_lo = np.where(zero, np.where(inside, -np.inf, np.inf), np.minimum(ta, tb))
    t_hi = np.where(zero, np.where(inside, np.inf, -np.inf), np.maximum(ta, tb))
    return t_lo.max(axis=1), t_hi.min(axis=1)


def _quadratic(a, b, c):
    """Roots of a t^2 + 2 b t + c = 0 with a > 0: (t0, t1), empty when none."""
    disc = b * b - a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    # Stable form: q = -(b + sign(b) sq); roots q / a and c / q.
    q = -(b + np.where(b >= 0.0, sq, -sq))
    safe_q = np.where(q == 0.0, 1.0, q)
    r0 = q / a
    r1 = np.where(q == 0.0, -r0, c / safe_q)
    t0, t1 = np.minimum(r0, r1), np.maximum(r0, r1)
    return _clean(np.where(disc >= 0.0, t0, np.inf), np.where(disc >= 0.0, t1, -np.inf))


def _sphere_interval(o, d, radius):
    return _quadratic(_dot(d, d), _dot(o, d), _dot(o, o) - radius * radius)


def _infinite_cylinder(o, d, radius):
    """Rays against x^2 + y^2 <= r^2 (axis z)."""
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - radius * radius
    parallel = a == 0.0
    t0, t1 = _quadratic(np.where(parallel, 1.0, a), b, c)
    inside = c <= 0.0
    t0 = np.where(parallel, np.where(inside, -np.inf, np.inf), t0)
    t1 = np.where(parallel, np.where(inside, np.inf, -np.inf), t1)
    return t0, t1


def _capped_cylinder(o, d, radius, half_height):
    c0, c1 = _infinite_cylinder(o, d, radius)
    z0, z1 = _slab(o[:, 2:], d[:, 2:], np.array([-half_height]), np.array([half_height]))
    return _clean(np.maximum(c0, z0), np.minimum(c1, z1))


def _capsule_interval(o, d, radius, half_length):
    # Convex: the union of the pieces' intervals along a line is one interval.
    pieces = []
    if half_length > 0.0:
        pieces.append(_capped_cylinder(o, d, radius, half_length))
    for z in (-half_length, half_length):
        pieces.append(_sphere_interval(o - np.array([0.0, 0.0, z]), d, radius))
    t0 = np.min([p[0] for p in pieces], axis=0)
    t1 = np.max([p[1] for p in pieces], axis=0)
    return _clean(t0, t1)


def _torus_intervals(o, d, major, minor):
    """Rays against the ring torus about z: up to three intervals (N, 3)."""
    n = o.shape[0]
    starts = np.full((n, 3), np.inf)
    ends = np.full((n, 3), -np.inf)
    length = np.sqrt(_dot(d, d))
    u = d / length[:, None]
    # Restrict to the bounding sphere and restart there (keeps the quartic well scaled).
    s0, s1 = _sphere_interval(o, u, major + minor)
    idx = np.flatnonzero(np.isfinite(s0))
    if idx.size == 0:
        return starts, ends
    s_in = s0[idx]
    p = o[idx] + s_in[:, None] * u[idx]
    w = u[idx]
    k = _dot(p, p) + major * major - minor * minor
    pw = _dot(p, w)
    wxy = w[:, 0] ** 2 + w[:, 1] ** 2
    pwxy = p[:, 0] * w[:, 0] + p[:, 1] * w[:, 1]
    pxy = p[:, 0] ** 2 + p[:, 1] ** 2
    four_r2 = 4.0 * major * major
    c3 = 4.0 * pw
    c2 = 4.0 * pw * pw + 2.0 * k - four_r2 * wxy
    c1 = 4.0 * pw * k - 2.0 * four_r2 * pwxy
    c0 = k * k - four_r2 * pxy
    comp = np.zeros((idx.size, 4, 4))
    comp[:, 0, 0], comp[:, 0, 1], comp[:, 0, 2], comp[:, 0, 3] = -c3, -c2, -c1, -c0
    comp[:, 1, 0] = comp[:, 2, 1] = comp[:, 3, 2] = 1.0
    roots = np.linalg.eigvals(comp)
    scale = major + minor
    real = np.abs(roots.imag) <= 1e-6 * scale
    s = np.where(real, roots.real, np.nan)

    def poly(x):
        return (((x + c3[:, None]) * x + c2[:, None]) * x + c1[:, None]) * x + c0[:, None]

    def dpoly(x):
        return ((4.0 * x + 3.0 * c3[:, None]) * x + 2.0 * c2[:, None]) * x + c1[:, None]

    for _ in range(4):  # Newton polishing; a step is kept only where it helps.
        f = poly(s)
        df = dpoly(s)
        step = np.where(np.abs(df) > 0.0, f / np.where(df == 0.0, 1.0, df), 0.0)
        cand = s - step
        s = np.where(np.abs(poly(cand)) < np.abs(f), cand, s)
    s = np.where(np.isfinite(s), s, np.inf)
    s = np.sort(s, axis=1)
    # Consecutive roots bound an interval iff its midpoint is inside the torus.
    for j in range(3):
        a, b = s[:, j], s[:, j + 1]
        ok = np.isfinite(a) & np.isfinite(b)
        mid = 0.5 * (np.where(ok, a, 0.0) + np.where(ok, b, 0.0))
        q = p + mid[:, None] * w
        rho = np.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2) - major
        inside = ok & (rho * rho + q[:, 2] ** 2 <= minor * minor)
        t_a = (s_in + a) / length[idx]
        t_b = (s_in + b) / length[idx]
        starts[idx, j] = np.where(inside, t_a, np.inf)
        ends[idx, j] = np.where(inside, t_b, -np.inf)
    return starts, ends


def _to_local(prim, o, d):
    """World rays -> the primitive's frame (rows: R^T (x - t))."""
    return (o - prim.translation[None, :]) @ prim.rotation, d @ prim.rotation


def _intervals(prim, o, d):
    """Ray intervals inside a primitive: (starts, ends) of shape (N, m), empty = (inf, -inf)."""
    lo, ld = _to_local(prim, o, d)
    if isinstance(prim, Box):
        h = prim.half_extents
        t0, t1 = _clean(*_slab(lo, ld, -h, h))
    elif isinstance(prim, Sphere):
        t0, t1 = _sphere_interval(lo, ld, prim.radius)
    elif isinstance(prim, Cylinder):
        t0, t1 = _capped_cylinder(lo, ld, prim.radius, prim.half_height)
    elif isinstance(prim, Capsule):
        t0, t1 = _capsule_interval(lo, ld, prim.radius, prim.half_length)
    elif isinstance(prim, Torus):
        return _torus_intervals(lo, ld, prim.major_radius, prim.minor_radius)
    else:
        raise TypeError(f"no ray intersection for primitive type {type(prim).__name__}")
    return t0[:, None], t1[:, None]


def _normalize_rows(v):
    n = np.sqrt(_dot(v, v))
    return v / np.maximum(n, 1e-300)[:, None]


def _local_normals(prim, p):
    """Outward unit normals of a primitive at local boundary points p (N, 3)."""
    if isinstance(prim, Box):
        h = prim.half_extents
        k = np.argmax(np.abs(p) / h[None, :], axis=1)
        n = np.zeros_like(p)
        rows = np.arange(p.shape[0])
        n[rows, k] = np.where(p[rows, k] >= 0.0, 1.0, -1.0)
        return n
    if isinstance(prim, Sphere):
        return _normalize_rows(p)
    if isinstance(prim, Cylinder):
        rho = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2)
        side = np.abs(prim.radius - rho) < np.abs(prim.half_height - np.abs(p[:, 2]))
        radial = np.stack([p[:, 0], p[:, 1], np.zeros_like(rho)], axis=1)
        cap = np.stack([np.zeros_like(rho), np.zeros_like(rho), np.where(p[:, 2] >= 0, 1.0, -1.0)], 1)
        return np.where(side[:, None], _normalize_rows(radial), cap)
    if isinstance(prim, Capsule):
        h = prim.half_length
        return _normalize_rows(p - np.stack([0 * p[:, 0], 0 * p[:, 0], np.clip(p[:, 2], -h, h)], 1))
    if isinstance(prim, Torus):
        rho = np.maximum(np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2), 1e-300)
        ring = prim.major_radius / rho
        return _normalize_rows(np.stack([p[:, 0] * (1 - ring), p[:, 1] * (1 - ring), p[:, 2]], 1))
    raise TypeError(f"no normals for primitive type {type(prim).__name__}")


def _local_sdf(prim, p):
    """Exact signed distance of a primitive at local points p (N, 3)."""
    if isinstance(prim, Box):
        q = np.abs(p) - prim.half_extents[None, :]
        outside = np.sqrt(_dot(np.maximum(q, 0.0), np.maximum(q, 0.0)))
        return outside + np.minimum(q.max(axis=1), 0.0)
    if isinstance(prim, Sphere):
        return np.sqrt(_dot(p, p)) - prim.radius
    if isinstance(prim, Cylinder):
        a = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - prim.radius
        b = np.abs(p[:, 2]) - prim.half_height
        out = np.sqrt(np.maximum(a, 0.0) ** 2 + np.maximum(b, 0.0) ** 2)
        return out + np.minimum(np.maximum(a, b), 0.0)
    if isinstance(prim, Capsule):
        dz = p[:, 2] - np.clip(p[:, 2], -prim.half_length, prim.half_length)
        return np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2 + dz * dz) - prim.radius
    if isinstance(prim, Torus):
        rho = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - prim.major_radius
        return np.sqrt(rho * rho + p[:, 2] ** 2) - prim.minor_radius
    raise TypeError(f"no distance for primitive type {type(prim).__name__}")


def _primitive_normals(shape, points, prim_index):
    """Outward shape normals at surface points owned by given primitives (index into
    ``shape.primitives``; negatives' normals are flipped)."""
    prims = shape.primitives
    num_pos = len(shape.positives)
    normals = np.zeros_like(points)
    for k in np.unique(prim_index):
        if k < 0:
            continue
        sel = prim_index == k
        prim = prims[k]
        local = (points[sel] - prim.translation[None, :]) @ prim.rotation
        n = _local_normals(prim, local) @ prim.rotation.T
        normals[sel] = -n if k >= num_pos else n
    return normals


# --------------------------------------------------------------------------------------
# CSG ray casting.
# --------------------------------------------------------------------------------------


def _shape_aabb(shape):
    lo = np.min([p.aabb()[0] for p in shape.positives], axis=0)
    hi = np.max([p.aabb()[1] for p in shape.positives], axis=0)
    pad = 1e-9 * (1.0 + float(np.max(hi - lo)))
    return lo - pad, hi + pad


def _first_hit(ps, pe, ns, ne, csrc, t_min, chunk):
    """First entry into (union of [ps, pe]) minus (union of [ns, ne]) along each ray."""
    cand = np.concatenate([ps, ne], axis=1)
    m = cand.shape[0]
    depth = np.full(m, np.inf)
    src = np.full(m, -1, dtype=np.int64)
    for s in range(0, m, chunk):
        sl = slice(s, min(s + chunk, m))
        c = cand[sl]
        # Occupancy just after the candidate decides (the set is entered there).
        probe = (c + 1e-9 * (1.0 + np.abs(np.where(np.isfinite(c), c, 0.0))))[:, :, None]
        occ = ((ps[sl, None, :] <= probe) & (probe <= pe[sl, None, :])).any(axis=2)
        if ns.shape[1]:
            occ &= ~((ns[sl, None, :] <= probe) & (probe <= ne[sl, None, :])).any(axis=2)
        valid = occ & np.isfinite(c) & (c >= t_min)
        cv = np.where(valid, c, np.inf)
        k = np.argmin(cv, axis=1)
        t = cv[np.arange(cv.shape[0]), k]
        depth[sl] = t
        src[sl] = np.where(np.isfinite(t), csrc[k], -1)
    return depth, src


def trace(shape, origins, directions, t_min=0.0, chunk=2048):
    """Exact first intersection of rays with a CSG shape.

    Args:
        shape: :class:`~implicit_fields.shapes.Shape`.
        origins: (N, 3) float ray origins.
        directions: (N, 3) float ray directions (non-zero; any length).
        t_min: float, hits with ray parameter below this are ignored.
        chunk: int, rays per CSG chunk (bounds memory).

    Returns:
        depth (N,) float64 ray parameter of the first hit (inf for misses), prim (N,)
        int64 index into ``shape.primitives`` of the surface hit (-1 for misses; a
        negative's index where the hit lies on a cut face) and normals (N, 3) float64
        outward unit normals of the shape (zero for misses).
    """
    o = np.asarray(origins, dtype=np.float64)
    d = np.asarray(directions, dtype=np.float64)
    if o.ndim != 2 or o.shape[1] != 3 or d.shape != o.shape:
        raise ValueError(f"origins/directions must be (N, 3), got {o.shape} and {d.shape}")
    n = o.shape[0]
    depth = np.full(n, np.inf)
    prim = np.full(n, -1, dtype=np.int64)
    normals = np.zeros((n, 3))
    lo, hi = _shape_aabb(shape)
    b0, b1 = _slab(o, d, lo, hi)
    rays = np.flatnonzero((b0 <= b1) & (b1 >= t_min))
    if rays.size == 0:
        return depth, prim, normals
    ro, rd = o[rays], d[rays]
    num_pos = len(shape.positives)
    parts = {True: ([], [], []), False: ([], [], [])}
    for k, p in enumerate(shape.primitives):
        s, e = _intervals(p, ro, rd)
        bucket = parts[k < num_pos]
        bucket[0].append(s)
        bucket[1].append(e)
        bucket[2].append(np.full(s.shape[1], k))
    ps, pe = np.concatenate(parts[True][0], 1), np.concatenate(parts[True][1], 1)
    if parts[False][0]:
        ns, ne = np.concatenate(parts[False][0], 1), np.concatenate(parts[False][1], 1)
        nsrc = np.concatenate(parts[False][2])
    else:
        ns = ne = np.zeros((rays.size, 0))
        nsrc = np.zeros(0, dtype=np.int64)
    csrc = np.concatenate([np.concatenate(parts[True][2]), nsrc]).astype(np.int64)
    t, src = _first_hit(ps, pe, ns, ne, csrc, float(t_min), int(chunk))
    depth[rays] = t
    prim[rays] = src
    hit = np.flatnonzero(src >= 0)
    points = ro[hit] + t[hit, None] * rd[hit]
    normals[rays[hit]] = _primitive_normals(shape, points, src[hit])
    return depth, prim, normals


# --------------------------------------------------------------------------------------
# Appearance.
# --------------------------------------------------------------------------------------

_LIGHTS = (  # (direction towards the light, intensity); fixed in object space.
    ((0.4, 0.8, -0.45), 0.55),
    ((-0.5, -0.3, 0.6), 0.3),
)
_AMBIENT = 0.45


def _hsv_to_rgb(h, s, v):
    k = np.mod(np.array([5.0, 3.0, 1.0])[None, :] + h[:, None] * 6.0, 6.0)
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class Appearance:
    """Colours of a shape's surface: per-primitive albedo, optional stripes, fixed lights.

    The colour of a surface point ``p`` owned by primitive ``k`` with outward normal
    ``n`` is ``albedo_k(p) * min(1, ambient + sum_l I_l max(0, n . l))`` with two fixed
    object-space lights, so it does not depend on the view. With ``texture='stripes'``
    the albedo is ``colors[k] * (1 - contrast * (0.5 + 0.5 sin(2 pi f a_k . p + phi_k)))``,
    a solid texture of planar stripes (direction ``a_k``, phase ``phi_k``).

    Args:
        colors: (P, 3) float RGB in [0, 1], one per primitive of the shape (positives
            first, as in ``Shape.primitives``; negatives colour the cut faces).
        texture: 'none' or 'stripes'.
        frequency: float, stripes per unit length.
        contrast: float in [0, 1], stripe darkening.
        stripe_dirs: (P, 3) unit directions (required for stripes).
        phases: (P,) radians (required for stripes).
    """

    def __init__(self, colors, texture="none", frequency=6.0, contrast=0.35, stripe_dirs=None, phases=None):
        self.colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
        if texture not in ("none", "stripes"):
            raise ValueError(f"texture must be 'none' or 'stripes', got {texture!r}")
        self.texture = texture
        self.frequency = float(frequency)
        self.contrast = float(contrast)
        p = self.colors.shape[0]
        self.stripe_dirs = (
            np.tile([0.0, 1.0, 0.0], (p, 1))
            if stripe_dirs is None
            else _normalize_rows(np.asarray(stripe_dirs, np.float64).reshape(-1, 3))
        )
        self.phases = np.zeros(p) if phases is None else np.asarray(phases, np.float64).reshape(-1)
        if self.stripe_dirs.shape[0] != p or self.phases.shape[0] != p:
            raise ValueError("colors, stripe_dirs and phases need one row per primitive")

    @classmethod
    def random(cls, num_primitives, seed=0, texture="stripes", frequency=6.0, contrast=0.35):
        """Deterministic colours (and stripes) for ``num_primitives`` primitives.

        Args:
            num_primitives: int P.
            seed: int, list of ints or numpy SeedSequence.
            texture: 'none' or 'stripes'.
            frequency, contrast: see the class.

        Returns:
            :class:`Appearance`.
        """
        rng = np.random.default_rng(seed)
        p = int(num_primitives)
        hue = rng.random(p)
        sat = rng.uniform(0.35, 0.75, p)
        val = rng.uniform(0.7, 0.95, p)
        dirs = rng.standard_normal((p, 3))
        phases = rng.uniform(0.0, 2.0 * np.pi, p)
        return cls(_hsv_to_rgb(hue, sat, val), texture, frequency, contrast, dirs, phases)

    def to_dict(self):
        """JSON-able dict (inverse: :meth:`from_dict`)."""
        return {
            "colors": self.colors.tolist(),
            "texture": self.texture,
            "frequency": self.frequency,
            "contrast": self.contrast,
            "stripe_dirs": self.stripe_dirs.tolist(),
            "phases": self.phases.tolist(),
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        return cls(d["colors"], d["texture"], d["frequency"], d["contrast"], d["stripe_dirs"], d["phases"])

    def albedo(self, points, prim_index):
        """Albedo at surface points.

        Args:
            points: (N, 3) object-space points.
            prim_index: (N,) int, owning primitive (index into ``Shape.primitives``).

        Returns:
            (N, 3) float64 RGB in [0, 1].
        """
        points = np.asarray(points, dtype=np.float64)
        k = np.asarray(prim_index)
        if k.size and (k.min() < 0 or k.max() >= self.colors.shape[0]):
            raise ValueError(f"primitive index out of range [0, {self.colors.shape[0]})")
        base = self.colors[k]
        if self.texture == "stripes":
            phase = 2.0 * np.pi * self.frequency * _dot(points, self.stripe_dirs[k]) + self.phases[k]
            base = base * (1.0 - self.contrast * (0.5 + 0.5 * np.sin(phase)))[:, None]
        return base

    @staticmethod
    def shading(normals):
        """View-independent Lambert factor (N,) of unit normals (N, 3)."""
        s = np.full(normals.shape[0], _AMBIENT)
        for direction, intensity in _LIGHTS:
            light = np.asarray(direction) / np.linalg.norm(direction)
            s = s + intensity * np.maximum(normals @ light, 0.0)
        return np.minimum(s, 1.0)

    def color(self, points, normals, prim_index):
        """Shaded colour (N, 3) in [0, 1] of surface points with their normals and owners."""
        return self.albedo(points, prim_index) * self.shading(np.asarray(normals))[:, None]


def surface_color(shape, appearance, points, normals=None):
    """Colour of points on the shape's surface (for evaluating predicted colours).

    Each point is owned by the primitive whose boundary is nearest (exact primitive
    distances); its normal is that primitive's (flipped for a negative) unless given.

    Args:
        shape: :class:`~implicit_fields.shapes.Shape`.
        appearance: :class:`Appearance` of the shape.
        points: (N, 3) surface points (object space).
        normals: optional (N, 3) unit outward normals.

    Returns:
        colors (N, 3) float64 in [0, 1] and the owning primitive indices (N,) int64.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    dist = np.stack(
        [np.abs(_local_sdf(p, (points - p.translation[None, :]) @ p.rotation)) for p in shape.primitives],
        axis=1,
    )
    owner = np.argmin(dist, axis=1).astype(np.int64)
    if normals is None:
        normals = _primitive_normals(shape, points, owner)
    return appearance.color(points, np.asarray(normals, dtype=np.float64), owner), owner


# --------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------


def _resolution(resolution):
    if np.ndim(resolution) == 0:
        h = w = int(resolution)
    else:
        h, w = (int(r) for r in resolution)
    if h < 2 or w < 2:
        raise ValueError(f"resolution must be at least 2x2, got {resolution}")
    return h, w


def _camera_at(cameras, i):
    out = {}
    for k in cam_lib.CAMERA_KEYS:
        m = np.asarray(cameras.get(k, np.eye(4)), dtype=np.float64)
        out[k] = m if m.ndim == 2 else m[i]
    return out


def render_view(shape, camera, height, width, appearance=None, background=(1.0, 1.0, 1.0)):
    """Renders one view of a shape exactly (one ray per pixel centre).

    Args:
        shape: :class:`~implicit_fields.shapes.Shape` in object space.
        camera: dict with ``camera_mat``, ``world_mat``, ``scale_mat`` (4, 4).
        height, width: int image size.
        appearance: :class:`Appearance`; None gives a neutral grey.
        background: RGB in [0, 1] (white, like the original's renderings).

    Returns:
        dict with ``image`` (H, W, 3) uint8, ``mask`` (H, W) bool, ``depth`` (H, W)
        float32 camera depth (inf outside the mask, as the original's depth maps) and
        ``normals`` (H, W, 3) float32 object-space unit normals (zero outside).
    """
    if appearance is None:
        appearance = Appearance(np.full((len(shape.primitives), 3), 0.8))
    pixels = cam_lib.pixel_grid(height, width).reshape(-1, 2)
    origins, directions = cam_lib.pixels_to_rays(
        pixels, camera["camera_mat"], camera["world_mat"], camera.get("scale_mat", np.eye(4))
    )
    depth, prim, normals = trace(shape, origins, directions)
    mask = prim >= 0
    rgb = np.empty((pixels.shape[0], 3))
    rgb[:] = np.asarray(background, dtype=np.float64)
    hit = np.flatnonzero(mask)
    points = origins[hit] + depth[hit, None] * directions[hit]
    rgb[hit] = appearance.color(points, normals[hit], prim[hit])
    image = np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    return {
        "image": image.reshape(height, width, 3),
        "mask": mask.reshape(height, width),
        "depth": np.where(mask, depth, np.inf).astype(np.float32).reshape(height, width),
        "normals": normals.astype(np.float32).reshape(height, width, 3),
    }


def render_views(shape, cameras, height, width, appearance=None, progress=False):
    """Renders every view of a camera dict.

    Args:
        shape: :class:`~implicit_fields.shapes.Shape`.
        cameras: dict with ``camera_mat``, ``world_mat``, ``scale_mat`` (V, 4, 4).
        height, width: int image size.
        appearance: :class:`Appearance` or None.
        progress: show a tqdm bar over views.

    Returns:
        dict of stacked :func:`render_view` outputs: ``image`` (V, H, W, 3) uint8,
        ``mask`` (V, H, W) bool, ``depth`` (V, H, W) float32, ``normals`` (V, H, W, 3).
    """
    n = np.asarray(cameras["world_mat"]).shape[0]
    views = [
        render_view(shape, _camera_at(cameras, i), height, width, appearance)
        for i in tqdm(range(n), disable=not progress, desc="render", unit="view")
    ]
    return {k: np.stack([v[k] for v in views]) for k in views[0]}


def _fit_focal(shape, radius):
    """Focal length that fits the shape's bounding sphere about the origin (+3%)."""
    points, _ = shape.sample_surface(4096, np.random.default_rng(0))
    return _focal_for_radius(float(np.sqrt(_dot(points, points)).max()), radius)


def _focal_for_radius(extent, radius):
    """Focal length that fits a sphere of radius ``extent`` about the origin (+3%, at
    most the unit cube's bounding sphere) from a camera at distance ``radius``."""
    r = min(1.03 * float(extent), np.sqrt(3.0) / 2.0)
    if not radius > r:
        raise ValueError(f"camera radius {radius} must exceed the shape's radius {r:.3f}")
    return float(np.sqrt(radius * radius - r * r) / r)


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
):
    """Renders views of a shape and writes them in the original's multi-view layout.

    Writes ``image/0000.png`` (RGB), ``mask/0000.png`` (grey 0/255), ``depth/0000.npy``
    (float32 camera depth, inf background), ``cameras.npz`` and ``multiview.json`` into
    ``folder``. Everything is rendered into a temporary folder first; existing views
    are replaced only when the new ones are complete, and ``multiview.json`` (written
    last) marks a complete set. Cameras and colours are a function of ``seed``.

    Args:
        shape: :class:`~implicit_fields.shapes.Shape` in object space (unit cube).
        folder: output folder (created if needed).
        n_views: int, number of views.
        resolution: int or (H, W).
        seed: int, list of ints or SeedSequence.
        progress: show a tqdm bar over views.
        texture: 'none' or 'stripes' for the random appearance.
        appearance: :class:`Appearance` overriding the random one.
        radius, elevation_range: camera placement (:func:`cameras.sample_views`).
        focal: float focal length; None fits the shape's bounding sphere (about the
            origin, plus 3%) into the image, the same for all views.
        info: optional JSON-able dict stored under ``"info"`` in multiview.json.

    Returns:
        dict: the multiview.json content.
    """
    height, width = _resolution(resolution)
    seed_seq = np.random.SeedSequence(seed)
    cam_seed, app_seed = seed_seq.spawn(2)
    view_focal = _fit_focal(shape, radius) if focal is None else float(focal)
    cams = cam_lib.sample_views(n_views, radius, cam_seed, elevation_range, view_focal)
    if appearance is None:
        appearance = Appearance.random(len(shape.primitives), app_seed, texture)
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
        view = render_view(shape, _camera_at(cams, i), height, width, appearance)
        name = f"{i:04d}"
        vis.write_png(os.path.join(tmp, IMAGE_DIR, name + ".png"), view["image"])
        vis.write_png(os.path.join(tmp, MASK_DIR, name + ".png"), view["mask"])
        np.save(os.path.join(tmp, DEPTH_DIR, name + ".npy"), view["depth"])
        mask_fraction.append(float(view["mask"].mean()))
    cam_lib.save_cameras(os.path.join(tmp, CAMERA_FILE), cams)
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
    objects, per_synset = [], {}
    for synset, model, _ in builtin.object_folders(dataset_dir, categories):
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
            with open(marker, "r", encoding="utf-8") as f:
                old = json.load(f)
            if old.get("version") == MULTIVIEW_VERSION and old.get("params") == params:
                done.append(folder)
                continue
            if not overwrite:
                raise ValueError(
                    f"{marker}: rendered with {old.get('params')} (version {old.get('version')}), "
                    f"not {params}; pass overwrite=True to re-render"
                )
        write_multiview(
            load_shape(folder),
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


def _decode(path, rgb=False):
    """Pixel array of an image file: PIL when installed (``rgb``: converted to RGB, as the
    original's ``Image.open(...).convert("RGB")``; else the raw values, as its mask
    loader), otherwise our PNG reader (raw values)."""
    try:
        from PIL import Image  # Optional; needed for JPEG.
    except ImportError:
        Image = None
    ext = os.path.splitext(path)[1].lower()
    try:
        if Image is not None:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB") if rgb else im)
        if ext != ".png":
            raise DataFormatError(
                f"{path}: reading {ext} images needs Pillow (pip install pillow); PNG is read without it"
            )
        return vis.read_png(path)
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - report any decoder failure with the file.
        raise DataFormatError(f"{path}: unreadable image ({type(e).__name__}: {e})") from e


def _read_rgb(path):
    a = _decode(path, rgb=True)
    if a.dtype != np.uint8:
        raise DataFormatError(f"{path}: expected 8-bit image, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise DataFormatError(f"{path}: unsupported image shape {a.shape}")
    a = a[:, :, :1] if a.shape[2] in (1, 2) else a[:, :, :3]  # Alpha dropped, as PIL RGB.
    return np.broadcast_to(a, a.shape[:2] + (3,)).astype(np.float32) / 255.0


def _read_mask(path):
    a = _decode(path)
    a = a.reshape(a.shape[0], a.shape[1], -1)[:, :, 0]
    return a != 0


def _read_depth(path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".exr":
        raise DataFormatError(
            f"{path}: OpenEXR depth maps cannot be read (no EXR dependency); convert them to "
            ".npy float32 (H, W) with inf where there is no surface"
        )
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{path}: unreadable depth map ({type(e).__name__}: {e})") from e
    if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.floating):
        raise DataFormatError(f"{path}: depth must be a float array, got {type(a).__name__}")
    if a.ndim == 3 and a.shape[2] >= 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise DataFormatError(f"{path}: depth must have shape (H, W), got {a.shape}")
    # Unknown depth is inf (the original's get_mask); NaN and non-positive values (a 0
    # background in other renderers' maps) are unknown too.
    return np.where(np.isfinite(a) & (a > 0), a, np.inf).astype(np.float32)


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
    cams = cam_lib.load_cameras(cam_path)
    n_cams = cams["world_mat"].shape[0]
    if n_cams < total:
        raise DataFormatError(f"{cam_path}: {n_cams} cameras for {total} images in {image_dir}")

    rgb, msk, dep = [], [], []
    size = None
    for i in keep:
        image = _read_rgb(images[i])
        if size is None:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise DataFormatError(
                f"{images[i]}: image size {image.shape[1]}x{image.shape[0]} differs from "
                f"{size[1]}x{size[0]} of {images[keep[0]]}"
            )
        rgb.append(image)
        for files, reader, out, what in (
            (masks, _read_mask, msk, "mask"),
            (depths, _read_depth, dep, "depth map"),
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
