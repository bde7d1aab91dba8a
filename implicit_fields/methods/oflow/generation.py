"""Occupancy Flow's generation: one mesh at t = 0, carried through time by the flow.

For each window of `generate.split` (one window per sequence first, then the
next start of each, up to `generate.max_windows`), as the original's
`Generator3D`:

1. encode the window's input point clouds (a fixed draw of `data.input_points`
   per frame with the training noise; the generative model's z and z_t are its
   posteriors' means given them, so that its meshes reconstruct the window and
   can be evaluated);
2. MISE once, at t = 0 (`generate.resolution0`, `upsampling_steps`,
   `field.threshold`);
3. the vertices carried to every frame by the ODE (`flow.integrate`, from t = 0
   through the frame times, in padded chunks of `generate.flow_chunk` vertices so
   that one compiled solve serves every mesh), the faces fixed: vertex v at frame
   i corresponds to vertex v at frame 0;
4. for the first `generate.baseline_windows` windows, the ONet-4D-style baseline
   for comparison: MISE at every frame, each query point pulled back to t = 0
   through the flow and decoded there. The same network, so the difference is
   the structure: one extraction and a flow against one extraction per frame
   (the original's speed claim), and meshes without correspondences.

Writes, per window, `meshes/<category>/<sequence>_<start>/oflow/%04d.ply` (vertex
colours: the frame-0 position, so correspondences show), `baseline/%04d.ply`
and `animation.gif` (truth | Occupancy Flow | baseline); `oflow.png` (the
filmstrip: rows of truth, Occupancy Flow and baseline per window, columns the
frames), `oflow.gif` (the first window's animation) and `meshes/generation.json`
(the checkpoint, and per window the mesh paths and the seconds of each stage).
"""

import logging
import os
import time
from typing import Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from implicit_fields import meshing, mise, trainer, vis
from implicit_fields.data import reconstruction
from implicit_fields.methods.oflow import task

logger = logging.getLogger(__name__)

BOX = 0.55
"""Half-side of the box positions are coloured in (the built-in data's extent)."""


def position_colors(points) -> np.ndarray:
    """uint8 RGB [N, 3] of positions [N, 3]: each coordinate of [-BOX, BOX] to [40, 255]."""
    p = np.clip((np.asarray(points, np.float64) + BOX) / (2 * BOX), 0.0, 1.0)
    return (40 + 215 * p).astype(np.uint8)


def generation_windows(dataset, count: int) -> List[int]:
    """Window indices in generation order: each sequence's first window, then each's second, ...

    So that the first windows meshed (and the pictures) show different sequences.
    """
    rank: Dict[tuple, int] = {}
    keyed = []
    for i, (category, name, _) in enumerate(dataset.windows):
        r = rank.get((category, name), 0)
        rank[(category, name)] = r + 1
        keyed.append((r, i))
    order = [i for _, i in sorted(keyed)]
    return order[:count] if count else order


def flow_vertices(push, variables, codes, vertices, times, chunk: int) -> np.ndarray:
    """Vertices [V, 3] at t = times[0] carried to every time: [T, V, 3], in padded chunks of `chunk`."""
    v = np.asarray(vertices, np.float32)
    out = np.empty((len(times), len(v), 3), np.float32)
    times = jnp.asarray(times, jnp.float32)
    for s in range(0, len(v), chunk):
        part = v[s : s + chunk]
        padded = np.zeros((chunk, 3), np.float32)
        padded[: len(part)] = part
        traj = np.asarray(push(variables, codes, jnp.asarray(padded), times))
        out[:, s : s + len(part)] = traj[:, : len(part)]
    if not np.isfinite(out).all():
        raise FloatingPointError("the flow carried mesh vertices to non-finite positions")
    return out


def extract(config, logit_fn):
    """MISE of one field with `config.generate`: (vertices [V, 3], faces [F, 3], stats)."""
    gen = config.generate
    return mise.extract_mesh(
        logit_fn,
        resolution0=gen.resolution0,
        upsampling_steps=gen.upsampling_steps,
        threshold=config.field.threshold,
        padding=config.field.padding,
        batch_points=gen.batch_points or None,
        return_stats=True,
    )


def mesh_samples(trajectory, faces, n: int, seed: int = 0):
    """Surface samples of a mesh moving with fixed faces: the same (face, barycentric) at every frame.

    Args:
      trajectory: [T, V, 3] vertices per frame; faces [F, 3].

    Returns:
      (points [T, n, 3], normals [T, n, 3], colours uint8 [n, 3] of the frame-0 positions),
      or None for an empty mesh.
    """
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    traj = np.asarray(trajectory, np.float64)
    if len(faces) == 0 or traj.shape[1] == 0:
        return None
    rng = np.random.default_rng(seed)
    tri0 = traj[0][faces]
    area = 0.5 * np.linalg.norm(np.cross(tri0[:, 1] - tri0[:, 0], tri0[:, 2] - tri0[:, 0]), axis=1)
    if not area.sum() > 0:
        return None
    face = rng.choice(len(faces), size=n, p=area / area.sum())
    uv = rng.random((n, 2))
    fold = uv.sum(1) > 1
    uv[fold] = 1 - uv[fold]
    tri = traj[:, faces[face]]  # [T, n, 3, 3]
    e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    points = tri[:, :, 0] + uv[None, :, :1] * e1 + uv[None, :, 1:] * e2
    normals = np.cross(e1, e2)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    return points, normals, position_colors(points[0])


def _render_view(size):
    return dict(image_size=size, azimuth_deg=35.0, elevation_deg=20.0, extent=BOX)


def render_truth(pcl, frames: Sequence[int], size: int) -> List[np.ndarray]:
    """Ground-truth corresponding points [T, M, 3] of the frames, coloured by their frame-0 positions."""
    colors = position_colors(pcl[0])
    return [
        vis.render_points(pcl[i], None, colors=colors, point_radius_px=1.0, **_render_view(size))
        for i in frames
    ]


def render_flowed(trajectory, faces, frames: Sequence[int], size: int) -> List[np.ndarray]:
    """The flowed mesh at the frames, its surface coloured by the frame-0 positions (correspondences)."""
    samples = mesh_samples(trajectory, faces, 40_000)
    if samples is None:
        return [vis.render_points(np.zeros((0, 3)), **_render_view(size)) for _ in frames]
    points, normals, colors = samples
    return [vis.render_points(points[i], normals[i], colors=colors, **_render_view(size)) for i in frames]


def render_meshes(meshes, frames: Sequence[int], size: int) -> List[np.ndarray]:
    """Independent meshes [(vertices, faces)] of the frames (no correspondences: one grey)."""
    return [vis.render_mesh(meshes[i][0], meshes[i][1], **_render_view(size)) for i in frames]


def picture_frames(length: int, count: int) -> List[int]:
    """`count` frames of a window, evenly spaced, first and last included."""
    return sorted({int(round(x)) for x in np.linspace(0, length - 1, count)})


def _write_frames(folder, trajectory, faces, colors, comments) -> List[str]:
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, v in enumerate(trajectory):
        path = os.path.join(folder, f"{i:04d}.ply")
        meshing.write_mesh(path, v, faces, colors, comments=comments)
        paths.append(path)
    return paths


def generate(config, workdir: str, model=None, state=None) -> Dict:
    """Meshes `config.generate.split` with the run's checkpoint (restored unless `model`, `state` are given).

    Returns:
      The record written to `meshes/generation.json`.
    """
    gen = config.generate
    if state is None:
        model, state, meta = trainer.restore(config, workdir, gen.checkpoint)
    else:
        meta = {"checkpoint": "given", "step": int(jax.device_get(state.step))}
    dataset = task.load_split(config, gen.split, points=False)
    order = generation_windows(dataset, gen.max_windows)
    store = task.SequenceStore(dataset, points=False, windows=order, progress=config.logging.progress)
    variables = task.variables_of(state)
    encode = task.create_encode_fn(model)
    decode = task.create_decode_fn(model)
    push = task.create_push_forward_fn(model, config.ode)
    pull = task.create_pull_back_fn(model, config.ode)
    times = task.frame_times(config.data.length)
    comments = trainer.mesh_provenance(meta)
    out_dir = os.path.join(workdir, "meshes")
    os.makedirs(out_dir, exist_ok=True)
    record_path = os.path.join(out_dir, "generation.json")
    started = trainer.start_generation(
        record_path, meta, split=gen.split, num_windows=len(order), settings=gen.to_dict()
    )
    frames = picture_frames(config.data.length, gen.picture_frames)
    size = gen.gif_size
    rows, labels, records = [], [], []
    for k, index in enumerate(
        tqdm.tqdm(order, desc="generate", unit="window", disable=not config.logging.progress)
    ):
        seq, start = store.sequence(index)
        category, name, _ = dataset.windows[index]
        inputs = task.window_inputs(
            config, seq, start, np.random.default_rng([int(config.seed), int(index), 19])
        )
        codes = encode(variables, jnp.asarray(inputs))

        def logit_fn(points, codes=codes):
            return decode(variables, codes, points)

        t0 = time.perf_counter()
        vertices, faces, stats = extract(config, logit_fn)
        t_mise = time.perf_counter() - t0
        t0 = time.perf_counter()
        if len(vertices):
            trajectory = flow_vertices(push, variables, codes, vertices, times, gen.flow_chunk)
        else:
            trajectory = np.zeros((len(times), 0, 3), np.float32)
        t_flow = time.perf_counter() - t0
        folder = os.path.join(out_dir, category, f"{name}_{start:04d}")
        colors = position_colors(vertices) if len(vertices) else None
        paths = _write_frames(os.path.join(folder, "oflow"), trajectory, faces, colors, comments)
        rec = {
            "window": int(index),
            "category": category,
            "sequence": name,
            "start_idx": int(start),
            "folder": os.path.relpath(folder, workdir),
            "meshes": [os.path.relpath(p, workdir) for p in paths],
            "num_vertices": int(len(vertices)),
            "num_faces": int(len(faces)),
            "mise_queries": int(stats["num_queries"]),
            "seconds_mise_t0": t_mise,
            "seconds_flow": t_flow,
            "seconds_oflow": t_mise + t_flow,
            "baseline": None,
        }
        baseline = None
        if k < gen.baseline_windows:
            baseline, t_base = baseline_meshes(config, variables, codes, decode, pull, times)
            folder_b = os.path.join(folder, "baseline")
            os.makedirs(folder_b, exist_ok=True)
            bpaths = []
            for i, (bv, bf) in enumerate(baseline):
                path = os.path.join(folder_b, f"{i:04d}.ply")
                meshing.write_mesh(path, bv, bf, None, comments=comments)
                bpaths.append(os.path.relpath(path, workdir))
            rec.update(baseline=bpaths, seconds_baseline=t_base)
        records.append(rec)
        if k < gen.picture_windows:
            pcl = task.window_pcl(seq, start, config.data.length, _subset(seq.num_pcl, 20_000))
            all_frames = list(range(config.data.length))
            panels = [render_truth(pcl, all_frames, size), render_flowed(trajectory, faces, all_frames, size)]
            names = ["truth", "OFlow"]
            if baseline is not None:
                panels.append(render_meshes(baseline, all_frames, size))
                names.append("MISE/frame")
            for p, n in zip(panels, names):
                rows.append([p[i] for i in frames])
                labels.append([f"{n} t={times[i]:.2f}" for i in frames])
            labels[-len(panels)][0] = f"{name}:{start} t=0"  # The window, above its first column.
            anim = [
                vis.image_grid([[p[i] for p in panels]], [[f"{n} t={times[i]:.2f}" for n in names]])
                for i in all_frames
            ]
            gif = os.path.join(folder, "animation.gif")
            vis.write_gif(gif, anim, duration_ms=gen.gif_ms)
            rec["animation"] = os.path.relpath(gif, workdir)
            if k == 0:
                vis.write_gif(os.path.join(workdir, "oflow.gif"), anim, duration_ms=gen.gif_ms)
    picture = None
    if rows:
        picture = os.path.join(workdir, "oflow.png")
        vis.write_png(picture, vis.image_grid(rows, labels))
    summary = {
        "seconds_oflow_per_window": float(np.mean([r["seconds_oflow"] for r in records])),
        "seconds_baseline_per_window": (
            float(np.mean([r["seconds_baseline"] for r in records if r["baseline"]]))
            if any(r["baseline"] for r in records)
            else None
        ),
    }
    record = trainer.finish_generation(record_path, started, windows=records, picture=picture, **summary)
    logger.info(
        "meshed %d windows (%.2f s each with the flow%s) -> %s",
        len(records),
        summary["seconds_oflow_per_window"],
        ""
        if summary["seconds_baseline_per_window"] is None
        else f", {summary['seconds_baseline_per_window']:.2f} s with MISE at every frame",
        out_dir,
    )
    return record


def _subset(n: int, k: int) -> Optional[np.ndarray]:
    return None if n <= k else np.random.default_rng(0).choice(n, size=k, replace=False)


def baseline_meshes(config, variables, codes, decode, pull, times):
    """The ONet-4D-style baseline: MISE at every frame, queries pulled back to t = 0 through the flow.

    Returns:
      ([(vertices, faces)] per frame, seconds).
    """
    out = []
    t0 = time.perf_counter()
    for t in times:
        if t == 0:

            def logit_fn(points):
                return decode(variables, codes, points)

        else:
            tt = jnp.asarray([t], jnp.float32)

            def logit_fn(points, tt=tt):
                return decode(variables, codes, pull(variables, codes, points[None], tt)[0])

        v, f, _ = extract(config, logit_fn)
        out.append((v, f))
    return out, time.perf_counter() - t0


def load_trajectory(workdir: str, paths: Sequence[str]):
    """A window's meshes with fixed faces: (vertices [T, V, 3], faces [F, 3]).

    Raises:
      ValueError: naming the file whose faces differ from the first frame's.
    """
    meshes = [reconstruction.load_mesh(os.path.join(workdir, p)) for p in paths]
    faces = np.asarray(meshes[0][1], np.int64).reshape(-1, 3)
    for p, m in zip(paths, meshes):
        if not np.array_equal(np.asarray(m[1], np.int64).reshape(-1, 3), faces):
            raise ValueError(
                f"{os.path.join(workdir, p)}: its faces differ from frame 0's; rerun --mode generate"
            )
    return np.stack([np.asarray(m[0], np.float64).reshape(-1, 3) for m in meshes]), faces
