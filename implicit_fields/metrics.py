"""Mesh evaluation metrics of Occupancy Networks (numpy/scipy only).

Follows `im2mesh/eval.py` (`MeshEvaluator.eval_mesh` / `eval_pointcloud`),
`im2mesh/common.py` (`compute_iou`) and the F-score of ConvONet's
`src/eval.py`:

* IoU: occupancy of the predicted mesh (`inside_mesh.contains`) at the 100k
  `points.npz` points against the GT occupancies.
* Accuracy: mean distance from each predicted surface point to its nearest GT
  point; completeness: the reverse. Chamfer-L1 = 0.5 * (accuracy +
  completeness); Chamfer-L2 is the same with squared distances.
* Normal consistency: 0.5 * (mean |n_pred . n_gt[nn]| + mean
  |n_gt . n_pred[nn]|), normals normalised first.
* Precision / recall: fraction of pred->GT / GT->pred distances `<= tau`;
  F-score = 2PR / (P + R). Papers report tau = 0.01 (ConvONet's `F[9]`).

All distances are in the units of the inputs (ShapeNet: unit cube with
padding 0.1). See `CHAMFER_REPORT_SCALE` for the x10 reporting convention.

Scenes (ConvONet's synthetic rooms, its `test.remove_wall`): with
`crop_to_gt_bbox`, `mesh_metrics` samples twice the points on the predicted
mesh, keeps those inside the ground-truth point cloud's bounding box widened
by `GT_BBOX_MARGIN` (`crop_to_gt_bbox_mask`: x and z on both sides, y only
below, the floor side) and draws `n_samples` of them with replacement before
Chamfer, normal consistency and F-score; IoU is not affected.

Values the original leaves undefined (`UNDEFINED_METRICS`). By default
('original') every edge case is scored as the original code scores it:

* an empty prediction (no vertices, no faces, or zero area) gets the
  original's `EMPTY_PCL_DICT` / `EMPTY_PCL_DICT_NORMALS`: IoU 0, accuracy =
  completeness = sqrt(3), normal consistency -1 (NaN without normals), and no
  Chamfer-L1, Chamfer-L2, precision, recall or F-score (NaN here: the
  original's dict has no such keys, so its pandas means skip the object);
* an F-score with precision = recall = 0 is 0/0 = NaN, also skipped by the
  means; so is an IoU whose union is empty (a non-empty mesh with no IoU
  point inside, of a shape with none inside either).

'worst' scores them with the worst values instead, so that no object drops
out of a mean: an empty prediction has Chamfer-L1 sqrt(3) (Chamfer-L2 3),
normal consistency 0, precision = recall = F-score = 0; P = R = 0 gives an
F-score of 0, an empty union an IoU of 0. `worst_case` turns the first into
the second; `nan_mean` is the original's mean (NaN skipped). Means over
objects are only comparable with the papers under 'original'.
"""

import numpy as np
from scipy import spatial

from implicit_fields import inside_mesh

CHAMFER_REPORT_SCALE = 10.0
"""Factor applied to Chamfer-L1 in the papers' tables.

Occupancy Networks and its successors report Chamfer-L1 multiplied by 10
("1/10 of the maximal bounding-box edge length as unit"; occupancy_networks
issue #61). `pointcloud_metrics` and `mesh_metrics` return unscaled values;
multiply `chamfer_l1` by this constant to compare with published numbers.
"""

GT_BBOX_MARGIN = 0.007
"""Margin of ConvONet's room evaluation crop around the GT point cloud's bounding box (`eps`)."""

UNDEFINED_METRICS = ("original", "worst")
"""How values the original leaves undefined are scored (see the module docstring)."""

# An empty prediction. The original's `EMPTY_PCL_DICT` has accuracy = completeness
# = sqrt(3) (the diagonal of the unit cube), 3 for their squares and 'chamfer': 6,
# a key its tables never read ('chamfer-L1' / 'chamfer-L2' are missing, so NaN);
# `EMPTY_PCL_DICT_NORMALS` sets the normal terms to -1.
_EMPTY_DISTANCE = float(np.sqrt(3.0))
_EMPTY_DISTANCE_SQ = 3.0
_EMPTY_NORMALS_ORIGINAL = -1.0
_NAN = float("nan")


def check_undefined(undefined, name="undefined"):
    """Raises ValueError naming `name` unless `undefined` is one of `UNDEFINED_METRICS`."""
    if undefined not in UNDEFINED_METRICS:
        raise ValueError(f"{name}={undefined!r}: must be one of {', '.join(map(repr, UNDEFINED_METRICS))}")


def check_eval_config(eval_config, prefix="config.eval"):
    """Checks the metric options of an `eval` config section (those it has).

    `undefined_metrics` must be one of `UNDEFINED_METRICS`; `iou_jitter` a
    finite number >= 0; `fscore_threshold` a finite number > 0; `n_samples` an
    integer > 0.

    Raises:
      ValueError: naming the key (`prefix.key`) and the problem.
    """
    if "undefined_metrics" in eval_config:
        check_undefined(eval_config["undefined_metrics"], f"{prefix}.undefined_metrics")
    checks = (
        ("iou_jitter", lambda v: v >= 0, "a finite number >= 0 (0: no jitter)"),
        ("fscore_threshold", lambda v: v > 0, "a finite number > 0"),
    )
    for key, ok, want in checks:
        if key not in eval_config:
            continue
        value = eval_config[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not np.isfinite(value) or not ok(value):
            raise ValueError(f"{prefix}.{key}={value!r}: must be {want}")
    if "crop_to_gt_bbox" in eval_config and not isinstance(eval_config["crop_to_gt_bbox"], bool):
        value = eval_config["crop_to_gt_bbox"]
        raise ValueError(f"{prefix}.crop_to_gt_bbox={value!r}: must be True or False")
    if "n_samples" in eval_config:
        value = eval_config["n_samples"]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{prefix}.n_samples={value!r}: must be an integer > 0")


def jitter_points(points, scale, rng):
    """The IoU points with the original's jitter: float32 points + scale * N(0, 1).

    The original's `PointsField.load` adds `1e-4 * np.random.randn` to the
    points of a float16 `points.npz` (ShapeNet's and every file this library
    writes) to break the ties of the float16 grid; the occupancies stay those
    of the unjittered points.

    Args:
      points: float array, (N, 3).
      scale: float >= 0, the jitter's standard deviation (0: none).
      rng: `np.random.Generator` or int seed (the noise is drawn in float64).

    Returns:
      float32 array, (N, 3).
    """
    points = np.array(points, dtype=np.float32)
    if scale:
        points += scale * np.random.default_rng(rng).standard_normal(points.shape)
    return points


def empty_prediction_metrics(with_normals, undefined="original"):
    """The metrics of an empty prediction (see the module docstring).

    Args:
      with_normals: whether normals are compared (else normal consistency is NaN).
      undefined: 'original' (the original's `EMPTY_PCL_DICT`: no Chamfer-L1/L2,
        precision, recall or F-score, i.e. NaN; normal consistency -1) or
        'worst' (Chamfer-L1 sqrt(3), Chamfer-L2 3, normal consistency 0,
        precision = recall = F-score = 0).

    Returns:
      dict of Python floats with the keys of `pointcloud_metrics`.
    """
    check_undefined(undefined)
    worst = undefined == "worst"
    normals = (0.0 if worst else _EMPTY_NORMALS_ORIGINAL) if with_normals else _NAN
    return {
        "accuracy": _EMPTY_DISTANCE,
        "completeness": _EMPTY_DISTANCE,
        "chamfer_l1": _EMPTY_DISTANCE if worst else _NAN,
        "chamfer_l2": _EMPTY_DISTANCE_SQ if worst else _NAN,
        "normal_consistency": normals,
        "precision": 0.0 if worst else _NAN,
        "recall": 0.0 if worst else _NAN,
        "fscore": 0.0 if worst else _NAN,
    }


def is_empty(out):
    """Whether metrics in the 'original' convention are those of an empty prediction.

    There, and only there, Chamfer-L1 is NaN (a prediction with non-finite
    points counts as empty too).
    """
    return bool(np.isnan(out["chamfer_l1"]))


def worst_case(out):
    """Metrics in the 'original' convention -> the same in the 'worst' convention.

    An empty prediction (`is_empty`) gets `empty_prediction_metrics(...,
    'worst')` (other keys kept); otherwise an F-score that is 0/0 (precision =
    recall = 0) becomes 0. An IoU that is 0/0 (NaN) becomes 0. Cheap: no
    distances are recomputed.

    Args:
      out: dict from `pointcloud_metrics` / `mesh_metrics` with undefined='original'.

    Returns:
      a new dict.
    """
    out = dict(out)
    if "iou" in out and np.isnan(out["iou"]):
        out["iou"] = 0.0
    if is_empty(out):
        with_normals = not np.isnan(out["normal_consistency"])
        out.update(empty_prediction_metrics(with_normals, "worst"))
    elif np.isnan(out["fscore"]) and out["precision"] == 0 and out["recall"] == 0:
        out["fscore"] = 0.0
    return out


def nan_mean(values):
    """The mean of `values` skipping NaN, as the original's pandas means.

    Returns:
      (mean, left_out): a Python float (NaN when every value is NaN or there
      are none) and the number of NaN values skipped.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = ~np.isnan(values)
    mean = float(values[keep].mean()) if keep.any() else _NAN
    return mean, int(values.size - keep.sum())


def sample_mesh_surface(vertices, faces, n, rng=None):
    """Samples points uniformly (area-weighted) on a triangle mesh surface.

    Args:
      vertices: float array, (V, 3), vertex positions.
      faces: int array, (F, 3), vertex indices per triangle.
      n: int, number of samples.
      rng: `np.random.Generator`, int seed or None (fresh entropy).

    Returns:
      points: float64 array, (n, 3), surface samples. (0, 3) if the mesh is
        empty or has zero area.
      normals: float64 array, (n, 3), unit normals of the sampled faces
        (orientation follows the face winding, right-hand rule).
    """
    rng = np.random.default_rng(rng)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    empty = np.zeros((0, 3), dtype=np.float64)
    if faces.shape[0] == 0 or vertices.shape[0] == 0 or n <= 0:
        return empty, empty.copy()
    tri = vertices[faces]  # (F, 3, 3)
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    cross = np.cross(e1, e2)
    double_area = np.linalg.norm(cross, axis=1)
    cdf = np.cumsum(double_area)
    total = cdf[-1]
    if not np.isfinite(total) or total <= 0:
        return empty, empty.copy()
    face_idx = np.searchsorted(cdf, rng.random(n) * total, side="right")
    face_idx = np.minimum(face_idx, faces.shape[0] - 1)
    # Uniform barycentric coordinates: fold the unit square onto the triangle.
    uv = rng.random((n, 2))
    fold = uv.sum(axis=1) > 1.0
    uv[fold] = 1.0 - uv[fold]
    points = tri[face_idx, 0] + uv[:, :1] * e1[face_idx] + uv[:, 1:] * e2[face_idx]
    normals = cross[face_idx] / double_area[face_idx, None]
    return points, normals


def crop_to_gt_bbox_mask(points, gt_points, margin=GT_BBOX_MARGIN):
    """Which points lie in the crop of ConvONet's room evaluation (`remove_wall`).

    The crop is the bounding box of the ground-truth point cloud widened by
    `margin`: min - margin <= x, z <= max + margin, and y >= min_y - margin
    with no upper bound in y (the original crops the floor side only).

    Args:
      points: float array, (M, 3), points sampled on the predicted mesh.
      gt_points: float array, (K, 3), K > 0, the ground-truth point cloud.
      margin: float >= 0.

    Returns:
      bool array, (M,).

    Raises:
      ValueError: empty `gt_points`.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    gt_points = np.asarray(gt_points, dtype=np.float64).reshape(-1, 3)
    if gt_points.shape[0] == 0:
        raise ValueError("gt_points is empty: no bounding box to crop to.")
    lo = gt_points.min(axis=0) - margin
    hi = gt_points.max(axis=0) + margin
    mask = points[:, 1] >= lo[1]
    for axis in (0, 2):
        mask &= (points[:, axis] >= lo[axis]) & (points[:, axis] <= hi[axis])
    return mask


def occupancy_iou(occ_pred, occ_gt):
    """Intersection over union of two occupancy sets (`compute_iou`).

    Non-boolean inputs are thresholded at 0.5, as in the original.

    Args:
      occ_pred: bool or float array, (..., N), predicted occupancy.
      occ_gt: bool or float array, (..., N), ground-truth occupancy.

    Returns:
      float for 1-D inputs, else float64 array of shape (...,). Where the
      union is empty the IoU is 0 (the original divides 0/0 there, giving NaN,
      but `eval_mesh` scores an empty mesh with IoU 0).
    """
    occ_pred = np.asarray(occ_pred)
    occ_gt = np.asarray(occ_gt)
    if occ_pred.dtype != bool:
        occ_pred = occ_pred >= 0.5
    if occ_gt.dtype != bool:
        occ_gt = occ_gt >= 0.5
    union = np.sum(occ_pred | occ_gt, axis=-1).astype(np.float64)
    inter = np.sum(occ_pred & occ_gt, axis=-1).astype(np.float64)
    iou = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
    if iou.ndim == 0:
        return float(iou)
    return iou


def _unit(normals):
    """Normalises rows to unit length; zero rows stay zero. (M, 3) -> (M, 3)."""
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    return normals / np.where(norm > 0, norm, 1.0)


def _nearest(points_src, normals_src, points_tgt, normals_tgt):
    """Nearest-neighbour distances and normal agreement, src -> tgt.

    Args:
      points_src: float64 array, (M, 3).
      normals_src: float64 array, (M, 3) unit, or None.
      points_tgt: float64 array, (K, 3).
      normals_tgt: float64 array, (K, 3) unit, or None.

    Returns:
      dist: float64 array, (M,), Euclidean distance to the nearest target.
      dot: float64 array, (M,), |n_src . n_tgt[nn]|, or None without normals.
    """
    tree = spatial.cKDTree(points_tgt)
    dist, idx = tree.query(points_src, k=1, workers=-1)
    dot = None
    if normals_src is not None and normals_tgt is not None:
        dot = np.abs(np.sum(normals_src * normals_tgt[idx], axis=-1))
    return dist, dot


def pointcloud_metrics(
    pred_points, pred_normals, gt_points, gt_normals, fscore_threshold=0.01, undefined="original"
):
    """Chamfer distances, normal consistency and F-score of two point clouds.

    An empty prediction scores `empty_prediction_metrics(with_normals,
    undefined)`; an F-score with precision = recall = 0 is NaN ('original',
    0/0 as in the original) or 0 ('worst').

    Args:
      pred_points: float array, (M, 3), predicted surface points.
      pred_normals: float array, (M, 3), their normals, or None.
      gt_points: float array, (K, 3), ground-truth surface points, K > 0.
      gt_normals: float array, (K, 3), their normals, or None.
      fscore_threshold: float, distance threshold tau for precision, recall
        and F-score (0.01 in the papers, unit-cube units).
      undefined: 'original' or 'worst', how values the original leaves
        undefined are scored (module docstring).

    Returns:
      dict of Python floats with keys `accuracy` (mean pred->GT distance),
      `completeness` (mean GT->pred distance), `chamfer_l1`, `chamfer_l2`
      (0.5 * sum of the mean squared distances), `normal_consistency` (NaN if
      either normal set is None), `precision`, `recall`, `fscore`.

    Raises:
      ValueError: empty `gt_points`, or an unknown `undefined`.
    """
    check_undefined(undefined)
    pred_points = np.asarray(pred_points, dtype=np.float64).reshape(-1, 3)
    gt_points = np.asarray(gt_points, dtype=np.float64).reshape(-1, 3)
    if gt_points.shape[0] == 0:
        raise ValueError("gt_points is empty.")
    with_normals = pred_normals is not None and gt_normals is not None
    if pred_points.shape[0] == 0:
        return empty_prediction_metrics(with_normals, undefined)
    if with_normals:
        pred_normals = _unit(np.asarray(pred_normals, dtype=np.float64).reshape(-1, 3))
        gt_normals = _unit(np.asarray(gt_normals, dtype=np.float64).reshape(-1, 3))
    else:
        pred_normals = gt_normals = None

    dist_acc, dot_acc = _nearest(pred_points, pred_normals, gt_points, gt_normals)
    dist_comp, dot_comp = _nearest(gt_points, gt_normals, pred_points, pred_normals)
    accuracy = float(dist_acc.mean())
    completeness = float(dist_comp.mean())
    chamfer_l2 = 0.5 * float(np.mean(dist_acc**2) + np.mean(dist_comp**2))
    if with_normals:
        normal_consistency = 0.5 * float(dot_acc.mean() + dot_comp.mean())
    else:
        normal_consistency = _NAN
    precision = float(np.mean(dist_acc <= fscore_threshold))
    recall = float(np.mean(dist_comp <= fscore_threshold))
    denom = precision + recall
    out = {
        "accuracy": accuracy,
        "completeness": completeness,
        "chamfer_l1": 0.5 * (accuracy + completeness),
        "chamfer_l2": chamfer_l2,
        "normal_consistency": normal_consistency,
        "precision": precision,
        "recall": recall,
        "fscore": 2.0 * precision * recall / denom if denom > 0 else _NAN,
    }
    return worst_case(out) if undefined == "worst" else out


def mesh_metrics(
    vertices,
    faces,
    points_iou,
    occ_gt,
    gt_points,
    gt_normals,
    n_samples=100_000,
    rng=None,
    fscore_threshold=0.01,
    undefined="original",
    crop_to_gt_bbox=False,
):
    """Evaluates a predicted mesh like the original `MeshEvaluator.eval_mesh`.

    Args:
      vertices: float array, (V, 3), predicted mesh vertices (may be empty).
      faces: int array, (F, 3), predicted mesh faces (may be empty).
      points_iou: float array, (N, 3), IoU query points (`points.npz`).
      occ_gt: bool array, (N,), GT occupancy at `points_iou`.
      gt_points: float array, (K, 3), GT surface points (`pointcloud.npz`).
      gt_normals: float array, (K, 3), GT normals, or None.
      n_samples: int, points sampled on the predicted mesh (100k originally).
      rng: `np.random.Generator`, int seed, or None for a fixed seed of 0 (so
        repeated evaluations of the same mesh agree).
      fscore_threshold: float, F-score distance threshold.
      undefined: 'original' or 'worst' (see `pointcloud_metrics`).
      crop_to_gt_bbox: ConvONet's room evaluation (`remove_wall`): sample
        2 * n_samples points on the mesh, keep those `crop_to_gt_bbox_mask`
        keeps, draw n_samples of them with replacement.

    Returns:
      dict of Python floats: `iou` plus every key of `pointcloud_metrics`.
      An empty mesh scores IoU 0 and `empty_prediction_metrics` (so does the
      surface part of a mesh of zero area, or of one with no sample left by
      the crop: the original fails on it and has no values). A mesh with no
      IoU point inside, of a shape with none inside either, has IoU NaN
      ('original': 0/0 in `compute_iou`) or 0 ('worst').
    """
    check_undefined(undefined)
    if rng is None:
        rng = 0
    rng = np.random.default_rng(rng)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    occ_gt = np.asarray(occ_gt)
    if vertices.shape[0] == 0 or faces.shape[0] == 0:
        iou = 0.0
        pred_points = np.zeros((0, 3))
        pred_normals = np.zeros((0, 3))
    else:
        occ = inside_mesh.contains(vertices, faces, points_iou)
        occ_gt = occ_gt.reshape(-1)
        iou = occupancy_iou(occ, occ_gt)
        if undefined == "original" and not np.any(occ | (occ_gt if occ_gt.dtype == bool else occ_gt >= 0.5)):
            iou = _NAN  # The original's compute_iou divides 0 / 0 when both sets are empty.
        if crop_to_gt_bbox:
            pred_points, pred_normals = sample_mesh_surface(vertices, faces, 2 * n_samples, rng)
            keep = np.flatnonzero(crop_to_gt_bbox_mask(pred_points, gt_points))
            if keep.size:
                keep = keep[rng.integers(0, keep.size, size=n_samples)]
            pred_points, pred_normals = pred_points[keep], pred_normals[keep]
        else:
            pred_points, pred_normals = sample_mesh_surface(vertices, faces, n_samples, rng)
    out = {"iou": float(iou)}
    out.update(
        pointcloud_metrics(
            pred_points,
            pred_normals if gt_normals is not None else None,
            gt_points,
            gt_normals,
            fscore_threshold=fscore_threshold,
            undefined=undefined,
        )
    )
    return out


def correspondence_errors(vertices, points):
    """Occupancy Flow's correspondence error per frame (`im2mesh/eval.py: eval_correspondences_mesh`).

    Each vertex of the first frame's mesh is matched to its nearest ground-truth point at
    frame 0; at every frame the error is the mean Euclidean distance between the vertex's
    position and that point's position in the frame (the original's `project_to_final_mesh`
    option, off by default there, is not applied).

    Args:
      vertices: (T, V, 3) a mesh's vertices at each frame (fixed faces: vertex v corresponds
        across frames, as Occupancy Flow's flowed meshes).
      points: (T, M, 3) ground-truth points that correspond across frames (`pcl_seq`).

    Returns:
      (T,) float64: the error of each frame.

    Raises:
      ValueError: mismatched shapes, no vertices or points, or non-finite values.
    """
    v = np.asarray(vertices, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    if v.ndim != 3 or p.ndim != 3 or v.shape[-1] != 3 or p.shape[-1] != 3 or v.shape[0] != p.shape[0]:
        raise ValueError(
            f"vertices (T, V, 3) and points (T, M, 3) of one T expected, got {v.shape} and {p.shape}"
        )
    if v.shape[1] == 0 or p.shape[1] == 0:
        raise ValueError(f"correspondence errors need vertices and points, got {v.shape} and {p.shape}")
    if not (np.isfinite(v).all() and np.isfinite(p).all()):
        raise ValueError("vertices and points must be finite")
    _, index = spatial.cKDTree(p[0]).query(v[0])
    return np.linalg.norm(v - p[:, index], axis=-1).mean(axis=-1)
