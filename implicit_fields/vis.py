"""Dependency-free pictures: PNG I/O, point/mesh splatting, text and grids.

Everything is numpy only (no matplotlib, no PIL). Images are uint8 arrays of
shape (H, W, 3) (RGB) or (H, W) (grey). Rendering uses an orthographic camera
looking at the origin with y up (the ShapeNet convention) and a z-buffered
disc splat per point.
"""

import struct
import zlib

import numpy as np

from implicit_fields import metrics

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_DEFAULT_COLOR = (0.62, 0.72, 0.88)  # Light steel blue for shaded geometry.
_FLAT_COLOR = (0.2, 0.35, 0.75)  # Points without normals.


# ----------------------------------------------------------------------------
# PNG
# ----------------------------------------------------------------------------


def _chunk(kind, data):
    """Encodes one PNG chunk. kind: 4-byte bytes; data: bytes."""
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))


def write_png(path, image):
    """Writes an 8-bit PNG (no filtering, zlib level 6).

    Args:
      path: str or path-like, output file.
      image: uint8 (or bool) array, (H, W) grey, (H, W, 3) RGB or (H, W, 4)
        RGBA.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        raise TypeError(f'write_png expects uint8, got {image.dtype}.')
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f'Unsupported image shape {image.shape}.')
    height, width, channels = image.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8),
         np.ascontiguousarray(image).reshape(height, width * channels)],
        axis=1)
    header = struct.pack('>IIBBBBB', width, height, 8, color_type, 0, 0, 0)
    data = (_PNG_SIGNATURE + _chunk(b'IHDR', header)
            + _chunk(b'IDAT', zlib.compress(rows.tobytes(), 6))
            + _chunk(b'IEND', b''))
    with open(path, 'wb') as f:
        f.write(data)


def _paeth(a, b, c):
    """Paeth predictor on int arrays of equal shape."""
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def read_png(path):
    """Reads an 8-bit, non-interlaced PNG (grey, grey+alpha, RGB or RGBA).

    Args:
      path: str or path-like.

    Returns:
      uint8 array, (H, W) for grey, else (H, W, C) with C in {2, 3, 4}.
    """
    with open(path, 'rb') as f:
        data = f.read()
    if data[:8] != _PNG_SIGNATURE:
        raise ValueError(f'{path} is not a PNG file.')
    pos = 8
    idat = []
    header = None
    while pos < len(data):
        (length,) = struct.unpack('>I', data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat.append(body)
        elif kind == b'IEND':
            break
    if header is None:
        raise ValueError(f'{path} has no IHDR chunk.')
    width, height, depth, color_type, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color_type)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(
            f'Unsupported PNG (bit depth {depth}, colour type {color_type}, '
            f'interlace {interlace}).')
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(b''.join(idat)), np.uint8)
    raw = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int64)
    prev = np.zeros(stride, np.int64)
    for y in range(height):
        ftype = raw[y, 0]
        line = raw[y, 1:].astype(np.int64)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: cumulative sum per channel.
            cur = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1)
        elif ftype == 2:  # Up.
            cur = line + prev
        elif ftype in (3, 4):  # Average / Paeth: sequential over pixels.
            cur = np.zeros(stride, np.int64)
            zero = np.zeros(channels, np.int64)
            for x in range(width):
                sl = slice(x * channels, (x + 1) * channels)
                left = cur[sl.start - channels:sl.start] if x else zero
                up = prev[sl]
                if ftype == 3:
                    pred = (left + up) // 2
                else:
                    up_left = (prev[sl.start - channels:sl.start] if x
                               else zero)
                    pred = _paeth(left, up, up_left)
                cur[sl] = (line[sl] + pred) % 256
        else:
            raise ValueError(f'Bad PNG filter type {ftype}.')
        cur = cur % 256
        out[y] = cur
        prev = cur
    image = out.astype(np.uint8).reshape(height, width, channels)
    return image[:, :, 0] if channels == 1 else image


# ----------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------


def _camera_basis(azimuth_deg, elevation_deg):
    """Orthonormal camera frame; y is world up.

    Args:
      azimuth_deg: float, rotation about +y; 0 looks from +z towards -z.
      elevation_deg: float, angle above the xz plane.

    Returns:
      right, up, back: float64 arrays, (3,). `back` points from the origin
        towards the camera; image x follows `right`, image y follows `-up`.
    """
    az = np.deg2rad(azimuth_deg)
    el = np.deg2rad(elevation_deg)
    back = np.array([np.cos(el) * np.sin(az), np.sin(el),
                     np.cos(el) * np.cos(az)])
    right = np.cross([0.0, 1.0, 0.0], back)
    if np.linalg.norm(right) < 1e-8:  # Looking straight up or down.
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    return right, up, back


def _disc_offsets(radius):
    """Pixel offsets (K, 2) int64 (dy, dx) of a disc of `radius` pixels."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    keep = dy**2 + dx**2 <= radius**2 + 1e-9
    return np.stack([dy[keep], dx[keep]], axis=1).astype(np.int64)


def _as_rgb(color):
    """Colour as float64 (3,) in [0, 1] from uint8 triple or floats."""
    color = np.asarray(color)
    if color.dtype == np.uint8 or np.max(color) > 1.0:
        return color.astype(np.float64) / 255.0
    return color.astype(np.float64)


def render_points(points, normals=None, colors=None, image_size=256,
                  azimuth_deg=45.0, elevation_deg=25.0, extent=0.55,
                  point_radius_px=1.0, background=(255, 255, 255),
                  light_dir=(-0.4, 0.6, 0.7), ambient=0.3):
    """Splats a point cloud into an image with a z-buffer.

    The camera is orthographic, looks at the origin from direction
    (azimuth, elevation) with y up, and shows the square [-extent, extent]^2
    of the view plane. Each point covers a disc of `point_radius_px` pixels;
    the point nearest to the camera wins each pixel. With normals, points are
    shaded `ambient + (1 - ambient) * max(n . l, 0)` with normals flipped to
    face the camera and a fixed light given in camera coordinates.

    Args:
      points: float array, (N, 3), world positions.
      normals: float array, (N, 3), or None for flat colour.
      colors: (N, 3) per-point colours, uint8 or float in [0, 1]; or None
        for a default colour.
      image_size: int, output height and width in pixels.
      azimuth_deg: float, camera azimuth about +y (0: camera on +z).
      elevation_deg: float, camera elevation above the xz plane.
      extent: float half-width of the view in world units, or None / 'auto'
        to fit the points (with 5% margin).
      point_radius_px: float, splat radius in pixels (0 gives one pixel).
      background: RGB uint8 triple.
      light_dir: (3,) light direction in camera coordinates (right, up,
        towards camera).
      ambient: float in [0, 1], ambient light fraction.

    Returns:
      uint8 array, (image_size, image_size, 3).
    """
    size = int(image_size)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = np.asarray(background, np.uint8)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n = points.shape[0]
    if n == 0:
        return image
    right, up, back = _camera_basis(azimuth_deg, elevation_deg)
    u = points @ right
    v = points @ up
    depth = -(points @ back)  # Smaller is nearer to the camera.
    if extent is None or (isinstance(extent, str) and extent == 'auto'):
        extent = 1.05 * max(np.max(np.abs(u)), np.max(np.abs(v)), 1e-9)
    extent = float(extent)
    px = (u + extent) / (2.0 * extent) * size
    py = (extent - v) / (2.0 * extent) * size
    ix = np.floor(px).astype(np.int64)
    iy = np.floor(py).astype(np.int64)

    if colors is None:
        base = np.broadcast_to(
            _as_rgb(_DEFAULT_COLOR if normals is not None else _FLAT_COLOR),
            (n, 3))
    else:
        colors = np.asarray(colors)
        base = (colors.astype(np.float64) / 255.0 if colors.dtype == np.uint8
                else colors.astype(np.float64)).reshape(n, 3)
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float64).reshape(n, 3)
        norm = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = normals / np.where(norm > 0, norm, 1.0)
        facing = normals @ back
        normals = normals * np.where(facing < 0, -1.0, 1.0)[:, None]
        light = np.asarray(light_dir, dtype=np.float64)
        light = light[0] * right + light[1] * up + light[2] * back
        light /= np.linalg.norm(light)
        shade = ambient + (1.0 - ambient) * np.maximum(normals @ light, 0.0)
        rgb = base * shade[:, None]
    else:
        rgb = base
    rgb = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)

    offsets = _disc_offsets(max(float(point_radius_px), 0.0))
    k = offsets.shape[0]
    sy = (iy[:, None] + offsets[None, :, 0]).reshape(-1)
    sx = (ix[:, None] + offsets[None, :, 1]).reshape(-1)
    sid = np.repeat(np.arange(n), k)
    ok = (sx >= 0) & (sx < size) & (sy >= 0) & (sy < size)
    pix = sy[ok] * size + sx[ok]
    sid = sid[ok]
    if pix.size == 0:
        return image
    zbuf = np.full(size * size, np.inf)
    np.minimum.at(zbuf, pix, depth[sid])
    win = depth[sid] <= zbuf[pix]
    flat = image.reshape(-1, 3)
    flat[pix[win]] = rgb[sid[win]]
    return image


def _auto_samples(vertices, faces, image_size, extent):
    """Samples for a solid-looking render: about 4 per pixel of surface."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(
        np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    if extent is None or isinstance(extent, str):
        extent = 0.5 * np.max(vertices.max(0) - vertices.min(0))
    pixel = 2.0 * float(extent) / image_size
    return int(np.clip(4.0 * area / max(pixel**2, 1e-12), 20_000, 2_000_000))


def render_mesh(vertices, faces, n_samples=None, seed=0, **kwargs):
    """Renders a triangle mesh by dense surface sampling and `render_points`.

    Args:
      vertices: float array, (V, 3).
      faces: int array, (F, 3).
      n_samples: int, surface samples; None picks about 4 per pixel of
        surface area (between 20k and 2M).
      seed: int, sampling seed (renders are deterministic).
      **kwargs: forwarded to `render_points` (image_size, azimuth_deg,
        elevation_deg, extent, point_radius_px, background, colors must be
        omitted).

    Returns:
      uint8 array, (image_size, image_size, 3); blank for an empty mesh.
    """
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if vertices.shape[0] == 0 or faces.shape[0] == 0:
        return render_points(np.zeros((0, 3)), **kwargs)
    if n_samples is None:
        n_samples = _auto_samples(vertices, faces,
                                  kwargs.get('image_size', 256),
                                  kwargs.get('extent', 0.55))
    points, normals = metrics.sample_mesh_surface(
        vertices, faces, n_samples, np.random.default_rng(seed))
    return render_points(points, normals, **kwargs)


# ----------------------------------------------------------------------------
# Text and grids
# ----------------------------------------------------------------------------

# 5x7 bitmap font: 7 rows of 5 columns, '#' = ink.
_FONT_ROWS = {
    'A': '.###. #...# #...# ##### #...# #...# #...#',
    'B': '####. #...# #...# ####. #...# #...# ####.',
    'C': '.###. #...# #.... #.... #.... #...# .###.',
    'D': '###.. #..#. #...# #...# #...# #..#. ###..',
    'E': '##### #.... #.... ####. #.... #.... #####',
    'F': '##### #.... #.... ####. #.... #.... #....',
    'G': '.###. #...# #.... #.### #...# #...# .####',
    'H': '#...# #...# #...# ##### #...# #...# #...#',
    'I': '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
    'J': '..### ...#. ...#. ...#. ...#. #..#. .##..',
    'K': '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
    'L': '#.... #.... #.... #.... #.... #.... #####',
    'M': '#...# ##.## #.#.# #.#.# #...# #...# #...#',
    'N': '#...# #...# ##..# #.#.# #..## #...# #...#',
    'O': '.###. #...# #...# #...# #...# #...# .###.',
    'P': '####. #...# #...# ####. #.... #.... #....',
    'Q': '.###. #...# #...# #...# #.#.# #..#. .##.#',
    'R': '####. #...# #...# ####. #.#.. #..#. #...#',
    'S': '.#### #.... #.... .###. ....# ....# ####.',
    'T': '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
    'U': '#...# #...# #...# #...# #...# #...# .###.',
    'V': '#...# #...# #...# #...# #...# .#.#. ..#..',
    'W': '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
    'X': '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
    'Y': '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
    'Z': '##### ....# ...#. ..#.. .#... #.... #####',
    '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
    '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
    '2': '.###. #...# ....# ...#. ..#.. .#... #####',
    '3': '##### ...#. ..#.. ...#. ....# #...# .###.',
    '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
    '5': '##### #.... ####. ....# ....# #...# .###.',
    '6': '..##. .#... #.... ####. #...# #...# .###.',
    '7': '##### ....# ...#. ..#.. .#... .#... .#...',
    '8': '.###. #...# #...# .###. #...# #...# .###.',
    '9': '.###. #...# #...# .#### ....# ...#. .##..',
    '.': '..... ..... ..... ..... ..... .##.. .##..',
    ',': '..... ..... ..... ..... .##.. ..#.. .#...',
    '-': '..... ..... ..... ##### ..... ..... .....',
    '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
    ':': '..... .##.. .##.. ..... .##.. .##.. .....',
    '=': '..... ..... ##### ..... ##### ..... .....',
    '%': '##... ##..# ...#. ..#.. .#... #..## ...##',
    '/': '..... ....# ...#. ..#.. .#... #.... .....',
    '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
    ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
    '_': '..... ..... ..... ..... ..... ..... #####',
    '!': '..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..',
    '?': '.###. #...# ....# ...#. ..#.. ..... ..#..',
    ' ': '..... ..... ..... ..... ..... ..... .....',
}
_FONT = {
    ch: np.array([[c == '#' for c in row] for row in rows.split()], bool)
    for ch, rows in _FONT_ROWS.items()
}
_GLYPH_H, _GLYPH_W = 7, 5


def text_size(text, scale=2):
    """Pixel size (height, width) of `text` as drawn by `draw_text`."""
    lines = str(text).split('\n')
    width = max(len(line) for line in lines) * (_GLYPH_W + 1) * scale
    height = len(lines) * (_GLYPH_H + 1) * scale
    return height, width


def draw_text(image, text, xy, scale=2, color=(0, 0, 0)):
    """Draws text with a built-in 5x7 bitmap font.

    Letters are drawn upper-case; digits, space and `. , - + : = % / ( ) _ !
    ?` are supported, other characters render as '?'. '\\n' starts a new
    line. Text is clipped at the image border.

    Args:
      image: uint8 array, (H, W, 3) or (H, W). Not modified.
      text: str.
      xy: (x, y) pixel position (column, row) of the top-left corner.
      scale: int, pixel size of one font dot.
      color: RGB uint8 triple (or a grey level for (H, W) images).

    Returns:
      uint8 array, a copy of `image` with the text drawn.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    height, width = out.shape[:2]
    color = np.asarray(color, np.uint8)
    if out.ndim == 2 and color.ndim > 0:
        color = np.uint8(np.round(color.astype(np.float64).mean()))
    scale = max(int(scale), 1)
    x0, y0 = int(xy[0]), int(xy[1])
    for line_no, line in enumerate(str(text).split('\n')):
        for col, ch in enumerate(line):
            glyph = _FONT.get(ch.upper(), _FONT['?'])
            if not glyph.any():
                continue
            big = np.kron(glyph, np.ones((scale, scale), bool))
            top = y0 + line_no * (_GLYPH_H + 1) * scale
            left = x0 + col * (_GLYPH_W + 1) * scale
            r0, c0 = max(top, 0), max(left, 0)
            r1 = min(top + big.shape[0], height)
            c1 = min(left + big.shape[1], width)
            if r1 <= r0 or c1 <= c0:
                continue
            mask = big[r0 - top:r1 - top, c0 - left:c1 - left]
            out[r0:r1, c0:c1][mask] = color
    return out


def _to_rgb(image):
    """uint8 (H, W) or (H, W, 1|3|4) -> uint8 (H, W, 3)."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def image_grid(images, labels=None, pad=4, label_scale=1,
               background=(255, 255, 255)):
    """Tiles images into a grid, with optional labels above each cell.

    Args:
      images: list of rows, each a list of uint8 images (H, W, 3) or (H, W);
        rows may have different lengths and images different sizes (cells
        take the largest size; smaller images sit top-left).
      labels: None, or a list of rows of str (or None) matching `images`.
      pad: int, pixels between and around cells.
      label_scale: int, font scale of the labels.
      background: RGB uint8 triple.

    Returns:
      uint8 array, (H_total, W_total, 3).
    """
    rows = [[_to_rgb(im) for im in row] for row in images]
    all_images = [im for row in rows for im in row]
    if not all_images:
        return np.full((1, 1, 3), background, np.uint8)
    cell_h = max(im.shape[0] for im in all_images)
    cell_w = max(im.shape[1] for im in all_images)
    label_h = 0
    if labels is not None:
        label_h = (_GLYPH_H + 1) * label_scale + 2
    n_rows = len(rows)
    n_cols = max(len(row) for row in rows)
    height = pad + n_rows * (label_h + cell_h + pad)
    width = pad + n_cols * (cell_w + pad)
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = np.asarray(background, np.uint8)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            top = pad + r * (label_h + cell_h + pad)
            left = pad + c * (cell_w + pad)
            canvas[top + label_h:top + label_h + im.shape[0],
                   left:left + im.shape[1]] = im
            if labels is not None and r < len(labels) and c < len(
                    labels[r]) and labels[r][c]:
                canvas = draw_text(canvas, labels[r][c], (left, top + 1),
                                   scale=label_scale)
    return canvas
