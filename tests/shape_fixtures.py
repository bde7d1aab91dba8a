"""Shapes and rays shared by the renderer and multi-view tests."""

import numpy as np

from implicit_fields import cameras
from implicit_fields.data.shapes import Box, Capsule, Cylinder, Shape, Sphere, Torus, rotation_matrix


def pixel_rays(cam, h, w):
    """(origins, directions) of every pixel of an h x w view of camera `cam`."""
    pix = cameras.pixel_grid(h, w).reshape(-1, 2)
    return cameras.pixels_to_rays(pix, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])


def csg_shape():
    """Every primitive kind, rotated, with a box and a torus cut away."""
    rot = rotation_matrix((1.0, 1.0, 0.3), 0.6)
    return Shape(
        [
            Box((0.3, 0.08, 0.25), rot, (0.0, -0.1, 0.0)),
            Cylinder(0.012, 0.2, rotation_matrix((1.0, 0.0, 0.0), np.pi / 2), (0.2, -0.3, 0.1)),
            Capsule(0.05, 0.15, rotation_matrix((0.0, 1.0, 0.0), 1.0), (-0.2, 0.25, 0.0)),
            Sphere(0.12, None, (0.25, 0.25, -0.1)),
            Torus(0.16, 0.035, rotation_matrix((1.0, 0.0, 0.0), 0.5), (0.0, 0.1, 0.3)),
        ],
        [
            Box((0.1, 0.3, 0.1), rot, (0.05, -0.1, 0.0)),
            Torus(0.12, 0.05, None, (0.25, 0.25, -0.1)),
        ],
    )
