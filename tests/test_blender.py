"""Tests of NeRF's Blender layout (implicit_fields.data.blender): the camera conversion against
NeRF's own ray formula, the round trip through the writer, one loader for both layouts, the
errors on bad input and the built-in scene."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from implicit_fields import cameras
from implicit_fields.data import blender, builtin, multiview, onet_format, shape_render
from implicit_fields.data.onet_format import DataFormatError

SIZES = [(12, 12), (10, 12), (13, 9)]  # (H, W): square, wide, tall.


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _c2w(rng):
    m = np.eye(4)
    m[:3, :3] = _rotation(rng)
    m[:3, 3] = rng.uniform(-4.0, 4.0, 3)
    return m


def _hand_made_scene(folder, height, width, n=3, fov=0.69, seed=0, splits=("train",)):
    """A Blender scene written here by hand (not by the module under test): random RGBA
    images and random rigid camera-to-world matrices."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    metas = {}
    for split in splits:
        os.makedirs(os.path.join(folder, split), exist_ok=True)
        frames = []
        for k in range(n):
            rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
            Image.fromarray(rgba, "RGBA").save(os.path.join(folder, split, f"r_{k}.png"))
            frames.append(
                {"file_path": f"./{split}/r_{k}", "rotation": 0.01, "transform_matrix": _c2w(rng).tolist()}
            )
        metas[split] = {"camera_angle_x": fov, "frames": frames}
        with open(os.path.join(folder, f"transforms_{split}.json"), "w") as f:
            json.dump(metas[split], f, indent=4)
    return metas


def _nerf_rays(meta, height, width, k):
    """NeRF's get_rays (pixel centres, + 0.5) for frame k, in plain numpy: (H*W, 3) each."""
    focal = 0.5 * width / np.tan(0.5 * meta["camera_angle_x"])
    c2w = np.asarray(meta["frames"][k]["transform_matrix"])
    i, j = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64), indexing="xy")
    dirs = np.stack(
        [(i + 0.5 - 0.5 * width) / focal, -(j + 0.5 - 0.5 * height) / focal, -np.ones_like(i)], -1
    )
    rays_d = np.sum(dirs[..., None, :] * c2w[:3, :3], -1).reshape(-1, 3)
    rays_o = np.broadcast_to(c2w[:3, 3], rays_d.shape)
    return rays_o, rays_d


def _rendered_views(tmp_path, height, width, n=3):
    """Exact renders of a built-in object with square-pixel cameras.

    H == W: through write_multiview / load_multiview, as the library renders. H != W: the
    renderer's cameras have fx == fy in [-1, 1] units (non-square pixels), so the views are
    rendered here with fy = fx (W - 1) / (H - 1)."""
    shape = builtin.generate_object("sofa", 0, seed=0, num_points=1, num_surface_points=1)["shape"]
    if height == width:
        folder = tmp_path / "mv"
        multiview.write_multiview(shape, folder, n_views=n, resolution=height, seed=0, progress=False)
        return multiview.load_multiview(folder)
    fx = 1.6
    cams = cameras.sample_views(n, 2.0, 0, focal=(fx, fx * (width - 1) / (height - 1)))
    appearance = shape_render.Appearance.random(len(shape.primitives), 0)
    views = shape_render.render_views(shape, cams, height, width, appearance)
    return multiview.MultiViewData(
        images=views["image"].astype(np.float32) / 255.0,
        masks=views["mask"],
        depths=None,
        camera_mat=cams["camera_mat"],
        world_mat=cams["world_mat"],
        scale_mat=cams["scale_mat"],
        view_ids=np.arange(n),
        image_files=[f"render_{i}" for i in range(n)],
        folder=str(tmp_path),
    )


# --------------------------------------------------------------------------------------
# The camera conversion, against NeRF's formula.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("fov", [0.3, 0.69, 1.4])
def test_rays_are_nerfs(tmp_path, height, width, fov):
    metas = _hand_made_scene(tmp_path, height, width, fov=fov, seed=height + width)
    data = blender.load_blender(tmp_path)
    grid = cameras.pixel_grid(height, width).reshape(-1, 2)
    for k in range(data.num_views):
        origins, directions = cameras.pixels_to_rays(grid, *(data.camera(k)[c] for c in cameras.CAMERA_KEYS))
        rays_o, rays_d = _nerf_rays(metas["train"], height, width, k)
        np.testing.assert_allclose(origins, rays_o, atol=1e-9)
        unit = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
        np.testing.assert_allclose(unit, rays_d / np.linalg.norm(rays_d, axis=-1, keepdims=True), atol=1e-9)
        # NeRF's direction has camera z = -1, so it is our direction at camera depth 1 exactly.
        np.testing.assert_allclose(directions, rays_d, atol=1e-9)


@pytest.mark.parametrize("height,width", SIZES)
def test_points_on_a_nerf_ray_project_to_its_pixel(tmp_path, height, width):
    metas = _hand_made_scene(tmp_path, height, width, fov=0.9, seed=7)
    data = blender.load_blender(tmp_path)
    rng = np.random.default_rng(1)
    for k in range(data.num_views):
        rays_o, rays_d = _nerf_rays(metas["train"], height, width, k)
        pix = rng.integers(0, height * width, 20)
        depth = rng.uniform(0.5, 6.0, 20)
        points = rays_o[pix] + depth[:, None] * rays_d[pix]
        xy, d = cameras.project_to_image(points, *(data.camera(k)[c] for c in cameras.CAMERA_KEYS))
        rows, cols = np.divmod(pix, width)
        np.testing.assert_allclose(xy[:, 0], 2.0 * cols / (width - 1) - 1.0, atol=1e-9)
        np.testing.assert_allclose(xy[:, 1], 2.0 * rows / (height - 1) - 1.0, atol=1e-9)
        np.testing.assert_allclose(d, depth, rtol=1e-9)  # NeRF's ray parameter is the camera depth.
        r, c = cameras.pixel_to_index(xy, height, width)
        np.testing.assert_array_equal(r, rows)
        np.testing.assert_array_equal(c, cols)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_scale_maps_object_to_world(tmp_path, scale):
    _hand_made_scene(tmp_path, 10, 12, seed=3)
    world = blender.load_blender(tmp_path)
    scaled = blender.load_blender(tmp_path, scale=scale)
    np.testing.assert_array_equal(scaled.scale_mat[0], np.diag([scale, scale, scale, 1.0]))
    p = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 3))
    for k in range(world.num_views):
        xy_s, d_s = cameras.project_to_image(p, *(scaled.camera(k)[c] for c in cameras.CAMERA_KEYS))
        xy_w, d_w = cameras.project_to_image(scale * p, *(world.camera(k)[c] for c in cameras.CAMERA_KEYS))
        np.testing.assert_allclose(xy_s, xy_w, atol=1e-9)
        np.testing.assert_allclose(d_s, d_w, atol=1e-9)
        eye_w = cameras.origin_to_world(*(world.camera(k)[c] for c in cameras.CAMERA_KEYS))
        eye_s = cameras.origin_to_world(*(scaled.camera(k)[c] for c in cameras.CAMERA_KEYS))
        np.testing.assert_allclose(eye_s * scale, eye_w, atol=1e-9)


# --------------------------------------------------------------------------------------
# Images: compositing, masks, no alpha.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.2, 0.5, 0.9)])
def test_images_are_composited_and_masks_are_alpha_over_half(tmp_path, background):
    _hand_made_scene(tmp_path, 10, 12, n=2, seed=5)
    data = blender.load_blender(tmp_path, background=background)
    for k, path in enumerate(data.image_files):
        rgba = np.asarray(Image.open(path)).astype(np.float64) / 255.0
        a = rgba[:, :, 3:]
        np.testing.assert_allclose(
            data.images[k], rgba[:, :, :3] * a + np.asarray(background) * (1 - a), atol=1e-6
        )
        np.testing.assert_array_equal(data.masks[k], rgba[:, :, 3] >= 0.5)
        assert data.masks[k].any() and not data.masks[k].all()
    assert data.depths is None
    np.testing.assert_array_equal(data.view_ids, [0, 1])


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_images_without_alpha_are_all_object(tmp_path, mode):
    _hand_made_scene(tmp_path, 10, 12, n=2, seed=6)
    path = os.path.join(tmp_path, "train", "r_1.png")
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").convert(mode).save(path)
    data = blender.load_blender(tmp_path, background=(0.0, 0.0, 0.0))
    assert data.masks[1].all() and not data.masks[0].all()
    expected = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0
    np.testing.assert_allclose(data.images[1], expected, atol=1e-6)


# --------------------------------------------------------------------------------------
# Writing and the round trip.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width", SIZES)
def test_round_trip(tmp_path, height, width):
    data = _rendered_views(tmp_path, height, width)
    assert data.masks.any() and not data.masks.all()
    splits = {"train": [0, 1], "val": [2], "test": [2, 0]}
    blender.write_blender(tmp_path / "scene", data, splits)
    assert not [f for f in os.listdir(tmp_path / "scene") if f.startswith(".")]
    for split, positions in splits.items():
        back = blender.load_blender(tmp_path / "scene", split)
        assert back.images.shape == (len(positions), height, width, 3)
        for key in cameras.CAMERA_KEYS:
            np.testing.assert_allclose(getattr(back, key), getattr(data, key)[positions], atol=1e-6)
        np.testing.assert_allclose(back.images, data.images[positions], atol=0.5 / 255.0)
        np.testing.assert_array_equal(back.masks, data.masks[positions])
        np.testing.assert_array_equal(back.view_ids, np.arange(len(positions)))
        assert [os.path.basename(f) for f in back.image_files] == [
            f"r_{k}.png" for k in range(len(positions))
        ]


def test_hand_made_scene_round_trips_through_the_writer(tmp_path):
    metas = _hand_made_scene(tmp_path / "a", 10, 12, n=3, fov=0.8, seed=9)
    data = blender.load_blender(tmp_path / "a")
    blender.write_blender(tmp_path / "b", data, {"train": [0, 1, 2]})
    with open(tmp_path / "b" / "transforms_train.json") as f:
        meta = json.load(f)
    assert meta["camera_angle_x"] == pytest.approx(0.8, abs=1e-12)
    for frame, orig in zip(meta["frames"], metas["train"]["frames"]):
        np.testing.assert_allclose(frame["transform_matrix"], orig["transform_matrix"], atol=1e-9)
    back = blender.load_blender(tmp_path / "b")
    np.testing.assert_array_equal(back.masks, data.masks)


def _modify(data, what):
    """A copy of ``data`` with view 1 changed so that the Blender layout cannot express it."""
    cm, wm, sm = data.camera_mat.copy(), data.world_mat.copy(), data.scale_mat.copy()
    images = data.images.copy()
    if what == "NaN image":
        images[1, 2, 3, 0] = np.nan
    if what == "uniform scale_mat":
        sm[1] = np.diag([2.0, 2.0, 2.0, 1.0])
    elif what == "shifted principal point":
        cm[1, 0, 2] = 0.05
    elif what == "skew":
        cm[1, 0, 1] = 0.01
    elif what == "non-square pixels":
        cm[1, 1, 1] *= 1.1
    elif what == "other field of view":
        cm[1, :2, :2] *= 1.1
    elif what == "non-rigid world_mat":
        wm[1, :3, :3] *= 1.01
    elif what == "reflection":
        wm[1, 0, :] *= -1.0
    elif what == "projective world_mat":
        wm[1, 3, 2] = 0.1
    return multiview.MultiViewData(
        images, data.masks, None, cm, wm, sm, data.view_ids, data.image_files, data.folder
    )


@pytest.mark.parametrize(
    "what,message",
    [
        ("uniform scale_mat", "scale_mat is not the identity"),
        ("shifted principal point", "camera_mat must be diag"),
        ("skew", "camera_mat must be diag"),
        ("non-square pixels", "non-square pixels"),
        ("other field of view", "differs from"),
        ("non-rigid world_mat", "not orthonormal"),
        ("reflection", "reflection"),
        ("projective world_mat", "last row"),
        ("NaN image", "finite and in"),
    ],
)
def test_writer_refuses_cameras_the_layout_cannot_express(tmp_path, what, message):
    data = _modify(_rendered_views(tmp_path, 10, 12), what)
    with pytest.raises(ValueError, match=f"view 1 \\(render_1\\): .*{message}"):
        blender.write_blender(tmp_path / "scene", data, {"train": [0, 1, 2]})
    assert not os.path.exists(tmp_path / "scene")
    blender.write_blender(tmp_path / "scene", data, {"train": [0, 2]})  # Without view 1: fine.


def test_writer_refuses_the_multiview_renderers_non_square_pixels(tmp_path):
    shape = builtin.generate_object("sofa", 0, seed=0, num_points=1, num_surface_points=1)["shape"]
    multiview.write_multiview(shape, tmp_path / "mv", n_views=2, resolution=(10, 12), seed=0, progress=False)
    data = multiview.load_multiview(tmp_path / "mv")
    with pytest.raises(ValueError, match="view 0 .*0000.png.*non-square pixels"):
        blender.write_blender(tmp_path / "scene", data, {"train": [0, 1]})


@pytest.mark.parametrize(
    "splits,message",
    [
        ({"val": [0]}, "needs 'train'"),
        ({"train": []}, "non-empty"),
        ({"train": [0, 3]}, r"in \[0, 3\)"),
        ({"train": [-1]}, r"in \[0, 3\)"),
        ({"train": [1, 1]}, "repeated"),
        ({"train": [0], "../x": [1]}, "split: must be a name"),
        ({"train": [0.5]}, "sequence of view positions"),
    ],
)
def test_writer_refuses_bad_splits(tmp_path, splits, message):
    data = _rendered_views(tmp_path, 10, 12)
    with pytest.raises(ValueError, match=message):
        blender.write_blender(tmp_path / "scene", data, splits)
    assert not os.path.exists(tmp_path / "scene")


def test_writer_never_overwrites_silently(tmp_path):
    data = _rendered_views(tmp_path, 12, 12)
    scene = tmp_path / "scene"
    blender.write_blender(scene, data, {"train": [0, 1], "test": [2]})
    before = (scene / "train" / "r_0.png").read_bytes()
    with pytest.raises(FileExistsError, match="holds a Blender scene already.*overwrite=True"):
        blender.write_blender(scene, data, {"train": [2, 1]})
    assert (scene / "train" / "r_0.png").read_bytes() == before
    blender.write_blender(scene, data, {"train": [2, 1]}, overwrite=True)
    assert sorted(os.listdir(scene)) == ["train", "transforms_train.json"]  # The old test split went too.
    np.testing.assert_allclose(blender.load_blender(scene).world_mat, data.world_mat[[2, 1]], atol=1e-9)
    # A folder with someone else's files of the scene's names.
    other = tmp_path / "other"
    (other / "train").mkdir(parents=True)
    (other / "train" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=f"{other / 'train'}: exists"):
        blender.write_blender(other, data, {"train": [0]})
    assert (other / "train" / "mine.txt").read_text() == "keep"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        blender.write_blender(tmp_path / "file", data, {"train": [0]})


# --------------------------------------------------------------------------------------
# Load errors.
# --------------------------------------------------------------------------------------


def _edit_json(folder, fn, split="train"):
    path = os.path.join(folder, f"transforms_{split}.json")
    with open(path) as f:
        meta = json.load(f)
    fn(meta)
    with open(path, "w") as f:
        json.dump(meta, f)


def _set_matrix(value):
    def fn(meta):
        meta["frames"][1]["transform_matrix"] = value

    return fn


def _scaled_rotation(meta):
    m = np.asarray(meta["frames"][1]["transform_matrix"])
    m[:3, :3] *= 1.001
    meta["frames"][1]["transform_matrix"] = m.tolist()


def _mirrored(meta):
    m = np.asarray(meta["frames"][1]["transform_matrix"])
    m[:3, 0] *= -1.0
    meta["frames"][1]["transform_matrix"] = m.tolist()


def _raw(text):
    def corrupt(folder):
        with open(os.path.join(folder, "transforms_train.json"), "w") as f:
            f.write(text)

    return corrupt


def _json(fn):
    return lambda folder: _edit_json(folder, fn)


def _image(name, write):
    return lambda folder: write(os.path.join(folder, "train", name))


LOAD_ERRORS = {
    "bad JSON": (_raw('{"camera_angle_x": 0.7, "frames": ['), "transforms_train.json", "unreadable JSON"),
    "not an object": (_raw("[1, 2]"), "transforms_train.json", "JSON object"),
    "no camera_angle_x": (
        _json(lambda m: m.pop("camera_angle_x")),
        "transforms_train.json",
        "camera_angle_x",
    ),
    "zero camera_angle_x": (
        _json(lambda m: m.update(camera_angle_x=0)),
        "transforms_train.json",
        "camera_angle_x",
    ),
    "text camera_angle_x": (
        _json(lambda m: m.update(camera_angle_x="wide")),
        "transforms_train.json",
        "(0, pi)",
    ),
    "no frames": (_json(lambda m: m.pop("frames")), "transforms_train.json", "'frames'"),
    "empty frames": (_json(lambda m: m.update(frames=[])), "transforms_train.json", "'frames'"),
    "no file_path": (_json(lambda m: m["frames"][1].pop("file_path")), "frames[1]", "'file_path'"),
    "no transform_matrix": (
        _json(lambda m: m["frames"][1].pop("transform_matrix")),
        "frames[1]",
        "no 'transform_matrix'",
    ),
    "3x4 matrix": (_json(_set_matrix(np.eye(4)[:3].tolist())), "frames[1]", "must be 4x4"),
    "ragged matrix": (_json(_set_matrix([[1, 0], [0, 1, 0]])), "frames[1]", "transform_matrix"),
    "NaN matrix": (_json(_set_matrix([[math.nan] * 4] * 4)), "frames[1]", "non-finite"),
    "inf matrix": (
        _json(_set_matrix([[math.inf, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])),
        "frames[1]",
        "non-finite",
    ),
    "scaled rotation": (_json(_scaled_rotation), "frames[1]", "not orthonormal"),
    "mirrored": (_json(_mirrored), "frames[1]", "reflection"),
    "bad last row": (
        _json(_set_matrix([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0.5, 1]])),
        "frames[1]",
        "last row",
    ),
    "missing image": (_image("r_1.png", os.remove), os.path.join("train", "r_1.png"), "image not found"),
    "garbage image": (
        _image("r_1.png", lambda p: open(p, "wb").write(b"not a png at all")),
        os.path.join("train", "r_1.png"),
        "unreadable image",
    ),
    "16-bit grey image": (
        _image("r_1.png", lambda p: Image.fromarray(np.full((10, 12), 300, np.uint16)).save(p)),
        os.path.join("train", "r_1.png"),
        "unsupported image mode",
    ),
    "other image size": (
        _image("r_2.png", lambda p: Image.new("RGBA", (12, 11)).save(p)),
        os.path.join("train", "r_2.png"),
        "differs from 12x10",
    ),
}


@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_load_errors_name_the_file(tmp_path, case):
    corrupt, where, problem = LOAD_ERRORS[case]
    _hand_made_scene(tmp_path, 10, 12, n=3, seed=11)
    blender.load_blender(tmp_path)  # Fine before.
    corrupt(str(tmp_path))
    with pytest.raises(DataFormatError) as info:
        blender.load_blender(tmp_path)
    message = str(info.value)
    assert where in message and problem in message, message


@pytest.mark.parametrize(
    "call,error,message",
    [
        (
            lambda f: blender.load_blender(f, "val"),
            DataFormatError,
            "transforms_val.json: split file not found",
        ),
        (lambda f: blender.load_blender(f / "none"), DataFormatError, "scene folder not found"),
        (lambda f: blender.load_blender(f, "../x"), ValueError, "split: must be a name"),
        (lambda f: blender.load_blender(f, scale=0.0), ValueError, "scale"),
        (lambda f: blender.load_blender(f, scale=math.nan), ValueError, "scale"),
        (lambda f: blender.load_blender(f, background=(1.0, 2.0, 0.0)), ValueError, "background"),
        (lambda f: blender.load_blender(f, background=(1.0, 1.0)), ValueError, "background"),
    ],
)
def test_load_argument_errors(tmp_path, call, error, message):
    _hand_made_scene(tmp_path, 10, 12, n=2)
    with pytest.raises(error, match=message):
        call(tmp_path)


# --------------------------------------------------------------------------------------
# One loader for both layouts.
# --------------------------------------------------------------------------------------


def test_detect_layout_and_load_views_on_both_layouts(tmp_path):
    shape = builtin.generate_object("sofa", 0, seed=0, num_points=1, num_surface_points=1)["shape"]
    mv = tmp_path / "mv"
    multiview.write_multiview(shape, mv, n_views=5, resolution=8, seed=0, progress=False)
    bl = tmp_path / "bl"
    _hand_made_scene(bl, 10, 12, n=2, splits=("train", "val", "test"))
    _edit_json(bl, lambda m: m["frames"].pop(), split="test")
    assert blender.detect_layout(mv) == "multiview"
    assert blender.detect_layout(bl) == "blender"
    full = multiview.load_multiview(mv)
    for split, val_views, positions in [
        ("train", 0, [0, 1, 2, 3, 4]),
        ("train", 2, [0, 1, 2]),
        ("val", 2, [3, 4]),
        ("test", 2, [3, 4]),
        ("val", 1, [4]),
    ]:
        data = blender.load_views(mv, split, val_views=val_views)
        np.testing.assert_array_equal(data.view_ids, positions)
        np.testing.assert_array_equal(data.images, full.images[positions])
        np.testing.assert_array_equal(data.world_mat, full.world_mat[positions])
        assert data.image_files == [full.image_files[i] for i in positions]
    for split, n in [("train", 2), ("val", 2), ("test", 1)]:
        assert blender.load_views(bl, split, val_views=1).num_views == n
    scaled = blender.load_views(bl, "train", scale=3.0)
    np.testing.assert_array_equal(scaled.scale_mat[0], np.diag([3.0, 3.0, 3.0, 1.0]))


@pytest.mark.parametrize(
    "split,kwargs,message",
    [
        ("train", {"val_views": 5}, "val_views: 5 holds out every view"),
        ("val", {"val_views": 0}, "val_views: 0 holds out no view"),
        ("test", {}, "val_views: 0 holds out no view"),
        ("train", {"val_views": -1}, "val_views"),
        ("holdout", {}, "split: must be one of"),
        ("train", {"scale": 2.0}, "scale: 2.0 applies to the Blender layout only"),
    ],
)
def test_load_views_errors_on_the_multiview_layout(tmp_path, split, kwargs, message):
    shape = builtin.generate_object("sofa", 0, seed=0, num_points=1, num_surface_points=1)["shape"]
    multiview.write_multiview(shape, tmp_path, n_views=5, resolution=6, seed=0, progress=False)
    with pytest.raises(ValueError, match=message):
        blender.load_views(tmp_path, split, **kwargs)


@pytest.mark.parametrize("setup", ["empty", "missing", "only images"])
def test_detect_layout_errors_name_the_folder_and_both_layouts(tmp_path, setup):
    folder = tmp_path / "scene"
    if setup != "missing":
        folder.mkdir()
    if setup == "only images":
        (folder / "image").mkdir()
        (folder / "transforms_val.json").write_text("{}")
    with pytest.raises(DataFormatError) as info:
        blender.detect_layout(folder)
    message = str(info.value)
    assert message.startswith(f"{folder}: ")
    if setup != "missing":
        assert "transforms_train.json" in message and "cameras.npz" in message


# --------------------------------------------------------------------------------------
# The built-in object as a Blender scene.
# --------------------------------------------------------------------------------------


def test_write_builtin_scene(tmp_path):
    scene = tmp_path / "scene"
    kwargs = dict(n_views=5, resolution=8, val_views=1, test_views=1, progress=False, radius=2.5)
    assert blender.write_builtin_scene(scene, **kwargs) == str(scene)
    assert sorted(os.listdir(scene)) == sorted(
        ["train", "val", "test", "transforms_train.json", "transforms_val.json", "transforms_test.json"]
        + ["shape.json", "scene.json"]
    )
    shape = onet_format.load_shape(scene)
    expected = builtin.generate_object("sofa", 0, seed=0, num_points=1, num_surface_points=1)["shape"]
    assert shape.to_dict() == expected.to_dict()
    sizes = {s: blender.load_views(scene, s).num_views for s in blender.SPLITS}
    assert sizes == {"train": 3, "val": 1, "test": 1}
    data = blender.load_blender(scene, "test")
    cam = data.camera(0)
    # The render keyword (radius) reached the renderer; the shape is in the scene's world.
    eye = cameras.origin_to_world(*(cam[c] for c in cameras.CAMERA_KEYS))
    assert np.linalg.norm(eye) == pytest.approx(2.5)
    np.testing.assert_array_equal(shape_render.render_view(shape, cam, 8, 8)["mask"], data.masks[0])
    assert data.masks[0].any()

    stamp = os.stat(scene / "transforms_train.json").st_mtime_ns
    blender.write_builtin_scene(scene, **kwargs)  # The same parameters: kept as it is.
    assert os.stat(scene / "transforms_train.json").st_mtime_ns == stamp
    for change in [{"n_views": 6}, {"texture": "none"}, {"seed": 1}, {"test_views": None}, {"radius": 3.0}]:
        with pytest.raises(ValueError, match=f"written with other parameters .*{next(iter(change))}"):
            blender.write_builtin_scene(scene, **{**kwargs, **change})
    assert os.stat(scene / "transforms_train.json").st_mtime_ns == stamp
    assert not [f for f in os.listdir(scene) if f.startswith(".")]


def test_an_interrupted_builtin_scene_is_written_again(tmp_path):
    kwargs = dict(n_views=3, resolution=6, val_views=1, progress=False)
    blender.write_builtin_scene(tmp_path, **kwargs)
    os.remove(tmp_path / "transforms_train.json")  # As if stopped before the completion mark.
    (tmp_path / "train" / "r_0.png").write_bytes(b"half written")
    (tmp_path / ".tmp-blender-stale").mkdir()
    blender.write_builtin_scene(tmp_path, **kwargs)
    assert blender.load_blender(tmp_path).num_views == 2
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_builtin_scene_test_split_defaults_to_the_held_out_views(tmp_path):
    blender.write_builtin_scene(tmp_path, n_views=3, resolution=6, val_views=1, progress=False)
    val, test = blender.load_blender(tmp_path, "val"), blender.load_blender(tmp_path, "test")
    np.testing.assert_array_equal(val.images, test.images)
    np.testing.assert_array_equal(val.world_mat, test.world_mat)
    assert blender.load_blender(tmp_path).num_views == 2


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"resolution": (6, 8)}, ValueError, "resolution: 6x8 is not square"),
        ({"val_views": 3}, ValueError, "leave no training view"),
        ({"val_views": 2, "test_views": 1}, ValueError, "leave no training view"),
        ({"val_views": 0}, ValueError, "val_views"),
        ({"category": "spaceship"}, ValueError, "unknown category"),
        ({"foreign": True}, FileExistsError, "shape.json: exists"),
        ({"other scene": True}, ValueError, "not written by write_builtin_scene"),
    ],
)
def test_write_builtin_scene_refusals(tmp_path, kwargs, error, message):
    folder = tmp_path / "scene"
    if kwargs.pop("foreign", False):  # A multi-view scene's folder: its shape.json is not replaced.
        folder.mkdir()
        (folder / "shape.json").write_text("{}")
    if kwargs.pop("other scene", False):
        _hand_made_scene(folder, 6, 6, n=1)
    with pytest.raises(error, match=message):
        blender.write_builtin_scene(
            folder, **{"n_views": 3, "resolution": 6, "val_views": 1, "progress": False, **kwargs}
        )
    if folder.exists():
        assert not [f for f in os.listdir(folder) if f.startswith(".")]
