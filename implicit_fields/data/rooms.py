"""Built-in synthetic rooms: ConvONet's synthetic room dataset, made of the built-in objects.

The recipe is the original's (``scripts/dataset_synthetic_room/build_dataset.py`` of
ConvONet) with exact geometry: the objects are procedural shapes
(:mod:`implicit_fields.data.shapes`, plus a cabinet generator here, the fifth class of the
original) instead of ShapeNet's watertight meshes, so occupancies are exact inside tests.
The layout is the original's (the multi-file layout of
:mod:`implicit_fields.data.onet_format`), so the same loader reads these rooms and the
original's::

    DATASET/metadata.yaml                                   {rooms_04: {id, name}, ...}
    DATASET/rooms_NN/{train,val,test}.lst                   one scene id a line
    DATASET/rooms_NN/<scene_id>/item_dict.npz               the recipe (the original's keys)
    DATASET/rooms_NN/<scene_id>/pointcloud/pointcloud_%02d.npz   points, normals, semantics
    DATASET/rooms_NN/<scene_id>/points_iou/points_iou_%02d.npz   points (float16), occupancies
                                                            (packbits), z_scale, semantics
    DATASET/rooms_NN/<scene_id>/scene.json                  ours: how the scene was made and
                                                            its exact shapes (:func:`load_room`)

One scene (``rooms_NN`` has NN objects):

* Floor: a box of thickness 0.01 whose bottom is at y = -0.5; its xz extent is 1 x s or
  s x 1 (either with p = 0.5), s ~ U[0.3, 1].
* Walls: each of the four floor edges gets a wall with p = 0.5: thickness 0.01, height
  ~ U[0.2, 0.4] (one height for the room), standing on the floor inside its edge. Wall 0
  is at -z, 1 at -x, 2 at +z, 3 at +x (the original's order).
* Objects: class uniform among :data:`ROOM_CLASSES`, a fresh object of it (its seed is in
  the recipe), scaled so that its longest bounding-box edge is a scale ~ U(the room
  class's range in :data:`SCALE_RANGES`), set on the floor (y = -0.49), rotated about y by an angle
  ~ U[0, 360) degrees. Its xz position is uniform inside the floor less the walls, with
  axis-aligned xz footprints (:func:`footprint`) that must not overlap (touching is
  allowed, as the original's strict test); up to 1000 tries per object, else the whole room is drawn
  again (the original skips the room).
* Point clouds (``pointcloud_%02d.npz``, ``num_files`` files): points allocated to the
  objects, walls and floor by surface area, walls and floor weighted x0.2 (the original's
  ``lambda_wall_ground``; ``int(share * n)`` each, as the original), kept on the floor's
  upper face and on the walls' inner faces only, and not inside another wall; normals
  exact (outward). Every object's surface is sampled on its own (as the original samples
  each mesh), so an object's base and the floor under it both have points. Semantics: the
  class index in :data:`CLASS_IDS` (sorted synsets, as the original), -1 for walls and
  floor. A file holds slightly fewer than ``num_surface_points`` points (the truncated
  shares and the faces that are dropped), as the original's.
* Occupancies (``points_iou_%02d.npz``): ``num_points`` points uniform in the cube of side
  1.1, labelled with the OR of the exact inside tests of the objects, walls and floor at
  the stored float16 coordinates (so rounding never flips a label); semantics: the class
  index of the last solid (objects, walls, floor) containing the point, -1 for walls and
  floor, the number of solids for free points (the original's); ``z_scale`` 0 (the
  original's rooms are not rescaled).

Deviations from the original's code, on purpose: its fourth wall (+x) is never built
(``if walls[0] == 3``, a typo) although it is drawn, counted and masked; here every drawn
wall is built. Its placement shortens the free x range by wall 0 and the z range by wall 1
(axes swapped); here each axis is shortened by its own walls. Its split lists are written
off by one (folder ``00000000`` unlisted, the last listed name missing); ours list the
folders written. Objects that cannot fit the floor at all make the room redrawn at once.

Every scene's random streams derive from ``(seed, NN, scene index)``, so a dataset is a
function of its seed whatever the number of workers. Scenes are written to a temporary
folder and renamed when complete; re-running skips finished scenes and refuses ones made
with other settings (``scene.json`` records them); the split lists and then
``metadata.yaml`` are written last, so a folder with ``metadata.yaml`` is complete.
"""

import json
import logging
import math
import multiprocessing
import os
import shutil

import numpy as np
from tqdm import tqdm

from implicit_fields.data import builtin, onet_format
from implicit_fields.data.shapes import Box, Primitive, Shape, make_shape, rotation_matrix

logger = logging.getLogger(__name__)

__all__ = [
    "GENERATOR_VERSION",
    "ROOM_CLASSES",
    "CLASS_IDS",
    "SCALE_RANGES",
    "OBJECT_COUNTS",
    "SPLIT_FRACTIONS",
    "SCENE_FILE",
    "class_name",
    "scene_id",
    "make_object",
    "place_object",
    "footprint",
    "draw_layout",
    "AxisBox",
    "floor_box",
    "wall_boxes",
    "draw_recipe",
    "room_solids",
    "room_occupancy",
    "room_labels",
    "sample_pointcloud",
    "sample_iou_points",
    "load_room",
    "generate_rooms",
    "rooms_settings",
    "ensure_rooms",
]

GENERATOR_VERSION = 1
"""Bumped whenever the scenes change; stored in every scene.json."""

ROOM_CLASSES = {
    "02933112": "cabinet",
    "03001627": "chair",
    "03636649": "lamp",
    "04256520": "sofa",
    "04379243": "table",
}
"""The original's five ShapeNet classes (synset -> name)."""

CLASS_IDS = tuple(sorted(ROOM_CLASSES))
"""The classes in the original's order (sorted synsets): a point's semantics is an index here."""

SCALE_RANGES = {
    8: (0.10, 0.25),
    7: (0.15, 0.25),
    6: (0.20, 0.30),
    5: (0.25, 0.40),
    4: (0.25, 0.45),
}
"""Objects per room -> range of an object's longest bounding-box edge (the original's table)."""

OBJECT_COUNTS = (4, 5, 6, 7, 8)
"""The original's room classes, ``rooms_04`` .. ``rooms_08``."""

SPLIT_FRACTIONS = (0.75, 0.05, 0.2)
"""Rooms per split (the original: 750 / 50 / 200 of 1000 per class)."""

FLOOR_Y = -0.5
FLOOR_THICKNESS = 0.01
FLOOR_SIDE_RANGE = (0.3, 1.0)
WALL_PROBABILITY = 0.5
WALL_THICKNESS = 0.01
WALL_HEIGHT_RANGE = (0.2, 0.4)
Y_ANGLE_RANGE = (0.0, 360.0)
WALL_GROUND_WEIGHT = 0.2
"""The original's ``lambda_wall_ground``: weight of wall and floor areas in the point allocation."""
MAX_PLACEMENT_TRIES = 1000
MAX_ROOM_DRAWS = 1000
"""Ours: rooms drawn at most for one scene before giving up (the original loops forever)."""

SCENE_FILE = "scene.json"
_TMP_PREFIX = onet_format.TMP_PREFIX
_BOX_SIZE = 1.1  # Side of the cube of uniform points (the original's padding 0.1).
_AREA_SAMPLES = 20_000  # Monte Carlo candidates per object for its surface area.
_EPS = 1e-6  # Offset of the inside tests deciding whether a candidate is on a CSG surface.
_PLANE_TOL = 1e-9  # Tolerance of the wall planes (their coordinates are sums of floats).
# Outward normal of each wall's inner face, walls 0 (-z), 1 (-x), 2 (+z), 3 (+x).
_INNER_NORMALS = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])


def class_name(n_objects):
    """Class folder of the rooms with ``n_objects`` objects (``"rooms_04"``)."""
    return f"rooms_{int(n_objects):02d}"


def scene_id(index):
    """Folder name of a scene (``"00000042"``, the original's)."""
    return f"{int(index):08d}"


# --------------------------------------------------------------------------------------
# Objects.
# --------------------------------------------------------------------------------------


def _cabinet(rng):
    """A cabinet in ShapeNet's canonical pose (+y up, front at -z): body, base, top, handles."""
    u = rng.uniform
    w, h, d = u(0.5, 1.4), u(0.45, 1.9), u(0.35, 0.6)
    prims = []
    base = rng.choice(["plinth", "legs", "none"], p=[0.4, 0.3, 0.3])
    y0 = 0.0
    if base == "plinth":
        y0, inset = u(0.04, 0.1), u(0.01, 0.04)
        prims.append(Box((w / 2 - inset, y0 / 2, d / 2 - inset), translation=(0.0, y0 / 2, 0.0)))
    elif base == "legs":
        y0, lw = u(0.05, 0.15), u(0.02, 0.035)
        for sx in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                x, z = sx * (w / 2 - 1.5 * lw), sz * (d / 2 - 1.5 * lw)
                prims.append(Box((lw, y0 / 2 + 0.005, lw), translation=(x, y0 / 2 + 0.005, z)))
    prims.append(Box((w / 2, (h - y0) / 2, d / 2), translation=(0.0, (h + y0) / 2, 0.0)))
    if rng.random() < 0.5:  # A top slab overhanging the body.
        tt, over = u(0.015, 0.03), u(0.005, 0.03)
        prims.append(Box((w / 2 + over, tt / 2, d / 2 + over), translation=(0.0, h + tt / 2 - 0.002, 0.0)))
    cols = 2 if w > 0.8 else 1
    rows = int(rng.integers(1, 4))
    hw, hh, hd = u(0.03, 0.06), u(0.006, 0.012), u(0.008, 0.015)
    for r in range(rows):
        y = y0 + (h - y0) * (r + 0.5) / rows + (h - y0) / rows * 0.3
        for c in range(cols):
            x = 0.0 if cols == 1 else (c - 0.5) * w / 2
            prims.append(Box((hw, hh, hd), translation=(x, min(y, h - 2 * hh), -d / 2 - 0.8 * hd)))
    return Shape(prims)


def make_object(category, rng):
    """A random object of a room class in ShapeNet's canonical pose (not normalised).

    Args:
        category: a synset of :data:`ROOM_CLASSES` (or its name).
        rng: numpy Generator; the object is a deterministic function of its state.

    Returns:
        :class:`~implicit_fields.data.shapes.Shape`.
    """
    by_name = {name: synset for synset, name in ROOM_CLASSES.items()}
    synset = by_name.get(category, category)
    if synset not in ROOM_CLASSES:
        raise ValueError(f"unknown room class {category!r}; known: {ROOM_CLASSES}")
    if synset == "02933112":
        return _cabinet(rng)
    return make_shape(synset, rng)


def _moved(prim, scale, center, rotation, offset):
    """``prim`` mapped by ``x -> rotation @ (scale * (x - center)) + offset``."""
    d = prim.transformed(center, 1.0 / scale).to_dict()
    d["rotation"] = (rotation @ np.asarray(d["rotation"])).tolist()
    d["translation"] = (rotation @ np.asarray(d["translation"]) + offset).tolist()
    return Primitive.from_dict(d)


def _map_shape(shape, scale, center, rotation, offset):
    def move(p):
        return _moved(p, scale, center, rotation, offset)

    return Shape([move(p) for p in shape.positives], [move(p) for p in shape.negatives])


def place_object(shape, scale, y_angle, floor_top=FLOOR_Y + FLOOR_THICKNESS):
    """An object scaled, set on the floor and turned about y (xz: its bbox centre at the origin).

    The map is ``x -> R_y(y_angle) @ (s * (x - c)) + (0, floor_top, 0)`` with ``s`` the
    scale over the longest edge of the object's bounding box (``Shape.bounds``) and ``c``
    the bottom centre of that box, so the longest edge becomes ``scale`` and the lowest
    point sits on the floor.

    Args:
        shape: the object in its canonical pose.
        scale: float > 0, the longest bounding-box edge wanted.
        y_angle: float, degrees about +y (right-hand rule, as scipy's ``from_euler('y')``).
        floor_top: float, y of the floor's upper face.

    Returns:
        (placed :class:`Shape`, s, c (3,), rotation (3, 3)).
    """
    lo, hi = shape.bounds()
    s = float(scale) / float(np.max(hi - lo))
    center = np.array([(lo[0] + hi[0]) / 2.0, lo[1], (lo[2] + hi[2]) / 2.0])
    rotation = rotation_matrix((0.0, 1.0, 0.0), math.radians(float(y_angle)))
    offset = np.array([0.0, float(floor_top), 0.0])
    return _map_shape(shape, s, center, rotation, offset), s, center, rotation


def footprint(shape):
    """Axis-aligned xz footprint of a shape: the union of its positives' exact boxes.

    Contains the shape's footprint (exactly it unless a cut removes an extreme), so
    footprints that do not overlap belong to objects that do not either.

    Returns:
        (lo (2,), hi (2,)) float64, (x, z).
    """
    boxes = [p.aabb() for p in shape.positives]
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    return lo[[0, 2]], hi[[0, 2]]


# --------------------------------------------------------------------------------------
# Floor, walls and the recipe.
# --------------------------------------------------------------------------------------


def draw_layout(rng):
    """The floor and walls of one room (cheap: no objects).

    Returns:
        dict ``xz_groundplane_range`` (2,) float64 (x, z extents: [1, s] or [s, 1]),
        ``walls`` (4,) int64 0/1 (walls 0 -z, 1 -x, 2 +z, 3 +x), ``wall_height`` float.
    """
    long_x = rng.random() > 0.5  # The original's axis0: x keeps length 1.
    s = float(rng.uniform(*FLOOR_SIDE_RANGE))
    xz = np.array([1.0, s]) if long_x else np.array([s, 1.0])
    walls = (rng.random(4) < WALL_PROBABILITY).astype(np.int64)
    height = float(rng.uniform(*WALL_HEIGHT_RANGE))
    return {"xz_groundplane_range": xz, "walls": walls, "wall_height": height}


class AxisBox:
    """An axis-aligned box given by its corners, closed: the floor and the walls.

    Its inside test compares with the corners themselves, so a point on a face is inside
    exactly (the floor's underside y = -0.5 and a wall's outer face x = 0.5 are float16
    values that uniform points hit); sampling and area are those of the equal
    :class:`~implicit_fields.data.shapes.Box`.

    Args:
        lo, hi: (3,) float corners, lo < hi.
    """

    kind = "axis_box"

    def __init__(self, lo, hi):
        self.lo = np.array(lo, dtype=np.float64).reshape(3)
        self.hi = np.array(hi, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(self.lo)) and np.all(np.isfinite(self.hi)) and np.all(self.lo < self.hi)):
            corners = f"{self.lo.tolist()}, {self.hi.tolist()}"
            raise ValueError(f"axis box: need finite corners lo < hi, got {corners}")
        self.box = Box((self.hi - self.lo) / 2, translation=(self.lo + self.hi) / 2)

    def contains(self, points):
        """(N, 3) points -> (N,) bool, True inside or on the boundary."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return np.all((p >= self.lo) & (p <= self.hi), axis=1)

    def area(self):
        return self.box.area()

    def sample_surface(self, n, rng):
        """Area-uniform samples on the faces and their outward normals (exact axis vectors)."""
        return self.box.sample_surface(n, rng)

    def to_dict(self):
        return {"type": self.kind, "lo": self.lo.tolist(), "hi": self.hi.tolist()}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict) or d.get("type") != cls.kind:
            raise ValueError(f"not an axis box: {d!r}")
        return cls(d["lo"], d["hi"])


def floor_box(xz_range):
    """The floor: a box of thickness 0.01 with its bottom at y = -0.5, centred in xz."""
    x, z = (float(v) for v in xz_range)
    return AxisBox((-x / 2, FLOOR_Y, -z / 2), (x / 2, FLOOR_Y + FLOOR_THICKNESS, z / 2))


def wall_boxes(xz_range, walls, wall_height):
    """The present walls, standing on the floor inside its edges.

    Returns:
        list of (wall index 0..3, :class:`AxisBox`), in index order.
    """
    x, z = (float(v) for v in xz_range)
    t = WALL_THICKNESS
    y0 = FLOOR_Y + FLOOR_THICKNESS
    y1 = y0 + float(wall_height)
    spec = {
        0: ((-x / 2, y0, -z / 2), (x / 2, y1, -z / 2 + t)),
        1: ((-x / 2, y0, -z / 2), (-x / 2 + t, y1, z / 2)),
        2: ((-x / 2, y0, z / 2 - t), (x / 2, y1, z / 2)),
        3: ((x / 2 - t, y0, -z / 2), (x / 2, y1, z / 2)),
    }
    return [(k, AxisBox(*spec[k])) for k in range(4) if walls[k]]


def _free_range(xz_range, walls):
    """xz range left for the objects' footprints: the floor less the walls' thickness."""
    xz = np.asarray(xz_range, dtype=np.float64)
    t = WALL_THICKNESS
    lo = -xz / 2 + np.array([walls[1], walls[0]]) * t
    hi = xz / 2 - np.array([walls[3], walls[2]]) * t
    return lo, hi


def _overlap(a, b):
    """The original's test: xz boxes (2, 2) overlap when their centres are closer than half widths."""
    return bool(np.all(np.abs(a.sum(0) - b.sum(0)) / 2 < ((a[1] - a[0]) + (b[1] - b[0])) / 2))


def _place(sizes, lo, hi, rng, max_tries):
    """Footprint boxes (n, 2, 2) placed uniformly without overlap, or None."""
    boxes = []
    for size in sizes:
        room = hi - lo - size
        if np.any(room < 0.0):
            return None
        for _ in range(max_tries):
            corner = lo + rng.random(2) * room
            box = np.stack([corner, corner + size])
            if not any(_overlap(box, other) for other in boxes):
                boxes.append(box)
                break
        else:
            return None
    return np.stack(boxes)


def draw_recipe(n_objects, rng, scale_range=None, max_tries=MAX_PLACEMENT_TRIES, max_rooms=MAX_ROOM_DRAWS):
    """One room of ``n_objects`` objects: layout, objects and their placement.

    Args:
        n_objects: int >= 1.
        rng: numpy Generator.
        scale_range: (lo, hi) of the objects' longest edges; None: :data:`SCALE_RANGES`.
        max_tries: placement tries per object before the room is drawn again.
        max_rooms: rooms drawn at most.

    Returns:
        dict with the original's recipe keys ``n_objects``, ``classes`` (synsets),
        ``scales``, ``y_angles`` (degrees), ``xz_groundplane_range``, ``walls``,
        ``wall_height``, ``bboxes`` (n, 2, 2) (xz footprint boxes, min and max corner)
        and ours: ``object_seeds`` (each object is ``make_object(class,
        default_rng(seed))``), ``object_frames`` (per object ``s``, ``center`` and
        ``origin``: the object is ``x -> R_y(angle) @ (s * (x - center)) + origin``),
        ``objects`` (placed Shapes), ``floor`` (AxisBox), ``wall_boxes`` ([(index, AxisBox)]),
        ``room_draws`` (rooms drawn).

    Raises:
        ValueError: bad ``n_objects`` or ``scale_range``.
        RuntimeError: no placement within ``max_rooms`` rooms.
    """
    n = int(n_objects)
    if n < 1:
        raise ValueError(f"n_objects must be >= 1, got {n_objects}")
    if scale_range is None:
        if n not in SCALE_RANGES:
            raise ValueError(
                f"no scale range for {n} objects (known: {sorted(SCALE_RANGES)}); pass scale_range"
            )
        scale_range = SCALE_RANGES[n]
    s_lo, s_hi = (float(v) for v in scale_range)
    if not 0.0 < s_lo <= s_hi:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
    for draw in range(1, int(max_rooms) + 1):
        classes = [CLASS_IDS[i] for i in rng.integers(0, len(CLASS_IDS), size=n)]
        seeds = [int(v) for v in rng.integers(0, 2**62, size=n)]
        scales = rng.uniform(s_lo, s_hi, size=n)
        angles = rng.uniform(*Y_ANGLE_RANGE, size=n)
        layout = draw_layout(rng)
        placed = [
            place_object(make_object(c, np.random.default_rng(seed)), sc, a)
            for c, seed, sc, a in zip(classes, seeds, scales, angles)
        ]
        prints = [footprint(p[0]) for p in placed]
        lo, hi = _free_range(layout["xz_groundplane_range"], layout["walls"])
        boxes = _place([h - lo_ for lo_, h in prints], lo, hi, rng, max_tries)
        if boxes is None:
            continue
        objects, frames = [], []
        for (shape, s, center, _), (p_lo, _), box in zip(placed, prints, boxes):
            delta = box[0] - p_lo
            shift = np.array([delta[0], 0.0, delta[1]])
            objects.append(_map_shape(shape, 1.0, np.zeros(3), np.eye(3), shift))
            origin = np.array([0.0, FLOOR_Y + FLOOR_THICKNESS, 0.0]) + shift
            frames.append({"s": s, "center": center.tolist(), "origin": origin.tolist()})
        return {
            "n_objects": n,
            "classes": classes,
            "scales": scales,
            "y_angles": angles,
            **layout,
            "bboxes": boxes,
            "object_seeds": seeds,
            "object_frames": frames,
            "objects": objects,
            "floor": floor_box(layout["xz_groundplane_range"]),
            "wall_boxes": wall_boxes(layout["xz_groundplane_range"], layout["walls"], layout["wall_height"]),
            "room_draws": draw,
        }
    raise RuntimeError(f"no placement of {n} objects with scales in {scale_range} in {max_rooms} rooms")


def room_solids(room):
    """The solids of a room in the original's mesh order: objects, walls, floor.

    Returns:
        list of (solid with ``contains``, semantic label): the class index for objects,
        -1 for walls and floor.
    """
    out = [(shape, CLASS_IDS.index(c)) for shape, c in zip(room["objects"], room["classes"])]
    out += [(box, -1) for _, box in room["wall_boxes"]]
    out.append((room["floor"], -1))
    return out


def room_labels(room, points):
    """Occupancy and semantics of points in a room (the original's ``sample_iou_points``).

    Args:
        room: a recipe (:func:`draw_recipe`) or :func:`load_room`'s dict.
        points: (N, 3) float.

    Returns:
        (occupancy (N,) bool: the OR of the solids' exact inside tests; semantics (N,) int64:
        the label of the last solid containing the point, the number of solids if none).
    """
    points = np.asarray(points, dtype=np.float64)
    solids = room_solids(room)
    occ = np.zeros(points.shape[0], dtype=bool)
    sem = np.full(points.shape[0], len(solids), dtype=np.int64)
    for solid, label in solids:
        inside = solid.contains(points)
        occ |= inside
        sem[inside] = label
    return occ, sem


def room_occupancy(room, points):
    """Exact occupancy of points in a room: (N, 3) -> (N,) bool (see :func:`room_labels`)."""
    return room_labels(room, points)[0]


# --------------------------------------------------------------------------------------
# Sampling.
# --------------------------------------------------------------------------------------


def _surface_area(shape, rng, n=_AREA_SAMPLES):
    """Monte Carlo area of a CSG surface: primitive area times the share of its boundary on it.

    A candidate counts as ``Shape.sample_surface`` keeps one: the occupancy differs on its
    two sides and no earlier primitive's boundary passes through it.
    """
    prims = shape.primitives
    areas = np.array([p.area() for p in prims])
    counts = rng.multinomial(n, areas / areas.sum())
    kept = 0
    for k, count in enumerate(counts):
        if not count:
            continue
        pts, nrm = prims[k].sample_surface(count, rng)
        minus, plus = pts - _EPS * nrm, pts + _EPS * nrm
        owner = np.full(count, -1)
        for j, prim in enumerate(prims[: k + 1]):
            owner[(owner < 0) & (prim.contains(minus) != prim.contains(plus))] = j
        kept += int(np.sum((shape.contains(minus) != shape.contains(plus)) & (owner == k)))
    return float(areas.sum() * kept / n)


def sample_pointcloud(room, num_points, rng, object_areas):
    """One ``pointcloud_XX.npz`` of a room (the original's ``sample_pointcloud``).

    Args:
        room: a recipe or :func:`load_room`'s dict.
        num_points: int, points before the faces are dropped.
        rng: numpy Generator.
        object_areas: the objects' surface areas (the allocation's weights).

    Returns:
        dict ``points``, ``normals`` (M, 3) float64, ``semantics`` (M,) int64, M <= num_points.
    """
    solids = room_solids(room)
    n_obj = len(room["objects"])
    weights = np.array([float(a) for a in object_areas] + [s.area() for s, _ in solids[n_obj:]])
    weights[n_obj:] *= WALL_GROUND_WEIGHT
    counts = (weights / weights.sum() * int(num_points)).astype(np.int64)
    wall_index = [k for k, _ in room["wall_boxes"]] + [None]  # None: the floor.
    points, normals, semantics = [], [], []
    for i, ((solid, label), count) in enumerate(zip(solids, counts)):
        pts, nrm = solid.sample_surface(int(count), rng)
        if i >= n_obj:  # Floor: upper face only; a wall: its inner face only.
            k = wall_index[i - n_obj]
            keep = nrm[:, 1] == 1.0 if k is None else np.all(nrm == _INNER_NORMALS[k], axis=1)
            pts, nrm = pts[keep], nrm[keep]
        points.append(pts)
        normals.append(nrm)
        semantics.append(np.full(pts.shape[0], label, dtype=np.int64))
    points, normals, semantics = (np.concatenate(a) for a in (points, normals, semantics))
    # Nothing inside a wall: the floor under it, the ends of the walls crossing it.
    keep = np.ones(points.shape[0], dtype=bool)
    for k, box in room["wall_boxes"]:
        axis = 2 if k in (0, 2) else 0
        if k < 2:  # At the low end of its axis: the inner face is the box's high side.
            keep &= points[:, axis] >= box.hi[axis] - _PLANE_TOL
        else:
            keep &= points[:, axis] <= box.lo[axis] + _PLANE_TOL
    return {"points": points[keep], "normals": normals[keep], "semantics": semantics[keep]}


def sample_iou_points(room, num_points, rng):
    """One ``points_iou_XX.npz`` of a room: uniform points in the cube of side 1.1, exact labels.

    Returns:
        dict ``points`` (N, 3) float16, ``occupancies`` (N,) bool and ``semantics`` (N,)
        int64, labelled at the float16 coordinates.
    """
    half = _BOX_SIZE / 2.0
    points = rng.uniform(-half, half, (int(num_points), 3)).astype(np.float16)
    occ, sem = room_labels(room, points.astype(np.float64))
    return {"points": points, "occupancies": occ, "semantics": sem}


# --------------------------------------------------------------------------------------
# Scenes on disk.
# --------------------------------------------------------------------------------------


def _scene_rngs(seed, n_objects, index):
    ss = np.random.SeedSequence([int(seed), int(n_objects), int(index)])
    return [np.random.default_rng(s) for s in ss.spawn(4)]


def _item_dict(room, index, split):
    """The original's ``item_dict.npz`` keys (plain arrays: strings as unicode arrays)."""
    return {
        "room_idx": np.int64(index),
        "split": np.str_(split),
        "n_objects": np.int64(room["n_objects"]),
        "objects": np.array([f"{c}/seed_{s}" for c, s in zip(room["classes"], room["object_seeds"])]),
        "classes": np.array(room["classes"]),
        "scales": np.asarray(room["scales"], np.float64),
        "xz_groundplane_range": np.asarray(room["xz_groundplane_range"], np.float64),
        "y_angle_range": np.array(Y_ANGLE_RANGE),
        "y_angles": np.asarray(room["y_angles"], np.float64),
        "wall_probabilities": np.full(4, WALL_PROBABILITY),
        "walls": np.asarray(room["walls"], np.int64),
        "wall_thickness": np.float64(WALL_THICKNESS),
        "wall_height_range": np.array(WALL_HEIGHT_RANGE),
        "wall_height": np.array([room["wall_height"]]),
        "bboxes": np.asarray(room["bboxes"], np.float64),
    }


def _scene_record(room, params, areas):
    """scene.json: how the scene was made, its recipe and its exact solids."""
    return {
        "generator": params,
        "n_objects": room["n_objects"],
        "classes": list(room["classes"]),
        "object_seeds": list(room["object_seeds"]),
        "scales": np.asarray(room["scales"]).tolist(),
        "y_angles": np.asarray(room["y_angles"]).tolist(),
        "xz_groundplane_range": np.asarray(room["xz_groundplane_range"]).tolist(),
        "walls": np.asarray(room["walls"]).tolist(),
        "wall_height": float(room["wall_height"]),
        "bboxes": np.asarray(room["bboxes"]).tolist(),
        "object_frames": room["object_frames"],
        "object_areas": [float(a) for a in areas],
        "room_draws": room["room_draws"],
        "objects": [shape.to_dict() for shape in room["objects"]],
        "floor": room["floor"].to_dict(),
        "wall_boxes": [[k, box.to_dict()] for k, box in room["wall_boxes"]],
    }


def load_room(folder):
    """A written scene's recipe and exact solids, from its ``scene.json``.

    Returns:
        dict with the keys of :func:`draw_recipe` (``objects`` Shapes, ``floor`` AxisBox,
        ``wall_boxes``), plus ``object_areas`` and ``generator``.

    Raises:
        DataFormatError: a missing or invalid ``scene.json`` (the message names it).
    """
    path = os.path.join(os.fspath(folder), SCENE_FILE)
    try:
        with open(path, "r", encoding="utf-8") as f:
            rec = json.load(f)
        room = dict(rec)
        room["objects"] = [Shape.from_dict(d) for d in rec["objects"]]
        room["floor"] = AxisBox.from_dict(rec["floor"])
        room["wall_boxes"] = [(int(k), AxisBox.from_dict(d)) for k, d in rec["wall_boxes"]]
        room["bboxes"] = np.asarray(rec["bboxes"], np.float64)
        return room
    except FileNotFoundError as e:
        raise onet_format.DataFormatError(f"{path}: file not found (not a built-in room?)") from e
    except (ValueError, TypeError, KeyError) as e:
        raise onet_format.DataFormatError(f"{path}: not a valid built-in room ({e!r})") from e


def _params(seed, n_objects, index, split, num_files, num_points, num_surface_points):
    return {
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_objects": int(n_objects),
        "room_index": int(index),
        "split": split,
        "num_files": int(num_files),
        "num_points": int(num_points),
        "num_surface_points": int(num_surface_points),
    }


def _write_scene(task):
    """Generate one scene and write it atomically; returns its final folder."""
    p = task["params"]
    final = os.path.join(task["class_dir"], scene_id(p["room_index"]))
    if os.path.isdir(final):
        return final
    recipe_rng, area_rng, pcl_rng, iou_rng = _scene_rngs(p["seed"], p["n_objects"], p["room_index"])
    room = draw_recipe(p["n_objects"], recipe_rng)
    areas = [_surface_area(shape, area_rng) for shape in room["objects"]]
    tmp = os.path.join(task["class_dir"], f"{_TMP_PREFIX}{scene_id(p['room_index'])}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, onet_format.MULTI_POINTCLOUD_DIR))
    os.makedirs(os.path.join(tmp, onet_format.POINTS_IOU_DIR))
    with open(os.path.join(tmp, onet_format.ITEM_DICT_FILE), "wb") as f:
        np.savez(f, **_item_dict(room, p["room_index"], p["split"]))
    for i in range(p["num_files"]):
        pcl = sample_pointcloud(room, p["num_surface_points"], pcl_rng, areas)
        onet_format.write_multi_pointcloud_npz(
            onet_format.multi_file(tmp, onet_format.MULTI_POINTCLOUD_DIR, i), **pcl
        )
        iou = sample_iou_points(room, p["num_points"], iou_rng)
        onet_format.write_points_iou_npz(onet_format.multi_file(tmp, onet_format.POINTS_IOU_DIR, i), **iou)
    # Written last inside the folder: a scene.json means the scene is complete.
    with open(os.path.join(tmp, SCENE_FILE), "w", encoding="utf-8") as f:
        json.dump(_scene_record(room, p, areas), f)
    try:
        os.rename(tmp, final)
    except OSError:
        if not os.path.isdir(final):
            raise
        shutil.rmtree(tmp)  # Another run finished it first.
    return final


def _check_existing(folder, params):
    path = os.path.join(folder, SCENE_FILE)
    try:
        with open(path, "r", encoding="utf-8") as f:
            stored = json.load(f).get("generator")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read an existing scene ({e}); remove {folder}") from e
    if stored != params:
        stored = stored if isinstance(stored, dict) else {}
        differ = ", ".join(
            f"{k}: {stored.get(k)!r} there, {v!r} asked" for k, v in params.items() if stored.get(k) != v
        )
        raise ValueError(f"{folder} was generated with other settings ({differ}); use another out_dir")


def generate_rooms(
    out_dir,
    object_counts=OBJECT_COUNTS,
    rooms_per_class=1000,
    seed=0,
    num_files=10,
    num_points=100_000,
    num_surface_points=100_000,
    split_fractions=SPLIT_FRACTIONS,
    num_workers=None,
    progress=True,
):
    """Generate (or complete) the built-in synthetic rooms in the original's layout.

    Rooms of a class are split in index order (train, then val, then test).

    Args:
        out_dir: dataset root (created if needed).
        object_counts: objects per room of each class (each needs a :data:`SCALE_RANGES`
            entry); class folders ``rooms_NN``.
        rooms_per_class: int >= 1 (the original: 1000).
        seed: int >= 0.
        num_files: int >= 1, files of each kind per scene (the original: 10).
        num_points: int >= 1, uniform points per ``points_iou`` file (the original: 100k).
        num_surface_points: int >= 1, points allotted per ``pointcloud`` file (the
            original: 100k; a file keeps slightly fewer).
        split_fractions: (train, val, test) non-negative fractions summing to 1.
        num_workers: worker processes; None = usable cores; 0 or 1 = in-process (spawned
            workers need the usual ``if __name__ == "__main__":`` guard in scripts).
        progress: show a tqdm progress bar.

    Returns:
        str, ``out_dir``.

    Raises:
        ValueError: bad arguments, or ``out_dir`` holds scenes made with other settings.
    """
    out_dir = os.fspath(out_dir)
    counts = [int(n) for n in object_counts]
    unknown = [n for n in counts if n not in SCALE_RANGES]
    if not counts or unknown:
        raise ValueError(f"object_counts must be some of {sorted(SCALE_RANGES)}, got {list(object_counts)}")
    for name, value in (
        ("rooms_per_class", rooms_per_class),
        ("num_files", num_files),
        ("num_points", num_points),
        ("num_surface_points", num_surface_points),
    ):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    fractions = np.asarray(split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"split_fractions must be 3 non-negative numbers summing to 1, got {split_fractions}"
        )
    n_rooms = int(rooms_per_class)
    split_sizes = builtin.split_counts(n_rooms, fractions)
    split_of = [s for s, k in zip(onet_format.SPLITS, split_sizes) for _ in range(k)]

    os.makedirs(out_dir, exist_ok=True)
    names = {}
    if os.path.exists(os.path.join(out_dir, onet_format.METADATA_FILE)):
        names = {k: v["name"] for k, v in onet_format.read_metadata(out_dir).items()}
    names.update({class_name(n): class_name(n) for n in counts})

    tasks, done = [], 0
    for n in counts:
        class_dir = os.path.join(out_dir, class_name(n))
        os.makedirs(class_dir, exist_ok=True)
        for entry in os.listdir(class_dir):  # Leftovers of an interrupted run.
            if entry.startswith(_TMP_PREFIX):
                shutil.rmtree(os.path.join(class_dir, entry), ignore_errors=True)
        for i in range(n_rooms):
            params = _params(seed, n, i, split_of[i], num_files, num_points, num_surface_points)
            final = os.path.join(class_dir, scene_id(i))
            if os.path.isdir(final):
                _check_existing(final, params)
                done += 1
                continue
            tasks.append({"class_dir": class_dir, "params": params})

    workers = builtin.usable_cores() if num_workers is None else int(num_workers)
    workers = max(1, min(workers, len(tasks)))
    total = len(tasks) + done
    with tqdm(total=total, initial=done, disable=not progress, desc="built-in rooms", unit="room") as bar:
        if workers == 1:
            for task in tasks:
                _write_scene(task)
                bar.update(1)
        elif tasks:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_scene, tasks, chunksize=1):
                    bar.update(1)

    for n in counts:
        class_dir = os.path.join(out_dir, class_name(n))
        for split in onet_format.SPLITS:
            listed = [scene_id(i) for i in range(n_rooms) if split_of[i] == split]
            onet_format.write_split(class_dir, split, listed)
    # Written last: a dataset with a metadata.yaml is complete.
    onet_format.write_metadata(out_dir, names)
    return out_dir


# --------------------------------------------------------------------------------------
# From a config.
# --------------------------------------------------------------------------------------

_CONFIG_DEFAULTS = {
    "rooms_object_counts": OBJECT_COUNTS,
    "rooms_per_class": 1000,
    "rooms_num_files": 10,
    "rooms_num_points": 100_000,
    "rooms_num_surface_points": 100_000,
}


def rooms_settings(data_config):
    """The built-in rooms' settings of a `config.data` (its `rooms_*` keys, the original's defaults).

    Returns:
        dict key -> value for the keys of `_CONFIG_DEFAULTS`.
    """
    out = {k: data_config.get(k, v) for k, v in _CONFIG_DEFAULTS.items()}
    out["rooms_object_counts"] = tuple(int(n) for n in out["rooms_object_counts"])
    return out


def _check_generated_with(data_config, settings):
    """Refuses built-in rooms at `config.data.path` generated with other settings than asked."""
    path = data_config.path
    asked = [class_name(n) for n in settings["rooms_object_counts"]]
    present = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    differ = []
    missing = [c for c in asked if c not in present]
    if missing:
        differ.append(f"config.data.rooms_object_counts: {missing} missing (it has {present})")
    first = next((c for c in asked if c in present), None)
    if first is not None:
        folder = os.path.join(path, first)
        listed = []
        for split in onet_format.SPLITS:
            split_file = os.path.join(folder, f"{split}.lst")
            if os.path.exists(split_file):
                with open(split_file, encoding="utf-8") as f:
                    listed += [line.strip() for line in f if line.strip()]
        if len(set(listed)) != settings["rooms_per_class"]:
            differ.append(
                f"config.data.rooms_per_class: it has {len(set(listed))}, asked {settings['rooms_per_class']}"
            )
        if listed:
            scene = os.path.join(folder, sorted(listed)[0], SCENE_FILE)
            try:
                with open(scene, encoding="utf-8") as f:
                    stored = json.load(f).get("generator", {})
            except (OSError, ValueError) as e:
                raise ValueError(
                    f"{scene}: cannot read a built-in room ({e}); is {path!r} a folder of built-in rooms?"
                ) from e
            if stored.get("version") != GENERATOR_VERSION:
                differ.append(f"generator version {stored.get('version')} (this one: {GENERATOR_VERSION})")
            for key, name in (
                ("rooms_num_files", "num_files"),
                ("rooms_num_points", "num_points"),
                ("rooms_num_surface_points", "num_surface_points"),
            ):
                if stored.get(name) != settings[key]:
                    differ.append(f"config.data.{key}: it has {stored.get(name)}, asked {settings[key]}")
    if differ:
        raise ValueError(
            f"config.data.path={path!r}: the built-in rooms there were generated with other settings "
            f"({'; '.join(differ)}); use another config.data.path (or move that folder away to generate "
            f"them again)"
        )


def ensure_rooms(data_config, progress: bool = True) -> str:
    """Returns the dataset path of `data_config`, generating built-in rooms there if it is missing.

    With `data.builtin`, a folder without `metadata.yaml` gets the built-in rooms
    (`generate_rooms` with the `rooms_*` settings of `rooms_settings`, seed 0), and a
    complete one is checked against them. Without `data.builtin` the folder must exist
    (any dataset of the multi-file layout, e.g. the original's synthetic rooms).

    Raises:
      FileNotFoundError: the folder is missing and `data.builtin` is off.
      NotADirectoryError: `data.path` is a file.
      ValueError: the rooms there were generated with other settings.
    """
    path = data_config.path
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"config.data.path={path!r}: is a file, not a dataset folder")
    settings = rooms_settings(data_config)
    complete = os.path.exists(os.path.join(path, onet_format.METADATA_FILE))
    if complete:
        if data_config.builtin:
            _check_generated_with(data_config, settings)
        return path
    if not data_config.builtin:
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"config.data.path={path!r}: no such dataset folder (config.data.builtin=True "
                f"generates the built-in rooms there)"
            )
        return path
    logger.info("generating the built-in rooms at %s", path)
    return generate_rooms(
        path,
        object_counts=settings["rooms_object_counts"],
        rooms_per_class=settings["rooms_per_class"],
        seed=0,
        num_files=settings["rooms_num_files"],
        num_points=settings["rooms_num_points"],
        num_surface_points=settings["rooms_num_surface_points"],
        progress=progress,
    )
