"""Mesh generation from a trained Occupancy Network: a whole split, or prior samples.

For every object: encode its (deterministic) input once (a noisy point cloud,
its voxel grid or its view 0), extract the iso-surface of the eval-mode field, write
`meshes/<category>/<model>.ply` and the input beside it, and draw a picture
comparing inputs, reconstructions and ground truth. The unconditional model
(z_dim > 0, no encoder) reconstructs each object from the posterior mean of
q(z | p, o) given `data.points_subsample` of its occupancy points, so that its
meshes can be evaluated like the conditional models'; a conditional model with
a latent decodes the prior mean, as the original's generator does. The
pixel-aligned image model encodes view 0 to its feature map once, with that
view's cameras (saved beside the input), and MISE only decodes.

`generate(config, workdir)` is ONet's generate mode (a split of the trained
run). `sample_meshes` decodes latents drawn from the prior N(0, I), and
`interpolation_meshes` the codes on the line between two objects' posterior
means (the unconditional model's figures); `write_samples` writes both for a
trained run (`experiments.sample`).
"""

import functools
import logging
import os
from typing import Dict, List, Optional

import jax
import numpy as np
import tqdm
import trimesh

from implicit_fields import decoders, meshing, summary, trainer, vis
from implicit_fields.data import builtin, datasets, reconstruction
from implicit_fields.methods.onet import model as models

logger = logging.getLogger(__name__)


def create_field_fns(model: models.OccupancyNetwork, variables):
    """Jitted `encode(inputs [...], cameras=None) -> c` and `decode(c, points [N,3], z=None) -> logits [N]`.

    Both compile once per input shape; `decode` takes the codes as arguments
    so that a new object does not trigger a new compilation. `z` [z_dim] is the
    latent of a model with z_dim > 0 (default: the prior mean). The
    pixel-aligned model's `cameras` are {'world_mat', 'camera_mat'} [4, 4] of
    the image's view, and its c the dict of `OccupancyNetwork.encode` (no batch axis).
    """

    def add_batch(tree):
        return jax.tree.map(lambda x: x[None], tree)

    @jax.jit
    def encode(inputs, cameras=None):
        c = model.apply(
            variables, inputs[None], cameras=add_batch(cameras), method=models.OccupancyNetwork.encode
        )
        return jax.tree.map(lambda x: x[0], c)

    @jax.jit
    def decode(c, points, z=None):
        zb = None if z is None else z[None]
        out = model.apply(variables, points[None], add_batch(c), zb, method=models.OccupancyNetwork.decode)
        return out[0]

    return encode, decode


def create_latent_fn(model: models.OccupancyNetwork, variables):
    """Jitted `posterior_mean(c [c_dim], points [T,3], occupancies [T]) -> mean of q(z | p, o, c) [z_dim]`."""

    @jax.jit
    def posterior_mean(c, points, occupancies):
        mean, _ = model.apply(
            variables, points[None], occupancies[None], c[None], method=models.OccupancyNetwork.infer_z
        )
        return mean[0]

    return posterior_mean


def object_cameras(data) -> Dict[str, np.ndarray]:
    """{'world_mat', 'camera_mat'} [4, 4] of the view an object's evaluation input shows (view 0)."""
    cams = datasets.view_cameras(data, datasets.image_view(data, None, train=False))
    return {"world_mat": cams["inputs.world_mat"], "camera_mat": cams["inputs.camera_mat"]}


def refinement_second_order(config) -> bool:
    """Resolves `generate.refinement_gradient` ('auto', 'first_order', 'second_order')."""
    mode = config.generate.get("refinement_gradient", "auto")
    if mode == "second_order":
        return True
    if mode == "first_order":
        return False
    if mode == "auto":
        return not decoders.is_piecewise_linear(config.model.decoder)
    raise ValueError(
        f"unknown generate.refinement_gradient {mode!r}; use 'auto', 'first_order' or 'second_order'"
    )


def extract(config, logit_fn):
    """Meshes one field with `config.generate` (MISE or a dense grid); `reconstruction.extract`
    with the refinement gradient of `config.generate.refinement_gradient`.

    Returns:
      (vertices float32 [V, 3], faces int64 [F, 3], stats dict).
    """
    return reconstruction.extract(config, logit_fn, refinement_second_order(config))


def object_latent(config, posterior_mean, c, data, index: int):
    """The posterior-mean latent of one object from its fixed evaluation points.

    Uses the first `data.points_subsample` of `datasets.eval_query_points`
    (the points the validation IoU encodes as well).

    Returns:
      (z [z_dim], points [T, 3], occupancies [T]).
    """
    k = config.data.points_subsample
    points, occ = datasets.eval_query_points(data, index, max(config.train.val_points, k), config.seed)
    points, occ = points[:k], occ[:k]
    return posterior_mean(c, points, occ), points, occ


def generate_meshes(
    config, workdir: str, model, variables, split: str = None, meta: Optional[Dict] = None
) -> List[Dict]:
    """Meshes every object of `split` (default `config.generate.split`).

    `meshes/generation.json` is written before the first mesh, naming the
    checkpoint (`meta`: 'checkpoint', 'step', from `trainer.restore`) and
    marked complete after the last; every mesh names that checkpoint in its
    PLY header. An interrupted generation therefore cannot pass for a
    finished one (`trainer.read_generation`, `trainer.check_meshes`).

    Returns:
      One record per object: category, model, mesh path, seconds, query count.
    """
    meta = dict(meta or {})
    gen = config.generate
    split = split or gen.split
    ds = datasets.from_config(config.data, split, cache=False)
    count = len(ds) if not gen.max_objects else min(gen.max_objects, len(ds))
    if gen.method not in ("mise", "dense"):
        raise ValueError(f"unknown generate.method {gen.method!r}; use 'mise' or 'dense'")
    encode, decode = create_field_fns(model, variables)
    autoencode = model.z_dim > 0 and model.encoder is None
    posterior_mean = create_latent_fn(model, variables) if autoencode else None
    with_cameras = models.needs_cameras(model.encoder)

    def field_fn(i, data, inputs):
        # (logit_fn, extra, codes): the codes are what `decode_batched` takes, without the batch axis.
        if with_cameras:  # The feature map is computed once; MISE only decodes.
            cameras = object_cameras(data)
            c = encode(inputs, cameras)
            return functools.partial(decode, c), cameras, {"c": c, "z": None}
        c = encode(inputs)
        if posterior_mean is None:
            return functools.partial(decode, c), {}, {"c": c, "z": None}
        z, latent_points, latent_occ = object_latent(config, posterior_mean, c, data, i)
        extra = {"z": np.asarray(z), "latent_points": latent_points, "latent_occupancies": latent_occ}
        return functools.partial(decode, c, z=z), extra, {"c": c, "z": z}

    @jax.jit
    def decode_batched(codes, points):
        return model.apply(variables, points, codes["c"], codes["z"], method=models.OccupancyNetwork.decode)

    def picture_input(inputs, extra):
        # The unconditional model shows the occupied points its latent encodes.
        if "latent_points" not in extra:
            return inputs
        return extra["latent_points"][extra["latent_occupancies"] > 0.5]

    out_dir = os.path.join(workdir, "meshes")
    record_path = os.path.join(out_dir, "generation.json")
    os.makedirs(out_dir, exist_ok=True)
    record = trainer.start_generation(
        record_path, meta, split=split, num_objects=count, settings=gen.to_dict()
    )
    records = reconstruction.mesh_split(
        config,
        workdir,
        split,
        field_fn,
        comments=trainer.mesh_provenance(meta),
        second_order=refinement_second_order(config),
        picture_input=picture_input,
        batched_logit_fn=decode_batched,
    )
    trainer.finish_generation(record_path, record, objects=records)
    return records


def generate(config, workdir: str) -> Dict:
    """Meshes `config.generate.split` with the run's `config.generate.checkpoint` (ONet's generate mode).

    Writes `meshes/<category>/<model>.ply` (and each object's input beside
    it), `meshes/generation.json` (the checkpoint and step that made them, and
    one record per mesh) and `reconstruction.png`.

    Returns:
      {'meshes': the records, 'checkpoint_step': the step of the checkpoint used}.
    """
    builtin.ensure_dataset(config.data, progress=config.logging.progress)
    model, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    records = generate_meshes(config, workdir, model, variables, meta=meta)
    logger.info(
        "wrote %d meshes to %s (checkpoint step %s), picture %s",
        len(records),
        os.path.join(workdir, "meshes"),
        meta.get("step"),
        os.path.join(workdir, "reconstruction.png"),
    )
    return {"meshes": records, "checkpoint_step": meta.get("step")}


# The comparison picture, shared with the other methods that reconstruct a split.
render_input = reconstruction.render_input
write_comparison_picture = reconstruction.write_comparison_picture


def sample_meshes(config, model: models.OccupancyNetwork, variables, num: int, seed: int = 0):
    """Meshes of `num` shapes sampled from the prior p0(z) = N(0, I).

    Args:
      config: the run's config (meshing settings from `config.generate`).
      model: a model with z_dim > 0 (an unconditional one, or a conditional VAE
        whose code is then the empty / zero input's code).
      variables: its variables.
      num: number of samples.
      seed: seed of the latents.

    Returns:
      list of dicts with 'z' [z_dim], 'vertices' [V, 3], 'faces' [F, 3], 'stats'.
    """
    if model.z_dim <= 0:
        raise ValueError("sampling needs a model with a latent (model.z_dim > 0)")
    encode, decode = create_field_fns(model, variables)
    c = _empty_code(config, encode)
    zs = np.asarray(models.sample_prior(jax.random.key(seed), num, model.z_dim))
    out = []
    for z in tqdm.tqdm(zs, desc="sample", unit="mesh", disable=not config.logging.progress):
        vertices, faces, stats = extract(config, functools.partial(decode, c, z=z))
        out.append({"z": z, "vertices": vertices, "faces": faces, "stats": stats})
    return out


def interpolation_meshes(
    config,
    model: models.OccupancyNetwork,
    variables,
    data_a,
    data_b,
    index_a: int,
    index_b: int,
    num_steps: int,
):
    """Meshes along the straight line between two objects' posterior-mean latents.

    Args:
      data_a, data_b: the two objects' loaded arrays (`ShapesDataset.load`).
      index_a, index_b: their dataset indices (seed the encoded points).
      num_steps: codes on the line, both ends included (>= 2).

    Returns:
      list of dicts with 't', 'z', 'vertices', 'faces'.
    """
    if model.z_dim <= 0:
        raise ValueError("interpolation needs a model with a latent (model.z_dim > 0)")
    encode, decode = create_field_fns(model, variables)
    posterior_mean = create_latent_fn(model, variables)
    c = _empty_code(config, encode)
    z_a, _, _ = object_latent(config, posterior_mean, c, data_a, index_a)
    z_b, _, _ = object_latent(config, posterior_mean, c, data_b, index_b)
    codes = np.asarray(models.interpolate_codes(z_a, z_b, num_steps))
    out = []
    for t, z in zip(np.linspace(0.0, 1.0, num_steps), codes):
        vertices, faces, _ = extract(config, functools.partial(decode, c, z=z))
        out.append({"t": float(t), "z": z, "vertices": vertices, "faces": faces})
    return out


def _empty_code(config, encode):
    """The code of an unconditional model (empty); conditional models need an input."""
    if datasets.input_type_of(config.data) is not None:
        raise ValueError(
            "prior samples and interpolations are for unconditional models "
            "(data.input_type='' and model.encoder=''); this model is conditioned on "
            f"{config.data.input_type!r} inputs"
        )
    return encode(np.zeros((0,), np.float32))


def write_samples(
    workdir: str,
    num: int = 8,
    seed: int = 0,
    columns: int = 4,
    interpolate: bool = False,
    pair=(0, 1),
    split: str = "train",
    steps: int = 6,
    checkpoint: str = "best",
) -> Dict:
    """Prior samples (and an interpolation) of the trained latent model in `workdir`.

    Reads `workdir/config.json` and the best (or latest) checkpoint, draws
    `num` latents z ~ N(0, I), meshes each decoded field with the run's
    `config.generate` settings and writes `samples/sample_000.ply`, ...,
    `samples/latents.npz`, `samples/samples.json` and the picture grid
    `samples.png`. With `interpolate` it also encodes two objects of `split`
    (indices `pair`) to their posterior means, meshes `steps` codes on the line
    between them and writes `interpolation/step_00.ply`, ... and
    `interpolation.png` (the two ground-truth surfaces at the ends of the row).

    Returns:
      The summary written to `samples/samples.json`.
    """
    counts = (("num", num, 1), ("seed", seed, 0), ("columns", columns, 1), ("steps", steps, 2))
    for name, value, minimum in counts:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"--{name}={value!r}: must be an integer >= {minimum}")
    if len(pair) != 2 or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in pair):
        raise ValueError(f"--pair={pair!r}: must be two object indices >= 0")
    if checkpoint not in trainer.CHECKPOINTS:
        raise ValueError(f"--checkpoint={checkpoint!r}: must be one of {trainer.CHECKPOINTS}")
    workdir = os.path.abspath(workdir)
    config = trainer.load_run_config(workdir)
    if config.method != "onet" or not config.model.z_dim:
        raise ValueError(
            f"{workdir}: is a {config.method!r} run without a latent (model.z_dim=0); sampling needs "
            f"an ONet with a latent, e.g. experiments/configs/onet.py:unconditional"
            if config.method == "onet"
            else f"{workdir}: is a {config.method!r} run; sampling needs an ONet with a latent"
        )
    config.logging.progress = False
    model, state, meta = trainer.restore(config, workdir, checkpoint)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    record = {"checkpoint_step": meta.get("step"), "samples": []}

    out_dir = os.path.join(workdir, "samples")
    os.makedirs(out_dir, exist_ok=True)
    samples = sample_meshes(config, model, variables, num, seed)
    images = []
    for i, s in enumerate(samples):
        path = os.path.join(out_dir, f"sample_{i:03d}.ply")
        meshing.write_mesh(path, s["vertices"], s["faces"], comments=trainer.mesh_provenance(meta))
        images.append(vis.render_mesh(s["vertices"], s["faces"], image_size=200))
        watertight = bool(len(s["faces"])) and bool(
            trimesh.Trimesh(s["vertices"], s["faces"], process=False).is_watertight
        )
        record["samples"].append(
            {
                "mesh": os.path.relpath(path, workdir),
                "num_vertices": int(len(s["vertices"])),
                "num_faces": int(len(s["faces"])),
                "watertight": watertight,
            }
        )
    np.savez(os.path.join(out_dir, "latents.npz"), z=np.stack([s["z"] for s in samples]), seed=seed)
    columns = max(1, columns)
    rows = [images[i : i + columns] for i in range(0, len(images), columns)]
    labels = [[f"sample {r * columns + j}" for j in range(len(row))] for r, row in enumerate(rows)]
    picture = os.path.join(workdir, "samples.png")
    vis.write_png(picture, vis.image_grid(rows, labels=labels))
    record["samples_picture"] = picture

    if interpolate:
        builtin.ensure_dataset(config.data, progress=False)
        ds = datasets.from_config(config.data, split, cache=False)
        a, b = (int(x) for x in pair)
        for index in (a, b):
            if not 0 <= index < len(ds):
                raise ValueError(f"pair index {index} is outside the {len(ds)} objects of split {split!r}")
        data_a, data_b = ds.load(a), ds.load(b)
        meshes = interpolation_meshes(config, model, variables, data_a, data_b, a, b, steps)
        interp_dir = os.path.join(workdir, "interpolation")
        row = [vis.render_points(data_a["surface_points"], data_a["surface_normals"], image_size=200)]
        names = [f"{ds.items[a].model} truth"]
        for i, m in enumerate(meshes):
            meshing.write_mesh(
                os.path.join(interp_dir, f"step_{i:02d}.ply"),
                m["vertices"],
                m["faces"],
                comments=trainer.mesh_provenance(meta),
            )
            row.append(vis.render_mesh(m["vertices"], m["faces"], image_size=200))
            names.append(f"t={m['t']:.2f}")
        row.append(vis.render_points(data_b["surface_points"], data_b["surface_normals"], image_size=200))
        names.append(f"{ds.items[b].model} truth")
        picture = os.path.join(workdir, "interpolation.png")
        vis.write_png(picture, vis.image_grid([row], labels=[names]))
        record["interpolation_picture"] = picture
        record["interpolation"] = {"split": split, "pair": [a, b], "steps": steps}
    summary.write_json(os.path.join(out_dir, "samples.json"), record, indent=1)
    return record
