"""Textured data in Texture Fields' layout: appearances, exact renders, the writer and the loader."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from implicit_fields import cameras
from implicit_fields.data import builtin, image_io, onet_format, shape_render, textured
from implicit_fields.data.onet_format import DataFormatError
from implicit_fields.data.shapes import CATEGORIES

# One object per category, tiny renders (24 px views, 16 px condition views).
PARAMS = dict(
    objects_per_category=1,
    num_points=64,
    num_surface_points=200,
    image_resolution=24,
    input_resolution=16,
    n_views=2,
    n_input_views=3,
    n_visualize_views=2,
    seed=0,
    num_workers=0,
    progress=False,
)
CATS = ["chair", "sofa", "mug", "airplane"]  # Coplanar boxes, a torus handle, capsules.


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("textured") / "data"
    return textured.ensure_textured_dataset(path, categories=CATS, **PARAMS)


CATEGORIES_BY_NAME = {v: k for k, v in CATEGORIES.items()}


def _folder(dataset, name):
    return os.path.join(dataset, CATEGORIES_BY_NAME[name], builtin.model_id(0))


def _copy(dataset, tmp_path):
    return shutil.copytree(dataset, tmp_path / "copy")


# --------------------------------------------------------------------------------------
# Appearance.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", list(CATEGORIES.values()))
def test_appearance_is_deterministic_and_round_trips(category):
    shape = builtin.generate_object(category, 0, 0, 10, 10)["shape"]
    app = textured.TexturedAppearance.random(shape, [1, 2], category)
    again = textured.TexturedAppearance.random(shape, [1, 2], category)
    other = textured.TexturedAppearance.random(shape, [1, 3], category)
    back = textured.TexturedAppearance.from_dict(json.loads(json.dumps(app.to_dict())))
    pts, _ = shape.sample_surface(500, np.random.default_rng(0))
    owner = np.arange(500) % len(shape.primitives)
    assert np.array_equal(app.albedo(pts, owner), again.albedo(pts, owner))
    assert np.array_equal(app.albedo(pts, owner), back.albedo(pts, owner))
    assert not np.array_equal(app.albedo(pts, owner), other.albedo(pts, owner))
    palette = np.asarray(textured.PALETTES[category])
    assert all(np.abs(palette - c).sum(axis=1).min() < 1e-12 for c in app.colors)  # Colours of the palette.
    m = app.mix(pts, owner)
    assert m.min() >= 0.0 and m.max() <= 1.0 and np.ptp(m) > 0.05  # A visible texture.
    assert set(app.kinds) <= set(textured.TEXTURE_KINDS)


@pytest.mark.parametrize("kind", textured.TEXTURE_KINDS)
def test_each_texture_kind_varies_smoothly(kind):
    d = textured.TexturedAppearance.random(1, 0).to_dict()
    d.update(kinds=[kind], axes=[np.eye(3).tolist()], frequencies=[[2.0, 2.5, 3.0]], phases=[[0.1, 0.2, 0.3]])
    app = textured.TexturedAppearance.from_dict(d)
    t = np.linspace(-0.5, 0.5, 2001)[:, None]
    line = t * np.array([[0.6, 0.5, 0.62]])
    m = app.mix(line, np.zeros(len(t), dtype=int))
    assert np.ptp(m) > 0.05
    assert np.abs(np.diff(m)).max() < 0.05  # Continuous: no jump between samples 5e-4 apart.


@pytest.mark.parametrize(
    "change, match",
    [
        ({"kinds": ["plaid"]}, "unknown texture kinds"),
        ({"colors": [[1.2, 0.0, 0.0]]}, "colors must lie in"),
        ({"second_colors": [[0.1, 0.1]]}, "one row per primitive"),
        ({"axes": [[[0.0, 0.0, 0.0]] * 3]}, "non-zero"),
        ({"phases": [[np.nan, 0.0, 0.0]]}, "finite"),
        ({"type": "stripes"}, "not a TexturedAppearance"),
    ],
)
def test_appearance_rejects_bad_values(change, match):
    d = textured.TexturedAppearance.random(1, 0).to_dict()
    d.update(change)
    with pytest.raises(ValueError, match=match):
        textured.TexturedAppearance.from_dict(d)


# --------------------------------------------------------------------------------------
# Exactness of the renders.
# --------------------------------------------------------------------------------------


def _other_part_distance(shape, appearance, points, owner):
    """|sdf| of the nearest primitive that looks different from the owner (part boundaries)."""
    app = appearance.to_dict()
    keys = [
        json.dumps([app[k][i] for k in ("colors", "second_colors", "kinds", "axes", "frequencies", "phases")])
        for i in range(len(shape.primitives))
    ]
    dist = np.stack(
        [np.abs(shape_render._local_sdf(p, (points - p.translation) @ p.rotation)) for p in shape.primitives],
        1,
    )
    same = np.array([[keys[o] == keys[j] for j in range(len(keys))] for o in owner])
    return np.where(same, np.inf, dist).min(axis=1)


@pytest.mark.parametrize("category", CATS)
@pytest.mark.parametrize("which, size", [("image", 24), ("visualize", 24), ("image", 12), ("visualize", 8)])
def test_lifted_depth_is_on_the_surface_with_the_pixel_colour(dataset, category, which, size):
    folder = _folder(dataset, category)
    shape, appearance = textured.load_appearance(folder)
    obj = textured.load_textured_object(folder, size, 16, which)
    checked = 0
    for v in range(obj["images"].shape[0]):
        points, mask = cameras.depth_to_points(obj["depths"][v], obj["world_mat"][v], obj["camera_mat"][v])
        assert mask.any() and not mask.all()
        assert np.array_equal(mask, np.isfinite(obj["depths"][v]))
        p = points[mask]
        assert np.abs(textured.csg_distance(shape, p)).max() < 1e-5  # float32 depth: ~1e-7.
        color, owner = shape_render.surface_color(shape, appearance, p)
        interior = _other_part_distance(shape, appearance, p, owner) > 1e-6
        assert interior.mean() > 0.9
        err = np.abs(color - obj["images"][v][mask]).max(axis=1)
        assert err[interior].max() <= 1.0 / 255.0 + 1e-6
        assert np.all(obj["images"][v][~mask] == 1.0)  # Background exactly white.
        checked += interior.sum()
    assert checked > 5


def test_resized_depth_without_the_camera_fit_would_be_off_the_surface(dataset):
    """The affine fit of our cameras to nearest resizing matters (the exactness test above can fail)."""
    folder = _folder(dataset, "chair")
    shape, _ = textured.load_appearance(folder)
    obj = textured.load_textured_object(folder, 12, 16)
    stored = onet_format.load_cameras(os.path.join(folder, "depth", "cameras.npz"))
    points, mask = cameras.depth_to_points(obj["depths"][0], stored["world_mat"][0], stored["camera_mat"][0])
    assert np.abs(textured.csg_distance(shape, points[mask])).max() > 1e-3
    assert not np.allclose(obj["camera_mat"][0], stored["camera_mat"][0])
    native = textured.load_textured_object(folder, 24, 16)
    np.testing.assert_array_equal(native["camera_mat"], stored["camera_mat"].astype(np.float32))


# --------------------------------------------------------------------------------------
# The writer.
# --------------------------------------------------------------------------------------


def test_layout_of_a_rendered_object(dataset):
    folder = _folder(dataset, "mug")
    listing = {
        os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder) for f in files
    }
    expected = {"shape.json", "points.npz", "pointcloud.npz", "texture.json"}
    expected |= {f"input_image/{i:03d}.jpg" for i in range(3)} | {"input_image/cameras.npz"}
    expected |= {f"image/{i:03d}.png" for i in range(2)} | {f"depth/{i:03d}.exr" for i in range(2)}
    expected |= {f"visualize/image/{i:03d}.png" for i in range(2)}
    expected |= {f"visualize/depth/{i:03d}.exr" for i in range(2)} | {
        "depth/cameras.npz",
        "visualize/depth/cameras.npz",
    }
    assert listing == expected
    with Image.open(os.path.join(folder, "input_image", "000.jpg")) as im:
        assert im.format == "JPEG" and im.size == (16, 16)
    with open(os.path.join(folder, "texture.json"), encoding="utf-8") as f:
        record = json.load(f)
    assert record["version"] == textured.TEXTURED_VERSION
    assert record["params"]["image_resolution"] == 24 and record["params"]["n_input_views"] == 3
    vis_cams = onet_format.load_cameras(os.path.join(folder, "visualize", "depth", "cameras.npz"))
    eyes = cameras.origin_to_world(vis_cams["camera_mat"], vis_cams["world_mat"], vis_cams["scale_mat"])
    elevation = np.degrees(np.arcsin(eyes[:, 1] / np.linalg.norm(eyes, axis=1)))
    np.testing.assert_allclose(elevation, 20.0, atol=1e-9)  # On a circle at 20 degrees.
    azimuth = np.degrees(np.arctan2(eyes[:, 0], -eyes[:, 2]))
    np.testing.assert_allclose(np.diff(azimuth) % 360.0, 180.0, atol=1e-9)  # Evenly spaced.


def test_resume_skips_complete_objects_and_finishes_interrupted_ones(dataset, tmp_path, monkeypatch):
    path = _copy(dataset, tmp_path)
    rendered = []
    real = textured.render_textured_object
    monkeypatch.setattr(
        textured, "render_textured_object", lambda folder, *a: rendered.append(folder) or real(folder, *a)
    )
    textured.ensure_textured_dataset(path, categories=CATS, **PARAMS)
    assert rendered == []
    # An object interrupted while its views were moved into place, another with a leftover temp folder.
    chair = _folder(path, "chair")
    os.remove(os.path.join(chair, textured.TEXTURE_FILE))
    shutil.rmtree(os.path.join(chair, "visualize"))
    open(os.path.join(chair, ".textured-swap"), "w").close()
    os.makedirs(os.path.join(chair, ".tmp-textured-12345", "image"))
    before = open(os.path.join(_folder(path, "mug"), "image", "000.png"), "rb").read()
    textured.ensure_textured_dataset(path, categories=CATS, **PARAMS)
    assert rendered == [chair]
    assert not os.path.exists(os.path.join(chair, ".textured-swap"))
    assert not os.path.exists(os.path.join(chair, ".tmp-textured-12345"))
    assert open(os.path.join(_folder(path, "mug"), "image", "000.png"), "rb").read() == before
    fresh = textured.load_textured_object(chair, 24, 16, "visualize")
    orig = textured.load_textured_object(_folder(dataset, "chair"), 24, 16, "visualize")
    for key in ("images", "depths", "world_mat", "camera_mat", "input_images"):
        np.testing.assert_array_equal(fresh[key], orig[key])  # Deterministic per object.


@pytest.mark.parametrize(
    "change, name",
    [
        ({"image_resolution": 16}, "image_resolution"),
        ({"input_resolution": 24}, "input_resolution"),
        ({"n_views": 3}, "n_views"),
        ({"n_input_views": 2}, "n_input_views"),
        ({"n_visualize_views": 4}, "n_visualize_views"),
        ({"seed": 1}, "seed"),
        ({"objects_per_category": 2}, "objects_per_category"),
        ({"num_surface_points": 100}, "num_surface_points"),
    ],
)
def test_other_parameters_are_refused_naming_them(dataset, tmp_path, monkeypatch, change, name):
    path = _copy(dataset, tmp_path)
    monkeypatch.setattr(textured, "render_textured_object", lambda *a: pytest.fail("rendered over"))
    stamp = os.stat(os.path.join(_folder(path, "chair"), textured.TEXTURE_FILE)).st_mtime_ns
    with pytest.raises(ValueError, match=name) as info:
        textured.ensure_textured_dataset(path, categories=CATS, **{**PARAMS, **change})
    assert str(change[name]) in str(info.value)
    assert os.stat(os.path.join(_folder(path, "chair"), textured.TEXTURE_FILE)).st_mtime_ns == stamp


@pytest.mark.parametrize("stray", ["image", "depth", "input_image", "visualize"])
def test_foreign_files_where_views_go_are_refused(dataset, tmp_path, stray):
    path = _copy(dataset, tmp_path)
    folder = _folder(path, "sofa")
    for name in ("image", "depth", "input_image", "visualize", textured.TEXTURE_FILE):
        target = os.path.join(folder, name)
        shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    os.makedirs(os.path.join(folder, stray))
    open(os.path.join(folder, stray, "0000.png"), "w").close()
    with pytest.raises(ValueError, match=f"holds {stray}/ not written by the textured writer"):
        textured.ensure_textured_dataset(path, categories=CATS, **PARAMS)
    assert os.listdir(os.path.join(folder, stray)) == ["0000.png"]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"image_resolution": 1}, "image_resolution: must be an integer >= 2"),
        ({"n_views": 0}, "n_views: must be an integer >= 1"),
        ({"seed": -1}, "seed: must be an integer >= 0"),
        ({"input_resolution": 2.5}, "input_resolution"),
        ({"categories": ["teapot"]}, "unknown category 'teapot'"),
    ],
)
def test_bad_arguments_are_named(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        textured.ensure_textured_dataset(tmp_path / "d", **{**PARAMS, "categories": CATS, **change})
    assert not os.path.exists(tmp_path / "d")


# --------------------------------------------------------------------------------------
# The loader.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size, input_size", [(24, 16), (12, 32), (None, None)])
@pytest.mark.parametrize("which", ["image", "visualize"])
def test_loader_round_trip(dataset, size, input_size, which):
    folder = _folder(dataset, "chair")
    obj = textured.load_textured_object(folder, size, input_size, which)
    s, si = size or 24, input_size or 16
    assert obj["images"].shape == (2, s, s, 3) and obj["images"].dtype == np.float32
    assert obj["depths"].shape == (2, s, s) and obj["depths"].dtype == np.float32
    assert obj["input_images"].shape == (3, si, si, 3) and obj["input_images"].dtype == np.float32
    for key in ("world_mat", "camera_mat"):
        assert obj[key].shape == (2, 4, 4) and obj[key].dtype == np.float32
    assert obj["points"].shape == obj["normals"].shape == (200, 3) and obj["points"].dtype == np.float32
    for key in ("images", "input_images"):
        assert obj[key].min() >= 0.0 and obj[key].max() <= 1.0
    fg = np.isfinite(obj["depths"])
    assert fg.any() and np.all(obj["depths"][fg] > 0.5) and np.all(np.isposinf(obj["depths"][~fg]))
    pcl = onet_format.load_pointcloud_npz(os.path.join(folder, "pointcloud.npz"))
    np.testing.assert_array_equal(obj["points"], pcl["points"])
    png = np.asarray(
        Image.open(os.path.join(folder, "visualize" if which == "visualize" else "", "image", "001.png"))
    )
    np.testing.assert_array_equal(np.rint(obj["images"][1] * 255), textured.resize_nearest(png, s))


@pytest.mark.parametrize("n_src, n_dst", [(256, 128), (24, 16), (16, 24), (10, 25), (137, 224), (7, 7)])
def test_nearest_resize_picks_the_documented_pixels(n_src, n_dst):
    from fractions import Fraction

    expected = [min(int(Fraction(2 * i + 1, 2) * Fraction(n_src, n_dst)), n_src - 1) for i in range(n_dst)]
    assert textured.nearest_indices(n_src, n_dst).tolist() == expected
    image = np.arange(n_src * (n_src + 3) * 2).reshape(n_src, n_src + 3, 2)
    out = textured.resize_nearest(image, n_dst)
    cols = [min(int(Fraction(2 * i + 1, 2) * Fraction(n_src + 3, n_dst)), n_src + 2) for i in range(n_dst)]
    np.testing.assert_array_equal(out, image[np.ix_(expected, cols)])
    if n_src == 256 and n_dst == 128:
        assert expected[:3] == [1, 3, 5]  # skimage resize(order=0): source 2i + 1.


def _tf_depth_map_to_3d(depth, cam_k, cam_w):
    """Texture Fields' depth_map_to_3d (mesh2tex/texnet/models/__init__.py) in numpy, image layout."""
    m = depth.shape[1]
    out = np.zeros(depth.shape + (3,))
    inv_p = np.linalg.inv(cam_k[:2, :2].astype(np.float64))
    inv_w = np.linalg.inv(np.concatenate([cam_w, [[0.0, 0.0, 0.0, 1.0]]]).astype(np.float64))
    for r in range(depth.shape[0]):
        for c in range(m):
            d = -depth[r, c] if np.isfinite(depth[r, c]) else 0.0  # The original zeroes inf depth.
            p = np.array([c, m - r], dtype=np.float64) / m * 2
            xy = inv_p @ ((p * cam_k[2, 2] - cam_k[:2, 2]) * d)
            out[r, c] = (inv_w @ np.array([xy[0], xy[1], d, 1.0]))[:3]
    return out


def _write_original_object(folder, rng, n_views=2, side=32):
    """An object in the original's layout: 3x4 cameras, jpg condition views, exr depths."""
    os.makedirs(os.path.join(folder, "input_image"))
    os.makedirs(os.path.join(folder, "image"))
    os.makedirs(os.path.join(folder, "depth"))
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            os.path.join(folder, "input_image", f"{i:03d}.jpg"), quality=95
        )
    cams = {}
    for i in range(n_views):
        rgba = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
        Image.fromarray(rgba).save(os.path.join(folder, "image", f"{i:03d}.png"))
        depth = rng.uniform(1.0, 2.0, (side, side)).astype(np.float32)
        depth[: side // 4] = np.inf
        image_io.write_depth(os.path.join(folder, "depth", f"{i:03d}.exr"), depth)
        angle = 0.3 + i
        cams[f"camera_mat_{i}"] = np.array(
            [[149.84375, 0.0, -68.5, 0.0], [0.0, 149.84375, -68.5, 0.0], [0.0, 0.0, -68.5, 0.0]], np.float32
        )
        rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        cams[f"world_mat_{i}"] = np.concatenate([rot, [[0.1], [0.0], [-1.5]]], 1).astype(np.float32)
    np.savez(os.path.join(folder, "depth", "cameras.npz"), **cams)
    np.savez(
        os.path.join(folder, "pointcloud.npz"),
        points=rng.standard_normal((50, 3)).astype(np.float16),
        normals=rng.standard_normal((50, 3)).astype(np.float16),
    )
    return cams


@pytest.mark.parametrize("size", [32, 16])
def test_loader_reads_the_original_layout(tmp_path, size):
    folder = str(tmp_path / "02958343" / "car0")
    cams = _write_original_object(folder, np.random.default_rng(size))
    obj = textured.load_textured_object(folder, size, 24)
    assert obj["images"].shape == (2, size, size, 3) and obj["input_images"].shape == (3, 24, 24, 3)
    assert obj["points"].shape == (50, 3) and obj["points"].dtype == np.float32
    for v in range(2):
        rgba = np.asarray(Image.open(os.path.join(folder, "image", f"{v:03d}.png")))
        np.testing.assert_array_equal(
            np.rint(obj["images"][v] * 255), textured.resize_nearest(rgba[..., :3], size)
        )
        depth = textured.resize_nearest(
            image_io.read_depth(os.path.join(folder, "depth", f"{v:03d}.exr")), size
        )
        np.testing.assert_array_equal(obj["depths"][v], depth)
        points, mask = cameras.depth_to_points(obj["depths"][v], obj["world_mat"][v], obj["camera_mat"][v])
        expected = _tf_depth_map_to_3d(depth, cams[f"camera_mat_{v}"], cams[f"world_mat_{v}"])
        np.testing.assert_allclose(points[mask], expected[mask], atol=1e-4)
        assert np.array_equal(mask, np.isfinite(depth))
    # A dataset without metadata.yaml: category folders by synset, built-in names map to them.
    onet_format.write_split(os.path.dirname(folder), "test", ["car0"])
    ds = textured.TexturedDataset(tmp_path, "test", categories=["car"], image_size=size, input_size=24)
    assert len(ds) == 1 and ds.names == ["02958343/car0"]
    np.testing.assert_array_equal(ds[0]["depths"], obj["depths"])


@pytest.mark.parametrize(
    "breakage, match",
    [
        (lambda f: os.remove(os.path.join(f, "depth", "001.exr")), r"2 images but .*depth has 1 depth maps"),
        (
            lambda f: os.remove(os.path.join(f, "depth", "cameras.npz")),
            r"depth/cameras.npz: camera file not found",
        ),
        (
            lambda f: shutil.rmtree(os.path.join(f, "input_image")),
            r"input_image: input image folder not found",
        ),
        (
            lambda f: open(os.path.join(f, "image", "000.png"), "wb").close(),
            r"image/000.png: unreadable image",
        ),
        (lambda f: open(os.path.join(f, "pointcloud.npz"), "wb").close(), r"pointcloud.npz"),
        (
            lambda f: image_io.write_depth(os.path.join(f, "depth", "000.exr"), np.ones((5, 5), np.float32)),
            r"depth/000.exr: depth map of size 5x5 but its image",
        ),
        (
            lambda f: np.savez(
                os.path.join(f, "depth", "cameras.npz"), camera_mat_0=np.eye(4), world_mat_0=np.eye(4)
            ),
            r"depth/cameras.npz: missing key 'camera_mat_1'",
        ),
        (
            lambda f: np.savez(
                os.path.join(f, "depth", "cameras.npz"),
                **{
                    f"{k}_{i}": np.eye(4)[:3] if k == "camera_mat" else np.eye(4)
                    for k in ("camera_mat", "world_mat")
                    for i in range(2)
                },
            ),
            r"camera_mat_0 is 3x4 but world_mat_0 is 4x4",
        ),
    ],
)
def test_loader_names_the_broken_file(dataset, tmp_path, breakage, match):
    folder = str(shutil.copytree(_folder(dataset, "chair"), tmp_path / "obj"))
    breakage(folder)
    with pytest.raises(DataFormatError, match=match):
        textured.load_textured_object(folder, 24, 16)


def test_dataset_lists_split_objects(dataset, tmp_path):
    ds = textured.TexturedDataset(
        dataset, "train", categories=["chair", CATEGORIES_BY_NAME["mug"]], image_size=12, input_size=8
    )
    assert len(ds) == 2 and ds.names == [
        f"{CATEGORIES_BY_NAME['chair']}/obj_000000",
        f"{CATEGORIES_BY_NAME['mug']}/obj_000000",
    ]
    item = ds[1]
    ref = textured.load_textured_object(_folder(dataset, "mug"), 12, 8)
    for key in ref:
        np.testing.assert_array_equal(item[key], ref[key])
    assert ds.load(1)["images"].dtype == np.float32  # From the cache, expanded again.
    with pytest.raises(ValueError, match="categories: \\['teapot'\\]"):
        textured.TexturedDataset(dataset, "train", categories=["teapot"])


@pytest.mark.parametrize("missing", ["depth/cameras.npz", "input_image", "pointcloud.npz", "visualize/image"])
def test_dataset_reports_objects_lacking_files(dataset, tmp_path, missing):
    path = _copy(dataset, tmp_path)
    target = os.path.join(_folder(path, "sofa"), missing)
    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    which = "visualize" if missing.startswith("visualize") else "image"
    with pytest.raises(
        DataFormatError, match=rf"train.lst: 1 of the 1 objects .* obj_000000 \(missing {missing}"
    ):
        textured.TexturedDataset(path, "train", image_size=12, input_size=8, which=which)


def test_dataset_reads_the_originals_class_folder(tmp_path):
    """The original's cars: one class folder with {split}.lst at its root and the objects inside."""
    root = tmp_path / "synthetic_cars_nospecular"
    _write_original_object(str(root / "car_a"), np.random.default_rng(0))
    _write_original_object(str(root / "car_b"), np.random.default_rng(1))
    (root / "train.lst").write_text("car_a\ncar_b\n")
    (root / "test.lst").write_text("car_b")
    ds = textured.TexturedDataset(str(root), "train", image_size=16, input_size=8)
    assert ds.names == ["car_a", "car_b"] and ds.model_dir(1) == str(root / "car_b")
    ref = textured.load_textured_object(str(root / "car_b"), 16, 8)
    np.testing.assert_array_equal(ds[1]["depths"], ref["depths"])
    assert textured.TexturedDataset(str(root), "test", image_size=16, input_size=8).names == ["car_b"]
    with pytest.raises(ValueError, match="one class folder"):
        textured.TexturedDataset(str(root), "train", categories=["car"])
