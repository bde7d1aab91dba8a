"""Exact procedural shapes: primitives, one-level CSG and ShapeNet-like category generators.

Everything here is plain numpy (float64) and exact: the inside tests are closed-form,
surface samples are drawn uniformly by area from analytic parametrisations, and normals
are analytic. This is the ground truth of the built-in dataset (no download needed).

Conventions:
    * A primitive lives in a local rigid frame: ``world = rotation @ local + translation``,
      with ``rotation`` a (3, 3) proper rotation matrix and ``translation`` a (3,) vector.
    * A :class:`Shape` is the union of its ``positives`` minus the union of its
      ``negatives``. Primitives are closed sets, so a point on the boundary of a positive
      is occupied and a point on the boundary of a negative is free.
    * Category objects follow ShapeNetCore's canonical pose: +y is up, the front faces
      -z, and the y-z plane is the bilateral symmetry plane (long objects such as
      airplanes and cars lie along z; chairs, sofas, benches and tables are wide along x).
      Sizes are roughly in metres before :func:`normalize`.
"""

import abc
import math

import numpy as np

__all__ = [
    "Primitive",
    "Box",
    "Cylinder",
    "Capsule",
    "Sphere",
    "Torus",
    "Shape",
    "CATEGORIES",
    "category_synset",
    "make_shape",
    "normalize",
    "rotation_matrix",
    "rotation_between",
]

_TWO_PI = 2.0 * math.pi


# --------------------------------------------------------------------------------------
# Rotation helpers.
# --------------------------------------------------------------------------------------


def rotation_matrix(axis, angle):
    """Rotation about an axis by an angle (right-hand rule).

    Args:
        axis: (3,) float, need not be unit length (must be non-zero).
        angle: float, radians.

    Returns:
        (3, 3) float64 proper rotation matrix.
    """
    axis = np.asarray(axis, dtype=np.float64)
    norm = np.linalg.norm(axis)
    if norm == 0.0:
        raise ValueError("rotation axis must be non-zero")
    x, y, z = axis / norm
    c, s = math.cos(angle), math.sin(angle)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def rotation_between(a, b):
    """Smallest rotation taking direction ``a`` to direction ``b``.

    Args:
        a: (3,) float, non-zero.
        b: (3,) float, non-zero.

    Returns:
        (3, 3) float64 rotation ``r`` with ``r @ a / |a| == b / |b|``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    cross = np.cross(a, b)
    dot = float(np.clip(a @ b, -1.0, 1.0))
    sin = float(np.linalg.norm(cross))
    if sin < 1e-12:
        if dot > 0.0:
            return np.eye(3)
        # Opposite directions: rotate by pi about any axis perpendicular to a.
        helper = np.eye(3)[int(np.argmin(np.abs(a)))]
        return rotation_matrix(np.cross(a, helper), math.pi)
    return rotation_matrix(cross, math.atan2(sin, dot))


def _rot_x(angle):
    return rotation_matrix((1.0, 0.0, 0.0), angle)


def _rot_y(angle):
    return rotation_matrix((0.0, 1.0, 0.0), angle)


def _rot_z(angle):
    return rotation_matrix((0.0, 0.0, 1.0), angle)


def _as_points(points):
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    return points


def _columns(points):
    """(N, 3) points -> three contiguous (N,) float64 columns."""
    cols = np.ascontiguousarray(_as_points(points).T)
    return cols[0], cols[1], cols[2]


def _unit_vectors(n, rng):
    v = rng.standard_normal((3, n))
    norm = np.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)
    bad = norm < 1e-12
    if np.any(bad):  # Astronomically unlikely; keep the output well defined.
        v[:, bad] = np.array([[0.0], [0.0], [1.0]])
        norm[bad] = 1.0
    return v[0] / norm, v[1] / norm, v[2] / norm


# --------------------------------------------------------------------------------------
# Primitives.
# --------------------------------------------------------------------------------------


class Primitive(abc.ABC):
    """Base class: a solid in a local rigid frame.

    Subclasses define ``kind``, ``_params`` (the size parameters, in :meth:`to_dict`
    order), the local inside test, area, volume, local surface sampling and the support
    point (extreme point in a direction). Internally points travel as three contiguous
    coordinate columns, which is several times faster in numpy than (N, 3) rows.

    Args:
        rotation: (3, 3) float proper rotation (local -> world); identity if None.
        translation: (3,) float, the frame origin in world coordinates; zero if None.
    """

    kind = "primitive"
    _params = ()

    def __init__(self, rotation=None, translation=None):
        r = np.eye(3) if rotation is None else np.array(rotation, dtype=np.float64)
        t = np.zeros(3) if translation is None else np.array(translation, dtype=np.float64)
        if r.shape != (3, 3) or not np.all(np.isfinite(r)):
            raise ValueError(f"{self.kind}: rotation must be a finite (3, 3) matrix")
        if not np.allclose(r.T @ r, np.eye(3), atol=1e-9) or np.linalg.det(r) < 0.0:
            raise ValueError(f"{self.kind}: rotation must be a proper rotation matrix")
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ValueError(f"{self.kind}: translation must be a finite (3,) vector")
        self.rotation = r
        self.translation = t
        self._identity = bool(np.array_equal(r, np.eye(3)))
        self._aabb = None

    # -- to be provided by subclasses ---------------------------------------------------
    @abc.abstractmethod
    def _contains_local(self, x, y, z):
        """Inside test on local coordinate columns -> (n,) bool."""

    @abc.abstractmethod
    def _sample_local(self, n, rng):
        """Local surface samples -> (px, py, pz, nx, ny, nz) columns of length n."""

    @abc.abstractmethod
    def _support_local(self, d):
        """Support function of the local solid in direction d."""

    @abc.abstractmethod
    def area(self):
        """Analytic surface area (float)."""

    @abc.abstractmethod
    def volume(self):
        """Analytic volume (float)."""

    # -- generic machinery --------------------------------------------------------------
    def _check_positive(self, **values):
        for name, value in values.items():
            if not (np.isfinite(value) and value > 0.0):
                raise ValueError(f"{self.kind}: {name} must be finite and > 0, got {value}")

    def _local_cols(self, x, y, z):
        t = self.translation
        dx, dy, dz = x - t[0], y - t[1], z - t[2]
        if self._identity:
            return dx, dy, dz
        r = self.rotation
        return (
            r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
            r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
        )

    def _rotate_cols(self, x, y, z):
        if self._identity:
            return x, y, z
        r = self.rotation
        return (
            r[0, 0] * x + r[0, 1] * y + r[0, 2] * z,
            r[1, 0] * x + r[1, 1] * y + r[1, 2] * z,
            r[2, 0] * x + r[2, 1] * y + r[2, 2] * z,
        )

    def to_local(self, points):
        """World -> local coordinates.

        Args:
            points: (N, 3) float world points.

        Returns:
            (N, 3) float64 local points.
        """
        return np.stack(self._local_cols(*_columns(points)), axis=1)

    def to_world(self, points):
        """Local -> world coordinates.

        Args:
            points: (N, 3) float local points.

        Returns:
            (N, 3) float64 world points.
        """
        x, y, z = self._rotate_cols(*_columns(points))
        t = self.translation
        return np.stack([x + t[0], y + t[1], z + t[2]], axis=1)

    def support(self, direction):
        """Extreme point of the solid in a direction (a boundary point).

        Args:
            direction: (3,) float world direction, non-zero.

        Returns:
            (3,) float64 world point ``argmax_{x in solid} x . direction``.
        """
        d = np.asarray(direction, dtype=np.float64)
        d = d / np.linalg.norm(d)
        return self.rotation @ self._support_local(self.rotation.T @ d) + self.translation

    def aabb(self):
        """Exact axis-aligned bounding box.

        Returns:
            (lo (3,), hi (3,)) float64 arrays.
        """
        if self._aabb is None:
            eye = np.eye(3)
            lo = np.array([self.support(-eye[k])[k] for k in range(3)])
            hi = np.array([self.support(eye[k])[k] for k in range(3)])
            self._aabb = (lo, hi)
        return self._aabb

    def _contains_cols(self, x, y, z):
        lo, hi = self.aabb()
        margin = 1e-9 * (1.0 + float(np.max(hi - lo)))
        lo, hi = lo - margin, hi + margin
        m = (x >= lo[0]) & (x <= hi[0])
        m &= (y >= lo[1]) & (y <= hi[1])
        m &= (z >= lo[2]) & (z <= hi[2])
        idx = np.flatnonzero(m)
        if idx.size == 0:
            return m
        if 2 * idx.size > x.size:  # Mostly inside the box: skip the gather.
            return m & self._contains_local(*self._local_cols(x, y, z))
        m[idx] = self._contains_local(*self._local_cols(x[idx], y[idx], z[idx]))
        return m

    def contains(self, points):
        """Exact inside test (closed set).

        Args:
            points: (N, 3) float world points.

        Returns:
            (N,) bool, True inside or on the boundary.
        """
        return self._contains_cols(*_columns(points))

    def _sample_world_cols(self, n, rng):
        px, py, pz, nx, ny, nz = self._sample_local(int(n), rng)
        px, py, pz = self._rotate_cols(px, py, pz)
        t = self.translation
        return (px + t[0], py + t[1], pz + t[2]) + self._rotate_cols(nx, ny, nz)

    def sample_surface(self, n, rng):
        """Area-uniform samples on the primitive's boundary with analytic outward normals.

        Args:
            n: int, number of samples.
            rng: numpy Generator.

        Returns:
            points (n, 3) float64 and normals (n, 3) float64 unit, outward.
        """
        c = self._sample_world_cols(n, rng)
        return np.stack(c[:3], axis=1), np.stack(c[3:], axis=1)

    def transformed(self, loc, scale):
        """The primitive in coordinates ``(x - loc) / scale``.

        Args:
            loc: (3,) float.
            scale: float > 0.

        Returns:
            A new primitive of the same kind.
        """
        params = {k: _scaled_param(getattr(self, k), scale) for k in self._params}
        t = (self.translation - np.asarray(loc, dtype=np.float64)) / scale
        return type(self)(**params, rotation=self.rotation, translation=t)

    def to_dict(self):
        """JSON-able dict: ``type``, size parameters, ``rotation``, ``translation``."""
        d = {"type": self.kind}
        for k in self._params:
            v = getattr(self, k)
            d[k] = np.asarray(v).tolist() if np.ndim(v) else float(v)
        d["rotation"] = self.rotation.tolist()
        d["translation"] = self.translation.tolist()
        return d

    @staticmethod
    def from_dict(d):
        """Inverse of :meth:`to_dict` (dispatches on ``d["type"]``)."""
        if not isinstance(d, dict) or "type" not in d:
            raise ValueError(f"primitive dict needs a 'type' key, got {d!r}")
        cls = _PRIMITIVE_TYPES.get(d["type"])
        if cls is None:
            raise ValueError(f"unknown primitive type {d['type']!r}; known: {sorted(_PRIMITIVE_TYPES)}")
        missing = [k for k in cls._params + ("rotation", "translation") if k not in d]
        if missing:
            raise ValueError(f"{d['type']} dict is missing keys {missing}")
        kwargs = {k: d[k] for k in cls._params}
        return cls(**kwargs, rotation=d["rotation"], translation=d["translation"])

    def __repr__(self):
        params = ", ".join(f"{k}={np.round(getattr(self, k), 4).tolist()}" for k in self._params)
        return f"{type(self).__name__}({params}, translation={np.round(self.translation, 4).tolist()})"


def _scaled_param(value, scale):
    if np.ndim(value):
        return np.asarray(value, dtype=np.float64) / scale
    return float(value) / scale


def _random_signs(n, rng):
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


class Box(Primitive):
    """Axis-aligned (in its frame) box ``|x_i| <= half_extents_i``.

    Args:
        half_extents: (3,) float > 0.
        rotation, translation: the local frame (see :class:`Primitive`).
    """

    kind = "box"
    _params = ("half_extents",)

    def __init__(self, half_extents, rotation=None, translation=None):
        super().__init__(rotation, translation)
        h = np.array(half_extents, dtype=np.float64).reshape(-1)
        if h.shape != (3,):
            raise ValueError(f"box: half_extents must have shape (3,), got {h.shape}")
        for i in range(3):
            self._check_positive(**{f"half_extents[{i}]": h[i]})
        self.half_extents = h

    def _contains_local(self, x, y, z):
        a, b, c = self.half_extents
        return (np.abs(x) <= a) & (np.abs(y) <= b) & (np.abs(z) <= c)

    def _face_areas(self):
        a, b, c = self.half_extents
        # Faces with normal +-x, +-y, +-z.
        return np.array([4 * b * c, 4 * a * c, 4 * a * b])

    def area(self):
        return float(2.0 * self._face_areas().sum())

    def volume(self):
        return float(8.0 * np.prod(self.half_extents))

    def _sample_local(self, n, rng):
        fa = self._face_areas()
        axis = rng.choice(3, size=n, p=fa / fa.sum())
        sign = _random_signs(n, rng)
        p = rng.uniform(-1.0, 1.0, (3, n)) * self.half_extents[:, None]
        nrm = np.zeros((3, n))
        cols = np.arange(n)
        p[axis, cols] = sign * self.half_extents[axis]
        nrm[axis, cols] = sign
        return p[0], p[1], p[2], nrm[0], nrm[1], nrm[2]

    def _support_local(self, d):
        return np.where(d >= 0.0, 1.0, -1.0) * self.half_extents


class Cylinder(Primitive):
    """Capped cylinder ``x^2 + y^2 <= radius^2, |z| <= half_height`` (axis local z).

    Args:
        radius: float > 0.
        half_height: float > 0.
        rotation, translation: the local frame (see :class:`Primitive`).
    """

    kind = "cylinder"
    _params = ("radius", "half_height")

    def __init__(self, radius, half_height, rotation=None, translation=None):
        super().__init__(rotation, translation)
        self._check_positive(radius=radius, half_height=half_height)
        self.radius = float(radius)
        self.half_height = float(half_height)

    def _contains_local(self, x, y, z):
        r, h = self.radius, self.half_height
        return (x * x + y * y <= r * r) & (np.abs(z) <= h)

    def area(self):
        r, h = self.radius, self.half_height
        return 4.0 * math.pi * r * h + 2.0 * math.pi * r * r

    def volume(self):
        return 2.0 * math.pi * self.radius**2 * self.half_height

    def _sample_local(self, n, rng):
        r, h = self.radius, self.half_height
        on_side = rng.random(n) < 4.0 * math.pi * r * h / self.area()
        theta = rng.uniform(0.0, _TWO_PI, n)
        c, s = np.cos(theta), np.sin(theta)
        rho = np.where(on_side, r, r * np.sqrt(rng.random(n)))
        cap_sign = _random_signs(n, rng)
        z = np.where(on_side, rng.uniform(-h, h, n), cap_sign * h)
        zero = np.zeros(n)
        return (
            rho * c,
            rho * s,
            z,
            np.where(on_side, c, zero),
            np.where(on_side, s, zero),
            np.where(on_side, zero, cap_sign),
        )

    def _support_local(self, d):
        perp = np.array([d[0], d[1], 0.0])
        norm = np.linalg.norm(perp)
        radial = perp / norm if norm > 1e-12 else np.array([1.0, 0.0, 0.0])
        return self.radius * radial + np.array([0.0, 0.0, np.sign(d[2]) * self.half_height])


class Capsule(Primitive):
    """Capsule: points within ``radius`` of the segment ``z in [-half_length, half_length]``.

    Args:
        radius: float > 0.
        half_length: float >= 0, half length of the core segment (axis local z).
        rotation, translation: the local frame (see :class:`Primitive`).
    """

    kind = "capsule"
    _params = ("radius", "half_length")

    def __init__(self, radius, half_length, rotation=None, translation=None):
        super().__init__(rotation, translation)
        self._check_positive(radius=radius)
        if not (np.isfinite(half_length) and half_length >= 0.0):
            raise ValueError(f"capsule: half_length must be finite and >= 0, got {half_length}")
        self.radius = float(radius)
        self.half_length = float(half_length)

    def _contains_local(self, x, y, z):
        dz = z - np.clip(z, -self.half_length, self.half_length)
        return x * x + y * y + dz * dz <= self.radius**2

    def area(self):
        r, h = self.radius, self.half_length
        return 4.0 * math.pi * r * h + 4.0 * math.pi * r * r

    def volume(self):
        r, h = self.radius, self.half_length
        return 2.0 * math.pi * r * r * h + 4.0 / 3.0 * math.pi * r**3

    def _sample_local(self, n, rng):
        r, h = self.radius, self.half_length
        on_side = rng.random(n) < 4.0 * math.pi * r * h / self.area()
        theta = rng.uniform(0.0, _TWO_PI, n)
        c, s = np.cos(theta), np.sin(theta)
        side_z = rng.uniform(-h, h, n)
        vx, vy, vz = _unit_vectors(n, rng)  # Hemispherical caps: a sphere split at z = 0.
        cap_z = r * vz + np.where(vz >= 0.0, h, -h)
        nx = np.where(on_side, c, vx)
        ny = np.where(on_side, s, vy)
        nz = np.where(on_side, 0.0, vz)
        return r * nx, r * ny, np.where(on_side, side_z, cap_z), nx, ny, nz

    def _support_local(self, d):
        return self.radius * d + np.array([0.0, 0.0, np.sign(d[2]) * self.half_length])


class Sphere(Primitive):
    """Ball of a given radius centred at the frame origin.

    Args:
        radius: float > 0.
        rotation, translation: the local frame (see :class:`Primitive`).
    """

    kind = "sphere"
    _params = ("radius",)

    def __init__(self, radius, rotation=None, translation=None):
        super().__init__(rotation, translation)
        self._check_positive(radius=radius)
        self.radius = float(radius)

    def _contains_local(self, x, y, z):
        return x * x + y * y + z * z <= self.radius**2

    def area(self):
        return 4.0 * math.pi * self.radius**2

    def volume(self):
        return 4.0 / 3.0 * math.pi * self.radius**3

    def _sample_local(self, n, rng):
        vx, vy, vz = _unit_vectors(n, rng)
        r = self.radius
        return r * vx, r * vy, r * vz, vx, vy, vz

    def _support_local(self, d):
        return self.radius * d


class Torus(Primitive):
    """Ring torus around the local z axis: ``(sqrt(x^2+y^2) - R)^2 + z^2 <= r^2``.

    Args:
        major_radius: float R > minor_radius.
        minor_radius: float r > 0.
        rotation, translation: the local frame (see :class:`Primitive`).
    """

    kind = "torus"
    _params = ("major_radius", "minor_radius")

    def __init__(self, major_radius, minor_radius, rotation=None, translation=None):
        super().__init__(rotation, translation)
        self._check_positive(major_radius=major_radius, minor_radius=minor_radius)
        if not minor_radius < major_radius:
            raise ValueError(f"torus: need minor_radius < major_radius, got {minor_radius} >= {major_radius}")
        self.major_radius = float(major_radius)
        self.minor_radius = float(minor_radius)

    def _contains_local(self, x, y, z):
        rho = np.sqrt(x * x + y * y) - self.major_radius
        return rho * rho + z * z <= self.minor_radius**2

    def area(self):
        return 4.0 * math.pi**2 * self.major_radius * self.minor_radius

    def volume(self):
        return 2.0 * math.pi**2 * self.major_radius * self.minor_radius**2

    def _sample_local(self, n, rng):
        big, small = self.major_radius, self.minor_radius
        # Area element r (R + r cos(phi)) dtheta dphi: theta uniform, phi by rejection.
        phis = []
        have = 0
        while have < n:
            m = int((n - have) * 1.3 + 32)
            phi = rng.uniform(0.0, _TWO_PI, m)
            keep = rng.random(m) * (big + small) <= big + small * np.cos(phi)
            phis.append(phi[keep])
            have += int(keep.sum())
        phi = np.concatenate(phis)[:n]
        theta = rng.uniform(0.0, _TWO_PI, n)
        cp, sp = np.cos(phi), np.sin(phi)
        ct, st = np.cos(theta), np.sin(theta)
        ring = big + small * cp
        return ring * ct, ring * st, small * sp, cp * ct, cp * st, sp

    def _support_local(self, d):
        perp = np.array([d[0], d[1], 0.0])
        norm = np.linalg.norm(perp)
        radial = perp / norm if norm > 1e-12 else np.array([1.0, 0.0, 0.0])
        return self.major_radius * radial + self.minor_radius * d


_PRIMITIVE_TYPES = {cls.kind: cls for cls in (Box, Cylinder, Capsule, Sphere, Torus)}


# --------------------------------------------------------------------------------------
# One-level CSG.
# --------------------------------------------------------------------------------------


class Shape:
    """One-level CSG: union of ``positives`` minus union of ``negatives``.

    Args:
        positives: sequence of :class:`Primitive` (at least one).
        negatives: sequence of :class:`Primitive` (may be empty).
    """

    def __init__(self, positives, negatives=()):
        self.positives = list(positives)
        self.negatives = list(negatives)
        if not self.positives:
            raise ValueError("a Shape needs at least one positive primitive")
        for p in self.positives + self.negatives:
            if not isinstance(p, Primitive):
                raise TypeError(f"expected Primitive instances, got {type(p).__name__}")

    @property
    def primitives(self):
        """All primitives, positives first (list)."""
        return self.positives + self.negatives

    def _contains_cols(self, x, y, z):
        occ = np.zeros(x.shape[0], dtype=bool)
        for p in self.positives:
            occ |= p._contains_cols(x, y, z)
        if self.negatives:
            idx = np.flatnonzero(occ)
            if idx.size:
                sx, sy, sz = x[idx], y[idx], z[idx]
                cut = np.zeros(idx.size, dtype=bool)
                for p in self.negatives:
                    cut |= p._contains_cols(sx, sy, sz)
                occ[idx[cut]] = False
        return occ

    def contains(self, points):
        """Exact occupancy.

        Args:
            points: (N, 3) float points.

        Returns:
            (N,) bool, True where the point is occupied.
        """
        return self._contains_cols(*_columns(points))

    def sample_surface(self, n, rng, eps=1e-6):
        """Area-uniform samples on the CSG surface with exact outward normals.

        Candidates are drawn on every primitive boundary in proportion to its area; a
        candidate ``x`` with primitive normal ``m`` is kept iff the shape's occupancy differs
        at ``x - eps m`` and ``x + eps m`` and no earlier primitive's boundary also passes
        through ``x`` (so coincident faces are counted once). The normal is oriented so that
        ``x - eps n`` is occupied and ``x + eps n`` is free. Rounds repeat until ``n``
        points are kept, so the density is uniform over the true CSG surface.

        Args:
            n: int >= 0, number of samples.
            rng: numpy Generator.
            eps: float, offset of the occupancy test (float64 world units).

        Returns:
            points (n, 3) float64 and normals (n, 3) float64 unit vectors.
        """
        n = int(n)
        prims = self.primitives
        num_pos = len(self.positives)
        areas = np.array([p.area() for p in prims])
        probs = areas / areas.sum()
        out = []
        kept = 0
        accept = 0.5
        empty_rounds = 0
        while kept < n:
            need = n - kept
            m = int(min(need / accept * 1.15 + 256, 8 * need + 4096))
            counts = rng.multinomial(m, probs)
            parts = [prims[k]._sample_world_cols(c, rng) for k, c in enumerate(counts) if c]
            px, py, pz, nx, ny, nz = (np.concatenate(col) for col in zip(*parts))
            src = np.repeat(np.arange(len(prims)), counts)
            m = px.size
            minus = (px - eps * nx, py - eps * ny, pz - eps * nz)
            plus = (px + eps * nx, py + eps * ny, pz + eps * nz)
            occ_minus = np.zeros(m, dtype=bool)
            occ_plus = np.zeros(m, dtype=bool)
            cut_minus = np.zeros(m, dtype=bool)
            cut_plus = np.zeros(m, dtype=bool)
            owner = np.full(m, -1)
            for k, prim in enumerate(prims):
                a = prim._contains_cols(*minus)
                b = prim._contains_cols(*plus)
                owner[(owner < 0) & (a != b)] = k
                if k < num_pos:
                    occ_minus |= a
                    occ_plus |= b
                else:
                    cut_minus |= a
                    cut_plus |= b
            occ_minus &= ~cut_minus
            occ_plus &= ~cut_plus
            keep = (occ_minus != occ_plus) & (owner == src)
            idx = np.flatnonzero(keep)
            accept = max(idx.size / m, 1e-3)
            if idx.size == 0:
                empty_rounds += 1
                if empty_rounds > 20:
                    raise RuntimeError("Shape.sample_surface: the shape has no surface (empty?)")
                continue
            idx = rng.permutation(idx)[:need]
            sign = np.where(occ_minus[idx], 1.0, -1.0)
            out.append(
                (
                    np.stack([px[idx], py[idx], pz[idx]], axis=1),
                    np.stack([nx[idx], ny[idx], nz[idx]], axis=1) * sign[:, None],
                )
            )
            kept += idx.size
        if not out:
            return np.zeros((0, 3)), np.zeros((0, 3))
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])

    def bounds(self, num_samples=20000, seed=0):
        """Bounding box of the occupied region.

        The extremes of every positive primitive (its support points along +-x, +-y, +-z)
        are used wherever they are not cut away by a negative, which makes the result exact
        for all built-in categories; dense surface samples cover extremes created by cuts.

        Args:
            num_samples: int, surface samples used as a fallback.
            seed: int, seed of the (deterministic) fallback samples.

        Returns:
            (lo (3,), hi (3,)) float64 arrays.
        """
        eye = np.eye(3)
        pts = np.array([p.support(s * eye[k]) for p in self.positives for k in range(3) for s in (-1, 1)])
        # A support point lies on its own primitive's boundary, hence in the shape unless
        # a negative removes it.
        cut = np.zeros(len(pts), dtype=bool)
        for prim in self.negatives:
            cut |= prim.contains(pts)
        pts = pts[~cut]
        if num_samples:
            samples, _ = self.sample_surface(num_samples, np.random.default_rng(seed))
            pts = np.concatenate([pts, samples]) if pts.size else samples
        return pts.min(axis=0), pts.max(axis=0)

    def transformed(self, loc, scale):
        """The shape in normalised coordinates ``(x - loc) / scale``.

        Args:
            loc: (3,) float.
            scale: float > 0.

        Returns:
            A new :class:`Shape`.
        """
        scale = float(scale)
        if not (np.isfinite(scale) and scale > 0.0):
            raise ValueError(f"scale must be finite and > 0, got {scale}")
        return Shape(
            [p.transformed(loc, scale) for p in self.positives],
            [p.transformed(loc, scale) for p in self.negatives],
        )

    def to_dict(self):
        """JSON-able dict ``{"positives": [...], "negatives": [...]}``."""
        return {
            "positives": [p.to_dict() for p in self.positives],
            "negatives": [p.to_dict() for p in self.negatives],
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; other top-level keys are ignored."""
        if not isinstance(d, dict) or "positives" not in d:
            raise ValueError("shape dict needs a 'positives' list")
        return cls(
            [Primitive.from_dict(p) for p in d["positives"]],
            [Primitive.from_dict(p) for p in d.get("negatives", [])],
        )

    def __repr__(self):
        return f"Shape({len(self.positives)} positives, {len(self.negatives)} negatives)"


def normalize(shape):
    """Normalise a shape the way Occupancy Networks does.

    ``loc`` is the bounding-box centre and ``scale`` the longest bounding-box edge, so the
    normalised shape ``(x - loc) / scale`` fits in [-0.5, 0.5]^3 with its longest edge 1.

    Args:
        shape: :class:`Shape`.

    Returns:
        (normalised Shape, loc (3,) float64, scale float).
    """
    lo, hi = shape.bounds()
    loc = (lo + hi) / 2.0
    scale = float(np.max(hi - lo))
    return shape.transformed(loc, scale), loc, scale


# --------------------------------------------------------------------------------------
# Category generators.
# --------------------------------------------------------------------------------------

CATEGORIES = {
    "02691156": "airplane",
    "02828884": "bench",
    "02958343": "car",
    "03001627": "chair",
    "03636649": "lamp",
    "03797390": "mug",
    "04256520": "sofa",
    "04379243": "table",
}
"""ShapeNet synset id -> category name of the built-in generators."""

_BY_NAME = {name: synset for synset, name in CATEGORIES.items()}


def category_synset(category):
    """Synset id of a category given by name (``"chair"``) or synset (``"03001627"``)."""
    if category in CATEGORIES:
        return category
    if category in _BY_NAME:
        return _BY_NAME[category]
    raise ValueError(
        f"unknown category {category!r}; known: " + ", ".join(f"{s} ({n})" for s, n in CATEGORIES.items())
    )


class _Builder:
    """Accumulates primitives; small helpers for parts given by end points."""

    def __init__(self):
        self.pos = []
        self.neg = []

    def add(self, prim, negative=False):
        (self.neg if negative else self.pos).append(prim)
        return prim

    def box(self, center, half, rotation=None, negative=False):
        return self.add(Box(half, rotation, center), negative)

    def box_between(self, p0, p1, half_x, half_z, negative=False):
        """Box whose local y axis runs from p0 to p1 (cross-section 2 half_x by 2 half_z)."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        d = p1 - p0
        rot = rotation_between((0.0, 1.0, 0.0), d)
        half = (half_x, np.linalg.norm(d) / 2.0, half_z)
        return self.add(Box(half, rot, (p0 + p1) / 2.0), negative)

    def cylinder_between(self, p0, p1, radius, negative=False):
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        d = p1 - p0
        rot = rotation_between((0.0, 0.0, 1.0), d)
        return self.add(Cylinder(radius, np.linalg.norm(d) / 2.0, rot, (p0 + p1) / 2.0), negative)

    def capsule_between(self, p0, p1, radius):
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        d = p1 - p0
        length = np.linalg.norm(d)
        rot = rotation_between((0.0, 0.0, 1.0), d) if length > 0 else np.eye(3)
        return self.add(Capsule(radius, length / 2.0, rot, (p0 + p1) / 2.0))

    def leg(self, p0, p1, half_width, round_leg):
        if round_leg:
            return self.cylinder_between(p0, p1, half_width)
        return self.box_between(p0, p1, half_width, half_width)

    def sphere(self, center, radius):
        return self.add(Sphere(radius, None, center))

    def mirrored_x(self, prim):
        """Add the mirror image of ``prim`` in the plane x = 0 (all primitives are
        symmetric under their local x reflection, so this stays a proper rigid frame)."""
        m = np.diag([-1.0, 1.0, 1.0])
        params = {k: getattr(prim, k) for k in prim._params}
        copy = type(prim)(**params, rotation=m @ prim.rotation @ m, translation=m @ prim.translation)
        return self.add(copy, negative=prim in self.neg)

    def shape(self):
        return Shape(self.pos, self.neg)


_AXIS_Y = _rot_x(-math.pi / 2.0)  # local z -> world +y
_AXIS_X = _rot_y(math.pi / 2.0)  # local z -> world +x


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _chair(rng):
    b = _Builder()
    w = _u(rng, 0.42, 0.6)
    d = _u(rng, 0.4, 0.55)
    seat_y = _u(rng, 0.4, 0.5)
    st = _u(rng, 0.04, 0.08)
    b.box((0.0, seat_y - st / 2, 0.0), (w / 2, st / 2, d / 2))
    swivel = rng.random() < 0.25
    if swivel:
        pr = _u(rng, 0.025, 0.04)
        hub_y = _u(rng, 0.06, 0.1)
        b.cylinder_between((0.0, hub_y, 0.0), (0.0, seat_y - st / 2, 0.0), pr)
        arms = int(rng.integers(4, 6))
        reach = _u(rng, 0.25, 0.33)
        ar = _u(rng, 0.018, 0.026)
        phase = _u(rng, 0.0, _TWO_PI)
        for i in range(arms):
            a = phase + _TWO_PI * i / arms
            tip = (reach * math.cos(a), hub_y - 0.02, reach * math.sin(a))
            b.capsule_between((0.0, hub_y, 0.0), tip, ar)
            b.sphere((tip[0], ar * 1.4, tip[2]), ar * 1.4)
    else:
        lh = _u(rng, 0.018, 0.03)
        round_leg = rng.random() < 0.5
        inset = _u(rng, 0.0, 0.04)
        splay = _u(rng, 0.0, 0.08)
        tops = []
        for sx in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                x = sx * (w / 2 - inset - lh)
                z = sz * (d / 2 - inset - lh)
                top = (x, seat_y - st / 2, z)
                bottom = (x + sx * splay * seat_y * 0.5, 0.0, z + sz * splay * seat_y * 0.5)
                b.leg(bottom, top, lh, round_leg)
                tops.append((top, bottom))
        if rng.random() < 0.4:  # Stretchers between front and back legs.
            h = _u(rng, 0.12, 0.2)
            sr = max(lh * 0.6, 0.015)
            f = h / (seat_y - st / 2)
            for sx in (0, 2):
                (t0, b0), (t1, b1) = tops[sx], tops[sx + 1]
                p0 = np.array(b0) + f * (np.array(t0) - np.array(b0))
                p1 = np.array(b1) + f * (np.array(t1) - np.array(b1))
                b.cylinder_between(p0, p1, sr)
    # Backrest (at +z, the chair faces -z).
    bh = _u(rng, 0.35, 0.6)
    bt = _u(rng, 0.03, 0.07)
    tilt = _u(rng, 0.0, math.radians(16))
    rot = _rot_x(tilt)
    up = rot @ np.array([0.0, 1.0, 0.0])
    base = np.array([0.0, seat_y - st / 2, d / 2 - bt / 2])
    if rng.random() < 0.6:
        top = base + up * (bh + st / 2)
        b.box((base + top) / 2, (w / 2, (bh + st / 2) / 2, bt / 2), rot)
    else:
        post = _u(rng, 0.02, 0.03)
        for sx in (-1.0, 1.0):
            p = base + np.array([sx * (w / 2 - post), 0.0, 0.0])
            b.box(p + up * (bh + st / 2) / 2, (post, (bh + st / 2) / 2, bt / 2), rot)
        rail = _u(rng, 0.05, 0.12)
        rail_c = base + up * (st / 2 + bh - rail / 2)
        b.box(rail_c, (w / 2, rail / 2, bt / 2), rot)
        slats = int(rng.integers(0, 4))
        span = bh - rail
        for i in range(slats):
            x = (i + 1) / (slats + 1) * (w - 2 * post) - (w / 2 - post)
            c = base + up * (st / 2 + span) / 2  # From the seat's mid-plane to the rail.
            b.box(c + np.array([x, 0.0, 0.0]), (0.02, (st / 2 + span) / 2, bt / 2 * 0.8), rot)
    if not swivel and rng.random() < 0.35:  # Armrests.
        ah = _u(rng, 0.18, 0.26)
        aw = _u(rng, 0.025, 0.04)
        at = _u(rng, 0.015, 0.025)
        for sx in (-1.0, 1.0):
            x = sx * (w / 2 - aw)
            b.box((x, seat_y + ah, 0.0), (aw, at, d / 2))
            b.box((x, seat_y + ah / 2, -d / 2 + 0.06), (aw * 0.8, ah / 2, 0.02))
    return b.shape()


def _table(rng):
    b = _Builder()
    h = _u(rng, 0.65, 0.78)
    tt = _u(rng, 0.04, 0.07)
    if rng.random() < 0.3:  # Round table.
        r = _u(rng, 0.4, 0.65)
        b.cylinder_between((0.0, h - tt, 0.0), (0.0, h, 0.0), r)
        pr = _u(rng, 0.04, 0.08)
        b.cylinder_between((0.0, 0.0, 0.0), (0.0, h - tt, 0.0), pr)
        if rng.random() < 0.5:
            bt = _u(rng, 0.025, 0.05)
            b.cylinder_between((0.0, 0.0, 0.0), (0.0, bt, 0.0), _u(rng, 0.45, 0.7) * r)
        else:
            feet = int(rng.integers(3, 5))
            reach = _u(rng, 0.45, 0.7) * r
            fr = _u(rng, 0.02, 0.035)
            phase = _u(rng, 0.0, _TWO_PI)
            for i in range(feet):
                a = phase + _TWO_PI * i / feet
                b.capsule_between((0.0, fr, 0.0), (reach * math.cos(a), fr, reach * math.sin(a)), fr)
        return b.shape()
    w = _u(rng, 0.9, 1.8)
    d = _u(rng, 0.55, 1.0) * min(1.0, w / 1.0)
    d = min(d, w)
    b.box((0.0, h - tt / 2, 0.0), (w / 2, tt / 2, d / 2))
    if rng.random() < 0.2:  # Trestle: two slabs and a stretcher.
        st = _u(rng, 0.025, 0.04)
        inset = _u(rng, 0.05, 0.15)
        x = w / 2 - inset - st
        for sx in (-1.0, 1.0):
            b.box((sx * x, (h - tt) / 2, 0.0), (st, (h - tt) / 2, d * _u(rng, 0.3, 0.42)))
        sh = _u(rng, 0.03, 0.06)
        b.box((0.0, _u(rng, 0.1, 0.3), 0.0), (x, sh, st))
        return b.shape()
    lw = _u(rng, 0.025, 0.045)
    round_leg = rng.random() < 0.4
    inset = _u(rng, 0.02, 0.1)
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            x, z = sx * (w / 2 - inset - lw), sz * (d / 2 - inset - lw)
            b.leg((x, 0.0, z), (x, h - tt, z), lw, round_leg)
    if rng.random() < 0.5:  # Apron.
        ah = _u(rng, 0.05, 0.1)
        at = 0.02
        y = h - tt - ah / 2
        xi, zi = w / 2 - inset - lw, d / 2 - inset - lw
        for sz in (-1.0, 1.0):
            b.box((0.0, y, sz * zi), (xi, ah / 2, at))
        for sx in (-1.0, 1.0):
            b.box((sx * xi, y, 0.0), (at, ah / 2, zi))
    if rng.random() < 0.25:  # Lower shelf.
        y = _u(rng, 0.1, 0.22)
        sth = _u(rng, 0.015, 0.025)
        b.box((0.0, y, 0.0), (w / 2 - inset - lw, sth, d / 2 - inset - lw))
    return b.shape()


def _hollow_shade(b, top, axis, outer_r, half_len, wall):
    """Cylindrical shade: closed at ``top``, open at the other end along ``axis``."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    top = np.asarray(top, float)
    bottom = top + 2.0 * half_len * axis
    b.cylinder_between(top, bottom, outer_r)
    b.cylinder_between(top + wall * axis, bottom + 0.2 * half_len * axis, outer_r - wall, negative=True)


def _lamp(rng):
    b = _Builder()
    style = rng.choice(["table", "desk", "arc"], p=[0.4, 0.35, 0.25])
    if style == "table":
        base_r = _u(rng, 0.07, 0.12)
        base_h = _u(rng, 0.015, 0.04)
        b.cylinder_between((0.0, 0.0, 0.0), (0.0, base_h, 0.0), base_r)
        pole_h = _u(rng, 0.3, 0.5)
        pr = _u(rng, 0.011, 0.018)
        b.cylinder_between((0.0, base_h * 0.5, 0.0), (0.0, pole_h, 0.0), pr)
        if rng.random() < 0.4:
            gr = _u(rng, 0.08, 0.14)
            b.sphere((0.0, pole_h + gr * 0.8, 0.0), gr)
        else:
            sr = _u(rng, 0.1, 0.18)
            sh = _u(rng, 0.12, 0.22)
            b.cylinder_between((0.0, pole_h - sh * 0.4, 0.0), (0.0, pole_h + sh * 0.6, 0.0), sr)
        return b.shape()
    if style == "desk":
        base_r = _u(rng, 0.07, 0.1)
        base_h = _u(rng, 0.015, 0.03)
        b.cylinder_between((0.0, 0.0, 0.0), (0.0, base_h, 0.0), base_r)
        ar = _u(rng, 0.01, 0.016)
        l1 = _u(rng, 0.25, 0.36)
        a1 = _u(rng, math.radians(-25), math.radians(20))
        p0 = np.array([0.0, base_h, 0.0])
        elbow = p0 + l1 * np.array([0.0, math.cos(a1), -math.sin(a1)])
        l2 = _u(rng, 0.22, 0.32)
        a2 = _u(rng, math.radians(-30), math.radians(20))
        head = elbow + l2 * np.array([0.0, math.sin(a2), -math.cos(a2)])
        b.capsule_between(p0, elbow, ar)
        b.capsule_between(elbow, head, ar)
        b.sphere(elbow, ar * 1.5)
        # Keep the arm behind the shade's closed end: a2 + tilt < 85 degrees.
        tilt = _u(rng, math.radians(35), min(math.radians(80), math.radians(85) - a2))
        axis = np.array([0.0, -math.sin(tilt), -math.cos(tilt)])
        orad = _u(rng, 0.05, 0.08)
        hl = _u(rng, 0.04, 0.07)
        _hollow_shade(b, head + 0.5 * ar * axis, axis, orad, hl, _u(rng, 0.014, 0.018))
        return b.shape()
    base_r = _u(rng, 0.15, 0.22)
    base_h = _u(rng, 0.025, 0.05)
    b.cylinder_between((0.0, 0.0, 0.0), (0.0, base_h, 0.0), base_r)
    pole_h = _u(rng, 1.2, 1.6)
    pr = _u(rng, 0.022, 0.03)
    b.cylinder_between((0.0, base_h * 0.5, 0.0), (0.0, pole_h, 0.0), pr)
    reach = _u(rng, 0.35, 0.65)
    rise = _u(rng, -0.05, 0.15)
    tip = np.array([0.0, pole_h + rise, -reach])
    b.capsule_between((0.0, pole_h, 0.0), tip, pr)
    b.sphere((0.0, pole_h, 0.0), pr * 1.3)
    drop = _u(rng, 0.04, 0.12)
    shade_top = tip - np.array([0.0, drop, 0.0])
    b.capsule_between(tip, shade_top, pr * 0.8)
    orad = _u(rng, 0.12, 0.2)
    hl = _u(rng, 0.07, 0.12)
    _hollow_shade(b, shade_top, (0.0, -1.0, 0.0), orad, hl, _u(rng, 0.035, 0.045))
    return b.shape()


def _wing(b, root, span, chord, thick, sweep, dihedral, mirror=True):
    """Right half-wing as a box from ``root`` outwards, plus its mirror image."""
    rot = _rot_y(-sweep) @ _rot_z(dihedral)
    center = np.asarray(root, float) + rot @ np.array([span / 2, 0.0, 0.0])
    prim = b.box(center, (span / 2, thick / 2, chord / 2), rot)
    if mirror:
        b.mirrored_x(prim)
    return rot


def _airplane(rng):
    b = _Builder()
    length = _u(rng, 1.0, 1.4)
    fr = _u(rng, 0.045, 0.08)
    b.add(Capsule(fr, length / 2 - fr, None, (0.0, 0.0, 0.0)))  # Along z; nose at -z.
    span = _u(rng, 0.8, 1.3) * length
    chord = _u(rng, 0.12, 0.2) * length
    size = max(length, span)
    thick = _u(rng, 0.026, 0.034) * size
    sweep = _u(rng, 0.0, math.radians(35))
    dihedral = _u(rng, math.radians(-3), math.radians(7))
    wy = _u(rng, -0.6, 0.4) * fr
    wz = _u(rng, -0.12, 0.08) * length
    root = np.array([0.0, wy, wz])
    rot = _wing(b, root, span / 2, chord, thick, sweep, dihedral)
    # Tail: horizontal stabiliser and fin.
    tz = length / 2 - fr - _u(rng, 0.06, 0.1) * length
    tspan = _u(rng, 0.28, 0.45) * length
    tchord = _u(rng, 0.08, 0.12) * length
    tail_high = rng.random() < 0.25
    fin_h = _u(rng, 0.13, 0.22) * length
    fin_chord = _u(rng, 0.1, 0.16) * length
    fin_sweep = _u(rng, math.radians(20), math.radians(45))
    fin_rot = _rot_x(fin_sweep)
    fin_up = fin_rot @ np.array([0.0, 1.0, 0.0])
    fin_root = np.array([0.0, 0.0, tz])
    b.box(fin_root + fin_up * (fin_h / 2), (thick / 2, fin_h / 2 + fr / 2, fin_chord / 2), fin_rot)
    tail_root = fin_root + (fin_up * fin_h * 0.9 if tail_high else 0.0)
    _wing(b, tail_root, tspan / 2, tchord, thick * 0.9, sweep + _u(rng, 0.0, 0.2), dihedral * 0.5)
    engines = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))
    er = _u(rng, 0.03, 0.045) * length
    el = _u(rng, 0.16, 0.24) * length
    for i in range(engines):
        f = (0.3 + 0.35 * i) if engines == 2 else _u(rng, 0.3, 0.45)
        s = f * span / 2
        on_wing = root + rot @ np.array([s, 0.0, 0.0])  # Wing mid-plane at that station.
        center = on_wing + np.array([0.0, -thick / 2 - er * 1.2, -chord * 0.35])
        for sx in (1.0, -1.0):
            c = center * np.array([sx, 1.0, 1.0])
            b.add(Capsule(er, el / 2 - er, None, c))
            b.box(
                (c[0], c[1] + er * 0.6 + (on_wing[1] - c[1] - er * 0.6) / 2, c[2] + chord * 0.25),
                (thick / 2, (on_wing[1] - c[1] - er * 0.6) / 2 + 0.01, chord * 0.25),
            )
    return b.shape()


def _mug(rng):
    b = _Builder()
    r = _u(rng, 0.035, 0.055)
    h = _u(rng, 0.08, 0.12)
    wall = _u(rng, 0.005, 0.008)
    base = _u(rng, 0.007, 0.012)
    b.add(Cylinder(r, h / 2, _AXIS_Y, (0.0, h / 2, 0.0)))
    extra = 0.01
    b.add(
        Cylinder(r - wall, (h - base + extra) / 2, _AXIS_Y, (0.0, (base + h + extra) / 2, 0.0)),
        negative=True,
    )
    minor = _u(rng, 0.006, 0.009)
    major = min(_u(rng, 0.25, 0.35) * h, 0.42 * h - minor)
    major = max(major, 2.0 * minor)
    cy = _u(rng, 0.45, 0.55) * h
    cy = min(max(cy, major + minor + 0.03 * h), h - major - minor - 0.03 * h)
    cx = r + _u(rng, 0.2, 0.5) * major
    b.add(Torus(major, minor, None, (cx, cy, 0.0)))  # Ring in the x-y plane.
    return b.shape()


def _sofa(rng):
    b = _Builder()
    w = _u(rng, 1.4, 2.3)
    d = _u(rng, 0.75, 1.0)
    seat_y = _u(rng, 0.38, 0.48)
    back_y = _u(rng, 0.75, 0.95)
    leg_h = _u(rng, 0.0, 0.14)
    if leg_h < 0.04:
        leg_h = 0.0
    bt = _u(rng, 0.15, 0.25)
    arms = rng.random() < 0.85
    aw = _u(rng, 0.1, 0.22) if arms else 0.0
    arm_y = _u(rng, 0.55, 0.7)
    ct = _u(rng, 0.1, 0.18)
    inner_w = w / 2 - aw
    # Base under the cushions.
    b.box((0.0, (leg_h + seat_y - ct) / 2, 0.0), (inner_w, (seat_y - ct - leg_h) / 2, d / 2))
    # Seat cushion(s).
    cz0, cz1 = -d / 2, d / 2 - bt
    b.box((0.0, seat_y - ct / 2, (cz0 + cz1) / 2), (inner_w, ct / 2, (cz1 - cz0) / 2))
    if rng.random() < 0.5:
        b.cylinder_between((-inner_w, seat_y - ct / 2, cz0), (inner_w, seat_y - ct / 2, cz0), ct / 2)
    # Back.
    b.box((0.0, (leg_h + back_y) / 2, d / 2 - bt / 2), (w / 2, (back_y - leg_h) / 2, bt / 2))
    if rng.random() < 0.5:  # Back cushions leaning on the back.
        n = int(rng.integers(1, 4))
        ch = _u(rng, 0.25, 0.4)
        cd = _u(rng, 0.08, 0.14)
        tilt = math.radians(_u(rng, 5.0, 15.0))
        rot = _rot_x(tilt)
        cw = 2 * inner_w / n
        # Sink the lower edges into the seat and the back so that no thin wedge-shaped
        # gaps appear between the leaning cushion and the seat or the back.
        y = seat_y + ch / 2 - cd / 2 * math.sin(tilt) - 0.01
        z = cz1 - cd / 2 + ch / 2 * math.sin(tilt) + 0.01
        for i in range(n):
            x = -inner_w + cw * (i + 0.5)
            b.box((x, y, z), (cw / 2, ch / 2, cd / 2), rot)
    if arms:
        for sx in (-1.0, 1.0):
            x = sx * (w / 2 - aw / 2)
            b.box((x, (leg_h + arm_y) / 2, 0.0), (aw / 2, (arm_y - leg_h) / 2, d / 2))
            if rng.random() < 0.4:
                b.cylinder_between((x, arm_y, -d / 2), (x, arm_y, d / 2), aw / 2)
    if leg_h > 0.0:
        lr = _u(rng, 0.02, 0.035)
        for sx in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                x, z = sx * (w / 2 - 0.06), sz * (d / 2 - 0.06)
                b.cylinder_between((x, 0.0, z), (x, leg_h + 0.02, z), lr)
    return b.shape()


def _bench(rng):
    b = _Builder()
    length = _u(rng, 1.0, 1.8)
    d = _u(rng, 0.3, 0.45)
    seat_y = _u(rng, 0.4, 0.48)
    st = _u(rng, 0.04, 0.07)
    if rng.random() < 0.6:
        b.box((0.0, seat_y - st / 2, 0.0), (length / 2, st / 2, d / 2))
    else:  # Slats along x with gaps.
        n = int(rng.integers(3, 6))
        gap = _u(rng, 0.015, 0.03)
        sw = (d - gap * (n - 1)) / n
        for i in range(n):
            z = -d / 2 + sw / 2 + i * (sw + gap)
            b.box((0.0, seat_y - st / 2, z), (length / 2, st / 2, sw / 2))
        # Cross bars under the slats hold them together.
        for sx in (-1.0, 1.0):
            b.box((sx * length * 0.35, seat_y - st - 0.02, 0.0), (0.03, 0.02, d / 2))
    inset = _u(rng, 0.03, 0.15)
    style = rng.choice(["slab", "four"])
    lx = length / 2 - inset
    if style == "slab":
        lt = _u(rng, 0.025, 0.04)
        for sx in (-1.0, 1.0):
            top = seat_y - st / 2
            b.box((sx * (lx - lt), top / 2, 0.0), (lt, top / 2, d / 2 * 0.9))
    else:
        lw = _u(rng, 0.02, 0.035)
        round_leg = rng.random() < 0.4
        for sx in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                x, z = sx * (lx - lw), sz * (d / 2 - lw - 0.02)
                b.leg((x, 0.0, z), (x, seat_y - st / 2, z), lw, round_leg)
        if rng.random() < 0.5:
            b.box((0.0, _u(rng, 0.1, 0.2), 0.0), (lx - lw, 0.02, 0.02))
    if rng.random() < 0.45:  # Backrest at +z.
        ph = _u(rng, 0.3, 0.45)
        tilt = _rot_x(math.radians(_u(rng, 5.0, 18.0)))
        up = tilt @ np.array([0.0, 1.0, 0.0])
        pt = 0.025
        base = np.array([0.0, seat_y - st, d / 2 - pt])
        for sx in (-1.0, 1.0):
            p = base + np.array([sx * (lx - 0.04), 0.0, 0.0])
            b.box(p + up * (ph + st) / 2, (0.025, (ph + st) / 2, pt), tilt)
        boards = int(rng.integers(1, 3))
        bh = _u(rng, 0.06, 0.12)
        for i in range(boards):
            c = base + up * (st + ph - bh / 2 - i * (bh + 0.04))
            b.box(c - tilt @ np.array([0.0, 0.0, pt]), (lx, bh / 2, 0.02), tilt)
    return b.shape()


def _car(rng):
    b = _Builder()
    length = _u(rng, 3.8, 5.0)
    w = _u(rng, 1.6, 1.95)
    gc = _u(rng, 0.12, 0.22)
    wr = _u(rng, 0.3, 0.38)
    ww = _u(rng, 0.18, 0.26)
    bh = _u(rng, 0.45, 0.65)
    ch = _u(rng, 0.38, 0.6)
    # Lower body with rounded nose and tail (cylinders along x).
    nr = bh / 2
    yc = gc + bh / 2
    b.box((0.0, yc, 0.0), (w / 2, bh / 2, length / 2 - nr))
    for sz in (-1.0, 1.0):
        b.add(Cylinder(nr, w / 2, _AXIS_X, (0.0, yc, sz * (length / 2 - nr))))
    # Cabin with slanted windscreen and rear window.
    cl = _u(rng, 0.35, 0.55) * length
    cz = _u(rng, -0.02, 0.12) * length
    cw = w * _u(rng, 0.82, 0.92)
    top = gc + bh
    b.box((0.0, top + ch / 2, cz), (cw / 2, ch / 2, cl / 2))
    for sz, run in ((-1.0, _u(rng, 0.35, 0.8)), (1.0, _u(rng, 0.15, 0.6))):
        # A slab whose outer face is the window plane and which is thick enough to fill
        # the wedge between that plane, the body top and the cabin's end face.
        p1 = np.array([0.0, top + ch, cz + sz * cl / 2])
        p0 = np.array([0.0, top - 0.02, cz + sz * (cl / 2 + run)])
        rise = p1[1] - p0[1]
        thick = run * rise / math.hypot(run, rise) + 0.05
        d = p1 - p0
        rot = rotation_between((0.0, 1.0, 0.0), d)
        inward = rot @ np.array([0.0, 0.0, 1.0])
        if inward @ (np.array([0.0, top, cz]) - p0) < 0.0:
            inward = -inward
        center = (p0 + p1) / 2 + inward * thick / 2
        b.box(center, (cw / 2, np.linalg.norm(d) / 2, thick / 2), rot)
    # Wheels: cylinders along x.
    base = _u(rng, 0.56, 0.66) * length
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            b.add(Cylinder(wr, ww / 2, _AXIS_X, (sx * (w / 2 - ww / 2 + 0.03), wr, sz * base / 2)))
    return b.shape()


_GENERATORS = {
    "airplane": _airplane,
    "bench": _bench,
    "car": _car,
    "chair": _chair,
    "lamp": _lamp,
    "mug": _mug,
    "sofa": _sofa,
    "table": _table,
}


def make_shape(category, rng):
    """A random object of a category in ShapeNet's canonical pose (not normalised).

    Args:
        category: str, a name (``"chair"``) or a ShapeNet synset id (``"03001627"``).
        rng: numpy Generator; the shape is a deterministic function of its state.

    Returns:
        :class:`Shape`.
    """
    return _GENERATORS[CATEGORIES[category_synset(category)]](rng)
