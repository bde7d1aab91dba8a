"""DVR per-scene reconstruction: data, training loop, mesh, renderings and metrics.

`run(config, workdir, mode)` is what `experiments.main` calls for configs with
`method = "dvr"` (see `experiments/configs/dvr_multiview.py`):

* the scene is a folder in the multi-view layout (`data.multiview`); with
  `data.builtin` a built-in object is rendered there first (exact renders, masks,
  depths, cameras) together with its exact shape (`shape.json`, for evaluation);
* training samples `rays.per_step` random pixels of the training views per step (a
  pure function of the seed and the step, so a resumed run matches an unbroken one)
  and minimises DVR's losses (`dvr.dvr_losses`); the marching steps follow the
  original's doubling schedule; checkpoints, JSONL/TensorBoard logs and a progress bar
  as in the ONet trainer;
* generation extracts the mesh with MISE (vertex colours from the texture field) and
  renders the held-out views next to their ground truth;
* evaluation compares the field and the mesh with the exact shape (IoU on uniform
  points, Chamfer-L1, normal consistency, F-score) and the held-out renderings with
  the images (mask IoU, PSNR inside the mask).
"""

import json
import logging
import math
import os
import time
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
import trimesh

from implicit_fields import cameras, checkpointing, dvr, metrics, mise, render, summary, train_utils, vis
from implicit_fields.data import multiview, visual_hull

logger = logging.getLogger(__name__)

__all__ = ["ensure_scene", "split_views", "create_state", "train", "generate", "evaluate", "run"]


# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------


def _builtin_shape(data_config):
    from implicit_fields.data import builtin

    obj = builtin.generate_object(data_config.builtin_category, data_config.builtin_index,
                                  seed=data_config.builtin_seed, num_points=1, num_surface_points=1)
    return obj["shape"]


def ensure_scene(data_config, progress: bool = True) -> str:
    """Returns the scene folder, rendering the built-in object there if it is missing."""
    folder = os.path.abspath(data_config.path)
    complete = os.path.exists(os.path.join(folder, multiview.INFO_FILE))
    if complete or not data_config.builtin:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder}: no such multi-view folder (and data.builtin is off)")
        return folder
    shape = _builtin_shape(data_config)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, "shape.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(shape.to_dict(), f)
    os.replace(tmp, os.path.join(folder, "shape.json"))
    info = {"category": data_config.builtin_category, "index": int(data_config.builtin_index),
            "seed": int(data_config.builtin_seed)}
    multiview.write_multiview(shape, folder, n_views=data_config.n_views, resolution=data_config.resolution,
                              seed=[int(data_config.builtin_seed), int(data_config.builtin_index)],
                              progress=progress, texture=data_config.texture, info=info)
    return folder


def split_views(num_views: int, val_views: int):
    """(train view positions, held-out view positions): the last `val_views` are held out."""
    if not 0 <= val_views < num_views:
        raise ValueError(f"data.val_views={val_views} must be in [0, {num_views}) for {num_views} views")
    return np.arange(num_views - val_views), np.arange(num_views - val_views, num_views)


# ---------------------------------------------------------------------------
# Model and state.
# ---------------------------------------------------------------------------


def create_decoder(config) -> dvr.DVRDecoder:
    return dvr.DVRDecoder(hidden_dim=config.model.hidden_dim, n_blocks=config.model.n_blocks)


def create_optimizer(config):
    o = config.optim
    boundaries = {int(m): o.gamma for m in o.milestones}
    schedule = optax.piecewise_constant_schedule(o.learning_rate, boundaries)
    return optax.adam(schedule)


_COMPONENTS: Dict[str, Any] = {}


def _components(config):
    """(decoder, optimizer, jitted train step), built once per configuration and process.

    Reusing the same optimizer object keeps the train state's tree structure identical,
    so a second `train` call in one process (a resume, a test) reuses the compiled step.
    """
    key = config.to_json()
    if key not in _COMPONENTS:
        decoder = create_decoder(config)
        _COMPONENTS[key] = (decoder, create_optimizer(config), _make_train_step(config, decoder))
    return _COMPONENTS[key]


def create_state(config):
    """(decoder, freshly initialised TrainState) for a DVR config."""
    decoder, tx, _ = _components(config)
    params = dvr.init_decoder(jax.random.key(config.seed), decoder)
    state = train_utils.TrainState.create(apply_fn=decoder.apply, params=params, tx=tx, batch_stats={})
    return decoder, state


def _ray_steps(config, step: int) -> int:
    r = config.rays
    return dvr.ray_steps(step, r.steps_start, tuple(r.steps_milestones), r.steps_max)


def _loss_kwargs(config) -> Dict[str, Any]:
    lo = config.loss
    return dict(
        n_secant=lo.n_secant,
        threshold=lo.threshold,
        padding=lo.padding,
        lambda_rgb=lo.lambda_rgb,
        lambda_depth=lo.lambda_depth,
        lambda_freespace=lo.lambda_freespace,
        lambda_occupied=lo.lambda_occupied,
        lambda_normal=lo.lambda_normal,
    )


def _make_train_step(config, decoder):
    logit_fn, rgb_fn = dvr.make_field_fns(decoder)
    kwargs = _loss_kwargs(config)
    base_key = jax.random.key(config.seed)

    def step_fn(state, batch, n_steps):
        key = jax.random.fold_in(base_key, state.step)

        def loss_fn(params):
            return dvr.dvr_losses(logit_fn, rgb_fn, params, batch, key, n_steps=n_steps, num_images=1,
                                  **kwargs)

        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        stats["grad_norm"] = optax.tree.norm(grads)
        return state.apply_gradients(grads=grads), stats

    return jax.jit(step_fn, static_argnames="n_steps", donate_argnums=0)


def hull_depths(config, data, train_views, workdir=None):
    """Visual-hull depth maps from the training views' masks (cached in the workdir), or None."""
    if not config.data.visual_hull_depth:
        return None
    path = os.path.join(workdir, "visual_hull_depth.npy") if workdir else None
    if path and os.path.exists(path):
        depths = np.load(path)
        if depths.shape == data.masks.shape:
            return depths
    grid = visual_hull.carve(data, config.data.visual_hull_resolution, config.loss.padding, views=train_views)
    depths = visual_hull.hull_depth_maps(data, grid, config.loss.padding)
    if path:
        os.makedirs(workdir, exist_ok=True)
        np.save(path + ".tmp.npy", depths)
        os.replace(path + ".tmp.npy", path)
    return depths


def _batch(data, config, step: int, train_views, occ_depths=None):
    rng = np.random.default_rng([int(config.seed), int(step)])
    rays = multiview.sample_rays(data, rng, config.rays.per_step, views=train_views)
    keys = ("origins", "directions", "rgb", "mask", "depth")
    batch = {k: jnp.asarray(rays[k]) for k in keys}
    if occ_depths is not None:
        rows, cols = cameras.pixel_to_index(rays["pixels"], data.height, data.width)
        batch["occ_depth"] = jnp.asarray(occ_depths[rays["view"], rows, cols])
    return batch


# ---------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------


def train(config, workdir: str, on_step=None):
    """Trains (or resumes) the per-scene model; returns the final state."""
    folder = ensure_scene(config.data, progress=config.train.progress)
    data = multiview.load_multiview(folder)
    train_views, _ = split_views(data.num_views, config.data.val_views)
    occ_depths = hull_depths(config, data, train_views, workdir)
    decoder, state = create_state(config)
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), config.train.max_to_keep)
    state, _ = ckpt.restore(state)
    start = int(jax.device_get(state.step))
    if start:
        logger.info("resumed from step %d", start)
    _, _, step_fn = _components(config)
    writer = summary.SummaryWriter(workdir, tensorboard=config.train.tensorboard)
    num_steps = config.train.num_steps
    bar = tqdm.tqdm(total=num_steps, initial=start, desc="dvr train", unit="step",
                    disable=not config.train.progress, dynamic_ncols=True)
    pending, t_last, step_last = [], time.perf_counter(), start
    try:
        for step in range(start + 1, num_steps + 1):
            n_steps = _ray_steps(config, step - 1)
            batch = _batch(data, config, step - 1, train_views, occ_depths)
            state, stats = step_fn(state, batch, n_steps=n_steps)
            pending.append(stats)
            bar.update(1)
            last = step == num_steps
            if step % config.train.log_every == 0 or last:
                host = jax.device_get(pending)
                pending = []
                scalars = {f"train/{k}": float(np.mean([h[k] for h in host])) for k in host[0]}
                if not math.isfinite(scalars["train/loss"]):
                    raise FloatingPointError(f"non-finite DVR loss at step {step}; the last good "
                                             f"checkpoint is in {ckpt.directory}")
                now = time.perf_counter()
                elapsed = max(now - t_last, 1e-9)
                scalars["train/rays_per_second"] = (step - step_last) * config.rays.per_step / elapsed
                scalars["train/ray_steps"] = n_steps
                t_last, step_last = now, step
                writer.write_scalars(step, scalars)
                bar.set_postfix(loss=f"{scalars['train/loss']:.1f}",
                                mask_iou=f"{scalars['train/mask_iou']:.3f}", steps=n_steps, refresh=False)
            if step % config.train.checkpoint_every == 0 or last:
                ckpt.save(state)
            if on_step is not None:
                on_step(step)
    finally:
        bar.close()
        ckpt.wait()
        ckpt.close()
        writer.close()
    return state


def restore(config, workdir: str):
    decoder, state = create_state(config)
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), config.train.max_to_keep)
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; run with --mode train first")
        state, _ = ckpt.restore(state)
    finally:
        ckpt.close()
    return decoder, state


# ---------------------------------------------------------------------------
# Rendering, mesh, metrics.
# ---------------------------------------------------------------------------


def render_rays(config, decoder, params, origins, directions, n_steps=None, chunk=4096):
    """Renders rays: (rgb [N, 3] with white background, depth [N] (inf on a miss))."""
    logit_fn, rgb_fn = dvr.make_field_fns(decoder)
    n_steps = n_steps or config.rays.render_steps

    @jax.jit
    def fn(o, w):
        d = render.surface_depth(logit_fn, params, o, w, n_steps=n_steps, n_secant=config.loss.n_secant,
                                 threshold=config.loss.threshold, padding=config.loss.padding)
        hit = jnp.isfinite(d) & (d > 0)
        p = o + jnp.where(hit, d, 0.0)[:, None] * w
        rgb = jnp.where(hit[:, None], rgb_fn(params, p), 1.0)
        return rgb, d

    n = origins.shape[0]
    pad = (-n) % chunk
    o = np.concatenate([origins, np.repeat(origins[-1:], pad, 0)]).astype(np.float32)
    w = np.concatenate([directions, np.repeat(directions[-1:], pad, 0)]).astype(np.float32)
    rgbs, depths = [], []
    for i in range(0, n + pad, chunk):
        rgb, d = fn(o[i:i + chunk], w[i:i + chunk])
        rgbs.append(np.asarray(rgb))
        depths.append(np.asarray(d))
    return np.concatenate(rgbs)[:n], np.concatenate(depths)[:n]


def _to_uint8(img):
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _write_colored_mesh(path, vertices, faces, colors):
    mesh = trimesh.Trimesh(vertices, faces, vertex_colors=_to_uint8(colors), process=False)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(trimesh.exchange.ply.export_ply(mesh, encoding="binary"))
    os.replace(tmp, path)


def generate(config, workdir: str, decoder=None, state=None) -> Dict[str, Any]:
    """Writes mesh.ply and renderings.png; returns a record with paths and timings."""
    folder = ensure_scene(config.data, progress=config.train.progress)
    data = multiview.load_multiview(folder)
    _, val_views = split_views(data.num_views, config.data.val_views)
    if state is None:
        decoder, state = restore(config, workdir)
    params = state.params
    logit_fn, rgb_fn = dvr.make_field_fns(decoder)
    t0 = time.perf_counter()
    vertices, faces, stats = mise.extract_mesh(
        jax.jit(lambda p: logit_fn(params, p)), resolution0=config.generate.resolution0,
        upsampling_steps=config.generate.upsampling_steps, threshold=config.loss.threshold,
        padding=config.loss.padding, batch_points=config.generate.batch_points or None, return_stats=True)
    t_mesh = time.perf_counter() - t0
    colors = np.asarray(rgb_fn(params, jnp.asarray(vertices))) if len(vertices) else np.zeros((0, 3))
    mesh_path = os.path.join(workdir, "mesh.ply")
    _write_colored_mesh(mesh_path, vertices, faces, colors)

    views = val_views[: config.generate.num_views] if len(val_views) else np.arange(
        min(config.generate.num_views, data.num_views))
    rows, labels, per_view = [], [], []
    t0 = time.perf_counter()
    for v in views:
        rays = multiview.view_rays(data, int(v))
        rgb, depth = render_rays(config, decoder, params, rays["origins"], rays["directions"])
        h, w = data.height, data.width
        pred = rgb.reshape(h, w, 3)
        pred_mask = (np.isfinite(depth) & (depth > 0)).reshape(h, w)
        gt, gt_mask = data.images[v], data.masks[v]
        inter, union = np.sum(pred_mask & gt_mask), np.sum(pred_mask | gt_mask)
        both = pred_mask & gt_mask
        mse = float(np.mean((pred[both] - gt[both]) ** 2)) if both.any() else float("nan")
        per_view.append({"view": int(v), "mask_iou": float(inter / max(union, 1)),
                         "psnr_in_mask": float(-10.0 * np.log10(max(mse, 1e-10)))})
        scale = max(1, 128 // max(h, w))

        def up(im, scale=scale):
            return np.repeat(np.repeat(im, scale, 0), scale, 1)

        rows.append([up(_to_uint8(gt)), up(_to_uint8(pred)), up(_to_uint8(np.abs(pred - gt)))])
        labels.append([f"view {int(v)} truth", f"ours  mask IoU {per_view[-1]['mask_iou']:.2f}",
                       "abs. error"])
    t_render = time.perf_counter() - t0
    # Last row: the extracted mesh from two sides.
    if len(faces):
        size = rows[0][0].shape[0] if rows else 128
        mesh_row = [vis.render_mesh(vertices, faces, image_size=size, azimuth_deg=a, elevation_deg=25)
                    for a in (45, 225)]
        rows.append(mesh_row)
        labels.append([f"mesh {len(faces):,} faces", "mesh (back)"])
    picture = os.path.join(workdir, "renderings.png")
    vis.write_png(picture, vis.image_grid(rows, labels))
    record = {"mesh": mesh_path, "picture": picture, "num_faces": int(len(faces)),
              "num_vertices": int(len(vertices)), "mesh_seconds": t_mesh,
              "mesh_queries": stats["num_queries"], "render_seconds": t_render, "held_out_views": per_view}
    with open(os.path.join(workdir, "generation.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    return record


def evaluate(config, workdir: str, decoder=None, state=None) -> Dict[str, Any]:
    """Field IoU, mesh IoU / Chamfer / NC / F-score against the exact shape; metrics.json."""
    folder = ensure_scene(config.data, progress=False)
    shape = multiview.load_shape(folder)
    if state is None:
        decoder, state = restore(config, workdir)
    logit_fn, _ = dvr.make_field_fns(decoder)
    rng = np.random.default_rng(config.seed)
    half = 0.5 * (1.0 + config.loss.padding)
    points = rng.uniform(-half, half, size=(config.eval.n_points, 3))
    occ_gt = shape.contains(points)
    fn = jax.jit(lambda p: logit_fn(state.params, p))
    logits = np.concatenate([np.asarray(fn(jnp.asarray(points[i:i + 50_000], jnp.float32)))
                             for i in range(0, len(points), 50_000)])
    occ_pred = logits >= render.probability_to_logit(config.loss.threshold)
    field_iou = metrics.occupancy_iou(occ_pred, occ_gt)
    mesh = trimesh.load(os.path.join(workdir, "mesh.ply"), force="mesh", process=False)
    surface_rng = np.random.default_rng(config.seed + 1)
    gt_points, gt_normals = shape.sample_surface(config.eval.n_samples, surface_rng)
    m = metrics.mesh_metrics(np.asarray(mesh.vertices), np.asarray(mesh.faces), points, occ_gt, gt_points,
                             gt_normals, n_samples=config.eval.n_samples, rng=config.seed,
                             fscore_threshold=config.eval.fscore_threshold)
    gen_path = os.path.join(workdir, "generation.json")
    held_out = []
    if os.path.exists(gen_path):
        with open(gen_path, encoding="utf-8") as f:
            held_out = json.load(f).get("held_out_views", [])
    result = {
        "field_iou": float(field_iou),
        "mesh_iou": m["iou"],
        "chamfer_l1": m["chamfer_l1"] * metrics.CHAMFER_REPORT_SCALE,
        "normal_consistency": m["normal_consistency"],
        "fscore": m["fscore"],
        "held_out_mask_iou": float(np.mean([v["mask_iou"] for v in held_out])) if held_out else float("nan"),
        "held_out_psnr_in_mask": float(np.mean([v["psnr_in_mask"] for v in held_out])) if held_out
        else float("nan"),
        "step": int(jax.device_get(state.step)),
        "chamfer_scale": metrics.CHAMFER_REPORT_SCALE,
    }
    tmp = os.path.join(workdir, "metrics.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, os.path.join(workdir, "metrics.json"))
    return result


def run(config, workdir: str, mode: str = "all") -> Dict[str, Any]:
    """Train / generate / eval / all for a DVR config (keys checked by the caller)."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2))
    if config.debug.disable_jit:
        jax.config.update("jax_disable_jit", True)
    result: Dict[str, Any] = {}
    t0 = time.perf_counter()
    if mode in ("train", "all"):
        train(config, workdir)
    t_train = time.perf_counter() - t0
    if mode in ("generate", "all"):
        record = generate(config, workdir)
        print(f"wrote {record['mesh']} ({record['num_faces']:,} faces, {record['mesh_seconds']:.1f} s) "
              f"and {record['picture']}")
    if mode in ("eval", "all"):
        result = evaluate(config, workdir)
        shown = {k: round(v, 4) for k, v in result.items() if isinstance(v, float)}
        print(f"DVR metrics against the exact shape (Chamfer-L1 x10): {json.dumps(shown)}"
              f" -> {os.path.join(workdir, 'metrics.json')}")
        if mode == "all":
            print(f"training took {t_train / 60:.1f} min")
    return result
