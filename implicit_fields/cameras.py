"""Cameras in the convention of Differentiable Volumetric Rendering, as pure functions.

A view has three 4x4 matrices (DVR's ``FAQ.md`` and ``im2mesh/common.py``):

* ``scale_mat`` S maps the object-centric space (the object centred in the unit cube,
  where the occupancy field lives) to the world; the identity for ShapeNet-like data,
  a similarity for DTU. Missing ``scale_mat_i`` keys mean the identity, as in the
  original loader.
* ``world_mat`` W maps world to camera space (the "Rt" extrinsics; for DTU the full
  3x4 projection padded to 4x4, so it need not be rigid).
* ``camera_mat`` C holds the intrinsics, scaled so that pixels lie in [-1, 1].

A homogeneous object-space point ``p`` goes to ``q = C @ W @ S @ p``; its pixel is
``q[:2] / q[2]`` and its **camera depth** is ``q[2]``. All three matrices must be affine
(last row ``[0, 0, 0, 1]``), which the original code also assumes.

Pixel convention (the original's ``arange_pixels``): ``x`` runs along image columns and
``y`` along rows, and the centres of the first and last pixels sit exactly at -1 and +1:
``x = 2 * col / (W - 1) - 1``, ``y = 2 * row / (H - 1) - 1``. So (-1, -1) is the centre
of pixel ``image[0, 0]``, the top-left pixel of the image as stored and displayed.
(DVR's FAQ words it as the "bottom left corner" of a y-up picture; the arrays are the
same.) DVR's DTU ``camera_mat`` maps pixel *edges* [0, W] to [-1, 1] (issue #3 of the
original), half a pixel off this centre convention; at DTU's 1600 x 1200 that is under
0.1% and is ignored, as in the original. Our own cameras (:func:`look_at_camera`) use
the OpenCV camera frame: x right, y down, looking along +z, so images come out upright.

Rays follow the original: ``ray(d) = origin + d * (pixel_world - origin)`` with
``pixel_world`` the pixel unprojected at camera depth 1, so the direction is NOT
normalised and the ray parameter ``d`` is exactly the camera depth of ``ray(d)``.

The geometry functions accept numpy or JAX arrays: with only numpy inputs they compute
in float64 numpy (exact ground truth for data generation); when any input is a JAX
array they use ``jax.numpy`` and can be jitted and differentiated. Matrices are
``(..., 4, 4)`` and point sets ``(..., N, k)`` with the same leading batch shape.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CAMERA_KEYS",
    "pixel_grid",
    "pixel_to_index",
    "image_points_to_world",
    "depth_to_points",
    "origin_to_world",
    "project_to_image",
    "pixels_to_rays",
    "intersect_box",
    "look_at_camera",
    "default_focal",
    "sample_views",
    "camera_at",
    "focal_for_radius",
    "from_texture_fields",
]

CAMERA_KEYS = ("camera_mat", "world_mat", "scale_mat")
"""Keys of a camera dict; each holds a (4, 4) matrix or a (V, 4, 4) stack."""

_UNIT_CUBE_RADIUS = math.sqrt(3.0) / 2.0  # Bounding sphere of [-0.5, 0.5]^3.


def _xp(*arrays):
    """numpy when every input is a numpy/Python value, else jax.numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _as(xp, a):
    return np.asarray(a, dtype=np.float64) if xp is np else jnp.asarray(a)


def _homogeneous(xp, points):
    ones = xp.ones(points.shape[:-1] + (1,), dtype=points.dtype)
    return xp.concatenate([points, ones], axis=-1)


def _apply(xp, mat, points):
    """(..., 4, 4) matrices applied to (..., N, 4) row vectors."""
    return xp.matmul(points, xp.swapaxes(mat, -1, -2))


def _inverse_chain(xp, camera_mat, world_mat, scale_mat):
    """inv(S) @ inv(W) @ inv(C): camera space -> object space (inverted one by one, as
    the original does; better conditioned than inverting the product)."""
    inv = xp.linalg.inv
    return xp.matmul(inv(scale_mat), xp.matmul(inv(world_mat), inv(camera_mat)))


# --------------------------------------------------------------------------------------
# Pixels.
# --------------------------------------------------------------------------------------


def pixel_grid(height, width):
    """Pixel centres of an image in the [-1, 1] convention.

    Args:
        height: int H >= 2.
        width: int W >= 2.

    Returns:
        (H, W, 2) float64 numpy array; ``[r, c] = (2 c / (W - 1) - 1, 2 r / (H - 1) - 1)``
        (x along columns first, then y along rows). ``reshape(-1, 2)`` lists the pixels
        row-major, in the order of ``image.reshape(-1, channels)``.
    """
    height, width = int(height), int(width)
    if height < 2 or width < 2:
        raise ValueError(f"pixel_grid needs height, width >= 2, got {height}x{width}")
    x = 2.0 * np.arange(width, dtype=np.float64) / (width - 1) - 1.0
    y = 2.0 * np.arange(height, dtype=np.float64) / (height - 1) - 1.0
    grid = np.empty((height, width, 2), dtype=np.float64)
    grid[:, :, 0] = x[None, :]
    grid[:, :, 1] = y[:, None]
    return grid


def pixel_to_index(pixels, height, width):
    """Nearest integer pixel of [-1, 1] coordinates (inverse of :func:`pixel_grid`).

    Args:
        pixels: (..., 2) float, (x, y) in [-1, 1].
        height, width: int, image size.

    Returns:
        (rows, cols): int64 arrays of shape (...,), clipped to the image.
    """
    p = np.asarray(pixels, dtype=np.float64)
    cols = np.rint((p[..., 0] + 1.0) * 0.5 * (width - 1)).astype(np.int64)
    rows = np.rint((p[..., 1] + 1.0) * 0.5 * (height - 1)).astype(np.int64)
    return np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)


# --------------------------------------------------------------------------------------
# Transforms.
# --------------------------------------------------------------------------------------


def image_points_to_world(pixels, camera_mat, world_mat, scale_mat, depth=1.0):
    """Unprojects pixels at given camera depths to object space.

    Args:
        pixels: (..., N, 2) pixel coordinates in [-1, 1].
        camera_mat, world_mat, scale_mat: (..., 4, 4) affine matrices.
        depth: scalar or (..., N) camera depths.

    Returns:
        (..., N, 3) object-space points whose projection is ``pixels`` at camera
        depth ``depth``.
    """
    xp = _xp(pixels, camera_mat, world_mat, scale_mat, depth)
    pixels = _as(xp, pixels)
    depth = _as(xp, depth)
    if depth.ndim == 0:
        depth = xp.full(pixels.shape[:-1], depth, dtype=pixels.dtype)
    d = depth[..., None]
    p_cam = xp.concatenate([pixels * d, d, xp.ones_like(d)], axis=-1)
    inv = _inverse_chain(xp, _as(xp, camera_mat), _as(xp, world_mat), _as(xp, scale_mat))
    return _apply(xp, inv, p_cam)[..., :3]


def _square(xp, mat):
    """A (..., 3, 4) matrix padded to (..., 4, 4) with the row [0, 0, 0, 1]; (4, 4) as is."""
    mat = _as(xp, mat)
    if mat.shape[-2:] == (4, 4):
        return mat
    if mat.shape[-2:] != (3, 4):
        raise ValueError(f"camera matrices must be (..., 3, 4) or (..., 4, 4), got {mat.shape}")
    row = xp.broadcast_to(_as(xp, [0.0, 0.0, 0.0, 1.0]).astype(mat.dtype), mat.shape[:-2] + (1, 4))
    return xp.concatenate([mat, row], axis=-2)


def depth_to_points(depth, world_mat, camera_mat):
    """Lifts a camera-depth map to object-space points (Texture Fields' ``depth_map_to_3d``).

    Pixel ``(row, col)`` sits at ``(x, y) = (2 col / (W - 1) - 1, 2 row / (H - 1) - 1)``
    (:func:`pixel_grid`); its point is ``inv(world_mat) @ inv(camera_mat) @ [x d, y d, d, 1]``
    with ``d = depth[row, col]``, so it projects back to its own pixel at camera depth
    ``d``. Texture Fields' own ``cameras.npz`` (3 x 4 matrices, depth along -z, pixels
    in [0, 2], the depth map transposed) converts to this convention with
    :func:`from_texture_fields`.

    Args:
        depth: (..., H, W) camera depth; inf (or any non-finite or non-positive value)
            where there is no surface.
        world_mat: (..., 4, 4) or (..., 3, 4) world-to-camera matrix (the ``scale_mat``
            of DVR's layout, if any, folded in: ``world_mat @ scale_mat``).
        camera_mat: (..., 4, 4) or (..., 3, 4) intrinsics, pixels in [-1, 1].

    Returns:
        points (..., H, W, 3): the lifted points, finite everywhere (0 depth is used
        where there is no surface, so they are undefined there), and mask (..., H, W)
        bool, where the depth is a surface.
    """
    xp = _xp(depth, world_mat, camera_mat)
    depth = _as(xp, depth)
    if depth.ndim < 2:
        raise ValueError(f"depth must be (..., H, W), got shape {depth.shape}")
    height, width = depth.shape[-2:]
    mask = xp.isfinite(depth) & (depth > 0)
    d = xp.where(mask, depth, 0.0)
    d = d[..., None]
    grid = xp.broadcast_to(_as(xp, pixel_grid(height, width)).astype(d.dtype), d.shape[:-1] + (2,))
    p_cam = xp.concatenate([grid * d, d, xp.ones_like(d)], axis=-1)  # (..., H, W, 4)
    inv = xp.linalg.inv
    chain = xp.matmul(inv(_square(xp, world_mat)), inv(_square(xp, camera_mat)))  # (..., 4, 4)
    points = xp.einsum("...ij,...hwj->...hwi", chain, p_cam)[..., :3]
    return points, mask


def origin_to_world(camera_mat, world_mat, scale_mat):
    """The camera centre in object space.

    Args:
        camera_mat, world_mat, scale_mat: (..., 4, 4) affine matrices.

    Returns:
        (..., 3) camera centre.
    """
    xp = _xp(camera_mat, world_mat, scale_mat)
    inv = _inverse_chain(xp, _as(xp, camera_mat), _as(xp, world_mat), _as(xp, scale_mat))
    return inv[..., :3, 3]


def project_to_image(points, camera_mat, world_mat, scale_mat):
    """Projects object-space points to pixels and camera depths.

    Args:
        points: (..., N, 3) object-space points.
        camera_mat, world_mat, scale_mat: (..., 4, 4) affine matrices.

    Returns:
        pixels (..., N, 2) in the [-1, 1] convention (non-finite for points at camera
        depth 0) and depth (..., N), the camera depth (positive in front of the camera).
    """
    xp = _xp(points, camera_mat, world_mat, scale_mat)
    points = _as(xp, points)
    full = xp.matmul(_as(xp, camera_mat), xp.matmul(_as(xp, world_mat), _as(xp, scale_mat)))
    q = _apply(xp, full, _homogeneous(xp, points))
    depth = q[..., 2]
    return q[..., :2] / depth[..., None], depth


def pixels_to_rays(pixels, camera_mat, world_mat, scale_mat):
    """Rays through pixels, parametrised by camera depth.

    ``origins + d * directions`` is the object-space point of camera depth ``d`` on the
    pixel's ray (the directions are not normalised).

    Args:
        pixels: (..., N, 2) pixel coordinates in [-1, 1].
        camera_mat, world_mat, scale_mat: (..., 4, 4) affine matrices.

    Returns:
        origins (..., N, 3) (the camera centre, repeated) and directions (..., N, 3).
    """
    xp = _xp(pixels, camera_mat, world_mat, scale_mat)
    pixels = _as(xp, pixels)
    inv = _inverse_chain(xp, _as(xp, camera_mat), _as(xp, world_mat), _as(xp, scale_mat))
    ones = xp.ones(pixels.shape[:-1] + (1,), dtype=pixels.dtype)
    p_cam = xp.concatenate([pixels, ones, ones], axis=-1)
    pixel_world = _apply(xp, inv, p_cam)[..., :3]
    origin = inv[..., None, :3, 3]  # (..., 1, 3)
    directions = pixel_world - origin
    origins = xp.broadcast_to(origin, directions.shape)
    return origins, directions


def intersect_box(origins, directions, padding=0.1):
    """Intersects rays with the axis-aligned cube of side ``1 + padding`` at the origin.

    Slab method: a zero direction component means the ray runs parallel to that slab
    (inside it or never), so no division by zero and no NaN. Intervals are clipped to
    ``d >= 0`` (in front of the ray origin).

    Args:
        origins: (..., 3) ray origins.
        directions: (..., 3) ray directions (any length; ``d`` is in their units).
        padding: float, the cube is [-(1 + padding) / 2, (1 + padding) / 2]^3 (the
            original's padded unit cube; 0.1 by default as in DVR).

    Returns:
        d_near (...,), d_far (...,) and hit (...,) bool. ``origins + d * directions`` is
        inside the cube for ``d_near <= d <= d_far`` when ``hit``; misses get
        ``d_near = d_far = 0``.
    """
    xp = _xp(origins, directions)
    o = _as(xp, origins)
    v = _as(xp, directions)
    half = 0.5 * (1.0 + padding)
    small = xp.abs(v) < 1e-12
    safe = xp.where(small, 1.0, v)
    t1 = (-half - o) / safe
    t2 = (half - o) / safe
    inside_slab = xp.abs(o) <= half
    lo = xp.where(small, xp.where(inside_slab, -xp.inf, xp.inf), xp.minimum(t1, t2))
    hi = xp.where(small, xp.where(inside_slab, xp.inf, -xp.inf), xp.maximum(t1, t2))
    near = xp.maximum(xp.max(lo, axis=-1), 0.0)
    far = xp.min(hi, axis=-1)
    hit = (near <= far) & xp.isfinite(far)
    zero = xp.zeros_like(near)
    return xp.where(hit, near, zero), xp.where(hit, far, zero), hit


# --------------------------------------------------------------------------------------
# Building cameras.
# --------------------------------------------------------------------------------------


def look_at_camera(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), focal=2.0):
    """A pinhole camera at ``eye`` looking at ``target``, for our renderer.

    The camera frame is OpenCV's (x right, y down, z forward), so with ``up`` the world
    up direction the image is upright. The principal point is the image centre.

    Args:
        eye: (3,) camera centre (object space; ``scale_mat`` is the identity).
        target: (3,) point looked at, projected to pixel (0, 0).
        up: (3,) world up direction (need not be orthogonal to the view direction; if
            parallel to it another axis is used).
        focal: float or (fx, fy), focal length in [-1, 1] pixel units (a point at
            camera coordinates (X, Y, Z) lands at (fx X / Z, fy Y / Z)). A horizontal
            field of view ``fov`` needs ``fx = 1 / tan(fov / 2)``.

    Returns:
        dict with ``camera_mat``, ``world_mat``, ``scale_mat``: (4, 4) float64.
    """
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    forward = target - eye
    norm = np.linalg.norm(forward)
    if not norm > 0.0:
        raise ValueError("look_at_camera: eye and target coincide")
    forward = forward / norm
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9 * max(np.linalg.norm(up), 1e-300):
        for axis in np.eye(3)[np.argsort(np.abs(forward))]:
            right = np.cross(forward, axis)
            if np.linalg.norm(right) > 1e-6:
                break
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # Rows: camera axes in world coordinates.
    world_mat = np.eye(4)
    world_mat[:3, :3] = rot
    world_mat[:3, 3] = -rot @ eye
    fx, fy = (float(focal), float(focal)) if np.ndim(focal) == 0 else map(float, focal)
    if not (fx > 0.0 and fy > 0.0 and math.isfinite(fx) and math.isfinite(fy)):
        raise ValueError(f"look_at_camera: focal must be finite and > 0, got {focal}")
    camera_mat = np.diag([fx, fy, 1.0, 1.0])
    return {"camera_mat": camera_mat, "world_mat": world_mat, "scale_mat": np.eye(4)}


def default_focal(radius, margin=1.0):
    """Focal length at which the unit cube's bounding sphere just fits in the image
    from a camera at distance ``radius`` from the centre (times ``margin``).

    Args:
        radius: float > sqrt(3) / 2.
        margin: float, < 1 leaves a border.

    Returns:
        float focal length in [-1, 1] pixel units.
    """
    r = _UNIT_CUBE_RADIUS
    if not radius > r:
        raise ValueError(f"camera radius must exceed {r:.4f} (outside the unit cube)")
    return margin * math.sqrt(radius * radius - r * r) / r


def focal_for_radius(extent, radius):
    """Focal length at which a sphere of radius ``extent`` about the origin (plus 3%, at
    most the unit cube's bounding sphere) just fits in the image from a camera at
    distance ``radius`` from the origin.

    The framing rule of our renders: the shape's extent comes from its surface
    (:func:`implicit_fields.data.shape_render.fit_focal`) or a mesh's vertices
    (:func:`implicit_fields.data.mesh_render.fit_focal`).

    Args:
        extent: float, largest distance of the object's surface from the origin.
        radius: float, camera distance from the origin (must exceed the padded extent).

    Returns:
        float focal length in [-1, 1] pixel units.
    """
    r = min(1.03 * float(extent), np.sqrt(3.0) / 2.0)
    if not radius > r:
        raise ValueError(f"camera radius {radius} must exceed the shape's radius {r:.3f}")
    return float(np.sqrt(radius * radius - r * r) / r)


def sample_views(n, radius=2.0, seed=0, elevation_range=(-20.0, 60.0), focal=None, target=(0.0, 0.0, 0.0)):
    """Deterministic cameras on a sphere around the object, all looking at ``target``.

    Azimuths are stratified (view ``i`` falls in ``[i, i + 1) * 360 / n`` degrees, at a
    random offset) and elevations uniform in ``elevation_range``; +y is up, azimuth 0
    looks at the object's front (from -z, the ShapeNet canonical pose).

    Args:
        n: int >= 1, number of views.
        radius: float, camera distance from ``target``.
        seed: int or numpy SeedSequence.
        elevation_range: (low, high) degrees above the x-z plane, within (-90, 90).
        focal: float focal length ([-1, 1] units); None fits the unit cube's bounding
            sphere (:func:`default_focal`).
        target: (3,) point looked at.

    Returns:
        dict with ``camera_mat``, ``world_mat``, ``scale_mat`` (n, 4, 4) float64 and
        ``eye`` (n, 3).
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"sample_views needs n >= 1, got {n}")
    lo, hi = (float(e) for e in elevation_range)
    if not -90.0 < lo <= hi < 90.0:
        raise ValueError(f"elevation_range must lie within (-90, 90), got {elevation_range}")
    if focal is None:
        focal = default_focal(radius)
    rng = np.random.default_rng(seed)
    azimuth = np.radians((np.arange(n) + rng.random(n)) * 360.0 / n)
    elevation = np.radians(rng.uniform(lo, hi, n))
    target = np.asarray(target, dtype=np.float64)
    eyes = target[None, :] + radius * np.stack(
        [
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
            -np.cos(elevation) * np.cos(azimuth),
        ],
        axis=1,
    )
    cams = [look_at_camera(e, target, focal=focal) for e in eyes]
    out = {k: np.stack([c[k] for c in cams]) for k in CAMERA_KEYS}
    out["eye"] = eyes
    return out


def camera_at(cameras, i):
    """The matrices of one view of a camera dict.

    Args:
        cameras: dict with ``camera_mat``, ``world_mat`` and ``scale_mat``, each a (4, 4)
            matrix (shared by every view) or a (V, 4, 4) stack; a missing key means the
            identity. Other keys (e.g. the ``eye`` of :func:`sample_views`) are ignored.
        i: int, the view.

    Returns:
        dict with ``camera_mat``, ``world_mat``, ``scale_mat``: (4, 4) float64.
    """
    out = {}
    for k in CAMERA_KEYS:
        m = np.asarray(cameras.get(k, np.eye(4)), dtype=np.float64)
        out[k] = m if m.ndim == 2 else m[i]
    return out


def from_texture_fields(camera_mat, world_mat, size):
    """Texture Fields' cameras in our convention, for its depth maps of side ``size``.

    The original (``cameras.npz`` of its renders: 3 x 4 ``camera_mat_i`` K and
    ``world_mat_i`` W, Blender's camera frame looking along -z with y up) lifts a square
    M x M depth map D with ``depth_map_to_3d``: pixel ``(row, col)`` sits at ``p = (col,
    M - row) / M * 2``, its camera depth is ``d = -D[row, col]``, its camera-space point is
    ``[inv(P) (q p - b) d, d]`` with ``P = K[:2, :2]``, ``q = K[2, 2]``, ``b = K[:2, 2]``
    (the rest of K is unused) and its point ``inv(W) @ [x, y, d, 1]``. We flip the camera
    frame to OpenCV's (``world_mat = diag(1, -1, -1, 1) @ W``: x right, y down, z forward,
    so the depth D is positive in front) and fold the pixel mapping into an upper-triangular
    ``camera_mat``: :func:`depth_to_points` of the stored map D with the returned matrices
    equals the original's ``depth_map_to_3d`` (its camera centre where D is inf), and
    :func:`project_to_image` sends those points back to their pixels at camera depth D.
    The original resizes its depth maps to the training size before lifting them, so
    ``size`` is the side of the map lifted, not of the file.

    Args:
        camera_mat: (..., 3, 4) (or (..., 4, 4)) intrinsics of the original.
        world_mat: (..., 3, 4) (or (..., 4, 4) affine) world-to-camera matrices.
        size: int >= 2, side M of the square depth map lifted.

    Returns:
        dict with ``camera_mat``, ``world_mat`` and ``scale_mat`` (the identity): float64
        (..., 4, 4) numpy arrays.

    Raises:
        ValueError: a bad shape or size, non-finite matrices, ``K[2, 2] == 0`` or a
            singular ``K[:2, :2]``.
    """
    k = np.asarray(camera_mat, dtype=np.float64)
    w = np.asarray(world_mat, dtype=np.float64)
    for name, m in (("camera_mat", k), ("world_mat", w)):
        if m.ndim < 2 or m.shape[-2:] not in ((3, 4), (4, 4)):
            raise ValueError(f"from_texture_fields: {name} must be (..., 3, 4) or (..., 4, 4), got {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError(f"from_texture_fields: {name} has non-finite values")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"from_texture_fields: size must be an int >= 2, got {size!r}")
    w = _square(np, w)
    if not np.allclose(w[..., 3, :], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError("from_texture_fields: world_mat must be affine (last row [0, 0, 0, 1])")
    p, q, b = k[..., :2, :2], k[..., 2, 2], k[..., :2, 2]
    det = p[..., 0, 0] * p[..., 1, 1] - p[..., 0, 1] * p[..., 1, 0]
    if np.any(q == 0.0) or np.any(det == 0.0):
        raise ValueError("from_texture_fields: camera_mat has K[2, 2] == 0 or a singular K[:2, :2]")
    m = float(size)
    s = m / ((m - 1.0) * q)  # (...,): TF pixels [0, 2] (scaled by 1 / q) to ours, [-1, 1].
    cam = np.zeros(np.broadcast_shapes(k.shape[:-2], w.shape[:-2]) + (4, 4))
    # Rows: x d and y d of our pixel (x, y) at depth d, from the flipped point (X, -Y, -Z).
    cam[..., 0, 0] = -s * p[..., 0, 0]
    cam[..., 0, 1] = s * p[..., 0, 1]
    cam[..., 0, 2] = s * b[..., 0] - 1.0
    cam[..., 1, 0] = s * p[..., 1, 0]
    cam[..., 1, 1] = -s * p[..., 1, 1]
    cam[..., 1, 2] = -s * b[..., 1] + (m + 1.0) / (m - 1.0)
    cam[..., 2, 2] = 1.0
    cam[..., 3, 3] = 1.0
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    world = np.broadcast_to(flip @ w, cam.shape).copy()
    return {"camera_mat": cam, "world_mat": world, "scale_mat": np.broadcast_to(np.eye(4), cam.shape).copy()}
