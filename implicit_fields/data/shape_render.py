"""Exact renders of the built-in shapes: a CSG ray tracer and Lambert (or Blinn-Phong) shading.

Renders a :class:`~implicit_fields.data.shapes.Shape` with the cameras of
:mod:`implicit_fields.cameras` (one ray per pixel centre, no anti-aliasing); the
multi-view layout (:mod:`implicit_fields.data.multiview`) and the single-view renders of
the built-in dataset (:mod:`implicit_fields.data.builtin`) are written from these
renders. :mod:`implicit_fields.data.mesh_render` is its counterpart for triangle meshes,
with the same conventions and the same :class:`Appearance`.

The renderer is exact: every primitive of a :class:`~implicit_fields.data.shapes.Shape`
gives its ray intervals in closed form (slabs for boxes, quadratics for spheres, cylinders
and capsules, a companion-matrix quartic with Newton polishing for tori), and the
one-level CSG (union of positives minus union of negatives) picks the first point where
the ray enters the occupied set. Depth is float64-exact before the float32 cast, so thin
parts are never missed and masks equal the set of rays that meet the shape. Colours are a
per-primitive base colour (optionally with a solid stripe texture) times view-independent
Lambert shading under two fixed world-space lights, so a surface point has the same
colour in every view (what DVR's photo-consistency assumes); the background is white.
``Appearance(material='specular')`` adds white Blinn-Phong highlights of the same lights,
a view-dependent colour (for colour heads that see the view direction, as IDR's).
"""

import numpy as np
from tqdm import tqdm

from implicit_fields import cameras as cam_lib
from implicit_fields.data.shapes import Box, Capsule, Cylinder, Sphere, Torus

__all__ = [
    "trace",
    "MATERIALS",
    "Appearance",
    "surface_color",
    "render_view",
    "render_views",
    "fit_focal",
]


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
        shape: :class:`~implicit_fields.data.shapes.Shape`.
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


MATERIALS = ("diffuse", "specular")
"""Materials of :class:`Appearance`: Lambert only, or Lambert plus Blinn-Phong highlights."""


class Appearance:
    """Colours of a shape's surface: per-primitive albedo, optional stripes, fixed lights.

    The colour of a surface point ``p`` owned by primitive ``k`` with outward normal
    ``n`` is ``albedo_k(p) * min(1, ambient + sum_l I_l max(0, n . l))`` with two fixed
    object-space lights, so it does not depend on the view. With ``texture='stripes'``
    the albedo is ``colors[k] * (1 - contrast * (0.5 + 0.5 sin(2 pi f a_k . p + phi_k)))``,
    a solid texture of planar stripes (direction ``a_k``, phase ``phi_k``).

    With ``material='specular'`` each light adds a white Blinn-Phong highlight
    ``specular * I_l * max(0, n . h_l)^shininess`` with ``h_l = normalize(l - v)`` and
    ``v`` the unit view direction (from the camera to the point); the sum is clipped to
    [0, 1]. The colour then depends on the view, and :meth:`color` needs ``view_dirs``.

    Args:
        colors: (P, 3) float RGB in [0, 1], one per primitive of the shape (positives
            first, as in ``Shape.primitives``; negatives colour the cut faces).
        texture: 'none' or 'stripes'.
        frequency: float, stripes per unit length.
        contrast: float in [0, 1], stripe darkening.
        stripe_dirs: (P, 3) unit directions (required for stripes).
        phases: (P,) radians (required for stripes).
        material: 'diffuse' (view-independent) or 'specular' (plus highlights).
        specular: float >= 0, highlight strength ``ks`` (used by 'specular').
        shininess: float > 0, Blinn-Phong exponent (used by 'specular').
    """

    def __init__(
        self,
        colors,
        texture="none",
        frequency=6.0,
        contrast=0.35,
        stripe_dirs=None,
        phases=None,
        material="diffuse",
        specular=0.6,
        shininess=32.0,
    ):
        self.colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
        if texture not in ("none", "stripes"):
            raise ValueError(f"texture must be 'none' or 'stripes', got {texture!r}")
        if material not in MATERIALS:
            raise ValueError(f"material must be one of {MATERIALS}, got {material!r}")
        self.texture = texture
        self.frequency = float(frequency)
        self.contrast = float(contrast)
        self.material = material
        self.specular = float(specular)
        self.shininess = float(shininess)
        if not (np.isfinite(self.specular) and self.specular >= 0.0):
            raise ValueError(f"specular must be a finite number >= 0, got {specular!r}")
        if not (np.isfinite(self.shininess) and self.shininess > 0.0):
            raise ValueError(f"shininess must be a finite number > 0, got {shininess!r}")
        p = self.colors.shape[0]
        self.stripe_dirs = (
            np.tile([0.0, 1.0, 0.0], (p, 1))
            if stripe_dirs is None
            else _normalize_rows(np.asarray(stripe_dirs, np.float64).reshape(-1, 3))
        )
        self.phases = np.zeros(p) if phases is None else np.asarray(phases, np.float64).reshape(-1)
        if self.stripe_dirs.shape[0] != p or self.phases.shape[0] != p:
            raise ValueError("colors, stripe_dirs and phases need one row per primitive")

    @property
    def view_dependent(self):
        """Whether colours depend on the view direction (:meth:`color` then needs ``view_dirs``)."""
        return self.material != "diffuse"

    @classmethod
    def random(
        cls,
        num_primitives,
        seed=0,
        texture="stripes",
        frequency=6.0,
        contrast=0.35,
        material="diffuse",
        specular=0.6,
        shininess=32.0,
    ):
        """Deterministic colours (and stripes) for ``num_primitives`` primitives.

        The material does not change the random colours: a specular appearance has
        the albedo of the diffuse one of the same seed.

        Args:
            num_primitives: int P.
            seed: int, list of ints or numpy SeedSequence.
            texture: 'none' or 'stripes'.
            frequency, contrast, material, specular, shininess: see the class.

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
        colors = _hsv_to_rgb(hue, sat, val)
        return cls(colors, texture, frequency, contrast, dirs, phases, material, specular, shininess)

    def to_dict(self):
        """JSON-able dict (inverse: :meth:`from_dict`)."""
        return {
            "colors": self.colors.tolist(),
            "texture": self.texture,
            "frequency": self.frequency,
            "contrast": self.contrast,
            "stripe_dirs": self.stripe_dirs.tolist(),
            "phases": self.phases.tolist(),
            "material": self.material,
            "specular": self.specular,
            "shininess": self.shininess,
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict` (a record without a material, written before there were
        materials, is diffuse)."""
        return cls(
            d["colors"],
            d["texture"],
            d["frequency"],
            d["contrast"],
            d["stripe_dirs"],
            d["phases"],
            d.get("material", "diffuse"),
            d.get("specular", 0.6),
            d.get("shininess", 32.0),
        )

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

    def highlight(self, normals, view_dirs):
        """Blinn-Phong highlight (N,) of unit normals (N, 3) seen along unit ``view_dirs`` (N, 3).

        ``specular * sum_l I_l max(0, n . h_l)^shininess`` with ``h_l = normalize(l - v)``.
        """
        normals = np.asarray(normals, dtype=np.float64)
        v = np.asarray(view_dirs, dtype=np.float64)
        s = np.zeros(normals.shape[0])
        for direction, intensity in _LIGHTS:
            light = np.asarray(direction) / np.linalg.norm(direction)
            h = _normalize_rows(light[None, :] - v)
            s = s + intensity * np.maximum(_dot(normals, h), 0.0) ** self.shininess
        return self.specular * s

    def color(self, points, normals, prim_index, view_dirs=None):
        """Shaded colour (N, 3) in [0, 1] of surface points with their normals and owners.

        Args:
            points: (N, 3) object-space surface points.
            normals: (N, 3) unit outward normals.
            prim_index: (N,) int owning primitives.
            view_dirs: (N, 3) unit view directions, from the camera to the points;
                required by a view-dependent material, ignored by a diffuse one.

        Returns:
            (N, 3) float64 RGB.
        """
        normals = np.asarray(normals)
        diffuse = self.albedo(points, prim_index) * self.shading(normals)[:, None]
        if not self.view_dependent:
            return diffuse
        if view_dirs is None:
            raise ValueError(
                f"Appearance(material={self.material!r}) is view-dependent: color() needs view_dirs"
            )
        view_dirs = np.asarray(view_dirs, dtype=np.float64)
        if view_dirs.shape != normals.shape:
            raise ValueError(
                f"view_dirs must have the shape of normals {normals.shape}, got {view_dirs.shape}"
            )
        return np.clip(diffuse + self.highlight(normals, view_dirs)[:, None], 0.0, 1.0)


def _shade(appearance, points, normals, prim_index, view_dirs):
    """``appearance.color``, given the view directions only when its colours depend on them
    (appearances without a material, such as ``textured.TexturedAppearance``, take none)."""
    if getattr(appearance, "view_dependent", False):
        return appearance.color(points, normals, prim_index, view_dirs=view_dirs)
    return appearance.color(points, normals, prim_index)


def surface_color(shape, appearance, points, normals=None, view_dirs=None):
    """Colour of points on the shape's surface (for evaluating predicted colours).

    Each point is owned by the primitive whose boundary is nearest (exact primitive
    distances); its normal is that primitive's (flipped for a negative) unless given.

    Args:
        shape: :class:`~implicit_fields.data.shapes.Shape`.
        appearance: :class:`Appearance` of the shape.
        points: (N, 3) surface points (object space).
        normals: optional (N, 3) unit outward normals.
        view_dirs: (N, 3) unit view directions (camera to point); required when the
            appearance is view-dependent (``material='specular'``), else ignored.

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
    normals = np.asarray(normals, dtype=np.float64)
    if view_dirs is not None:
        view_dirs = np.asarray(view_dirs, dtype=np.float64).reshape(-1, 3)
    return _shade(appearance, points, normals, owner, view_dirs), owner


# --------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------


def render_view(shape, camera, height, width, appearance=None, background=(1.0, 1.0, 1.0)):
    """Renders one view of a shape exactly (one ray per pixel centre).

    Args:
        shape: :class:`~implicit_fields.data.shapes.Shape` in object space.
        camera: dict with ``camera_mat``, ``world_mat``, ``scale_mat`` (4, 4).
        height, width: int image size.
        appearance: :class:`Appearance`; None gives a neutral grey. A view-dependent
            one is shaded with each pixel's unit ray direction.
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
    view_dirs = _normalize_rows(directions[hit])  # Camera to point (for specular materials).
    rgb[hit] = _shade(appearance, points, normals[hit], prim[hit], view_dirs)
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
        shape: :class:`~implicit_fields.data.shapes.Shape`.
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
        render_view(shape, cam_lib.camera_at(cameras, i), height, width, appearance)
        for i in tqdm(range(n), disable=not progress, desc="render", unit="view")
    ]
    return {k: np.stack([v[k] for v in views]) for k in views[0]}


def fit_focal(shape, radius):
    """Focal length that fits the shape's bounding sphere about the origin (+3%).

    The framing of the built-in renders: the shape's extent is the largest distance of
    4096 surface samples (a fixed seed) from the origin, and
    :func:`implicit_fields.cameras.focal_for_radius` turns it into a focal length.

    Args:
        shape: :class:`~implicit_fields.data.shapes.Shape` in object space.
        radius: float, camera distance from the origin.

    Returns:
        float focal length in [-1, 1] pixel units.
    """
    points, _ = shape.sample_surface(4096, np.random.default_rng(0))
    return cam_lib.focal_for_radius(float(np.sqrt(_dot(points, points)).max()), radius)
