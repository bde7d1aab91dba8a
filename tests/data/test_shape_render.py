"""Tests of the exact renderer of the built-in shapes: depth, masks, normals, colours."""

import json

import numpy as np
import pytest

from implicit_fields import cameras
from implicit_fields.data import shape_render
from implicit_fields.data.shapes import Shape, Sphere, Torus
from shape_fixtures import csg_shape, pixel_rays


def _camera(seed=0, focal=None):
    cams = cameras.sample_views(1, radius=2.0, seed=seed, focal=focal)
    return {k: cams[k][0] for k in cameras.CAMERA_KEYS}


def test_sphere_depth_matches_closed_form():
    centre, radius = np.array([0.05, -0.02, 0.03]), 0.3
    shape = Shape([Sphere(radius, None, centre)])
    cam = _camera(1, focal=3.0)
    h = w = 48
    view = shape_render.render_view(shape, cam, h, w)
    o, d = pixel_rays(cam, h, w)
    # Closed form: |o + t d - c|^2 = r^2, the smaller root.
    oc = o - centre
    a, b, c = (d * d).sum(1), (oc * d).sum(1), (oc * oc).sum(1) - radius**2
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    mask = view["mask"].reshape(-1)
    clear = np.abs(disc) > 1e-6  # Away from exactly tangent rays.
    np.testing.assert_array_equal(mask[clear], (disc >= 0)[clear])
    assert 0.1 < mask.mean() < 0.9
    depth = view["depth"].reshape(-1)
    assert view["depth"].dtype == np.float32
    np.testing.assert_allclose(depth[mask], t[mask], atol=1e-4)
    assert np.all(np.isinf(depth[~mask]))
    # Depth is camera depth: the hit point projects to its own pixel at that depth.
    p = o[mask] + t[mask, None] * d[mask]
    pix, cam_depth = cameras.project_to_image(p, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    np.testing.assert_allclose(cam_depth, depth[mask], atol=1e-4)
    np.testing.assert_allclose(pix, cameras.pixel_grid(h, w).reshape(-1, 2)[mask], atol=1e-9)
    # Analytic normals; white background.
    n = view["normals"].reshape(-1, 3)[mask]
    np.testing.assert_allclose(n, (p - centre) / radius, atol=1e-5)
    assert np.all(view["image"].reshape(-1, 3)[~mask] == 255)


def test_csg_surface_is_exact_and_mask_is_the_hit_set():
    shape = csg_shape()
    cam = _camera(2, focal=2.6)
    h = w = 64
    view = shape_render.render_view(shape, cam, h, w)
    o, d = pixel_rays(cam, h, w)
    mask = view["mask"].reshape(-1)
    depth = view["depth"].reshape(-1).astype(np.float64)
    depth64, prim, _ = shape_render.trace(shape, o, d)
    np.testing.assert_array_equal(np.isfinite(depth64), mask)
    # Hits on every kind of face, cut faces included.
    assert {0, 1, 2, 3, 4, 5, 6} <= set(prim[mask].tolist())
    # The surface at the rendered (float32) depth: contains flips within +-1e-4 along the ray.
    u = d / np.linalg.norm(d, axis=1, keepdims=True)
    p = o[mask] + depth[mask, None] * d[mask]
    assert not shape.contains(p - 1e-4 * u[mask]).any()
    assert shape.contains(p + 1e-4 * u[mask]).all()
    # Brute force: every ray with an occupied sample is in the mask, and its first
    # occupied sample is not before the rendered depth.
    near, far, box_hit = cameras.intersect_box(o, d, padding=0.0)
    steps = np.linspace(0.0, 1.0, 600)
    ts = near[:, None] + steps[None, :] * (far - near)[:, None]
    pts = o[:, None, :] + ts[:, :, None] * d[:, None, :]
    occ = shape.contains(pts.reshape(-1, 3)).reshape(ts.shape) & box_hit[:, None]
    brute_hit = occ.any(axis=1)
    assert brute_hit.sum() > 200
    assert np.all(mask[brute_hit])
    first = ts[np.arange(ts.shape[0]), np.argmax(occ, axis=1)]
    assert np.all(first[brute_hit] >= depth64[brute_hit] - 1e-9)
    assert np.all(first[brute_hit] - depth64[brute_hit] <= (far - near)[brute_hit] / 599 + 1e-9)
    # Thin parts are never missed (the 0.024-thick rod): the renderer finds rays that
    # brute force at this step misses, never the other way round.
    assert mask.sum() >= brute_hit.sum()


def test_torus_hole_and_outer_depth():
    shape = Shape([Torus(0.3, 0.05)])  # Axis z: seen along z it is a ring.
    cam = cameras.look_at_camera((0.0, 0.0, -2.0), focal=2.0)
    o = np.array([[0.0, 0.0, -2.0]] * 3)
    d = np.array([[0.0, 0.0, 1.0], [0.3, 0.0, 2.0], [0.0, 0.28, 2.0]])
    depth, prim, normals = shape_render.trace(shape, o, d)
    assert np.isinf(depth[0]) and prim[0] == -1  # Through the hole.
    # Ray (0.3t, 0, 2t - 2) passes through the tube's core circle at t = 1: it enters
    # the tube 0.05 before, along its own direction, where the normal faces it.
    np.testing.assert_allclose(depth[1], 1.0 - 0.05 / np.sqrt(4.09), atol=1e-10)
    np.testing.assert_allclose(normals[1], -d[1] / np.sqrt(4.09), atol=1e-8)
    # Ray (0, 0.28t, 2t - 2): (0.28 t - 0.3)^2 + (2t - 2)^2 = 0.05^2, smaller root.
    roots = np.roots([0.28**2 + 4.0, -2 * 0.28 * 0.3 - 8.0, 0.09 + 4.0 - 0.0025])
    assert np.all(np.isreal(roots))
    np.testing.assert_allclose(depth[2], roots.real.min(), atol=1e-10)
    view = shape_render.render_view(shape, cam, 33, 33)
    assert not view["mask"][16, 16] and view["mask"].any()


def test_surface_color_matches_rendered_pixels():
    shape = csg_shape()
    app = shape_render.Appearance.random(len(shape.primitives), seed=5, texture="stripes")
    cam = _camera(3, focal=2.4)
    view = shape_render.render_view(shape, cam, 40, 40, app)
    o, d = pixel_rays(cam, 40, 40)
    depth, prim, normals = shape_render.trace(shape, o, d)
    hit = prim >= 0
    p = o[hit] + depth[hit, None] * d[hit]
    rendered = view["image"].reshape(-1, 3)[hit].astype(np.float64) / 255.0
    col, owner = shape_render.surface_color(shape, app, p, normals[hit])
    assert np.abs(col - rendered).max() <= 0.5 / 255 + 1e-9
    col2, owner2 = shape_render.surface_color(shape, app, p)  # Owner and normal found alone.
    assert np.mean(owner2 == prim[hit]) > 0.97
    assert np.mean(np.abs(col2 - rendered).max(axis=1) <= 0.5 / 255 + 1e-9) > 0.97
    # Appearance survives its JSON form; colours vary between primitives.
    app2 = shape_render.Appearance.from_dict(json.loads(json.dumps(app.to_dict())))
    np.testing.assert_allclose(
        app2.color(p, normals[hit], prim[hit]), app.color(p, normals[hit], prim[hit]), atol=1e-12
    )
    assert np.unique(view["image"].reshape(-1, 3)[hit], axis=0).shape[0] > 20


def test_fit_focal_frames_the_shape_and_render_views_stacks_the_views():
    shape = csg_shape()
    focal = shape_render.fit_focal(shape, 2.0)
    points, _ = shape.sample_surface(4096, np.random.default_rng(0))  # The samples fit_focal uses.
    extent = np.sqrt((points * points).sum(axis=1)).max()
    assert focal == cameras.focal_for_radius(extent, 2.0)
    cams = cameras.sample_views(3, radius=2.0, seed=4, focal=focal)
    views = shape_render.render_views(shape, cams, 24, 20)
    assert views["image"].shape == (3, 24, 20, 3) and views["normals"].shape == (3, 24, 20, 3)
    for i in range(3):
        one = shape_render.render_view(shape, cameras.camera_at(cams, i), 24, 20)
        for k in one:
            np.testing.assert_array_equal(views[k][i], one[k])
        # The padded bounding sphere fits the image: the shape never touches the border.
        m = one["mask"]
        assert m.any() and not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())


# --------------------------------------------------------------------------------------
# The specular (Blinn-Phong) material.
# --------------------------------------------------------------------------------------


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("texture", ["none", "stripes"])
@pytest.mark.parametrize("specular, shininess", [(0.6, 32.0), (2.0, 4.0)])
def test_the_diffuse_material_gives_the_old_colours_exactly(texture, specular, shininess):
    shape = csg_shape()
    prims = len(shape.primitives)
    app = shape_render.Appearance.random(prims, seed=5, texture=texture)
    assert app.material == "diffuse" and not app.view_dependent
    # The specular settings are ignored by a diffuse material, and so are view directions.
    other = shape_render.Appearance.random(prims, 5, texture, specular=specular, shininess=shininess)
    cam = _camera(3, focal=2.4)
    view = shape_render.render_view(shape, cam, 32, 32, app)
    o, d = pixel_rays(cam, 32, 32)
    depth, prim, normals = shape_render.trace(shape, o, d)
    hit = prim >= 0
    p = o[hit] + depth[hit, None] * d[hit]
    old = app.albedo(p, prim[hit]) * app.shading(normals[hit])[:, None]  # The formula before materials.
    expected = np.full((32 * 32, 3), 255, np.uint8)
    expected[hit] = np.rint(np.clip(old, 0.0, 1.0) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(view["image"].reshape(-1, 3), expected)
    np.testing.assert_array_equal(shape_render.render_view(shape, cam, 32, 32, other)["image"], view["image"])
    v = _unit(d[hit])
    np.testing.assert_array_equal(app.color(p, normals[hit], prim[hit], view_dirs=v), old)
    np.testing.assert_array_equal(app.color(p, normals[hit], prim[hit]), old)


@pytest.mark.parametrize("specular, shininess", [(0.6, 32.0), (0.3, 8.0), (1.0, 100.0)])
def test_a_specular_colour_is_the_hand_computed_blinn_phong_value(specular, shininess):
    app = shape_render.Appearance(
        [[0.5, 0.4, 0.3]], material="specular", specular=specular, shininess=shininess
    )
    p = np.zeros((1, 3))
    lights = [(_unit(np.array([0.4, 0.8, -0.45])), 0.55), (_unit(np.array([-0.5, -0.3, 0.6])), 0.3)]
    v = _unit([[-0.2, -0.6, 0.8]])  # camera to point
    n = _unit(_unit(lights[0][0] - v[0]) + [0.05, -0.03, 0.02])[None]  # near the first light's highlight
    # By hand: Lambert of the two lights, then one highlight per light.
    lambert = min(1.0, 0.45 + sum(i * max(0.0, float(n[0] @ light)) for light, i in lights))
    spec = sum(i * max(0.0, float(n[0] @ _unit(light - v[0]))) ** shininess for light, i in lights)
    want = np.clip(np.array([0.5, 0.4, 0.3]) * lambert + specular * spec, 0.0, 1.0)
    np.testing.assert_allclose(app.color(p, n, [0], view_dirs=v)[0], want, rtol=1e-12, atol=1e-15)
    # Another view direction, another colour; the diffuse part is the same.
    v2 = _unit([[0.7, -0.1, 0.7]])
    assert np.abs(app.color(p, n, [0], view_dirs=v2) - app.color(p, n, [0], view_dirs=v)).max() > 1e-3
    diffuse = shape_render.Appearance([[0.5, 0.4, 0.3]])
    assert np.all(app.color(p, n, [0], view_dirs=v2) >= diffuse.color(p, n, [0]) - 1e-15)


@pytest.mark.parametrize("shininess", [4.0, 32.0, 128.0])
@pytest.mark.parametrize("view", [[0.0, 0.0, 1.0], [0.3, -0.8, 0.5], [-0.6, 0.2, -0.3]])
def test_the_highlight_peaks_where_the_half_vector_is_the_normal(shininess, view, monkeypatch):
    light, intensity = _unit(np.array([0.4, 0.8, -0.45])), 0.55
    monkeypatch.setattr(shape_render, "_LIGHTS", ((tuple(light), intensity),))  # One light.
    app = shape_render.Appearance([[0.2, 0.2, 0.2]], material="specular", specular=0.5, shininess=shininess)
    v = _unit(view)
    h = _unit(light - v)
    # Normals tilted away from h by up to 0.5 rad in a random set of directions.
    rng = np.random.default_rng(0)
    axes = np.cross(h, rng.standard_normal((200, 3)))
    axes = _unit(axes)
    angles = rng.uniform(0.0, 0.5, 200)
    tilted = np.cos(angles)[:, None] * h + np.sin(angles)[:, None] * axes
    normals = np.concatenate([h[None], tilted])
    s = app.highlight(normals, np.tile(v, (len(normals), 1)))
    assert s[0] == pytest.approx(0.5 * intensity, rel=1e-12)  # n . h = 1
    np.testing.assert_allclose(s[1:], 0.5 * intensity * np.cos(angles) ** shininess, rtol=1e-9)
    assert np.argmax(s) == 0 and np.all(s[1:] < s[0])


@pytest.mark.parametrize("material", ["diffuse", "specular"])
def test_an_appearance_survives_its_json_form(material):
    app = shape_render.Appearance.random(3, seed=2, material=material, specular=0.4, shininess=20.0)
    back = shape_render.Appearance.from_dict(json.loads(json.dumps(app.to_dict())))
    got, want = back.to_dict(), app.to_dict()
    assert got.keys() == want.keys()
    for key in ("colors", "stripe_dirs", "phases"):  # stripe_dirs are normalised again: equal to rounding
        np.testing.assert_allclose(got[key], want[key], rtol=1e-15)
    assert {k: v for k, v in got.items() if not isinstance(v, list)} == {
        k: v for k, v in want.items() if not isinstance(v, list)
    }
    assert (back.texture, back.material, back.specular, back.shininess) == ("stripes", material, 0.4, 20.0)
    # A record written before there were materials is diffuse.
    old = {k: v for k, v in app.to_dict().items() if k not in ("material", "specular", "shininess")}
    assert shape_render.Appearance.from_dict(old).material == "diffuse"
    # The material does not change the random colours.
    np.testing.assert_array_equal(back.colors, shape_render.Appearance.random(3, seed=2).colors)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"material": "glossy"}, "material must be one of"),
        ({"material": "specular", "specular": -1.0}, "specular must be"),
        ({"material": "specular", "shininess": 0.0}, "shininess must be"),
        ({"material": "specular", "shininess": float("nan")}, "shininess must be"),
    ],
)
def test_bad_material_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shape_render.Appearance([[0.5, 0.5, 0.5]], **kwargs)


def test_a_specular_colour_needs_view_directions():
    app = shape_render.Appearance([[0.5, 0.5, 0.5]], material="specular")
    n = np.array([[0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="view-dependent: color\\(\\) needs view_dirs"):
        app.color(np.zeros((1, 3)), n, [0])
    with pytest.raises(ValueError, match="view_dirs must have the shape of normals"):
        app.color(np.zeros((1, 3)), n, [0], view_dirs=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="needs view_dirs"):
        shape_render.surface_color(Shape([Sphere(0.3)]), app, np.array([[0.0, 0.0, 0.3]]))


def test_specular_renders_match_surface_colours_and_change_with_the_view():
    shape = Shape([Sphere(0.35)])
    spec = shape_render.Appearance.random(1, seed=0, texture="none", material="specular")
    diffuse = shape_render.Appearance.random(1, seed=0, texture="none")
    cams = cameras.sample_views(2, radius=2.0, seed=3, focal=2.5)
    peaks = []
    for i in range(2):
        cam = cameras.camera_at(cams, i)
        view = shape_render.render_view(shape, cam, 32, 32, spec)
        plain = shape_render.render_view(shape, cam, 32, 32, diffuse)
        np.testing.assert_array_equal(view["mask"], plain["mask"])
        gain = view["image"].astype(int) - plain["image"]
        assert gain.min() >= 0 and gain.max() > 40  # a visible highlight, only ever brighter
        peaks.append(np.unravel_index(np.argmax(gain.sum(-1)), (32, 32)))
        o, d = pixel_rays(cam, 32, 32)
        depth, prim, normals = shape_render.trace(shape, o, d)
        hit = prim >= 0
        p = o[hit] + depth[hit, None] * d[hit]
        col, _ = shape_render.surface_color(shape, spec, p, normals[hit], view_dirs=_unit(d[hit]))
        rendered = view["image"].reshape(-1, 3)[hit].astype(np.float64) / 255.0
        assert np.abs(col - rendered).max() <= 0.5 / 255 + 1e-9
    # The highlight moves with the view (the diffuse shading does not).
    assert peaks[0] != peaks[1]
