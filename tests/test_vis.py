"""Tests for implicit_fields.vis (PNG I/O, splat rendering, text, grids)."""

import os

import numpy as np
import pytest
import trimesh
from PIL import Image

from implicit_fields import vis

WHITE = np.array([255, 255, 255], np.uint8)
RED = (255, 0, 0)


def _foreground(image):
    """bool (H, W): pixels differing from the white background."""
    return np.any(image != WHITE, axis=2)


# ----------------------------------------------------------------------------
# PNG
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(9, 5), (17, 23, 3), (6, 11, 4)], ids=["grey", "rgb", "rgba"])
@pytest.mark.parametrize("as_str", [False, True], ids=["pathlib", "str"])
def test_png_round_trip_is_exact(tmp_path, shape, as_str):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "picture.png"
    vis.write_png(str(path) if as_str else path, image)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:  # A standard PNG for other readers too.
        assert im.format == "PNG" and im.mode == ("L" if len(shape) == 2 else {3: "RGB", 4: "RGBA"}[shape[2]])
    back = vis.read_png(str(path) if as_str else path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, image)
    back[0, 0] = 7  # The result is an ordinary writable array.


def test_write_png_bool_single_channel_and_bad_inputs(tmp_path):
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    vis.write_png(tmp_path / "mask.png", mask)
    np.testing.assert_array_equal(vis.read_png(tmp_path / "mask.png"), mask.astype(np.uint8) * 255)
    column = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    vis.write_png(tmp_path / "one.png", column)
    np.testing.assert_array_equal(vis.read_png(tmp_path / "one.png"), column[:, :, 0])
    with pytest.raises(TypeError, match="uint8"):
        vis.write_png(tmp_path / "float.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        vis.write_png(tmp_path / "two.png", np.zeros((4, 4, 2), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["mask.png", "one.png"]


def test_write_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    old = np.full((5, 7, 3), 90, np.uint8)
    vis.write_png(path, old)
    assert os.listdir(tmp_path) == ["out.png"]  # No temporary file left behind.
    old_bytes = path.read_bytes()

    def crash_mid_write(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG\r\n\x1a\n half of a picture")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(Image.Image, "save", crash_mid_write)
    with pytest.raises(RuntimeError, match="simulated crash"):
        vis.write_png(path, np.zeros((50, 50, 3), np.uint8))
    assert path.read_bytes() == old_bytes  # The old picture is intact ...
    assert os.listdir(tmp_path) == ["out.png"]  # ... and the partial file is gone.
    monkeypatch.undo()
    new = np.full((3, 2), 200, np.uint8)
    vis.write_png(path, new)  # Replacing an existing file works.
    np.testing.assert_array_equal(vis.read_png(path), new)
    assert os.listdir(tmp_path) == ["out.png"]


def test_read_png_errors_name_the_file(tmp_path):
    good = tmp_path / "good.png"
    vis.write_png(good, np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    data = good.read_bytes()
    cases = {
        "empty.png": (b"", "not a PNG file"),
        "text.png": (b"hello, world", "not a PNG file"),
        "photo.png": (b"\xff\xd8\xff\xe0 a JPEG header", "not a PNG file"),
        "header_cut.png": (data[:40], "truncated or corrupt PNG"),
        "data_cut.png": (data[: len(data) // 2], "truncated"),
    }
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=problem) as info:
            vis.read_png(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    with pytest.raises(FileNotFoundError):
        vis.read_png(tmp_path / "missing.png")


def test_read_png_from_other_writers(tmp_path):
    rng = np.random.default_rng(2)
    grey_alpha = rng.integers(0, 256, (6, 5, 2), dtype=np.uint8)
    Image.merge("LA", [Image.fromarray(grey_alpha[:, :, i]) for i in range(2)]).save(tmp_path / "la.png")
    np.testing.assert_array_equal(vis.read_png(tmp_path / "la.png"), grey_alpha)

    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[1:3, 2:5] = (10, 200, 30)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P"
    np.testing.assert_array_equal(vis.read_png(tmp_path / "p.png"), rgb)

    Image.fromarray(np.full((3, 4), 40000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match=r"deep\.png: unsupported PNG pixel format"):
        vis.read_png(tmp_path / "deep.png")


# ----------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------


def test_render_sphere_silhouette_area():
    radius, size, extent = 0.4, 256, 0.55
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    image = vis.render_mesh(
        mesh.vertices, mesh.faces, image_size=size, extent=extent, azimuth_deg=30, elevation_deg=20
    )
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    fg = _foreground(image)
    r_px = radius / (2 * extent) * size
    # The 1-px splat radius grows the silhouette by ~1 px (~3% in area).
    assert 0.98 < fg.sum() / (np.pi * r_px**2) < 1.06
    rows, cols = np.nonzero(fg)
    np.testing.assert_allclose([rows.mean(), cols.mean()], size / 2, atol=1.5)
    # Solid: no background holes inside 0.95 r of the centre.
    yy, xx = np.mgrid[:size, :size] + 0.5
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.95 * r_px) ** 2
    assert fg[disc].all()
    # Lambert shading varies across the sphere.
    assert np.unique(image[disc].mean(axis=1)).size > 20


def test_render_points_orientation_and_zbuffer():
    # Azimuth 0, elevation 0: camera on +z, x to the right, y up.
    points = np.array([[0.3, 0.0, 0.0], [0.0, 0.3, 0.0]])
    image = vis.render_points(points, image_size=64, azimuth_deg=0, elevation_deg=0, point_radius_px=0)
    rows, cols = np.nonzero(_foreground(image))
    assert set(zip(rows.tolist(), cols.tolist())) == {(32, 49), (14, 32)}
    # Two points on the same pixel: the one nearer the camera (+z) wins.
    points = np.array([[0.0, 0.0, -0.2], [0.0, 0.0, 0.2]])
    colors = np.array([[255, 0, 0], [0, 255, 0]], np.uint8)
    for order in ([0, 1], [1, 0]):
        image = vis.render_points(
            points[order],
            colors=colors[order],
            image_size=32,
            azimuth_deg=0,
            elevation_deg=0,
            point_radius_px=2,
        )
        np.testing.assert_array_equal(image[16, 16], [0, 255, 0])
    # Empty inputs give a blank image.
    assert (vis.render_points(np.zeros((0, 3)), image_size=8) == 255).all()
    blank = vis.render_mesh(np.zeros((0, 3)), np.zeros((0, 3), int), image_size=8)
    assert blank.shape == (8, 8, 3) and (blank == 255).all()


# ----------------------------------------------------------------------------
# Text and grids
# ----------------------------------------------------------------------------


def test_draw_text_inks_the_colour_inside_its_box_only():
    text, x, y = "IoU=0.5 cd-L1: 1/2% jpg", 7, 5
    image = np.full((60, 260, 3), 255, np.uint8)
    out = vis.draw_text(image, text, (x, y), scale=1.5, color=RED)
    assert (image == 255).all()  # Input untouched.
    ink = _foreground(out)
    assert (out == RED).all(axis=2).sum() > 50  # Fully covered pixels get exactly the colour.
    # Edge pixels blend red into white: R stays 255, G == B.
    assert (out[ink, 0] == 255).all() and (out[ink, 1] == out[ink, 2]).all()
    height, width = vis.text_size(text, scale=1.5)
    rows, cols = np.nonzero(ink)
    assert rows.min() >= y and rows.max() < y + height
    assert cols.min() >= x and cols.max() < x + width
    assert cols.max() >= x + width - 8  # The box is tight on the right, not padding.
    # Different text gives a different picture.
    assert (
        vis.draw_text(image, "B", (x, y), color=RED) != vis.draw_text(image, "E", (x, y), color=RED)
    ).any()


def test_text_size_scales_and_lines_stack():
    h1, w1 = vis.text_size("Chair 12", scale=1)
    h2, w2 = vis.text_size("Chair 12", scale=2)
    assert 10 <= h1 <= 16  # Legible at scale 1.
    assert h2 > 1.7 * h1 and w2 > 1.7 * w1
    assert vis.text_size("Chair 12", scale=1)[1] < vis.text_size("Chair 12 ours", scale=1)[1]
    # Capitals at scale 1 are tall enough to read (7 px or more).
    ink = _foreground(vis.draw_text(np.full((h1, 20, 3), 255, np.uint8), "H", (0, 0), scale=1))
    cap_rows = np.nonzero(ink.any(axis=1))[0]
    assert 7 <= cap_rows.max() - cap_rows.min() + 1 <= 11
    # Two lines: twice the height, the width of the longer line, ink in both halves.
    h, w = vis.text_size("ab\nlonger line", scale=1)
    assert h == 2 * h1 and w == vis.text_size("longer line", scale=1)[1]
    two = _foreground(vis.draw_text(np.full((h, w, 3), 255, np.uint8), "ab\nlonger line", (0, 0), scale=1))
    assert two[: h // 2].any() and two[h // 2 :].any()
    assert two[h // 2 :].sum() > two[: h // 2].sum()


def test_draw_text_clips_at_the_border_and_draws_grey():
    text = "Edge €\nAB"
    h, w = vis.text_size(text, scale=1)
    big = vis.draw_text(np.full((h + 20, w + 20, 3), 255, np.uint8), text, (10, 10), scale=1, color=RED)
    # Partly outside the image: the visible part matches the same text drawn fully inside.
    small = vis.draw_text(np.full((h, w, 3), 255, np.uint8), text, (-6, -4), scale=1, color=RED)
    np.testing.assert_array_equal(small[: h - 4, : w - 6], big[14 : 10 + h, 16 : 10 + w])
    off = vis.draw_text(np.full((8, 8, 3), 255, np.uint8), text, (50, 50), scale=1, color=RED)
    assert (off == 255).all()
    grey = vis.draw_text(np.full((h, w), 200, np.uint8), text, (0, 0), scale=1, color=(0, 30, 60))
    assert grey.ndim == 2 and grey.min() == 30 and (grey <= 200).all()


def test_image_grid_layout_and_labels():
    a = np.zeros((10, 60, 3), np.uint8)
    b = np.zeros((15, 5), np.uint8)
    pad = 4
    plain = vis.image_grid([[a, b], [a]], pad=pad)
    assert plain.shape == (pad + 2 * (15 + pad), pad + 2 * (60 + pad), 3)
    labels = [["Alpha", "B"], ["C"]]
    grid = vis.image_grid([[a, b], [a]], labels=labels, pad=pad)
    blank = vis.image_grid([[a, b], [a]], labels=[["", ""], [""]], pad=pad)
    assert grid.dtype == np.uint8 and grid.shape == blank.shape
    label_h = vis.text_size("", scale=1)[0] + 2
    assert grid.shape == (pad + 2 * (label_h + 15 + pad), pad + 2 * (60 + pad), 3)
    for r in range(2):  # Tiles sit under their label band.
        top = pad + r * (label_h + 15 + pad) + label_h
        assert (grid[top : top + 10, pad : pad + 60] == 0).all()
    # Labels change the picture, only inside the label bands, in black.
    changed = np.any(grid != blank, axis=2)
    assert changed.any()
    band = np.zeros(changed.shape, bool)
    for r in range(2):
        top = pad + r * (label_h + 15 + pad)
        band[top : top + label_h] = True
    assert not changed[~band].any()
    assert (grid[changed] < 255).all() and (grid == 0).all(axis=2)[band].any()
    # Every label is drawn above its own cell, and a longer label takes more room.
    first = changed[pad : pad + label_h]
    assert first[:, pad : pad + 60].any() and first[:, 2 * pad + 60 :].any()
    assert changed[pad + label_h + 15 + pad :, pad : pad + 60].any()
    assert first[:, pad : pad + 60].sum() > first[:, 2 * pad + 60 :].sum()


def test_write_gif_round_trip_and_errors(tmp_path):
    frames = [np.full((12, 16, 3), 40 * i, np.uint8) for i in range(4)]
    frames[2][3:6, 4:9] = (255, 0, 0)
    path = tmp_path / "motion.gif"
    vis.write_gif(path, frames, duration_ms=80)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.size == (16, 12)
        gif.seek(2)
        assert gif.info["duration"] == 80
        np.testing.assert_array_equal(np.asarray(gif.convert("RGB"))[4, 5], (255, 0, 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motion.gif"]  # No temporary file left.
    with pytest.raises(ValueError, match="at least one frame"):
        vis.write_gif(tmp_path / "x.gif", [])
    with pytest.raises(ValueError, match="frame 1 has shape"):
        vis.write_gif(tmp_path / "x.gif", [frames[0], frames[1][:5]])
    with pytest.raises(TypeError, match="uint8"):
        vis.write_gif(tmp_path / "x.gif", [frames[0].astype(np.float32)])
