"""Tests of implicit_fields.data.shapes: exact primitives, CSG surface sampling, categories."""

import json
import math

import numpy as np
import pytest

from implicit_fields.data import shapes
from implicit_fields.data.shapes import (
    CATEGORIES,
    Box,
    Capsule,
    Cylinder,
    Shape,
    Sphere,
    Torus,
    make_shape,
    normalize,
    rotation_matrix,
)

CATEGORY_NAMES = sorted(CATEGORIES.values())


def _random_frame(rng):
    rot = rotation_matrix(rng.standard_normal(3), rng.uniform(0.0, 2.0 * math.pi))
    return rot, rng.uniform(-1.0, 1.0, 3)


def _primitives(rng):
    rot, t = _random_frame(rng)
    return [
        Box((0.3, 0.5, 0.2), rot, t),
        Cylinder(0.3, 0.45, rot, t),
        Capsule(0.25, 0.4, rot, t),
        Sphere(0.6, rot, t),
        Torus(0.5, 0.15, rot, t),
    ]


@pytest.mark.parametrize("index", range(5))
def test_primitive_volume_monte_carlo(index):
    rng = np.random.default_rng(index)
    prim = _primitives(rng)[index]
    lo, hi = prim.aabb()
    n = 200_000
    frac = prim.contains(rng.uniform(lo, hi, (n, 3))).mean()
    box = float(np.prod(hi - lo))
    sigma = box * math.sqrt(frac * (1 - frac) / n)
    assert abs(box * frac - prim.volume()) < 5 * sigma + 1e-12
    # The exact AABB is tight: points just outside it are never inside.
    outside = rng.uniform(lo, hi, (2000, 3))
    outside[:, 0] = hi[0] + 1e-6
    assert not prim.contains(outside).any()


@pytest.mark.parametrize("index", range(5))
def test_primitive_surface_samples(index):
    rng = np.random.default_rng(10 + index)
    prim = _primitives(rng)[index]
    p, n = prim.sample_surface(5000, rng)
    assert p.shape == n.shape == (5000, 3) and p.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-12)
    assert prim.contains(p - 1e-6 * n).all()
    assert not prim.contains(p + 1e-6 * n).any()


def test_area_uniform_sampling_analytic_fractions():
    rng = np.random.default_rng(0)
    n = 40_000
    torus = Torus(0.5, 0.2)
    p, nrm = torus.sample_surface(n, rng)
    # Outer half (cos(phi) > 0) has area 2 pi r (pi R + 2 r): fraction 1/2 + r / (pi R).
    outer = (np.einsum("ij,ij->i", p[:, :2], nrm[:, :2]) > 0).mean()
    expected = 0.5 + 0.2 / (math.pi * 0.5)
    assert abs(outer - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
    cyl = Cylinder(0.3, 0.5)
    _, nrm = cyl.sample_surface(n, rng)
    caps = (np.abs(nrm[:, 2]) > 0.5).mean()
    expected = 2 * math.pi * 0.09 / cyl.area()
    assert abs(caps - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_csg_surface_counts_coincident_faces_once():
    # Two overlapping unit boxes: union is [0, 1.5] x [0, 1] x [0, 1], area 8; the top face
    # (area 1.5) is covered twice by the primitives but must be sampled once.
    a = Box((0.5, 0.5, 0.5), None, (0.5, 0.5, 0.5))
    b = Box((0.5, 0.5, 0.5), None, (1.0, 0.5, 0.5))
    shape = Shape([a, b])
    n = 40_000
    p, nrm = shape.sample_surface(n, np.random.default_rng(1))
    top = (nrm[:, 1] > 0.5).mean()
    assert abs(top - 1.5 / 8) < 4 * math.sqrt(0.1875 * 0.8125 / n)
    assert np.all(np.isclose(np.abs(nrm).max(axis=1), 1.0))
    assert not np.any(np.isclose(p[:, 0], 0.5) & (np.abs(nrm[:, 0]) > 0.5))  # No inner face.


def test_negative_primitive_surface_normals_point_out_of_material():
    outer = Cylinder(1.0, 1.0)
    inner = Cylinder(0.8, 1.0, None, (0.0, 0.0, 0.2 + 1e-3))  # Open at the top.
    shape = Shape([outer], [inner])
    p, n = shape.sample_surface(20_000, np.random.default_rng(2))
    assert shape.contains(p - 1e-6 * n).all() and not shape.contains(p + 1e-6 * n).any()
    wall = np.hypot(p[:, 0], p[:, 1])
    inside_wall = np.isclose(wall, 0.8) & (p[:, 2] > -0.5)
    assert inside_wall.any()
    radial = np.einsum("ij,ij->i", p[inside_wall, :2], n[inside_wall, :2])
    assert np.all(radial < 0)  # The cavity wall faces the axis.
    # Area: outer side + bottom cap + top rim annulus + cavity wall + cavity floor.
    expected_area = (
        4 * math.pi * 1.0 + math.pi + math.pi * (1 - 0.64) + 2 * math.pi * 0.8 * (1.8 - 1e-3) + math.pi * 0.64
    )
    floor = (np.isclose(p[:, 2], -0.8 + 1e-3) & (n[:, 2] > 0.5)).mean()
    assert abs(floor - math.pi * 0.64 / expected_area) < 0.01


@pytest.mark.parametrize("name", CATEGORY_NAMES)
def test_category_surface_samples_and_normals(name):
    rng = np.random.default_rng(3)
    shape, _, _ = normalize(make_shape(name, rng))
    p, n = shape.sample_surface(4000, rng)
    assert p.shape == (4000, 3) and n.shape == (4000, 3)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-12)
    # Occupancy flips across every sample (the keep criterion, eps = 1e-6).
    assert shape.contains(p - 1e-6 * n).all()
    assert not shape.contains(p + 1e-6 * n).any()
    # At 1e-4 only samples within 1e-4 of a concave crease may fail.
    bad = ~shape.contains(p - 1e-4 * n) | shape.contains(p + 1e-4 * n)
    assert bad.mean() <= 2e-3
    # Parts are not paper thin: stepping 2% of the object size inwards along the normal
    # stays inside for (almost) every sample, i.e. parts are at least ~2% thick.
    assert shape.contains(p - 0.02 * n).mean() > 0.95


@pytest.mark.parametrize("name", CATEGORY_NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_normalize_fits_unit_cube(name, seed):
    rng = np.random.default_rng(seed)
    raw = make_shape(name, rng)
    shape, loc, scale = normalize(raw)
    lo, hi = shape.bounds()
    assert np.all(lo >= -0.5 - 1e-9) and np.all(hi <= 0.5 + 1e-9)
    assert abs(np.max(hi - lo) - 1.0) < 1e-9
    np.testing.assert_allclose(lo + hi, 0.0, atol=1e-9)
    # The box is tight and holds the whole occupied region.
    p, _ = shape.sample_surface(5000, rng)
    assert np.all(np.abs(p) <= 0.5 + 1e-9)
    assert np.max(p.max(0) - p.min(0)) > 0.97
    q = rng.uniform(-0.6, 0.6, (20_000, 3))
    outside = np.abs(q).max(axis=1) > 0.5 + 1e-9
    assert not shape.contains(q[outside]).any()
    # Same occupancy as the raw shape under x -> x * scale + loc.
    q = rng.uniform(-0.55, 0.55, (20_000, 3))
    np.testing.assert_array_equal(shape.contains(q), raw.contains(q * scale + loc))


@pytest.mark.parametrize("name", CATEGORY_NAMES)
def test_to_dict_round_trip_and_determinism(name):
    a = make_shape(name, np.random.default_rng(7))
    b = make_shape(shapes.category_synset(name), np.random.default_rng(7))
    assert a.to_dict() == b.to_dict()  # Deterministic; name and synset are the same.
    c = Shape.from_dict(json.loads(json.dumps(a.to_dict())))
    assert c.to_dict() == a.to_dict()
    q = np.random.default_rng(0).uniform(-2, 2, (5000, 3))
    np.testing.assert_array_equal(a.contains(q), c.contains(q))
    pa, na = a.sample_surface(500, np.random.default_rng(1))
    pc, nc = c.sample_surface(500, np.random.default_rng(1))
    np.testing.assert_array_equal(pa, pc)
    np.testing.assert_array_equal(na, nc)


def test_categories_and_errors():
    assert CATEGORIES == {
        "02691156": "airplane",
        "02828884": "bench",
        "02958343": "car",
        "03001627": "chair",
        "03636649": "lamp",
        "03797390": "mug",
        "04256520": "sofa",
        "04379243": "table",
    }
    with pytest.raises(ValueError, match="unknown category"):
        make_shape("teapot", np.random.default_rng(0))
    with pytest.raises(ValueError):
        Torus(0.1, 0.2)
    with pytest.raises(ValueError):
        Box((1.0, -1.0, 1.0))
    with pytest.raises(ValueError):
        Sphere(1.0, rotation=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError):
        Shape.from_dict({"positives": [{"type": "cone"}]})


def test_mug_is_hollow_with_handle():
    shape, _, _ = normalize(make_shape("mug", np.random.default_rng(0)))
    outer, inner, handle = shape.positives[0], shape.negatives[0], shape.positives[1]
    assert isinstance(handle, Torus)
    axis = outer.rotation[:, 2]
    center = outer.translation
    assert not shape.contains(center[None])  # Inside the cavity.
    top = center + axis * outer.half_height * 0.999
    assert not shape.contains(top[None])  # Open at the top.
    bottom = center - axis * outer.half_height * 0.999
    assert shape.contains(bottom[None])  # Closed at the bottom.
    assert inner.radius < outer.radius


def test_transformed_primitives_and_shapes():
    rng = np.random.default_rng(4)
    loc, scale = np.array([0.1, -0.2, 0.3]), 2.0
    q = rng.uniform(-2.0, 2.0, (20_000, 3))
    prims = _primitives(rng)
    for prim in prims:
        moved = prim.transformed(loc, scale)
        assert math.isclose(moved.volume(), prim.volume() / scale**3, rel_tol=1e-12)
        assert math.isclose(moved.area(), prim.area() / scale**2, rel_tol=1e-12)
        np.testing.assert_array_equal(moved.contains((q - loc) / scale), prim.contains(q))
    shape = Shape(prims[:3], prims[3:4])
    np.testing.assert_array_equal(
        shape.transformed(loc, scale).contains((q - loc) / scale), shape.contains(q)
    )
