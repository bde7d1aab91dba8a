"""A dataset prepared from analytic meshes (box, sphere, torus, a sphere with a hole) plus two
broken files, as `experiments.prepare_data` makes one: shared by the preparation tests and the
ONet tests that train or evaluate on prepared data."""

import numpy as np
import trimesh

from implicit_fields.data import prepare

BOX_CENTRE = np.array([3.0, -1.0, 2.0])
BOX_EXTENTS = np.array([2.0, 1.0, 0.5])
SPHERE_CENTRE = np.array([-1.0, 0.5, 0.0])
TORUS_R, TORUS_r = 1.0, 0.3
SOURCES = {"box": "box.off", "sphere": "sphere.obj", "torus": "torus.ply", "holed_sphere": "holed_sphere.stl"}


def holed_sphere():
    m = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    m.apply_translation(SPHERE_CENTRE)
    return trimesh.Trimesh(m.vertices, m.faces[3:], process=False)  # 3 faces removed


def build(root):
    """Writes the meshes to `root/meshes` and prepares `root/dataset`; returns (dataset path, report)."""
    src = root / "meshes"
    src.mkdir()
    box = trimesh.creation.box(extents=BOX_EXTENTS)
    box.apply_translation(BOX_CENTRE)
    box.export(src / "box.off")
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    sphere.apply_translation(SPHERE_CENTRE)
    sphere.export(src / "sphere.obj")
    trimesh.creation.torus(TORUS_R, TORUS_r, 24, 12).export(src / "torus.ply")
    holed_sphere().export(src / "holed_sphere.stl")
    (src / "open_triangle.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (src / "garbage.ply").write_bytes(b"this is not a mesh \x00\x01\x02")
    out = root / "dataset"
    report = prepare.prepare_dataset(
        src,
        out,
        category="real",
        num_points=6000,
        num_surface_points=3000,
        voxel_resolution=16,
        split_fractions=(0.5, 0.25, 0.25),
        num_workers=0,
        progress=False,
        render_views=4,
        render_resolution=32,
    )
    return out, report
