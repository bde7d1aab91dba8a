"""Tests for implicit_fields.vis (PNG I/O, splat rendering, text, grids)."""

import struct
import zlib

import numpy as np
import trimesh

from implicit_fields import vis

WHITE = np.array([255, 255, 255], np.uint8)


def _foreground(image):
    """bool (H, W): pixels differing from the white background."""
    return np.any(image != WHITE, axis=2)


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (9, 5), dtype=np.uint8)
    for name, image in (('rgb.png', rgb), ('grey.png', grey)):
        path = tmp_path / name
        vis.write_png(path, image)
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        back = vis.read_png(path)
        assert back.dtype == np.uint8
        np.testing.assert_array_equal(back, image)


def test_read_png_all_filter_types(tmp_path):
    # Hand-encode an RGB image with one row per filter type (0..4).
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    raw = image.reshape(5, 21).astype(np.int64)
    prev = np.zeros(21, np.int64)
    rows = []
    for y in range(5):
        cur = raw[y]
        left = np.concatenate([np.zeros(3, np.int64), cur[:-3]])
        up_left = np.concatenate([np.zeros(3, np.int64), prev[:-3]])
        p = left + prev - up_left
        pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - up_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left,
                         np.where(pb <= pc, prev, up_left))
        pred = [0, left, prev, (left + prev) // 2, paeth][y]
        filtered = ((cur - pred) % 256).astype(np.uint8)
        rows.append(bytes([y]) + filtered.tobytes())
        prev = cur

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))

    png = (b'\x89PNG\r\n\x1a\n'
           + chunk(b'IHDR', struct.pack('>IIBBBBB', 7, 5, 8, 2, 0, 0, 0))
           + chunk(b'IDAT', zlib.compress(b''.join(rows)))
           + chunk(b'IEND', b''))
    path = tmp_path / 'filters.png'
    path.write_bytes(png)
    np.testing.assert_array_equal(vis.read_png(path), image)


def test_render_sphere_silhouette_area():
    radius, size, extent = 0.4, 256, 0.55
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    image = vis.render_mesh(mesh.vertices, mesh.faces, image_size=size,
                            extent=extent, azimuth_deg=30, elevation_deg=20)
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
    image = vis.render_points(points, image_size=64, azimuth_deg=0,
                              elevation_deg=0, point_radius_px=0)
    rows, cols = np.nonzero(_foreground(image))
    assert set(zip(rows.tolist(), cols.tolist())) == {(32, 49), (14, 32)}
    # Two points on the same pixel: the one nearer the camera (+z) wins.
    points = np.array([[0.0, 0.0, -0.2], [0.0, 0.0, 0.2]])
    colors = np.array([[255, 0, 0], [0, 255, 0]], np.uint8)
    for order in ([0, 1], [1, 0]):
        image = vis.render_points(points[order], colors=colors[order],
                                  image_size=32, azimuth_deg=0,
                                  elevation_deg=0, point_radius_px=2)
        np.testing.assert_array_equal(image[16, 16], [0, 255, 0])
    # Empty inputs give a blank image.
    assert (vis.render_points(np.zeros((0, 3)), image_size=8) == 255).all()
    blank = vis.render_mesh(np.zeros((0, 3)), np.zeros((0, 3), int),
                            image_size=8)
    assert blank.shape == (8, 8, 3) and (blank == 255).all()


def test_draw_text_and_grid():
    image = np.full((40, 200, 3), 255, np.uint8)
    out = vis.draw_text(image, 'IOU=0.5 cd-L1: 1/2%', (2, 3), scale=2,
                        color=(255, 0, 0))
    assert (image == 255).all()  # Input untouched.
    ink = _foreground(out)
    assert ink.sum() > 100
    assert (out[ink] == [255, 0, 0]).all()
    height, width = vis.text_size('IOU=0.5 cd-L1: 1/2%', scale=2)
    rows, cols = np.nonzero(ink)
    assert rows.min() >= 3 and rows.max() < 3 + height
    assert cols.min() >= 2 and cols.max() < 2 + width
    # Unknown characters and clipping at the border do not fail.
    vis.draw_text(image, '@#\nAB', (190, 35))

    a = np.zeros((10, 20, 3), np.uint8)
    b = np.zeros((15, 5), np.uint8)
    grid = vis.image_grid([[a, b], [a]], labels=[['A', 'B'], ['C']], pad=4)
    assert grid.dtype == np.uint8 and grid.ndim == 3
    label_h = 8 + 2
    assert grid.shape == (4 + 2 * (label_h + 15 + 4), 4 + 2 * (20 + 4), 3)
    assert (grid[4 + label_h:4 + label_h + 10, 4:24] == 0).all()
