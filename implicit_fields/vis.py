"""Pictures: PNG I/O, point/mesh splatting, text and grids.

PNG files are encoded and decoded by Pillow, and text is drawn with Pillow's built-in font
(`PIL.ImageFont.load_default`, nothing is downloaded). Rendering is our own numpy code. Images are
uint8 arrays of shape (H, W, 3) (RGB) or (H, W) (grey). Rendering uses an orthographic camera
looking at the origin with y up (the ShapeNet convention) and a z-buffered disc splat per point.
"""

import functools
import io
import math
import os
import uuid

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from implicit_fields import metrics

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # To tell "not a PNG" from "a broken PNG" in errors.
_DEFAULT_COLOR = (0.62, 0.72, 0.88)  # Light steel blue for shaded geometry.
_FLAT_COLOR = (0.2, 0.35, 0.75)  # Points without normals.
_FONT_PX = 11  # Font size (em height in pixels) at text scale 1: capitals are 8 px, lines 14 px.


# ----------------------------------------------------------------------------
# PNG
# ----------------------------------------------------------------------------


def write_png(path, image):
    """Writes an 8-bit PNG atomically.

    The picture goes to a temporary file in the same folder, which then replaces `path`, so
    a crash never leaves a half-written PNG at `path`.

    Args:
      path: str or path-like, output file.
      image: uint8 (or bool) array, (H, W) or (H, W, 1) grey, (H, W, 3) RGB or (H, W, 4)
        RGBA. bool is written as 0 / 255 grey levels.

    Raises:
      TypeError: `image` is neither uint8 nor bool.
      ValueError: `image` has an unsupported shape.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        raise TypeError(f"write_png expects uint8, got {image.dtype}.")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"Unsupported image shape {image.shape}.")
    picture = Image.fromarray(np.ascontiguousarray(image))
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    # O_EXCL: never clobber another writer's file; mode 0o666 & ~umask, as for open(path, "wb").
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            picture.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_gif(path, frames, duration_ms=100, loop=0):
    """Writes an animated GIF atomically (e.g. a mesh in motion, one picture per frame).

    Args:
      path: str or path-like, output file.
      frames: sequence of uint8 (H, W, 3) RGB images of one size (at least one).
      duration_ms: display time of each frame, in milliseconds (> 0).
      loop: how often to loop (0: forever).

    Raises:
      TypeError: a frame is not uint8.
      ValueError: no frames, frames of different sizes or shapes other than (H, W, 3), or
        a non-positive duration.
    """
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("write_gif needs at least one frame")
    if duration_ms <= 0:
        raise ValueError(f"write_gif: duration_ms={duration_ms} must be > 0")
    for i, f in enumerate(frames):
        if f.dtype != np.uint8:
            raise TypeError(f"write_gif expects uint8 frames, frame {i} is {f.dtype}")
        if f.ndim != 3 or f.shape[2] != 3 or f.shape != frames[0].shape:
            raise ValueError(
                f"write_gif: frame {i} has shape {f.shape}, expected {frames[0].shape[:2] + (3,)}"
            )
    pictures = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            pictures[0].save(
                f,
                format="GIF",
                save_all=True,
                append_images=pictures[1:],
                duration=int(duration_ms),
                loop=loop,
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_png(path):
    """Reads an 8-bit PNG.

    Palette images come back as RGB (RGBA when the palette has transparency) and 1-bit
    images as grey 0 / 255. 16-bit grey images are refused; 16-bit colour ones are reduced
    to 8 bits (by Pillow).

    Args:
      path: str or path-like.

    Returns:
      uint8 array, (H, W) for grey, else (H, W, C): C = 2 grey + alpha, 3 RGB, 4 RGBA.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the file is not a readable PNG (not a PNG, truncated, corrupt, or an
        unsupported pixel format); the message names `path` and the problem.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as picture:
            picture.load()
            mode = picture.mode
            if mode in ("1", "P", "PA"):
                transparent = mode == "PA" or "transparency" in picture.info
                picture = picture.convert("L" if mode == "1" else "RGBA" if transparent else "RGB")
            image = np.array(picture, dtype=np.uint8) if picture.mode in ("L", "LA", "RGB", "RGBA") else None
    except Image.UnidentifiedImageError:
        if not data.startswith(_PNG_SIGNATURE):
            raise ValueError(
                f"{os.fspath(path)}: not a PNG file (no PNG signature, {len(data)} bytes)"
            ) from None
        raise ValueError(
            f"{os.fspath(path)}: truncated or corrupt PNG (its header chunks do not parse)"
        ) from None
    except Exception as e:  # Any decoder failure: truncated data, bad chunks, bad zlib stream ...
        raise ValueError(f"{os.fspath(path)}: unreadable PNG ({type(e).__name__}: {e})") from e
    if image is None:
        raise ValueError(f"{os.fspath(path)}: unsupported PNG pixel format {mode!r} (8-bit grey/RGB(A) only)")
    return image


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
    back = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    right = np.cross([0.0, 1.0, 0.0], back)
    if np.linalg.norm(right) < 1e-8:  # Looking straight up or down.
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    return right, up, back


def _disc_offsets(radius):
    """Pixel offsets (K, 2) int64 (dy, dx) of a disc of `radius` pixels."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius**2 + 1e-9
    return np.stack([dy[keep], dx[keep]], axis=1).astype(np.int64)


def _as_rgb(color):
    """Colour as float64 (3,) in [0, 1] from uint8 triple or floats."""
    color = np.asarray(color)
    if color.dtype == np.uint8 or np.max(color) > 1.0:
        return color.astype(np.float64) / 255.0
    return color.astype(np.float64)


def render_points(
    points,
    normals=None,
    colors=None,
    image_size=256,
    azimuth_deg=45.0,
    elevation_deg=25.0,
    extent=0.55,
    point_radius_px=1.0,
    background=(255, 255, 255),
    light_dir=(-0.4, 0.6, 0.7),
    ambient=0.3,
):
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
      extent: float half-width of the view in world units, or None / "auto"
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
    if extent is None or (isinstance(extent, str) and extent == "auto"):
        extent = 1.05 * max(np.max(np.abs(u)), np.max(np.abs(v)), 1e-9)
    extent = float(extent)
    px = (u + extent) / (2.0 * extent) * size
    py = (extent - v) / (2.0 * extent) * size
    ix = np.floor(px).astype(np.int64)
    iy = np.floor(py).astype(np.int64)

    if colors is None:
        base = np.broadcast_to(_as_rgb(_DEFAULT_COLOR if normals is not None else _FLAT_COLOR), (n, 3))
    else:
        colors = np.asarray(colors)
        base = (
            colors.astype(np.float64) / 255.0 if colors.dtype == np.uint8 else colors.astype(np.float64)
        ).reshape(n, 3)
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
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
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
        n_samples = _auto_samples(vertices, faces, kwargs.get("image_size", 256), kwargs.get("extent", 0.55))
    points, normals = metrics.sample_mesh_surface(vertices, faces, n_samples, np.random.default_rng(seed))
    return render_points(points, normals, **kwargs)


# ----------------------------------------------------------------------------
# Text and grids
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _font(size_px):
    """Pillow's built-in font (Aileron Regular) at `size_px` pixels per em."""
    return ImageFont.load_default(size=size_px)


def _text_layout(text, scale):
    """Font, lines, line pitch, x offset of the first column and (height, width) of `text`."""
    font = _font(max(1, round(_FONT_PX * float(scale))))
    lines = str(text).split("\n")
    ascent, descent = font.getmetrics()
    pitch = ascent + descent
    boxes = [font.getbbox(line, anchor="la") for line in lines]
    shift = max(0, -min(box[0] for box in boxes))  # Glyphs that reach left of the pen (e.g. "j").
    right = max(max(box[2], math.ceil(font.getlength(line))) for box, line in zip(boxes, lines))
    return font, lines, pitch, shift, (pitch * len(lines), shift + right)


def text_size(text, scale=2):
    """Size of the box `draw_text` draws `text` in.

    Args:
      text: str; "\\n" starts a new line.
      scale: float, font scale (1: 11 px font, lines 14 px apart; the size grows with scale).

    Returns:
      (height, width) in pixels; `draw_text` changes no pixel outside this box.
    """
    return _text_layout(text, scale)[-1]


def draw_text(image, text, xy, scale=2, color=(0, 0, 0)):
    """Draws anti-aliased text with Pillow's built-in font.

    The text stays inside the box `text_size(text, scale)` reports, with `xy` its top-left
    corner. Fully covered pixels get exactly `color`, edge pixels a blend of `color` and the
    image. Characters the font lacks are drawn as its missing-glyph box. Text is clipped at
    the image border.

    Args:
      image: uint8 array, (H, W, 3) or (H, W). Not modified.
      text: str; "\\n" starts a new line.
      xy: (x, y) pixel position (column, row) of the top-left corner of the text box.
      scale: float, font scale (1: 11 px font; the size grows with scale).
      color: RGB uint8 triple (its mean is used for (H, W) images), or a grey level.

    Returns:
      uint8 array, a copy of `image` with the text drawn.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    font, lines, pitch, shift, (box_h, box_w) = _text_layout(text, scale)
    x0, y0 = int(xy[0]), int(xy[1])
    r0, c0 = max(y0, 0), max(x0, 0)
    r1, c1 = min(y0 + box_h, out.shape[0]), min(x0 + box_w, out.shape[1])
    if r1 <= r0 or c1 <= c0:
        return out
    mask = Image.new("L", (box_w, box_h), 0)
    pen = ImageDraw.Draw(mask)
    for i, line in enumerate(lines):
        pen.text((shift, i * pitch), line, fill=255, font=font, anchor="la")
    alpha = np.asarray(mask, np.float64)[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0] / 255.0
    color = np.asarray(color, np.uint8).astype(np.float64)
    if out.ndim == 2:
        color = color.mean()
    else:
        alpha = alpha[:, :, None]
    region = out[r0:r1, c0:c1].astype(np.float64)
    out[r0:r1, c0:c1] = np.round(region + (color - region) * alpha).astype(np.uint8)
    return out


def _to_rgb(image):
    """uint8 (H, W) or (H, W, 1|3|4) -> uint8 (H, W, 3)."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def image_grid(images, labels=None, pad=4, label_scale=1, background=(255, 255, 255)):
    """Tiles images into a grid, with optional labels above each cell.

    Args:
      images: list of rows, each a list of uint8 images (H, W, 3) or (H, W);
        rows may have different lengths and images different sizes (cells
        take the largest size; smaller images sit top-left).
      labels: None, or a list of rows of str (or None) matching `images`.
      pad: int, pixels between and around cells.
      label_scale: float, font scale of the labels (see `text_size`); labels
        are not clipped to their cell.
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
        label_h = _text_layout("", label_scale)[2] + 2  # One line of text and a margin.
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
            canvas[top + label_h : top + label_h + im.shape[0], left : left + im.shape[1]] = im
            if labels is not None and r < len(labels) and c < len(labels[r]) and labels[r][c]:
                canvas = draw_text(canvas, labels[r][c], (left, top + 1), scale=label_scale)
    return canvas
