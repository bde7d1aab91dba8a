"""`implicit_fields.data.prepare`: real meshes (OFF/OBJ/PLY/STL) -> the on-disk format.

Meshes whose inside is known analytically (a box, a sphere, a torus, a sphere with a
small hole) are written in the four formats, converted, and checked against the analytic
inside test; an open triangle and a garbage file must be reported and skipped.
"""

import json
import os

import ml_collections
import numpy as np
import pytest
import trimesh

import prepared_meshes
from experiments import build_cgal_dataset, prepare_data
from implicit_fields import cameras as cam_lib
from implicit_fields import inside_mesh
from implicit_fields.data import binvox, builtin, datasets, onet_format, prepare
from prepared_meshes import BOX_CENTRE, BOX_EXTENTS, SPHERE_CENTRE, TORUS_R, TORUS_r

MARGIN = 0.03  # Normalised distance from the surface beyond which labels must be right.


def _analytic(name, world):
    """(inside, distance to the surface in world units) of the analytic shape."""
    if name == "box":
        q = np.abs(world - BOX_CENTRE) - BOX_EXTENTS / 2
        inside = (q < 0).all(axis=1)
        dist = np.where(inside, -q.max(axis=1), np.linalg.norm(np.maximum(q, 0), axis=1))
        return inside, dist
    if name in ("sphere", "holed_sphere"):
        r = np.linalg.norm(world - SPHERE_CENTRE, axis=1)
        return r < 1.0, np.abs(r - 1.0)
    if name == "torus":
        d = np.hypot(np.hypot(world[:, 0], world[:, 1]) - TORUS_R, world[:, 2])
        return d < TORUS_r, np.abs(d - TORUS_r)
    raise ValueError(name)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_meshes.build(tmp_path_factory.mktemp("prepare"))


def test_broken_meshes_are_reported_and_skipped(prepared):
    out, report = prepared
    assert sorted(report["converted"]) == ["box", "holed_sphere", "sphere", "torus"]
    skipped = {r["model_id"]: r["reason"] for r in report["skipped"]}
    assert sorted(skipped) == ["garbage", "open_triangle"]
    assert "not closed" in skipped["open_triangle"]
    assert skipped["garbage"]
    assert not os.path.exists(out / "real" / "garbage")
    assert not os.path.exists(out / "real" / "open_triangle")
    on_disk = json.loads((out / prepare.REPORT_FILE).read_text())
    assert on_disk["skipped"] == report["skipped"]


@pytest.mark.parametrize("name", ["box", "sphere", "torus", "holed_sphere"])
def test_occupancy_matches_the_analytic_inside_test(prepared, name):
    out, _ = prepared
    data = onet_format.load_points_npz(out / "real" / name / onet_format.POINTS_FILE)
    world = data["points"].astype(np.float64) * data["scale"] + data["loc"]
    inside, dist = _analytic(name, world)
    far = dist > MARGIN * data["scale"]
    assert far.sum() > 2000
    agreement = np.mean(data["occupancies"][far] == inside[far])
    assert agreement > 0.99, agreement
    assert 0.05 < data["occupancies"].mean() < 0.95


def test_loc_scale_convention(prepared):
    out, _ = prepared
    mesh = trimesh.load(out.parent / "meshes" / "box.off")
    lo, hi = mesh.bounds
    for fname in (onet_format.POINTS_FILE, onet_format.POINTCLOUD_FILE):
        with np.load(out / "real" / "box" / fname) as f:
            np.testing.assert_allclose(f["loc"], (lo + hi) / 2, atol=1e-12)
            np.testing.assert_allclose(f["scale"], np.max(hi - lo), atol=1e-12)
    pc = onet_format.load_pointcloud_npz(out / "real" / "sphere" / onet_format.POINTCLOUD_FILE)
    world = pc["points"].astype(np.float64) * pc["scale"] + pc["loc"]
    r = np.linalg.norm(world - SPHERE_CENTRE, axis=1)
    assert r.min() > 0.9 and r.max() < 1.01  # On the (inscribed) polyhedral sphere.
    assert 0.47 < np.abs(pc["points"]).max() <= 0.5 + 1e-3  # Normalised into [-0.5, 0.5]^3.
    with np.load(out / "real" / "sphere" / onet_format.POINTS_FILE) as f:
        n = int(f["num_uniform"])
        assert n == 3000
        uniform = f["points"][:n].astype(np.float64)
        assert np.abs(uniform).max() <= 0.55 + 1e-3 and np.abs(uniform).max() > 0.5


def test_winding_number_labels_a_sphere_with_a_hole():
    m = prepared_meshes.holed_sphere()
    assert not m.is_watertight
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    rng = np.random.default_rng(0)
    pts = SPHERE_CENTRE + rng.uniform(-1.3, 1.3, (4000, 3))
    inside, dist = _analytic("sphere", pts)
    far = dist > 0.06
    w = prepare.winding_number(v, f, pts)
    assert np.mean((np.abs(w) > 0.5)[far] == inside[far]) > 0.995
    np.testing.assert_allclose(np.abs(prepare.winding_number(v, f, SPHERE_CENTRE[None]))[0], 1, atol=0.03)
    # A closed mesh: exactly +-1 inside, 0 outside, and the ray tests agree.
    s = trimesh.creation.icosphere(subdivisions=2)
    w = prepare.winding_number(s.vertices, s.faces, [[0, 0, 0], [2, 0, 0]])
    np.testing.assert_allclose(np.abs(w), [1, 0], atol=1e-9)
    vote, _ = prepare.contains_ray_vote(s.vertices, s.faces, pts - SPHERE_CENTRE)
    parity = inside_mesh.contains(s.vertices, s.faces, pts - SPHERE_CENTRE)
    np.testing.assert_array_equal(vote, parity)


def test_dataset_loads_with_splits_and_voxels(prepared):
    out, report = prepared
    cfg = ml_collections.ConfigDict(
        {"path": str(out), "categories": (), "cache": False, "input_type": "voxels", "voxel_resolution": 16}
    )
    seen = []
    for split in onet_format.SPLITS:
        ids = onet_format.read_split(out / "real", split)
        assert ids == report["splits"][split]
        ds = datasets.from_config(cfg, split)
        assert len(ds) == len(ids)
        for i in range(len(ds)):
            item = ds.load(i)
            assert item["points"].shape == (6000, 3) and item["voxels"].shape == (16, 16, 16)
        seen += ids
    assert sorted(seen) == sorted(report["converted"])
    assert onet_format.read_metadata(out) == {"real": {"id": "real", "name": "real"}}
    vox = binvox.read_binvox(str(out / "real" / "box" / binvox.VOXELS_FILE)).data
    centres = binvox.voxel_centers(16).astype(np.float64)
    with np.load(out / "real" / "box" / onet_format.POINTS_FILE) as f:
        world = centres * float(f["scale"]) + f["loc"]
    inside, _ = _analytic("box", world)
    assert np.all(vox.reshape(-1)[inside])  # Every voxel whose centre is inside is set.


def _sphere_silhouette(cam, centre, radius, size):
    """Pixel centres whose ray meets the sphere (exact, from the ray-sphere quadratic)."""
    pixels = cam_lib.pixel_grid(size, size).reshape(-1, 2)
    o, d = cam_lib.pixels_to_rays(pixels, cam["camera_mat"], cam["world_mat"], cam["scale_mat"])
    oc = o - centre
    a, b, c = (d * d).sum(1), 2.0 * (oc * d).sum(1), (oc * oc).sum(1) - radius**2
    return (b * b - 4 * a * c >= 0).reshape(size, size)


def test_renderings_in_the_img_choy2016_layout(prepared):
    out, _ = prepared
    folder = out / "real" / "sphere" / builtin.IMAGES_DIR
    assert sorted(os.listdir(folder)) == [f"00{i}.png" for i in range(4)] + ["cameras.npz", "images.json"]
    images = datasets.load_images(str(folder))
    assert images.shape == (4, 32, 32, 3)
    cams = onet_format.load_cameras(folder / "cameras.npz")
    assert cams["world_mat"].shape == (4, 4, 4)
    # The rendered (non-white) mask lies between the silhouettes of the inscribed and the
    # circumscribed sphere of the (normalised) icosphere.
    with np.load(out / "real" / "sphere" / onet_format.POINTS_FILE) as f:
        loc, scale = f["loc"], float(f["scale"])
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    r_in = np.min(np.abs(np.einsum("fd,fd->f", sphere.face_normals, sphere.triangles[:, 0])))
    centre = (SPHERE_CENTRE - loc) / scale
    for i in range(4):
        cam = {k: cams[k][i] for k in cam_lib.CAMERA_KEYS}
        mask = (images[i] < 255).any(axis=-1)
        inner = _sphere_silhouette(cam, centre, 0.999 * r_in / scale, 32)
        outer = _sphere_silhouette(cam, centre, 1.001 / scale, 32)
        assert inner.sum() > 200  # The focal length is fitted: the object fills the view.
        assert np.all(mask[inner]) and not np.any(mask[~outer])
    # Image training reads the prepared dataset.
    cfg = ml_collections.ConfigDict({"path": str(out), "categories": (), "cache": False, "input_type": "img"})
    ds = datasets.from_config(cfg, "train")
    item = ds.load(0)
    assert item["images"].shape == (4, 32, 32, 3)
    view = datasets.object_inputs(item, np.random.default_rng(0), 0, 0.0, "img")
    assert view.shape == (32, 32, 3) and view.dtype == np.float32


def test_rerun_skips_done_objects_and_cli(prepared, tmp_path, capsys):
    out, _ = prepared
    points = out / "real" / "box" / onet_format.POINTS_FILE
    info = out / "real" / "box" / builtin.IMAGES_DIR / "images.json"
    before, images_before = os.path.getmtime(points), os.path.getmtime(info)
    args = [
        "--input",
        str(out.parent / "meshes"),
        "--output",
        str(out),
        "--category",
        "real",
        "--num-points",
        "6000",
        "--num-surface-points",
        "3000",
        "--voxel-resolution",
        "16",
        "--splits",
        "0.5,0.25,0.25",
        "--workers",
        "0",
        "--quiet",
        "--render-views",
        "4",
    ]
    prepare_data.main(args + ["--render-resolution", "32"])
    assert os.path.getmtime(points) == before and os.path.getmtime(info) == images_before
    text = capsys.readouterr().out
    assert "converted 4, skipped 2 of 6" in text and "garbage" in text
    # Other rendering parameters stop the run (one line naming the flag, old -> new) ...
    with pytest.raises(SystemExit) as exit_info:
        prepare_data.main(args + ["--render-resolution", "24"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--render-resolution 32 -> 24" in err and "--rebuild" in err
    assert os.path.getmtime(info) == images_before
    # ... unless --rebuild: then only the renderings of the existing objects are redone.
    prepare_data.main(args + ["--render-resolution", "24", "--rebuild"])
    report = json.loads((out / prepare.REPORT_FILE).read_text())
    assert os.path.getmtime(points) == before
    statuses = [r["status"] for r in report["records"]]
    assert statuses.count("rerendered") == 4 and not report["render_errors"]
    assert sorted(report["rebuilt"]) == sorted(report["converted"])
    assert datasets.load_images(str(info.parent)).shape == (4, 24, 24, 3)
    recorded = json.loads((out / "real" / "box" / prepare.MESH_INFO_FILE).read_text())["params"]
    assert recorded["render_resolution"] == 24 and recorded["num_points"] == 6000


def test_extract_meshes_from_a_deb(tmp_path):
    import io
    import tarfile

    def tar_bytes(files, mode):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as tar:
            for name, blob in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        return buf.getvalue()

    inner = tar_bytes({"data/meshes/cube.off": b"OFF\n", "data/other/x.txt": b"x"}, "w:gz")
    outer = tar_bytes({"./usr/share/doc/libcgal-dev/data.tar.gz": inner}, "w:xz")
    deb = b"!<arch>\n"
    for name, blob in (("debian-binary", b"2.0\n"), ("data.tar.xz", outer)):
        deb += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode() + blob
        deb += b"\n" if len(blob) % 2 else b""
    path = tmp_path / "libcgal-demo_test_all.deb"
    path.write_bytes(deb)
    meshes = build_cgal_dataset.extract_meshes(str(path), str(tmp_path / "work"))
    assert os.listdir(meshes) == ["cube.off"]


def test_plain_off_reader_polygons_colours_comments(tmp_path):
    path = tmp_path / "quads.off"
    corners = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    text = "# a comment\nCOFF\n8 6 0\n\n"
    text += "".join(f"{x} {y} {z} 0.9 0.0 0.0 #red\n" for x, y, z in corners)
    text += "".join(f"4 {a} {b} {c} {d} 0.5 0.5 0.5\n" for a, b, c, d in quads)
    path.write_text(text)
    v, f = prepare._read_off(str(path))
    assert v.shape == (8, 3) and f.shape == (12, 3)
    v, f = prepare.load_mesh(str(path))
    assert f.shape == (12, 3)
    assert trimesh.Trimesh(v, f).is_watertight
