"""Visual hull from object masks and cameras, and its depth maps.

DVR's `depth_from_visual_hull` option (its NMR data ships `visual_hull_depth/`): the
occupancy loss of a ray inside the mask that found no surface is applied at the
visual-hull depth instead of a random depth. Masks and cameras are all it needs, so
reconstruction stays "from images and masks alone".

The hull is carved on a grid over the padded unit cube: a grid point survives if every
view sees it inside the object mask (masks are dilated by one pixel, so the hull
contains the object; points outside an image are carved by default, or left to the
other views).
Depth maps come from marching each pixel's ray through the carved grid
(nearest grid point) and refining the first hit by bisection on the same lookup.
"""

import numpy as np

from implicit_fields import cameras as cam_lib

__all__ = ["carve", "hull_depth_maps"]


def _grid_axis(resolution, padding):
    half = 0.5 * (1.0 + padding)
    return np.linspace(-half, half, resolution + 1)


def _dilate(mask):
    """3x3 dilation (a pixel is kept if any neighbour is in the mask)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dr in range(3):
        for dc in range(3):
            out |= padded[dr : dr + h, dc : dc + w]
    return out


def carve(data, resolution=128, padding=0.1, views=None, carve_outside_image=True):
    """Carves the visual hull.

    Args:
      data: `multiview.MultiViewData` (masks and cameras are used).
      resolution: cells per side; the grid has (resolution + 1)^3 points.
      padding: the grid spans the cube of side 1 + padding.
      views: view positions to carve with (default all).
      carve_outside_image: points that project outside an image are free (right when
        every view frames the whole object, as our renders and ShapeNet's do); False
        leaves them to the other views (for scenes cut by the image border, e.g. DTU).

    Returns:
      bool [R+1, R+1, R+1] occupancy of the grid points, indexed [x, y, z].
    """
    axis = _grid_axis(resolution, padding)
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    occ = np.ones(pts.shape[0], bool)
    h, w = data.height, data.width
    # Masks are sampled at pixel centres; dilating by a pixel keeps the hull conservative
    # (it contains every point whose projection lies within a pixel of the mask).
    masks = {v: _dilate(data.masks[v]) for v in (range(data.num_views) if views is None else views)}
    for v in masks:
        idx = np.flatnonzero(occ)
        cam = data.camera(v)
        pix, depth = cam_lib.project_to_image(pts[idx], cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
        inside = (depth > 0) & np.all(np.abs(pix) <= 1.0 + 1.0 / max(h, w), axis=-1)
        rows, cols = cam_lib.pixel_to_index(pix[inside], h, w)
        keep = np.full(idx.shape[0], not carve_outside_image)
        keep[inside] = masks[v][rows, cols]
        occ[idx[~keep]] = False
    n = resolution + 1
    return occ.reshape(n, n, n)


def _lookup(grid, points, padding):
    n = grid.shape[0]
    half = 0.5 * (1.0 + padding)
    ijk = np.rint((points + half) / (2.0 * half) * (n - 1)).astype(np.int64)
    valid = np.all((ijk >= 0) & (ijk < n), axis=-1)
    ijk = np.clip(ijk, 0, n - 1)
    return valid & grid[ijk[..., 0], ijk[..., 1], ijk[..., 2]]


def hull_depth_maps(data, grid, padding=0.1, n_steps=512, n_bisect=10):
    """Camera depth of the first visual-hull point along every pixel ray.

    Args:
      data: `multiview.MultiViewData`.
      grid: the output of `carve`.
      padding: the padding used in `carve`.
      n_steps: samples per ray between its entry into and exit from the cube.
      n_bisect: bisection steps refining the first hit.

    Returns:
      float32 [V, H, W] camera depths, inf where the ray misses the hull.
    """
    h, w = data.height, data.width
    pixels = cam_lib.pixel_grid(h, w).reshape(-1, 2)
    out = np.full((data.num_views, h * w), np.inf, np.float32)
    t = np.linspace(0.0, 1.0, n_steps)
    for v in range(data.num_views):
        o, d = cam_lib.pixels_to_rays(pixels, data.camera_mat[v], data.world_mat[v], data.scale_mat[v])
        near, far, hit = cam_lib.intersect_box(o, d, padding)
        depth = np.full(o.shape[0], np.inf)
        for start in range(0, o.shape[0], 1024):
            sl = slice(start, start + 1024)
            ds = near[sl, None] + t[None, :] * (far - near)[sl, None]
            occ = _lookup(grid, o[sl, None, :] + ds[..., None] * d[sl, None, :], padding)
            occ &= hit[sl, None]
            any_hit = occ.any(axis=1)
            first = np.argmax(occ, axis=1)
            hi = ds[np.arange(ds.shape[0]), first]
            lo = ds[np.arange(ds.shape[0]), np.maximum(first - 1, 0)]
            for _ in range(n_bisect):
                mid = 0.5 * (lo + hi)
                inside = _lookup(grid, o[sl] + mid[:, None] * d[sl], padding)
                hi = np.where(inside, mid, hi)
                lo = np.where(inside, lo, mid)
            depth[sl] = np.where(any_hit, hi, np.inf)
        out[v] = depth
    return out.reshape(data.num_views, h, w)
