"""Built-in shapes in motion, exact, in the D-FAUST layout of Occupancy Flow.

Occupancy Flow (Niemeyer et al., ICCV 2019) trains on D-FAUST: per sequence, per frame,
uniform points with occupancies and surface points that correspond across frames. This
module makes such sequences from the exact procedural shapes of
:mod:`implicit_fields.data.shapes` moved by motions with closed-form inverses, writes them in
the original's layout and reads that layout (ours and the original's D-FAUST folders)::

    DATASET/metadata.yaml                       {builtin_motion: {id, name}}; written last
    DATASET/builtin_motion/{train,val,test}.lst  sequence folder names, one a line
    DATASET/builtin_motion/<name>_<index>/      e.g. chair_0003 (D-FAUST: 50002_punching)
        points_seq/%08d.npz   ONet's points.npz per frame: `points` (N, 3) float16 uniform in
                              [-0.55, 0.55]^3, `occupancies` np.packbits, `loc` (3,), `scale`
        pcl_seq/%08d.npz      `points` (M, 3) float16 surface points, row j the same material
                              point in every frame; `loc` (3,), `scale` (as D-FAUST's)
        motion.json           the normalised shape, the motions and how the files were made
                              (:func:`load_motion`); written last: a sequence folder is
                              complete when it has one

Motions (``t`` in [0, 1], the sequence time; every motion is the identity at t = 0, so frame 0
is the built-in object itself, the same object as the built-in ONet dataset's object of that
index and seed):

* :class:`Articulation`: groups of positive primitives (parts) rotate rigidly about a joint
  axis through a pivot by ``amplitude * profile(t)``: a swivel chair's seat and back about its
  column, a chair's back reclining, an airplane's wings flapping, a lamp's arm or head.
  Occupancy at t of x: the static part at x, or part k at ``R_k(t)^-1 (x - pivot_k) + pivot_k``.
  Each part is a one-level CSG of its positives minus *every* negative of the shape, the
  moving parts' negatives moving with them, so the union of the parts at t = 0 is the shape.
* Deformations of the whole space, bijections with closed-form inverses: :class:`Twist`
  about the vertical axis (angle proportional to height), :class:`Bend` (a circular-arc
  bend of the vertical axis in a vertical plane), :class:`Sway` (a height-dependent
  horizontal shift ``x + a(t) ((y - y0) / h)^2 d``).

A :class:`MotionSequence` is a shape, an optional articulation, then deformations:
``x_t = D_t(A_t(x_0))`` and ``occupancy(x, t) = occupancy_articulated(D_t^-1(x), t)``, exact.

Correspondences: M points are sampled once on the t = 0 surface, labelled with their part,
and moved with the motion. A deformation maps the surface onto the surface. A rigid part can
pass into another part near its joint (a wing root into the fuselage), so a t = 0 sample that
is not on the surface at every frame (the inside test just inside and just outside it along
its moved normal) is dropped and another one drawn; the surface that a moving part uncovers
is not sampled (as in D-FAUST, where the same mesh points are followed, the correspondences
are uniform on the first frame only).

Deviations from D-FAUST, on purpose:

* Every frame of a sequence is stored in the sequence's one normalised frame (that of the
  t = 0 shape: ``loc``, ``scale`` equal for all frames), and the motion keeps the shape inside
  ``|x| <= 0.55`` (amplitudes are scaled down until it does). D-FAUST normalises each frame
  by its own bounding box; the loader maps every frame into the frame of the window's first
  file the original's way, ``(loc + scale * p - loc0) / scale0``, which is the identity here.
* Uniform points are drawn fresh for every frame, as D-FAUST's (its ``sample_mesh.py`` draws
  them inside its per-frame loop). Occupancies are exact at the stored float16 coordinates.
* Frame i of a sequence of F frames is at sequence time ``i / (F - 1)``
  (:func:`frame_times`); the model's time inside a window of L frames is the original's
  ``i / (L - 1)`` (the ``times`` of an item).

The loader (:class:`MotionDataset`) windows sequences exactly as the original's
``HumansDataset.subdivide_into_sequences`` (:func:`subdivide_into_sequences`), and
:func:`sample_window` subsamples a window as the original's fields and transforms do.
"""

import abc
import json
import math
import os
import shutil

import numpy as np

from implicit_fields.data import builtin, onet_format
from implicit_fields.data.onet_format import DataFormatError
from implicit_fields.data.shapes import CATEGORIES, Box, Shape, category_synset, make_shape, normalize

__all__ = [
    "CATEGORY",
    "MOTION_FILE",
    "POINTS_SEQ_DIR",
    "PCL_SEQ_DIR",
    "MOTION_VERSION",
    "PROFILES",
    "profile_value",
    "frame_times",
    "Motion",
    "Articulation",
    "Twist",
    "Bend",
    "Sway",
    "MotionSequence",
    "make_motion_sequence",
    "generate_sequence",
    "sequence_name",
    "ensure_motion_dataset",
    "write_pcl_npz",
    "load_pcl_npz",
    "frame_files",
    "load_motion",
    "subdivide_into_sequences",
    "MotionDataset",
    "sample_window",
]

CATEGORY = "builtin_motion"
"""The one category folder of the built-in motion dataset (the original's: ``D-FAUST``)."""
MOTION_FILE = "motion.json"
POINTS_SEQ_DIR = "points_seq"
PCL_SEQ_DIR = "pcl_seq"
MOTION_VERSION = 1
"""Bumped whenever the motions or the writer change; stored in every motion.json."""
PROFILES = ("ramp", "bump", "wave")
"""Time profiles of a motion's amplitude: t, sin(pi t), sin(2 pi t) (all 0 at t = 0)."""

_HALF_BOX = 0.55  # The uniform points' cube (the original's points_padding 0.1).
_FIT_BOUND = 0.545  # What the sampled extremes of a moving shape may reach (margin 0.005).
_EPS = 1e-6  # Offset of the inside tests of a surface point (as Shape.sample_surface).
_SEED_TAG = 2019  # Separates the motion streams of an object from its other streams.
_TMP_PREFIX = onet_format.TMP_PREFIX


def _as_points(points):
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {p.shape}")
    return p


def _time(t):
    t = float(t)
    if not np.isfinite(t):
        raise ValueError(f"time must be finite, got {t}")
    return t


def profile_value(profile, t):
    """The amplitude factor of a time profile at time t.

    Args:
        profile: one of :data:`PROFILES`: 'ramp' (t), 'bump' (sin(pi t)), 'wave' (sin(2 pi t)).
        t: float time (the sequence's, in [0, 1]).

    Returns:
        float.
    """
    t = _time(t)
    if profile == "ramp":
        return t
    if profile == "bump":
        return math.sin(math.pi * t)
    if profile == "wave":
        return math.sin(2.0 * math.pi * t)
    raise ValueError(f"profile: unknown {profile!r}; use one of {list(PROFILES)}")


def frame_times(n_frames):
    """Sequence times of the frames of a sequence: frame i at ``i / (n_frames - 1)``.

    Args:
        n_frames: int >= 2.

    Returns:
        (n_frames,) float64.
    """
    n = onet_format.check_count("n_frames", n_frames, 2)
    return np.arange(n, dtype=np.float64) / (n - 1)


def _rotation(axis, angle):
    """Rotation matrix about a unit axis (right-hand rule)."""
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def _vector(d, key, size):
    try:
        v = np.asarray(d[key], dtype=np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"motion dict: '{key}' must be {size} numbers ({type(e).__name__}: {e})") from e
    if v.shape != (size,) or not np.all(np.isfinite(v)):
        raise ValueError(f"motion dict: '{key}' must be {size} finite numbers, got {d[key]!r}")
    return v


def _number(d, key):
    try:
        v = float(d[key])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"motion dict: '{key}' must be a number ({type(e).__name__}: {e})") from e
    if not np.isfinite(v):
        raise ValueError(f"motion dict: '{key}' must be finite, got {v}")
    return v


# --------------------------------------------------------------------------------------
# Motions.
# --------------------------------------------------------------------------------------


class Motion(abc.ABC):
    """A motion with a closed-form inverse: ``forward(x, t)``, ``inverse(x, t)``.

    The amplitude (an angle, a rate, a curvature or a shift) at time t is
    ``amplitude * profile_value(profile, t)``, so every motion is the identity at t = 0.

    Args:
        amplitude: float, the motion's largest amplitude.
        profile: one of :data:`PROFILES`.
    """

    kind = "motion"

    def __init__(self, amplitude, profile):
        self.amplitude = float(amplitude)
        if not np.isfinite(self.amplitude):
            raise ValueError(f"{self.kind}: amplitude must be finite, got {amplitude}")
        if profile not in PROFILES:
            raise ValueError(f"{self.kind}: profile must be one of {list(PROFILES)}, got {profile!r}")
        self.profile = profile

    def value(self, t):
        """The amplitude at time t (float)."""
        return self.amplitude * profile_value(self.profile, t)

    @abc.abstractmethod
    def forward(self, points, t):
        """Rest position (t = 0) -> position at time t; (N, 3) -> (N, 3) float64."""

    @abc.abstractmethod
    def inverse(self, points, t):
        """Position at time t -> rest position; (N, 3) -> (N, 3) float64."""

    @abc.abstractmethod
    def _params(self):
        """JSON-able dict of the parameters besides type, amplitude and profile."""

    def scaled(self, factor):
        """A copy with the amplitude multiplied by ``factor``."""
        d = self.to_dict()
        d["amplitude"] = self.amplitude * float(factor)
        return Motion.from_dict(d)

    def to_dict(self):
        """JSON-able dict: ``type``, ``amplitude``, ``profile`` and the parameters."""
        return {"type": self.kind, "amplitude": self.amplitude, "profile": self.profile, **self._params()}

    @staticmethod
    def from_dict(d):
        """Inverse of :meth:`to_dict` (dispatches on ``d["type"]``).

        Raises:
            ValueError: naming the key that is missing or bad.
        """
        if not isinstance(d, dict) or "type" not in d:
            raise ValueError(f"motion dict needs a 'type' key, got {d!r:.200}")
        cls = _MOTION_TYPES.get(d["type"])
        if cls is None:
            raise ValueError(f"motion dict: unknown type {d['type']!r}; known: {sorted(_MOTION_TYPES)}")
        for key in ("amplitude", "profile"):
            if key not in d:
                raise ValueError(f"motion dict ({d['type']}): missing key '{key}'")
        return cls._from_dict(d)

    def __repr__(self):
        return f"{type(self).__name__}(amplitude={self.amplitude:.4g}, profile={self.profile!r})"


class Articulation(Motion):
    """Parts of a shape (groups of positive primitives) rotating rigidly about joint axes.

    Part k (1-based; 0 is the static rest) rotates about the line through ``pivot_k`` along
    ``axis_k`` by the angle ``amplitude * profile(t)`` (radians, right-hand rule). Which
    points move is a property of the points (their part label), so :meth:`forward` and
    :meth:`inverse` take the part.

    Args:
        parts: list of dicts ``{"primitives": [indices into shape.positives], "axis": (3,),
            "pivot": (3,)}``; disjoint, non-empty.
        amplitude: float, the largest angle in radians.
        profile: one of :data:`PROFILES`.
    """

    kind = "articulation"

    def __init__(self, parts, amplitude, profile):
        super().__init__(amplitude, profile)
        if not isinstance(parts, (list, tuple)) or not parts:
            raise ValueError("articulation: 'parts' must be a non-empty list")
        self.parts = []
        seen = set()
        for k, part in enumerate(parts):
            if not isinstance(part, dict):
                raise ValueError(f"articulation: parts[{k}] must be a dict")
            try:
                prims = [int(i) for i in part["primitives"]]
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"articulation: parts[{k}]['primitives'] must be a list of indices") from e
            if not prims or any(i < 0 for i in prims) or seen.intersection(prims):
                raise ValueError(f"articulation: parts[{k}]['primitives'] must be non-empty, >= 0, disjoint")
            seen.update(prims)
            axis = _vector(part, "axis", 3)
            norm = float(np.linalg.norm(axis))
            if norm < 1e-12:
                raise ValueError(f"articulation: parts[{k}]['axis'] must be non-zero")
            self.parts.append({"primitives": prims, "axis": axis / norm, "pivot": _vector(part, "pivot", 3)})

    def _params(self):
        return {
            "parts": [
                {
                    "primitives": list(p["primitives"]),
                    "axis": p["axis"].tolist(),
                    "pivot": p["pivot"].tolist(),
                }
                for p in self.parts
            ]
        }

    @classmethod
    def _from_dict(cls, d):
        if "parts" not in d:
            raise ValueError("motion dict (articulation): missing key 'parts'")
        return cls(d["parts"], _number(d, "amplitude"), d["profile"])

    def rotation(self, t, part=1):
        """The rotation matrix of part ``part`` (1-based) at time t ((3, 3) float64)."""
        return _rotation(self.parts[self._index(part)]["axis"], self.value(t))

    def _index(self, part):
        if not 1 <= int(part) <= len(self.parts):
            raise ValueError(f"articulation: part must be in 1..{len(self.parts)}, got {part}")
        return int(part) - 1

    def forward(self, points, t, part=1):
        """Rest position of a point of part ``part`` -> its position at time t."""
        p = _as_points(points)
        pivot = self.parts[self._index(part)]["pivot"]
        if self.value(t) == 0.0:
            return p.copy()
        return (p - pivot) @ self.rotation(t, part).T + pivot

    def inverse(self, points, t, part=1):
        """Position at time t of a point of part ``part`` -> its rest position."""
        p = _as_points(points)
        pivot = self.parts[self._index(part)]["pivot"]
        if self.value(t) == 0.0:
            return p.copy()
        return (p - pivot) @ self.rotation(t, part) + pivot


class _Deformation(Motion):
    """A bijection of space about a vertical axis through (cx, cz), from height ``base``."""

    def __init__(self, amplitude, profile, center=(0.0, 0.0), base=0.0):
        super().__init__(amplitude, profile)
        self.center = np.asarray(center, dtype=np.float64).reshape(-1)
        if self.center.shape != (2,) or not np.all(np.isfinite(self.center)):
            raise ValueError(f"{self.kind}: center must be 2 finite numbers (x, z), got {center!r}")
        self.base = float(base)
        if not np.isfinite(self.base):
            raise ValueError(f"{self.kind}: base must be finite, got {base}")

    def _common(self):
        return {"center": self.center.tolist(), "base": self.base}


class Twist(_Deformation):
    """Twist about the vertical axis through (cx, cz): the rotation angle about +y grows
    linearly with height, ``amplitude * profile(t) * (y - base)`` (amplitude in radians per
    unit height). Volume preserving; y is unchanged.
    """

    kind = "twist"

    def __init__(self, amplitude, profile, center=(0.0, 0.0), base=0.0):
        super().__init__(amplitude, profile, center, base)

    def _params(self):
        return self._common()

    @classmethod
    def _from_dict(cls, d):
        return cls(_number(d, "amplitude"), d["profile"], _vector(d, "center", 2), _number(d, "base"))

    def _rotate(self, points, sign, t):
        p = _as_points(points)
        if self.value(t) == 0.0:
            return p.copy()
        theta = sign * self.value(t) * (p[:, 1] - self.base)
        c, s = np.cos(theta), np.sin(theta)
        dx, dz = p[:, 0] - self.center[0], p[:, 2] - self.center[1]
        out = p.copy()
        out[:, 0] = self.center[0] + c * dx + s * dz
        out[:, 2] = self.center[1] - s * dx + c * dz
        return out

    def forward(self, points, t):
        return self._rotate(points, 1.0, t)

    def inverse(self, points, t):
        return self._rotate(points, -1.0, t)


class _Directional(_Deformation):
    """A deformation along a horizontal direction ``(cos phi, 0, sin phi)``."""

    def __init__(self, amplitude, profile, direction, center=(0.0, 0.0), base=0.0):
        super().__init__(amplitude, profile, center, base)
        self.direction = float(direction)
        if not np.isfinite(self.direction):
            raise ValueError(f"{self.kind}: direction must be finite, got {direction}")
        self._d = np.array([math.cos(self.direction), 0.0, math.sin(self.direction)])

    def _common(self):
        return {"direction": self.direction, **super()._common()}


class Sway(_Directional):
    """Height-dependent horizontal shift: ``x + a(t) ((y - base) / height)^2 d``.

    ``a(t) = amplitude * profile(t)`` is the shift at ``y = base + height``; y is unchanged,
    so the inverse subtracts the same shift. Volume preserving.

    Args:
        amplitude: float, the largest shift at the top (normalised units).
        profile: one of :data:`PROFILES`.
        direction: float, angle phi of the horizontal direction (radians; 0 is +x).
        center: unused by the map (kept for a common record); (x, z).
        base: float, the height where the shift is 0.
        height: float > 0.
    """

    kind = "sway"

    def __init__(self, amplitude, profile, direction, center=(0.0, 0.0), base=0.0, height=1.0):
        super().__init__(amplitude, profile, direction, center, base)
        self.height = float(height)
        if not (np.isfinite(self.height) and self.height > 0.0):
            raise ValueError(f"sway: height must be finite and > 0, got {height}")

    def _params(self):
        return {**self._common(), "height": self.height}

    @classmethod
    def _from_dict(cls, d):
        return cls(
            _number(d, "amplitude"),
            d["profile"],
            _number(d, "direction"),
            _vector(d, "center", 2),
            _number(d, "base"),
            _number(d, "height"),
        )

    def _shift(self, p, t):
        f = ((p[:, 1] - self.base) / self.height) ** 2
        return (self.value(t) * f)[:, None] * self._d

    def forward(self, points, t):
        p = _as_points(points)
        return p + self._shift(p, t) if self.value(t) != 0.0 else p.copy()

    def inverse(self, points, t):
        p = _as_points(points)
        return p - self._shift(p, t) if self.value(t) != 0.0 else p.copy()


class Bend(_Directional):
    """Circular-arc bend of the vertical axis through (cx, cz) towards direction d.

    With curvature ``k = amplitude * profile(t)``, the point at height ``v = y - base`` on the
    axis goes to the arc of radius 1/k through the base point; a point at offset ``u`` along
    d keeps its distance ``1/k - u`` from the arc's centre and its angle ``k v``. Offsets
    perpendicular to d are unchanged. A bijection of ``{u < 1/k, |k v| < pi}`` onto the half
    space ``{u' < 1/k}`` (the built-in motions keep ``|k| <= 1.5`` inside the unit cube),
    computed without cancellation near k = 0 (the identity).

    Args:
        amplitude: float, the largest curvature (1 / normalised units; negative bends
            towards -d).
        profile: one of :data:`PROFILES`.
        direction: float, angle phi of the bending direction d (radians; 0 is +x).
        center: (x, z) of the bent vertical axis.
        base: float, the height that stays in place.
    """

    kind = "bend"

    def _params(self):
        return self._common()

    @classmethod
    def _from_dict(cls, d):
        return cls(
            _number(d, "amplitude"),
            d["profile"],
            _number(d, "direction"),
            _vector(d, "center", 2),
            _number(d, "base"),
        )

    def _split(self, p, k):
        """(offset along d, height above base, perpendicular rest, sign) with k made >= 0."""
        sign = -1.0 if k < 0.0 else 1.0
        rel = p - np.array([self.center[0], self.base, self.center[1]])
        u = rel @ self._d
        perp = rel - u[:, None] * self._d
        perp[:, 1] = 0.0
        return sign * u, rel[:, 1], perp, sign

    def _join(self, u, v, perp, sign):
        out = perp + (sign * u)[:, None] * self._d
        out[:, 0] += self.center[0]
        out[:, 1] = v + self.base
        out[:, 2] += self.center[1]
        return out

    def forward(self, points, t):
        p = _as_points(points)
        k = self.value(t)
        if k == 0.0:
            return p.copy()
        u, v, perp, sign = self._split(p, k)
        k = abs(k)
        theta = k * v
        # u' = u cos(theta) + (1 - cos(theta)) / k;  v' = sin(theta) / k - u sin(theta).
        u2 = u * np.cos(theta) + v * np.sin(theta / 2.0) * np.sinc(theta / (2.0 * np.pi))
        v2 = v * np.sinc(theta / np.pi) - u * np.sin(theta)
        return self._join(u2, v2, perp, sign)

    def inverse(self, points, t):
        p = _as_points(points)
        k = self.value(t)
        if k == 0.0:
            return p.copy()
        a, b, perp, sign = self._split(p, k)
        k = abs(k)
        theta = np.arctan2(k * b, 1.0 - k * a)
        u = (2.0 * a - k * (a * a + b * b)) / (1.0 + np.hypot(1.0 - k * a, k * b))
        return self._join(u, theta / k, perp, sign)


_MOTION_TYPES = {cls.kind: cls for cls in (Articulation, Twist, Bend, Sway)}


# --------------------------------------------------------------------------------------
# A shape in motion.
# --------------------------------------------------------------------------------------


class MotionSequence:
    """A normalised shape moved by an optional articulation and then deformations.

    ``x_t = D_n(... D_1(A_label(x_0, t), t) ..., t)``: the articulation moves each part
    rigidly (``label`` 0: static), the deformations move all of space.

    Args:
        shape: :class:`~implicit_fields.data.shapes.Shape` at t = 0 (normalised).
        motions: sequence of :class:`Motion`; an :class:`Articulation` may only come first.

    Raises:
        ValueError: an articulation that is not first, primitive indices out of range, or
            no static positive primitive left.
    """

    def __init__(self, shape, motions=()):
        if not isinstance(shape, Shape):
            raise TypeError(f"shape must be a Shape, got {type(shape).__name__}")
        self.shape = shape
        self.motions = list(motions)
        for i, m in enumerate(self.motions):
            if not isinstance(m, Motion):
                raise TypeError(f"motions[{i}] must be a Motion, got {type(m).__name__}")
            if isinstance(m, Articulation) and i != 0:
                raise ValueError(f"motions[{i}]: an articulation must be the first motion")
        self.articulation = (
            self.motions[0] if self.motions and isinstance(self.motions[0], Articulation) else None
        )
        self.deformations = self.motions[1:] if self.articulation else list(self.motions)
        n_pos = len(shape.positives)
        self.primitive_labels = np.zeros(n_pos, dtype=np.int64)
        if self.articulation is not None:
            for k, part in enumerate(self.articulation.parts, start=1):
                bad = [i for i in part["primitives"] if i >= n_pos]
                if bad:
                    raise ValueError(
                        f"articulation: part {k} has primitive indices {bad} >= {n_pos} positives"
                    )
                self.primitive_labels[part["primitives"]] = k
        static = [p for p, lab in zip(shape.positives, self.primitive_labels) if lab == 0]
        if not static:
            raise ValueError("articulation: every positive primitive moves; leave at least one static")
        self.num_parts = 1 + (len(self.articulation.parts) if self.articulation else 0)
        # Each part: its positives minus every negative (a moving part's negatives move with it).
        self.part_shapes = [
            Shape([p for p, lab in zip(shape.positives, self.primitive_labels) if lab == k], shape.negatives)
            for k in range(self.num_parts)
        ]

    # -- maps -----------------------------------------------------------------------------
    def articulate(self, points, labels, t):
        """Rest positions -> positions after the articulation at time t, per part label."""
        p = _as_points(points)
        if self.articulation is None:
            return p.copy()
        labels = np.asarray(labels)
        out = p.copy()
        for k in range(1, self.num_parts):
            sel = labels == k
            if np.any(sel):
                out[sel] = self.articulation.forward(p[sel], t, k)
        return out

    def deform(self, points, t):
        """The deformations at time t, in order: (N, 3) -> (N, 3)."""
        p = _as_points(points).copy()
        for m in self.deformations:
            p = m.forward(p, t)
        return p

    def undeform(self, points, t):
        """Inverse of :meth:`deform`: positions at t -> the articulated configuration."""
        p = _as_points(points).copy()
        for m in reversed(self.deformations):
            p = m.inverse(p, t)
        return p

    def move(self, points, labels, t):
        """Rest positions (t = 0) of points with part labels -> their positions at time t."""
        return self.deform(self.articulate(points, labels, t), t)

    def trajectories(self, points, labels, times):
        """Positions of points at several times: (T, N, 3) float64."""
        return np.stack([self.move(points, labels, t) for t in np.atleast_1d(times)])

    def _articulated_contains(self, points, t):
        if self.articulation is None:
            return self.shape.contains(points)
        occ = self.part_shapes[0].contains(points)
        for k in range(1, self.num_parts):
            occ |= self.part_shapes[k].contains(self.articulation.inverse(points, t, k))
        return occ

    def contains(self, points, t):
        """Exact occupancy at time t.

        Args:
            points: (N, 3) float points.
            t: float, sequence time.

        Returns:
            (N,) bool.
        """
        return self._articulated_contains(self.undeform(points, _time(t)), t)

    # -- correspondences -----------------------------------------------------------------
    def label_points(self, points, normals, eps=_EPS):
        """Part labels of t = 0 surface points: the part that fills the inner side.

        A point whose inner side (``x - eps n``) lies in the static part is static (0);
        otherwise the first moving part holding it.

        Returns:
            (N,) int64 in [0, num_parts).
        """
        p = _as_points(points)
        labels = np.zeros(p.shape[0], dtype=np.int64)
        if self.articulation is None:
            return labels
        inner = p - eps * _as_points(normals)
        free = ~self.part_shapes[0].contains(inner)
        for k in range(1, self.num_parts):
            hit = free & self.part_shapes[k].contains(inner)
            labels[hit] = k
            free &= ~hit
        return labels

    def on_surface(self, points, normals, labels, times, eps=_EPS):
        """Whether moved t = 0 surface points stay on the surface at every time of ``times``.

        At each time the point and its normal move with its part; it is on the surface when
        the shape is occupied at ``x - eps n`` and free at ``x + eps n`` (the deformations
        map the surface onto the surface, so this is checked in the articulated frame).

        Returns:
            (N,) bool.
        """
        p = _as_points(points)
        n = _as_points(normals)
        keep = np.ones(p.shape[0], dtype=bool)
        if self.articulation is None:
            return keep
        for t in np.atleast_1d(times):
            x = self.articulate(p, labels, t)
            nt = n.copy()
            for k in range(1, self.num_parts):
                sel = labels == k
                nt[sel] = n[sel] @ self.articulation.rotation(t, k).T
            keep &= self._articulated_contains(x - eps * nt, t)
            keep &= ~self._articulated_contains(x + eps * nt, t)
        return keep

    def sample_correspondences(self, n, rng, times):
        """``n`` area-uniform t = 0 surface samples that stay on the surface at ``times``.

        Args:
            n: int >= 1.
            rng: numpy Generator (the samples are a function of its state).
            times: the times at which every sample must be a surface point (the frames).

        Returns:
            points (n, 3) float64 at t = 0, normals (n, 3) float64, labels (n,) int64.
        """
        n = onet_format.check_count("n", n, 1)
        pts, nrm, lab = [], [], []
        have = 0
        for _ in range(50):
            need = n - have
            p, q = self.shape.sample_surface(need + need // 4 + 16, rng)
            labels = self.label_points(p, q)
            keep = np.flatnonzero(self.on_surface(p, q, labels, times))[:need]
            pts.append(p[keep])
            nrm.append(q[keep])
            lab.append(labels[keep])
            have += keep.size
            if have == n:
                return np.concatenate(pts), np.concatenate(nrm), np.concatenate(lab)
        raise RuntimeError("sample_correspondences: too few surface points stay on the surface")

    def extreme_candidates(self, num_per_primitive=2048, seed=0):
        """Points whose motion bounds the moving shape: box edges, cylinder rims, surface samples.

        Returns:
            points (K, 3) float64 at t = 0 and their part labels (K,) int64.
        """
        rng = np.random.default_rng(seed)
        pts, labels = [], []
        s = np.linspace(-1.0, 1.0, 17)
        for prim, lab in zip(self.shape.positives, self.primitive_labels):
            if isinstance(prim, Box):
                local = []
                for axis in range(3):
                    others = [a for a in range(3) if a != axis]
                    for sa in (-1.0, 1.0):
                        for sb in (-1.0, 1.0):
                            e = np.zeros((s.size, 3))
                            e[:, axis] = s
                            e[:, others[0]] = sa
                            e[:, others[1]] = sb
                            local.append(e * prim.half_extents)
                p = prim.to_world(np.concatenate(local))
            else:
                p, _ = prim.sample_surface(num_per_primitive, rng)
                if prim.kind == "cylinder":  # Its rims, where extremes often are.
                    a = np.linspace(0.0, 2.0 * math.pi, 257)[:-1]
                    rim = np.stack([prim.radius * np.cos(a), prim.radius * np.sin(a), np.zeros_like(a)], 1)
                    rims = [rim + [0.0, 0.0, sz * prim.half_height] for sz in (-1.0, 1.0)]
                    p = np.concatenate([p, prim.to_world(np.concatenate(rims))])
            pts.append(p)
            labels.append(np.full(p.shape[0], lab, dtype=np.int64))
        return np.concatenate(pts), np.concatenate(labels)

    def max_extent(self, times):
        """Largest |coordinate| of :meth:`extreme_candidates` over ``times`` (float)."""
        p, labels = self.extreme_candidates()
        return max(float(np.abs(self.move(p, labels, t)).max()) for t in np.atleast_1d(times))

    def scaled(self, factor):
        """A copy with every motion's amplitude multiplied by ``factor``."""
        return MotionSequence(self.shape, [m.scaled(factor) for m in self.motions])

    def to_dict(self):
        """JSON-able dict ``{"shape": Shape.to_dict(), "motions": [Motion.to_dict(), ...]}``."""
        return {"shape": self.shape.to_dict(), "motions": [m.to_dict() for m in self.motions]}

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict` (ValueError naming the bad key)."""
        if not isinstance(d, dict) or "shape" not in d or "motions" not in d:
            raise ValueError("motion sequence dict needs 'shape' and 'motions' keys")
        if not isinstance(d["motions"], list):
            raise ValueError("motion sequence dict: 'motions' must be a list")
        return cls(Shape.from_dict(d["shape"]), [Motion.from_dict(m) for m in d["motions"]])

    def __repr__(self):
        return f"MotionSequence({self.shape!r}, {self.motions!r})"


# --------------------------------------------------------------------------------------
# Motions of the built-in categories.
# --------------------------------------------------------------------------------------


def _vertical(prim):
    """Whether a cylinder's / capsule's axis (local z) is vertical."""
    return abs(prim.rotation[1, 2]) > 1.0 - 1e-9


def _chair_parts(shape):
    """A swivel chair's seat and back about its column, else a chair's back reclining."""
    pos = shape.positives
    seat = pos[0]
    if not isinstance(seat, Box):
        return None
    lo, hi = seat.aabb()
    if len(pos) > 1 and pos[1].kind == "cylinder" and _vertical(pos[1]) and pos[1].aabb()[1][1] <= hi[1]:
        column = pos[1]
        moving = [i for i, p in enumerate(pos) if p.aabb()[0][1] >= lo[1] - 1e-9]
        pivot = np.array([column.translation[0], 0.0, column.translation[2]])
        return [{"primitives": moving, "axis": [0.0, 1.0, 0.0], "pivot": pivot.tolist()}], (0.6, 1.6)
    mid_y, mid_z, depth = seat.translation[1], seat.translation[2], hi[2] - lo[2]
    moving = [
        i
        for i, p in enumerate(pos)
        if i > 0 and p.aabb()[0][1] >= lo[1] - 1e-9 and p.translation[2] > mid_z + depth / 4
    ]
    if not moving:
        return None
    pivot = [seat.translation[0], mid_y, hi[2]]
    return [{"primitives": moving, "axis": [1.0, 0.0, 0.0], "pivot": pivot}], (0.12, 0.3)


def _airplane_parts(shape):
    """The wings (with their engines) flapping about the fuselage's axis."""
    pos = shape.positives
    kinds = [p.kind for p in pos]
    if len(pos) < 6 or kinds[:6] != ["capsule", "box", "box", "box", "box", "box"]:
        return None
    body = pos[0]
    if abs(body.rotation[2, 2]) < 1.0 - 1e-9:
        return None
    cx = body.translation[0]
    right = [i for i in (1, 2) if pos[i].translation[0] > cx]
    left = [i for i in (1, 2) if pos[i].translation[0] < cx]
    if len(right) != 1 or len(left) != 1:
        return None
    right += [i for i in range(6, len(pos)) if pos[i].translation[0] > cx]
    left += [i for i in range(6, len(pos)) if pos[i].translation[0] < cx]
    pivot = [cx, body.translation[1], body.translation[2]]
    parts = [
        {"primitives": right, "axis": [0.0, 0.0, 1.0], "pivot": pivot},
        {"primitives": left, "axis": [0.0, 0.0, -1.0], "pivot": pivot},
    ]
    return parts, (0.15, 0.4)


def _lamp_parts(shape):
    """A desk lamp's upper arm, an arc lamp's arm about its pole, a table lamp's head nodding."""
    pos = shape.positives
    kinds = [p.kind for p in pos]
    if kinds == ["cylinder", "capsule", "capsule", "sphere", "cylinder"]:  # Desk lamp.
        return [{"primitives": [2, 4], "axis": [1.0, 0.0, 0.0], "pivot": pos[3].translation.tolist()}], (
            0.2,
            0.45,
        )
    if kinds == ["cylinder", "cylinder", "capsule", "sphere", "capsule", "cylinder"] and _vertical(pos[1]):
        pole = pos[1]
        pivot = [pole.translation[0], 0.0, pole.translation[2]]
        return [{"primitives": [2, 3, 4, 5], "axis": [0.0, 1.0, 0.0], "pivot": pivot}], (0.5, 1.2)
    if len(pos) == 3 and kinds[:2] == ["cylinder", "cylinder"] and _vertical(pos[1]):
        pole = pos[1]
        top = pole.translation + pole.rotation[:, 2] * pole.half_height * np.sign(pole.rotation[1, 2])
        return [{"primitives": [2], "axis": [1.0, 0.0, 0.0], "pivot": top.tolist()}], (0.15, 0.35)
    return None


_ARTICULATIONS = {"chair": _chair_parts, "airplane": _airplane_parts, "lamp": _lamp_parts}


def _deformation(kind, rng, base, height):
    profile = str(rng.choice(PROFILES))
    phi = float(rng.uniform(0.0, 2.0 * math.pi))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "twist":
        return Twist(sign * rng.uniform(0.6, 1.6), profile, (0.0, 0.0), base)
    if kind == "bend":
        return Bend(rng.uniform(0.4, 1.2), profile, phi, (0.0, 0.0), base)
    return Sway(rng.uniform(0.05, 0.15), profile, phi, (0.0, 0.0), base, height)


def make_motion_sequence(category, shape, rng, times=None, articulate=None):
    """A random motion of a normalised built-in shape that keeps it inside the cube.

    Categories with joints (chair, airplane, lamp) get an articulation and, half of the
    time, one deformation after it; others (or ``articulate=False``) get one deformation
    and, half of the time, a second of another kind. Amplitudes are multiplied by 0.8 until
    the moving shape's extremes (:meth:`MotionSequence.max_extent`) stay within 0.545 at
    ``times`` and 65 evenly spaced times.

    Args:
        category: str, name or synset id.
        shape: the normalised :class:`~implicit_fields.data.shapes.Shape` of that category.
        rng: numpy Generator (the motion is a function of its state).
        times: the frame times to keep inside the cube (in addition to the even ones).
        articulate: None (the category decides), or False for deformations only.

    Returns:
        :class:`MotionSequence`.
    """
    name = CATEGORIES[category_synset(category)]
    lo, hi = shape.bounds(num_samples=0)
    base, height = float(lo[1]), float(max(hi[1] - lo[1], 1e-3))
    finder = _ARTICULATIONS.get(name)
    found = finder(shape) if finder is not None and articulate is not False else None
    motions = []
    kinds = ["twist", "bend", "sway"]
    if found is not None:
        parts, (a_lo, a_hi) = found
        sign = 1.0 if rng.random() < 0.5 or name in ("chair", "airplane") else -1.0
        profile = str(rng.choice(PROFILES))
        motions.append(Articulation(parts, sign * rng.uniform(a_lo, a_hi), profile))
        if rng.random() < 0.5:
            motions.append(_deformation(str(rng.choice(kinds)), rng, base, height))
    else:
        first = str(rng.choice(kinds))
        motions.append(_deformation(first, rng, base, height))
        if rng.random() < 0.5:
            second = str(rng.choice([k for k in kinds if k != first]))
            motions.append(_deformation(second, rng, base, height))
    seq = MotionSequence(shape, motions)
    check = np.linspace(0.0, 1.0, 65)
    if times is not None:
        check = np.union1d(check, np.asarray(times, dtype=np.float64))
    for _ in range(60):
        if seq.max_extent(check) <= _FIT_BOUND:
            return seq
        seq = seq.scaled(0.8)
    raise RuntimeError(f"make_motion_sequence: the {name} does not fit the cube even at rest")


# --------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------


def sequence_name(category, index):
    """Folder name of a built-in sequence, e.g. ``chair_0003``."""
    return f"{CATEGORIES[category_synset(category)]}_{int(index):04d}"


def _seeds(seed, category_index, index):
    base = [int(seed), int(category_index), int(index), _SEED_TAG]
    return {"motion": base + [0], "points": base + [1], "pcl": base + [2]}


def _generator_params(seed, synset, index, n_frames, num_points, num_pcl_points):
    return {
        "version": MOTION_VERSION,
        "shape_generator": builtin.GENERATOR_VERSION,
        "seed": int(seed),
        "category": synset,
        "index": int(index),
        "n_frames": int(n_frames),
        "num_points": int(num_points),
        "num_pcl_points": int(num_pcl_points),
    }


def generate_sequence(category, index, seed=0, n_frames=24, num_points=100_000, num_pcl_points=10_000):
    """One built-in sequence in memory.

    The t = 0 shape is the built-in ONet dataset's object ``index`` of that category and
    seed (:func:`implicit_fields.data.builtin.generate_object`); the motion, the uniform
    points and the correspondences have their own streams (seeds in the record).

    Returns:
        dict with ``sequence`` (:class:`MotionSequence`), ``loc`` (3,), ``scale``,
        ``times`` (F,), ``points`` (F, N, 3) float16, ``occupancies`` (F, N) bool (exact at
        the float16 points), ``pcl`` (F, M, 3) float64 corresponding surface points,
        ``labels`` (M,) int64 part labels, ``record`` (the motion.json dict).
    """
    synset = category_synset(category)
    cat_index = list(CATEGORIES).index(synset)
    index = onet_format.check_count("index", index, 0)
    times = frame_times(n_frames)
    num_points = onet_format.check_count("num_points", num_points, 1)
    num_pcl_points = onet_format.check_count("num_pcl_points", num_pcl_points, 1)
    shape_rng = builtin._object_rngs(seed, cat_index, index)[0]
    shape, loc, scale = normalize(make_shape(synset, shape_rng))
    seeds = _seeds(seed, cat_index, index)
    seq = make_motion_sequence(synset, shape, np.random.default_rng(seeds["motion"]), times)
    for _ in range(30):  # The extremes' check has a margin; the correspondences must fit too.
        p0, _, labels = seq.sample_correspondences(num_pcl_points, np.random.default_rng(seeds["pcl"]), times)
        pcl = seq.trajectories(p0, labels, times)
        if np.abs(pcl).max() <= _HALF_BOX:
            break
        seq = seq.scaled(0.8)
    else:
        raise RuntimeError(f"generate_sequence: {sequence_name(synset, index)} does not fit the cube")
    points_rng = np.random.default_rng(seeds["points"])
    points, occupancies = [], []
    for t in times:
        p = points_rng.uniform(-_HALF_BOX, _HALF_BOX, (num_points, 3)).astype(np.float16)
        points.append(p)
        occupancies.append(seq.contains(p.astype(np.float64), t))
    record = {
        "version": MOTION_VERSION,
        "category": synset,
        "category_name": CATEGORIES[synset],
        "sequence": sequence_name(synset, index),
        "loc": np.asarray(loc, dtype=np.float64).tolist(),
        "scale": float(scale),
        "n_frames": int(n_frames),
        "frame_times": times.tolist(),
        "seeds": seeds,
        "generator": _generator_params(seed, synset, index, n_frames, num_points, num_pcl_points),
        **seq.to_dict(),
    }
    return {
        "sequence": seq,
        "loc": np.asarray(loc, dtype=np.float64),
        "scale": float(scale),
        "times": times,
        "points": np.stack(points),
        "occupancies": np.stack(occupancies),
        "pcl": pcl,
        "labels": labels,
        "record": record,
    }


def write_pcl_npz(path, points, loc, scale):
    """Write one ``pcl_seq`` frame as D-FAUST's: ``points`` float16, ``loc``, ``scale``.

    Args:
        path: file path (written as given).
        points: (M, 3) float.
        loc: (3,) float, stored as float64 (D-FAUST's are float16; the reader takes both).
        scale: float > 0, stored as a float64 scalar.
    """
    pts = onet_format._check_points(path, "points", points)
    loc, scale = onet_format._check_loc_scale(path, loc, scale)
    onet_format._write_npz(
        path, points=onet_format._to_float16(path, "points", pts), loc=loc, scale=np.float64(scale)
    )


def _write_sequence(task):
    """Generate one sequence and write it atomically; returns its final folder."""
    final = os.path.join(task["category_dir"], task["name"])
    if os.path.isdir(final):
        return final
    data = generate_sequence(
        task["synset"],
        task["index"],
        task["seed"],
        task["n_frames"],
        task["num_points"],
        task["num_pcl_points"],
    )
    tmp = os.path.join(task["category_dir"], f"{_TMP_PREFIX}{task['name']}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, POINTS_SEQ_DIR))
    os.makedirs(os.path.join(tmp, PCL_SEQ_DIR))
    for i in range(len(data["times"])):
        onet_format.write_points_npz(
            os.path.join(tmp, POINTS_SEQ_DIR, f"{i:08d}.npz"),
            data["points"][i],
            data["occupancies"][i],
            data["loc"],
            data["scale"],
        )
        write_pcl_npz(
            os.path.join(tmp, PCL_SEQ_DIR, f"{i:08d}.npz"), data["pcl"][i], data["loc"], data["scale"]
        )
    with open(os.path.join(tmp, MOTION_FILE), "w", encoding="utf-8") as f:
        json.dump(data["record"], f)
    try:
        os.rename(tmp, final)
    except OSError:
        if not os.path.isdir(final):
            raise
        shutil.rmtree(tmp)  # Another run finished it first.
    return final


def _read_record(folder):
    path = os.path.join(folder, MOTION_FILE)
    try:
        with open(path, "r", encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError as e:
        raise DataFormatError(f"{path}: file not found (not a complete built-in motion sequence)") from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataFormatError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(record, dict):
        raise DataFormatError(f"{path}: a JSON {type(record).__name__}, not an object")
    return record


def load_motion(folder):
    """The exact motion of a built-in sequence folder (its ``motion.json``).

    Returns:
        (:class:`MotionSequence`, the record dict: ``loc``, ``scale``, ``frame_times``,
        ``seeds`` (``np.random.default_rng(record["seeds"]["pcl"])`` redraws the
        correspondences), ``generator``, ...).

    Raises:
        DataFormatError: a missing, unreadable or invalid motion.json (named).
    """
    record = _read_record(os.fspath(folder))
    try:
        return MotionSequence.from_dict(record), record
    except (ValueError, TypeError) as e:
        raise DataFormatError(f"{os.path.join(os.fspath(folder), MOTION_FILE)}: invalid motion ({e})") from e


def _check_sequence(folder, params):
    """A problem (str) when a complete sequence was made with other parameters, else None."""
    stored = _read_record(folder).get("generator")
    stored = stored if isinstance(stored, dict) else {}
    differ = [f"{k}: it has {stored.get(k)!r}, asked {v!r}" for k, v in params.items() if stored.get(k) != v]
    if differ:
        return f"{os.path.join(folder, MOTION_FILE)}: generated with other settings ({'; '.join(differ)})"
    return None


def _dataset_difference(have, synsets, n_seq):
    """Which setting differs between the sequences a dataset holds and those asked for."""
    asked_names = [CATEGORIES[s] for s in synsets]
    per_category = {}
    for name in have:
        category, _, index = name.rpartition("_")
        per_category.setdefault(category, set()).add(index)
    if set(per_category) - set(asked_names) or (per_category and set(asked_names) - set(per_category)):
        return f"categories: it has {sorted(per_category)}, asked {sorted(asked_names)}"
    counts = sorted({len(v) for v in per_category.values()})
    shown = counts[0] if len(counts) == 1 else counts
    return f"sequences_per_category: it has {shown}, asked {n_seq}"


def ensure_motion_dataset(
    path,
    *,
    categories,
    sequences_per_category,
    n_frames,
    num_points,
    num_pcl_points,
    seed=0,
    num_workers=None,
    progress=True,
):
    """The built-in motion dataset in the D-FAUST layout at ``path``; made or completed if needed.

    Sequences are written to temporary folders and renamed when complete (``motion.json``
    last), so an interrupted run leaves no half-written sequence and a rerun makes only the
    missing ones. The split lists (sequences of each category split in index order with the
    built-in fractions 0.7 / 0.1 / 0.2) and then ``metadata.yaml`` are written last. Existing
    sequences made with other settings, or a dataset holding other sequences than those
    asked for, are refused before anything is written (the message names the key).

    Args:
        path: dataset root.
        categories: None (or empty) for every built-in category, or names / synset ids.
        sequences_per_category: int >= 1.
        n_frames: int >= 2, frames per sequence (frame i at time i / (n_frames - 1)).
        num_points: int >= 1, uniform points per frame (points_seq).
        num_pcl_points: int >= 1, corresponding surface points per frame (pcl_seq).
        seed: int >= 0.
        num_workers: worker processes; None = usable cores; 0 or 1 = in-process (workers are
            spawned: a script needs the ``if __name__ == "__main__":`` guard).
        progress: show a tqdm progress bar over the sequences.

    Returns:
        str, ``path``.

    Raises:
        ValueError: a bad argument, or a dataset made with other settings (named).
        NotADirectoryError: ``path`` is a file.
    """
    path = os.fspath(path)
    n_seq = onet_format.check_count("sequences_per_category", sequences_per_category, 1)
    n_frames = onet_format.check_count("n_frames", n_frames, 2)
    num_points = onet_format.check_count("num_points", num_points, 1)
    num_pcl_points = onet_format.check_count("num_pcl_points", num_pcl_points, 1)
    seed = onet_format.check_count("seed", seed, 0)
    if isinstance(categories, str):
        categories = [categories]
    synsets = (
        list(CATEGORIES) if not categories else list(dict.fromkeys(category_synset(c) for c in categories))
    )
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{path}: is a file, not a dataset folder")
    cat_dir = os.path.join(path, CATEGORY)
    asked = {sequence_name(s, i): (s, i) for s in synsets for i in range(n_seq)}
    existing = []
    if os.path.isdir(cat_dir):
        existing = sorted(e for e in os.listdir(cat_dir) if os.path.isdir(os.path.join(cat_dir, e)))
        existing = [e for e in existing if not e.startswith(_TMP_PREFIX)]
    have = set(existing)
    if os.path.exists(os.path.join(path, onet_format.METADATA_FILE)):  # Complete: its lists count.
        if not os.path.isdir(cat_dir):
            raise ValueError(f"{path}: holds a dataset without a {CATEGORY}/ folder; use another path")
        for split in onet_format.SPLITS:
            split_file = os.path.join(cat_dir, f"{split}.lst")
            if os.path.isfile(split_file):
                with open(split_file, encoding="utf-8") as f:
                    have.update(line.strip() for line in f if line.strip())
        differ = have != set(asked)
    else:  # Incomplete: it may only hold sequences that are asked for.
        differ = not have <= set(asked)
    if differ:
        raise ValueError(
            f"{path}: {_dataset_difference(have, synsets, n_seq)}; use another path (or move that "
            "folder away to generate it again)"
        )
    tasks, problems = [], []
    for name, (synset, index) in asked.items():
        params = _generator_params(seed, synset, index, n_frames, num_points, num_pcl_points)
        folder = os.path.join(cat_dir, name)
        if os.path.isdir(folder):
            problem = _check_sequence(folder, params)
            if problem:
                problems.append(problem)
            continue
        tasks.append(
            {
                "category_dir": cat_dir,
                "name": name,
                "synset": synset,
                "index": index,
                "seed": seed,
                "n_frames": n_frames,
                "num_points": num_points,
                "num_pcl_points": num_pcl_points,
            }
        )
    if problems:
        more = f" (and {len(problems) - 1} more sequences)" if len(problems) > 1 else ""
        raise ValueError(
            f"{problems[0]}{more}; use another path (or move that folder away to generate it again)"
        )
    os.makedirs(cat_dir, exist_ok=True)
    for entry in os.listdir(cat_dir):  # Leftovers of an interrupted run.
        if entry.startswith(_TMP_PREFIX):
            shutil.rmtree(os.path.join(cat_dir, entry), ignore_errors=True)
    builtin._run_tasks(_write_sequence, tasks, num_workers, progress, "motion sequences")
    counts = builtin.split_counts(n_seq, (0.7, 0.1, 0.2))
    for split, start, count in zip(onet_format.SPLITS, np.cumsum([0] + counts[:-1]), counts):
        names = [sequence_name(s, i) for s in synsets for i in range(int(start), int(start) + count)]
        onet_format.write_split(cat_dir, split, names)
    onet_format.write_metadata(path, {CATEGORY: "built-in shapes in motion"})
    return path


# --------------------------------------------------------------------------------------
# Reading (ours and the original's D-FAUST folders).
# --------------------------------------------------------------------------------------


def load_pcl_npz(path):
    """Read and validate one ``pcl_seq`` frame (D-FAUST's or ours).

    Returns:
        dict with ``points`` (M, 3) as stored (float16 in both), ``loc`` (3,) float64 and
        ``scale`` float.

    Raises:
        DataFormatError: naming ``path`` and the problem.
    """
    d = onet_format._load_npz(path, ("points", "loc", "scale"))
    pts = onet_format._check_points(path, "points", d["points"])
    loc, scale = onet_format._check_loc_scale(path, d["loc"], d["scale"])
    return {"points": pts, "loc": loc, "scale": scale}


def frame_files(folder):
    """The sorted ``*.npz`` files of a ``*_seq`` folder (as the original's sorted glob)."""
    if not os.path.isdir(folder):
        raise DataFormatError(f"{folder}: folder not found")
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".npz") and not f.startswith(".")
    )


def subdivide_into_sequences(names, lengths, length_sequence=17, offset_sequence=0, n_files_per_sequence=-1):
    """The original's ``HumansDataset.subdivide_into_sequences``, exactly.

    Drops the first ``offset_sequence`` frames of each sequence, keeps at most
    ``n_files_per_sequence`` frames (if > 0), and makes every window of
    ``length_sequence`` frames at stride 1 a sample.

    Args:
        names: sequence names.
        lengths: their numbers of frames.

    Returns:
        (names of the windows, start indices of the windows): two lists.
    """
    out, starts = [], []
    for name, n in zip(names, lengths):
        n = int(n) - int(offset_sequence)
        if n_files_per_sequence > 0:
            n = min(int(n_files_per_sequence), n)
        for k in range(0, n - int(length_sequence) + 1):
            out.append(name)
            starts.append(k + int(offset_sequence))
    return out, starts


class MotionDataset:
    """The windows of the sequences of one split, in the D-FAUST layout.

    Reads the built-in motion dataset and the original's ``data/Humans`` folders (D-FAUST,
    its Demo). Sequence lengths are the numbers of ``pcl_seq/*.npz`` files (the original
    counts the folder's entries); windows as :func:`subdivide_into_sequences`.

    Args:
        path: dataset root.
        split: 'train', 'val', 'test' (reads ``<category>/<split>.lst``), or None for every
            sequence folder of each category (the original's demo config).
        length: frames per window (the original: 17).
        offset: frames dropped at the start of each sequence (the original's D-FAUST
            config: 15; use 0 for the built-in data and the demo).
        categories: category folders; None: those of ``metadata.yaml``, else every folder.
        n_files_per_sequence: at most this many frames per sequence after the offset (> 0).
        points: whether windows need ``points_seq`` (the demo has none).
        cache: keep the frames read in memory (points as float32, so about 1.3 MB per frame
            of 100k points).

    Raises:
        FileNotFoundError: no dataset folder.
        DataFormatError: a missing category folder, split file or ``pcl_seq`` folder, or a
            sequence whose ``points_seq`` has fewer frames than its ``pcl_seq`` (named).
    """

    def __init__(
        self,
        path,
        split,
        length=17,
        offset=15,
        categories=None,
        n_files_per_sequence=-1,
        points=True,
        cache=False,
    ):
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"dataset folder {path!r} does not exist")
        self.path = path
        self.split = split
        self.length = onet_format.check_count("length", length, 1)
        self.offset = onet_format.check_count("offset", offset, 0)
        self.points = bool(points)
        self.cache = cache
        self._cache = {}
        if categories:
            self.categories = list(categories)
        elif os.path.exists(os.path.join(path, onet_format.METADATA_FILE)):
            self.categories = list(onet_format.read_metadata(path))
        else:
            self.categories = sorted(
                d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")
            )
        if not self.categories:
            raise ValueError(f"dataset {path!r} has no categories")
        self.windows = []
        self.sequence_lengths = {}
        for category in self.categories:
            cat_dir = os.path.join(path, category)
            if not os.path.isdir(cat_dir):
                raise DataFormatError(f"{cat_dir}: category folder not found")
            if split is None:
                names = sorted(
                    d
                    for d in os.listdir(cat_dir)
                    if os.path.isdir(os.path.join(cat_dir, d)) and not d.startswith(".")
                )
            else:
                names = onet_format.read_split(cat_dir, split)
            lengths = []
            for name in names:
                n = len(frame_files(os.path.join(cat_dir, name, PCL_SEQ_DIR)))
                if self.points:
                    n_points = len(frame_files(os.path.join(cat_dir, name, POINTS_SEQ_DIR)))
                    if n_points < n:
                        raise DataFormatError(
                            f"{os.path.join(cat_dir, name, POINTS_SEQ_DIR)}: {n_points} frames, fewer "
                            f"than the {n} of {PCL_SEQ_DIR}"
                        )
                self._check_frame_count(os.path.join(cat_dir, name), n)
                self.sequence_lengths[(category, name)] = n
                lengths.append(n)
            seqs, starts = subdivide_into_sequences(
                names, lengths, self.length, self.offset, n_files_per_sequence
            )
            self.windows.extend((category, s, int(i)) for s, i in zip(seqs, starts))

    def _check_frame_count(self, folder, n):
        """A built-in sequence (with a motion.json) must hold all its frames."""
        if not os.path.exists(os.path.join(folder, MOTION_FILE)):
            return
        want = _read_record(folder).get("n_frames")
        kinds = (PCL_SEQ_DIR, POINTS_SEQ_DIR) if self.points else (PCL_SEQ_DIR,)
        for kind in kinds:
            have = n if kind == PCL_SEQ_DIR else len(frame_files(os.path.join(folder, kind)))
            if have != want:
                raise DataFormatError(
                    f"{os.path.join(folder, kind)}: {have} frames, but {MOTION_FILE} says n_frames={want}"
                )

    def __len__(self):
        return len(self.windows)

    def sequence_dir(self, index):
        category, name, _ = self.windows[index]
        return os.path.join(self.path, category, name)

    def _read(self, path, kind):
        if self.cache and path in self._cache:
            return self._cache[path]
        if kind == "points":
            d = onet_format.load_points_npz(path)
        else:
            d = load_pcl_npz(path)
        if self.cache:
            self._cache[path] = d
        return d

    def _frames(self, folder, start, kind):
        files = frame_files(folder)[start : start + self.length]
        if len(files) < self.length:
            raise DataFormatError(f"{folder}: {len(files)} frames from {start}, a window needs {self.length}")
        frames = [self._read(f, kind) for f in files]
        loc0, scale0 = frames[0]["loc"], frames[0]["scale"]
        out = []
        for d in frames:
            p = d["points"].astype(np.float64)
            if not (np.array_equal(d["loc"], loc0) and d["scale"] == scale0):
                p = (d["loc"] + d["scale"] * p - loc0) / scale0  # Into the window's first frame.
            out.append(p.astype(np.float32))
        if kind == "pcl":
            counts = {o.shape[0] for o in out}
            if len(counts) > 1:
                bad = next(f for f, o in zip(files, out) if o.shape[0] != out[0].shape[0])
                raise DataFormatError(
                    f"{bad}: {len(frames[files.index(bad)]['points'])} points, but {files[0]} has "
                    f"{out[0].shape[0]} (the frames of a {PCL_SEQ_DIR} correspond point by point)"
                )
        return out, frames, files

    def load(self, index):
        """One window's arrays.

        Returns:
            dict with ``pcl`` float32 (T, M, 3) (corresponding points in the coordinates of the
            window's first pcl frame), ``times`` float32 (T,) = i / (T - 1), ``frames`` int64
            (T,) (frame indices in the sequence), ``start_idx`` int, ``category`` and
            ``sequence`` str; with ``points``: ``points`` float32 (T, N, 3) (in the frame of
            the window's first points file) and ``occupancies`` bool (T, N).

        Raises:
            DataFormatError: a missing or malformed file (named).
        """
        category, name, start = self.windows[index]
        folder = os.path.join(self.path, category, name)
        pcl, _, _ = self._frames(os.path.join(folder, PCL_SEQ_DIR), start, "pcl")
        t = self.length
        out = {
            "pcl": np.stack(pcl),
            "times": (np.arange(t, dtype=np.float32) / max(t - 1, 1)).astype(np.float32),
            "frames": np.arange(start, start + t, dtype=np.int64),
            "start_idx": start,
            "category": category,
            "sequence": name,
        }
        if self.points:
            pts, frames, files = self._frames(os.path.join(folder, POINTS_SEQ_DIR), start, "points")
            sizes = {p.shape[0] for p in pts}
            if len(sizes) > 1:
                raise DataFormatError(f"{files[-1]}: the frames of a window must hold equally many points")
            out["points"] = np.stack(pts)
            out["occupancies"] = np.stack([d["occupancies"] for d in frames])
        return out


def sample_window(
    data,
    rng,
    num_points=512,
    num_pcl_points=100,
    num_inputs=0,
    input_noise=0.0,
    random=True,
    points_jitter=0.0,
):
    """Subsamples a loaded window (:meth:`MotionDataset.load`) as the original's transforms.

    * ``points`` / ``occupancies``: ``num_points`` per frame, drawn independently per frame
      with replacement (the original's ``SubsamplePointsSeq`` / ``SubsamplePoints``; its
      frames hold different uniform points anyway); with ``random=False`` the first
      ``num_points`` of every frame (its validation transform).
    * ``pcl``: ``num_pcl_points`` with the same indices in every frame (``connected_samples``),
      so row j is one material point; ``random=False``: the first ones.
    * ``inputs`` (``num_inputs > 0``): another connected draw from ``pcl`` plus
      N(0, input_noise^2) (the original: 300 points, noise 0.001).

    ``points_jitter`` adds that much N(0, 1) noise to the points (the original's validation
    loader adds 1e-4 to float16 points; its training loader none). Everything is a function
    of ``rng``'s state.

    Returns:
        dict with ``points`` float32 (T, n, 3), ``occupancies`` float32 (T, n) (when the
        window has points), ``pcl`` float32 (T, m, 3), ``times``, and ``inputs`` float32
        (T, num_inputs, 3) when asked; ``frames``, ``start_idx``, ``category``, ``sequence``
        are passed on.
    """
    out = {k: data[k] for k in ("times", "frames", "start_idx", "category", "sequence") if k in data}
    pcl = data["pcl"]
    t, m = pcl.shape[:2]
    if "points" in data:
        n = data["points"].shape[1]
        if random:
            idx = rng.integers(0, n, size=(t, int(num_points)))
        else:
            idx = np.broadcast_to(np.arange(min(int(num_points), n)), (t, min(int(num_points), n)))
        rows = np.arange(t)[:, None]
        points = data["points"][rows, idx].astype(np.float32)
        if points_jitter:
            points = points + np.float32(points_jitter) * rng.standard_normal(points.shape).astype(np.float32)
        out["points"] = points
        out["occupancies"] = data["occupancies"][rows, idx].astype(np.float32)
    jdx = rng.integers(0, m, size=int(num_pcl_points)) if random else np.arange(min(int(num_pcl_points), m))
    out["pcl"] = pcl[:, jdx].astype(np.float32)
    if num_inputs:
        kdx = rng.integers(0, m, size=int(num_inputs))
        inputs = pcl[:, kdx].astype(np.float32)
        if input_noise:
            inputs = inputs + np.float32(input_noise) * rng.standard_normal(inputs.shape).astype(np.float32)
        out["inputs"] = inputs
    return out
