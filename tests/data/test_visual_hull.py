"""Visual hull from masks: contains the object, its depth maps bound the true depths."""

import numpy as np

from implicit_fields.data import multiview, shapes, visual_hull


def test_hull_of_a_sphere_contains_it_and_its_depths_bound_the_true_depths(tmp_path):
    shape = shapes.Shape([shapes.Sphere(0.3, translation=(0.05, -0.02, 0.0))])
    multiview.write_multiview(shape, str(tmp_path), n_views=8, resolution=32, seed=0, progress=False)
    data = multiview.load_multiview(str(tmp_path))
    res, padding = 48, 0.1
    grid = visual_hull.carve(data, res, padding)
    axis = np.linspace(-0.55, 0.55, res + 1)
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = shape.contains(pts)
    assert grid.reshape(-1)[inside].all()  # the hull contains the object
    # ... and carves most of the rest away.
    assert grid.mean() < 2.0 * inside.mean()
    # Leaving points outside an image to the other views carves less.
    lenient = visual_hull.carve(data, res, padding, carve_outside_image=False)
    assert lenient[grid].all() and lenient.sum() > grid.sum()
    depths = visual_hull.hull_depth_maps(data, grid, padding)
    hit = np.isfinite(depths)
    both = hit & data.masks
    assert hit[data.masks].all()  # every object pixel meets the hull
    # Silhouettes: the masks dilated by a pixel, widened a little by carving with 8 views.
    assert (hit & ~data.masks).sum() < 0.35 * data.masks.sum()
    cell = 1.1 / res
    # The hull is entered no later than the object's surface (up to a cell of discretisation).
    assert np.all(depths[both] <= data.depths[both] + 2 * cell)
    assert np.median(data.depths[both] - depths[both]) < 0.05
