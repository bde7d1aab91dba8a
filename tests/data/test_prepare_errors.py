"""`implicit_fields.data.prepare` on bad input: arguments checked before any work, reruns with
other parameters, datasets with fewer objects than splits, and degenerate meshes."""

import functools
import json
import os

import numpy as np
import pytest
import trimesh

from implicit_fields import inside_mesh
from implicit_fields.data import datasets, onet_format, prepare

FAST = dict(num_points=500, num_surface_points=500, render_views=0, voxel_resolution=0, num_workers=0)


@pytest.fixture(autouse=True)
def coarse_ray_hash(monkeypatch):
    """The ray test's xy hash grid at 32 cells instead of 512 (in-process runs only).

    The grid only decides which triangles each ray is tested against, never the answer;
    the default one costs 0.5 s per object on meshes of a few large triangles.
    """
    monkeypatch.setattr(inside_mesh, "contains", functools.partial(inside_mesh.contains, resolution=32))


def _meshes(folder, n=1):
    """`n` closed meshes (box, icosphere, a box of other proportions) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = [
        trimesh.creation.box(),
        trimesh.creation.icosphere(subdivisions=1),
        trimesh.creation.box(extents=(1.0, 0.5, 0.25)),
    ]
    for i in range(n):
        shapes[i].export(folder / f"mesh{i}.off")
    return folder


def _prepare(src, out, **kwargs):
    return prepare.prepare_dataset(src, out, progress=False, **dict(FAST, **kwargs))


# --------------------------------------------------------------------------------------
# Arguments: each bad one is an ArgumentError naming it, raised before anything is written.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argument, value, fragment",
    [
        ("num_points", 0, ">= 1"),
        ("num_points", -5, ">= 1"),
        ("num_points", 2.5, "integer"),
        ("num_points", "many", "integer"),
        ("num_points", True, "integer"),
        ("num_surface_points", 0, ">= 1"),
        ("surface_fraction", 1.5, "[0.0, 1.0]"),
        ("surface_fraction", -0.1, "[0.0, 1.0]"),
        ("surface_fraction", float("nan"), "[0.0, 1.0]"),
        ("surface_sigma", -0.01, "[0.0, inf)"),
        ("voxel_resolution", -1, ">= 0"),
        ("render_views", -1, ">= 0"),
        ("render_resolution", 1, ">= 2"),
        ("render_resolution", -64, ">= 2"),
        ("num_workers", -1, ">= 0"),
        ("seed", -3, ">= 0"),
        ("winding_budget", 0, "(0.0, inf)"),
        ("split_fractions", (0.5, 0.5), "3 numbers"),
        ("split_fractions", (0.25, 0.25, 0.25, 0.25), "3 numbers"),
        ("split_fractions", "0.7,x,0.2", "3 numbers"),
        ("split_fractions", (-0.5, 1.0, 0.5), "non-negative"),
        ("split_fractions", (float("nan"), 0.5, 0.5), "non-negative"),
        ("split_fractions", (0.5, 0.2, 0.2), "sum to 1"),
        ("category", "", "folder name"),
        ("category", "a/b", "folder name"),
        ("category", "..", "folder name"),
        ("category", ".hidden", "folder name"),
        ("category_name", "", "non-empty"),
    ],
)
def test_a_bad_argument_names_itself_before_any_work(tmp_path, argument, value, fragment):
    src = _meshes(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(prepare.ArgumentError) as info:
        _prepare(src, out, **{argument: value})
    assert info.value.argument == argument
    assert str(info.value).startswith(f"{argument}: ") and fragment in str(info.value), str(info.value)
    assert not out.exists()


@pytest.mark.parametrize(
    "make_input, fragment",
    [
        (lambda tmp: tmp / "nowhere", "no such folder"),
        (lambda tmp: "", "empty path"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no .off/.obj/.ply/.stl files"),
        (lambda tmp: (tmp / "notes.txt").write_text("x") and tmp / "notes.txt", "not a folder or a .off"),
    ],
    ids=["missing", "empty_path", "no_meshes", "a_text_file"],
)
def test_a_bad_input_is_named(tmp_path, make_input, fragment):
    source = make_input(tmp_path)
    with pytest.raises(prepare.ArgumentError, match=fragment) as info:
        _prepare(source, tmp_path / "out")
    assert info.value.argument == "input_dir" and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "make_output, fragment",
    [
        (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "exists and is not a folder"),
        (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "sub", "is a file"),
        (lambda tmp: "", "empty path"),
    ],
    ids=["a_file", "under_a_file", "empty_path"],
)
def test_a_bad_output_is_named(tmp_path, make_output, fragment):
    src = _meshes(tmp_path / "in")
    with pytest.raises(prepare.ArgumentError, match=fragment) as info:
        _prepare(src, make_output(tmp_path))
    assert info.value.argument == "out_dir"


def test_a_malformed_metadata_file_stops_before_any_work(tmp_path):
    src = _meshes(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / onet_format.METADATA_FILE).write_text("- just a list\n")
    with pytest.raises(onet_format.DataFormatError, match="metadata.yaml"):
        _prepare(src, out)
    assert not (out / "real").exists()


@pytest.mark.parametrize("n_bad", [1, 3])
def test_an_input_of_only_broken_meshes_is_one_error_with_the_reasons(tmp_path, n_bad):
    src = tmp_path / "in"
    src.mkdir()
    files = {
        "open.off": "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
        "junk.ply": "not a mesh",
        "blank.stl": "",
    }
    for name in list(files)[:n_bad]:
        (src / name).write_text(files[name])
    with pytest.raises(prepare.ArgumentError) as info:
        _prepare(src, tmp_path / "out")
    message = str(info.value)
    assert info.value.argument == "input_dir" and f"none of its {n_bad} mesh file(s)" in message
    assert "open.off: not closed" in message and "\n" not in message
    assert not (tmp_path / "out").exists()  # The folders it made are removed again.


# --------------------------------------------------------------------------------------
# Reruns: the same parameters resume; other ones stop (old -> new) unless rebuild.
# --------------------------------------------------------------------------------------


def _snapshot(folder):
    return {
        os.path.relpath(os.path.join(root, f), folder): open(os.path.join(root, f), "rb").read()
        for root, _, files in os.walk(folder)
        for f in files
    }


@pytest.mark.parametrize(
    "change, key, old, new",
    [
        ({"num_points": 700}, "num_points", "500", "700"),
        ({"num_surface_points": 300}, "num_surface_points", "500", "300"),
        ({"surface_fraction": 0.25}, "surface_fraction", "0.5", "0.25"),
        ({"surface_sigma": 0.02}, "surface_sigma", "0.01", "0.02"),
        ({"voxel_resolution": 4}, "voxel_resolution", "0", "4"),
        ({"seed": 3}, "seed", "0", "3"),
        ({"render_views": 1, "render_resolution": 8}, "render_views", "0", "1"),
        ({"split_fractions": (0.5, 0.5, 0.0)}, "split_fractions", "0.7,0.1,0.2", "0.5,0.5,0.0"),
    ],
)
def test_a_rerun_with_other_parameters_stops_then_rebuilds(tmp_path, change, key, old, new):
    src = _meshes(tmp_path / "in", 2)
    out = tmp_path / "out"
    _prepare(src, out)
    before = _snapshot(out)
    with pytest.raises(prepare.ParameterMismatchError) as info:
        _prepare(src, out, **change)
    assert f"{key} {old} -> {new}" in str(info.value) and "rebuild" in str(info.value), str(info.value)
    assert _snapshot(out) == before  # Nothing written.
    report = _prepare(src, out, rebuild=True, **change)
    assert json.loads((out / prepare.REPORT_FILE).read_text())["params"] == report["params"]
    for mid in report["converted"]:
        recorded = json.loads((out / "real" / mid / prepare.MESH_INFO_FILE).read_text())["params"]
        assert recorded == report["params"]
        points = onet_format.load_points_npz(out / "real" / mid / onet_format.POINTS_FILE)["points"]
        assert points.shape[0] == report["params"]["num_points"]
        assert (out / "real" / mid / "model.binvox").exists() == bool(report["params"]["voxel_resolution"])
    # Rebuilt with the new values, a rerun with them changes nothing.
    after = _snapshot(out / "real")
    _prepare(src, out, **change)
    assert _snapshot(out / "real") == after


def test_the_same_parameters_resume_an_interrupted_run(tmp_path):
    src = _meshes(tmp_path / "in", 3)
    out = tmp_path / "out"
    first = _prepare(src, out)
    kept = out / "real" / "mesh0" / onet_format.POINTS_FILE
    mtime = os.path.getmtime(kept)
    # An interrupted run: an object missing, a half-written one, a replaced one set aside.
    victim = out / "real" / "mesh1"
    for f in victim.iterdir():
        f.unlink()
    victim.rmdir()
    (out / "real" / ".tmp-mesh1-999").mkdir()
    os.rename(out / "real" / "mesh2", out / "real" / ".rebuild-old-mesh2-999")
    report = _prepare(src, out)
    assert report["splits"] == first["splits"] and os.path.getmtime(kept) == mtime
    statuses = {r["model_id"]: r["status"] for r in report["records"]}
    assert statuses == {"mesh0": "exists", "mesh1": "converted", "mesh2": "exists"}
    assert sorted(os.listdir(out / "real")) == ["mesh0", "mesh1", "mesh2", "prepare.json"] + [
        f"{s}.lst" for s in ("test", "train", "val")
    ]


def test_a_changed_source_mesh_stops_then_rebuilds(tmp_path):
    src = _meshes(tmp_path / "in", 2)
    out = tmp_path / "out"
    _prepare(src, out)
    trimesh.creation.box(extents=(1.0, 2.0, 3.0)).export(src / "mesh0.off")
    with pytest.raises(prepare.ParameterMismatchError, match=r"source mesh of 1 object\(s\) changed"):
        _prepare(src, out)
    report = _prepare(src, out, rebuild=True)
    assert report["rebuilt"] == ["mesh0"]
    scale = onet_format.load_points_npz(out / "real" / "mesh0" / onet_format.POINTS_FILE)["scale"]
    assert scale == pytest.approx(3.0)


def test_a_rebuild_that_fails_keeps_the_old_object_out_of_the_splits(tmp_path):
    src = _meshes(tmp_path / "in", 2)
    out = tmp_path / "out"
    _prepare(src, out)
    old = _snapshot(out / "real" / "mesh0")
    (src / "mesh0.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")  # Now broken.
    report = _prepare(src, out, num_points=600, rebuild=True)
    assert [r["model_id"] for r in report["rebuild_failed"]] == ["mesh0"]
    assert _snapshot(out / "real" / "mesh0") == old
    assert all(ids == ["mesh1"] for ids in report["splits"].values())


def test_a_rebuild_needs_the_source_of_objects_not_in_the_input(tmp_path):
    src = _meshes(tmp_path / "in", 2)
    out = tmp_path / "out"
    _prepare(src, out)
    os.remove(src / "mesh1.off")
    with pytest.raises(prepare.ArgumentError, match=r"cannot regenerate 1 object\(s\).*mesh1") as info:
        _prepare(src, out, num_points=600, rebuild=True)
    assert info.value.argument == "rebuild"


def test_an_object_without_recorded_parameters_is_not_taken_as_matching(tmp_path):
    src = _meshes(tmp_path / "in", 2)
    out = tmp_path / "out"
    _prepare(src, out)
    os.remove(out / "real" / "mesh1" / prepare.MESH_INFO_FILE)  # E.g. made by another tool.
    with pytest.raises(prepare.ParameterMismatchError, match=r"1 object\(s\) have no readable mesh.json"):
        _prepare(src, out)
    report = _prepare(src, out, rebuild=True)
    assert report["rebuilt"] == ["mesh1"] and (out / "real" / "mesh1" / prepare.MESH_INFO_FILE).exists()


@pytest.mark.parametrize("what", ["a folder", "a file"])
def test_a_foreign_entry_where_an_object_goes_is_never_replaced(tmp_path, what):
    src = _meshes(tmp_path / "in", 1)
    out = tmp_path / "out"
    (out / "real").mkdir(parents=True)
    if what == "a folder":
        (out / "real" / "mesh0").mkdir()
        (out / "real" / "mesh0" / "notes.txt").write_text("mine")
    else:
        (out / "real" / "mesh0").write_text("mine")
    before = _snapshot(out)
    for rebuild in (False, True):
        with pytest.raises(prepare.ArgumentError, match=r"without points.npz exists \(mesh0\)") as info:
            _prepare(src, out, rebuild=rebuild)
        assert info.value.argument == "out_dir" and _snapshot(out) == before


# --------------------------------------------------------------------------------------
# Fewer objects than splits: empty splits reuse the train objects, and say so.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, fractions, reused",
    [
        (1, (0.7, 0.1, 0.2), {"val", "test"}),
        (2, (0.7, 0.1, 0.2), {"val"}),
        (3, (0.7, 0.1, 0.2), set()),
        (2, (1.0, 0.0, 0.0), {"val", "test"}),
        (2, (0.0, 0.0, 1.0), {"train", "val"}),
    ],
)
def test_no_split_is_left_empty(tmp_path, n, fractions, reused):
    src = _meshes(tmp_path / "in", n)
    out = tmp_path / "out"
    report = _prepare(src, out, split_fractions=fractions)
    assert set(report["reused_splits"]) == reused
    for split in onet_format.SPLITS:
        ids = onet_format.read_split(out / "real", split)  # Never an empty file.
        assert ids == report["splits"][split] and len(ids) >= 1
        if split in reused:
            assert ids == (report["splits"]["train"] if split != "train" else report["converted"])
        assert len(datasets.ShapesDataset(str(out), split)) == len(ids)


# --------------------------------------------------------------------------------------
# Degenerate meshes get the right reason.
# --------------------------------------------------------------------------------------


def _write_off(path, vertices, faces):
    lines = [f"OFF\n{len(vertices)} {len(faces)} 0\n"]
    lines += [" ".join(str(x) for x in v) + "\n" for v in vertices]
    lines += ["3 " + " ".join(str(i) for i in f) + "\n" for f in faces]
    path.write_text("".join(lines))


def _write_obj(path, vertices, faces):
    lines = ["v " + " ".join(str(x) for x in v) + "\n" for v in vertices]
    lines += ["f " + " ".join(str(i + 1) for i in f) + "\n" for f in faces]
    path.write_text("".join(lines))


def _write_trimesh(path, vertices, faces):
    with np.errstate(invalid="ignore"):  # STL face normals of a NaN / inf vertex.
        trimesh.Trimesh(vertices, faces, process=False, validate=False).export(path)


WRITERS = {".off": _write_off, ".obj": _write_obj, ".ply": _write_trimesh, ".stl": _write_trimesh}


def _box_with(vertex=None, face=None):
    box = trimesh.creation.box()
    v, f = np.array(box.vertices), np.array(box.faces)
    if vertex is not None:
        v[0, 0] = vertex
    if face is not None:
        f[2, 1] = face
    return v, f


@pytest.mark.parametrize("ext", [".off", ".obj", ".ply", ".stl"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_vertex_is_reported_as_such(tmp_path, ext, value):
    path = tmp_path / f"bad{ext}"
    WRITERS[ext](path, *_box_with(vertex=value))
    with pytest.raises(prepare.MeshError, match="^non-finite vertex coordinates"):
        prepare.load_mesh(path)


@pytest.mark.parametrize("ext", [".off", ".obj", ".ply"])
@pytest.mark.parametrize("index", [8, 99, -1])
def test_an_out_of_range_face_index_is_reported_as_such(tmp_path, ext, index):
    path = tmp_path / f"bad{ext}"
    if ext == ".obj" and index == -1:
        index = -100  # OBJ: negative indices count back from the last vertex; -1 is valid.
    v, f = _box_with(face=index)
    if ext == ".obj" and index < 0:
        path.write_text("".join(f"v {a} {b} {c}\n" for a, b, c in v) + f"f 1 2 {index}\n")
    else:
        WRITERS[ext](path, v, f)
    with pytest.raises(prepare.MeshError, match="^face indices out of range"):
        prepare.load_mesh(path)


@pytest.mark.parametrize(
    "name, text, fragment",
    [
        ("no_faces.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "no faces"),
        ("no_faces.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("blank.off", "", "empty file"),
        ("blank.ply", "", "empty file"),
        ("flat.off", "OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n", "degenerate"),
        ("short.off", "OFF\n5 1 0\n0 0 0\n1 0 0\n", "cannot read the file"),
        ("zero_index.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "face indices out of range"),
    ],
)
def test_other_degenerate_meshes_get_their_reason(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(prepare.MeshError, match=fragment):
        prepare.load_mesh(path)


def test_the_reasons_reach_the_report(tmp_path):
    src = _meshes(tmp_path / "in", 1)
    _write_off(src / "nan.off", *_box_with(vertex=float("nan")))
    _write_off(src / "index.off", *_box_with(face=42))
    report = _prepare(src, tmp_path / "out")
    reasons = {r["model_id"]: r["reason"] for r in report["skipped"]}
    assert reasons["nan"].startswith("non-finite vertex coordinates")
    assert reasons["index"].startswith("face indices out of range")
    assert report["converted"] == ["mesh0"]
