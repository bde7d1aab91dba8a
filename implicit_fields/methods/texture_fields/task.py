"""Texture Fields' training task: the data, the state, the three models' losses, validation.

The dataset is a folder in Texture Fields' layout (`data.textured`); with
`data.builtin` the built-in shapes are generated and rendered there first.
Each step takes `train.batch_size` training objects (epoch permutations of the
seed), one random view of each (image, depth, cameras at `data.img_size`), one
random condition view (`data.input_size`) and `data.pointcloud_n` random
surface points with normals; the batch is a pure function of (seed, step), so
a resumed run matches an unbroken one.

Losses (the original's `texnet/training.py`):

* conditional: `w_pix * L1(fake, real)`, the mean over every pixel;
* VAE: `w_vae * (MSE + KL / (H W 3))` with z from the image-based posterior;
* GAN: the generator's non-saturating BCE plus the discriminator's BCE on real
  and fake images and the R1 penalty on real ones. Both players are updated in
  one step from one loss: each term's gradient reaches only its own player
  (`stop_gradient` on the other's parameters and on the fake images the
  discriminator sees), which with per-parameter RMSprop is the original's two
  optimisers with the same learning rate, updated simultaneously rather than
  one after the other.

Validation renders one view of each validation object (the first condition
view, z the prior mean for the VAE and GAN) and measures PSNR and L1; the best
model is the one of the highest PSNR.
"""

import functools
import logging
import os
from typing import Any, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import Mesh

from implicit_fields import cameras, config_utils, image_metrics, train_utils, trainer
from implicit_fields.data import shapes, textured
from implicit_fields.methods.texture_fields import config as tf_config
from implicit_fields.methods.texture_fields import model as tf_model

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Config and model.
# ---------------------------------------------------------------------------


def check_config(config) -> None:
    """Checks Texture Fields' own values and how they fit together (before any work)."""
    config_utils.check_values(config, tf_config.CHECKS)
    m = config.model
    for key in ("data.builtin_categories", "data.categories"):
        for c in config_utils.get(config, key):
            try:
                shapes.category_synset(c)
            except ValueError as e:
                if config.data.builtin or key == "data.builtin_categories":
                    raise ValueError(f"config.{key}: {e}") from None
    if m.kind == "conditional" and not m.encoder:
        raise ValueError("config.model.encoder='': the conditional model needs an image encoder ('resnet18')")
    if m.kind != "conditional" and m.encoder:
        raise ValueError(
            f"config.model.encoder={m.encoder!r}: the {m.kind} model has no image encoder (use '')"
        )
    if m.kind != "conditional":
        size = config.data.img_size
        if size < 4 or 4 * 2 ** int(round(np.log2(size / 4))) != size:
            raise ValueError(
                f"config.data.img_size={size} must be 4 * 2^k for the {m.kind} model (its "
                f"{'posterior' if m.kind == 'vae' else 'discriminator'} pools down to 4 x 4)"
            )
    if config.train.batch_size < 2 and m.kind == "conditional":
        raise ValueError(
            "config.train.batch_size must be >= 2 for the conditional model (its image encoder's "
            "batch norm needs a batch)"
        )
    if m.kind == "vae" and config.loss.w_vae == 0:
        raise ValueError("config.loss.w_vae=0: the VAE's only loss is the ELBO; give it a weight > 0")
    if m.kind == "gan" and config.loss.w_gan == 0:
        raise ValueError("config.loss.w_gan=0: the GAN's only loss is adversarial; give it a weight > 0")
    if m.kind == "conditional" and config.loss.w_pix == 0:
        raise ValueError("config.loss.w_pix=0: the conditional model's only loss is the pixel loss")


def create_model(config) -> tf_model.TextureFieldsModel:
    """The generator (and the GAN's discriminator) of `config.model`."""
    return tf_model.create_model(config.model, config.data.img_size)


def _dummy_batch(config, batch_size: int = 2) -> Dict[str, jnp.ndarray]:
    s, n, i = config.data.img_size, config.data.pointcloud_n, config.data.input_size
    eye = jnp.broadcast_to(jnp.eye(4, dtype=jnp.float32), (batch_size, 4, 4))
    return {
        "image": jnp.zeros((batch_size, s, s, 3), jnp.float32),
        "depth": jnp.full((batch_size, s, s), 2.0, jnp.float32),
        "world_mat": eye,
        "camera_mat": eye,
        "points": jnp.zeros((batch_size, n, 3), jnp.float32),
        "normals": jnp.zeros((batch_size, n, 3), jnp.float32),
        "condition": jnp.zeros((batch_size, i, i, 3), jnp.float32),
    }


def init_variables(config, model: tf_model.TextureFieldsModel, key) -> Dict[str, Any]:
    """{'params': {'generator', ['discriminator']}, 'batch_stats': the generator's}."""
    b = _dummy_batch(config)
    g_key, d_key = jax.random.split(key)
    z = None if model.generator.encoder else jnp.zeros((2, config.model.z_dim), jnp.float32)
    g_vars = model.generator.init(
        g_key, b["depth"], b["world_mat"], b["camera_mat"], b["points"], b["normals"], b["condition"], z
    )
    params = {"generator": g_vars["params"]}
    if model.discriminator is not None:
        c = jnp.zeros((2, config.model.c_dim), jnp.float32)
        params["discriminator"] = model.discriminator.init(d_key, b["image"], b["depth"], c)["params"]
    return {"params": params, "batch_stats": dict(g_vars.get("batch_stats", {}))}


def init_state(config, model: tf_model.TextureFieldsModel, key) -> train_utils.TrainState:
    """Fresh parameters (PyTorch-style initialisation) and the optimiser state (RMSprop)."""
    variables = init_variables(config, model, key)
    return train_utils.TrainState.create(
        apply_fn=model.generator.apply,
        params=variables["params"],
        tx=train_utils.create_optimizer(config.optim, config.train.num_steps),
        batch_stats=variables["batch_stats"],
    )


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------


def _g_vars(params, batch_stats):
    out = {"params": params["generator"]}
    if batch_stats:
        out["batch_stats"] = batch_stats
    return out


def loss_fn(model: tf_model.TextureFieldsModel, config, params, batch_stats, batch, rng):
    """The loss of `config.model.kind` on one batch: (loss, (metrics, new batch statistics or None))."""
    g = model.generator
    kind = config.model.kind
    lo = config.loss
    real = batch["image"]
    cams = (batch["depth"], batch["world_mat"], batch["camera_mat"])
    variables = _g_vars(params, batch_stats)

    def geometry():
        return g.apply(variables, batch["points"], batch["normals"], method=g.encode_geometry)

    def render(c, z):
        fake, _ = g.apply(variables, *cams, c, z, method=g.render)
        return fake

    if kind == "conditional":
        (fake, _), new_vars = g.apply(
            variables,
            *cams,
            batch["points"],
            batch["normals"],
            batch["condition"],
            train=True,
            mutable=["batch_stats"],
        )
        pix = tf_model.pixel_loss(fake, real, lo.pixel)
        return lo.w_pix * pix, ({"pixel_loss": pix}, new_vars["batch_stats"])
    if kind == "vae":
        c = geometry()
        mean, logstd = g.apply(variables, real, c, method=g.infer_z)
        # The noise in float32 whatever the compute dtype (bfloat16 normals take 128 values).
        z = mean + jnp.exp(logstd) * jax.random.normal(rng, mean.shape, jnp.float32)
        elbo, terms = tf_model.elbo(render(c, z), real, mean, logstd)
        return lo.w_vae * elbo, ({"elbo": elbo, **terms}, None)
    # GAN.
    d = model.discriminator
    c = geometry()
    z = jax.random.normal(rng, (real.shape[0], config.model.z_dim), real.dtype)
    fake = render(c, z)
    c_d = jax.lax.stop_gradient(c)

    def d_apply(d_params, images):
        return d.apply({"params": d_params}, images, batch["depth"], c_d)

    d_params = params["discriminator"]
    g_loss = tf_model.bce_with_logits(d_apply(jax.lax.stop_gradient(d_params), fake), 1.0)
    d_real = d_apply(d_params, real)
    d_fake = d_apply(d_params, jax.lax.stop_gradient(fake))
    d_loss = tf_model.bce_with_logits(d_real, 1.0) + tf_model.bce_with_logits(d_fake, 0.0)
    r1 = tf_model.r1_penalty(functools.partial(d_apply, d_params), real)
    total = lo.w_gan * (g_loss + d_loss) + lo.r1 * r1
    metrics = {
        "loss_g": g_loss,
        "loss_d": d_loss,
        "r1": r1,
        "d_real": jnp.mean(d_real),
        "d_fake": jnp.mean(d_fake),
    }
    return total, (metrics, None)


# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------


def ensure_data(config) -> str:
    """The dataset folder; with `data.builtin` the built-in textured dataset is made there first."""
    d = config.data
    if not d.builtin:
        if not os.path.isdir(d.path):
            raise FileNotFoundError(
                f"config.data.path={d.path!r}: no such dataset folder (config.data.builtin=True "
                f"generates the built-in textured dataset there)"
            )
        return d.path
    return textured.ensure_textured_dataset(
        d.path,
        categories=list(d.builtin_categories),
        objects_per_category=d.builtin_objects_per_category,
        num_points=d.builtin_num_points,
        num_surface_points=d.builtin_num_surface_points,
        image_resolution=d.builtin_image_resolution,
        input_resolution=d.builtin_input_resolution,
        n_views=d.builtin_n_views,
        n_input_views=d.builtin_input_views,
        n_visualize_views=d.builtin_visualize_views,
        progress=config.logging.progress,
    )


def load_split(config, split: str, image_size: int, which: str = "image", limit: int = 0):
    """The objects of `split` at `image_size` (a `textured.TexturedDataset`)."""
    path = ensure_data(config)
    dataset = textured.TexturedDataset(
        path,
        split,
        categories=list(config.data.categories) or None,
        image_size=image_size,
        input_size=config.data.input_size,
        which=which,
        cache=config.data.cache,
    )
    if len(dataset) == 0:
        raise ValueError(f"config.data.path={config.data.path!r}: the {split!r} split has no objects")
    return dataset, (min(limit, len(dataset)) if limit else len(dataset))


def _to_uint8(x):
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


class ObjectCache:
    """The training objects' arrays, kept compact (8-bit images), for the batches of every step."""

    def __init__(self, dataset, count: int, progress: bool = False):
        self.items = []
        for i in tqdm.trange(count, desc="load objects", unit="object", disable=not progress):
            o = dataset[i]
            self.items.append(
                {
                    "images": _to_uint8(o["images"]),
                    "depths": np.asarray(o["depths"], np.float32),
                    "world_mat": np.asarray(o["world_mat"], np.float32),
                    "camera_mat": np.asarray(o["camera_mat"], np.float32),
                    "input_images": _to_uint8(o["input_images"]),
                    "points": np.asarray(o["points"], np.float32),
                    "normals": np.asarray(o["normals"], np.float32),
                }
            )

    def __len__(self):
        return len(self.items)


def epoch_objects(seed: int, step: int, batch_size: int, num_objects: int) -> np.ndarray:
    """Objects of step `step`: positions step*B ... of the concatenated epoch permutations of `seed`."""
    return train_utils.epoch_indices(seed, step, batch_size, num_objects, stream=15)


def make_batch(
    config, cache: ObjectCache, step: int, process_index: int = 0, process_count: int = 1
) -> Dict[str, np.ndarray]:
    """The batch of step `step` (this process's share): a pure function of (seed, step).

    Returns:
      'image' [B, S, S, 3] float32, 'depth' [B, S, S] (inf: no surface), 'world_mat' and
      'camera_mat' [B, 4, 4], 'points' and 'normals' [B, N, 3], 'condition' [B, s, s, 3].
    """
    b = config.train.batch_size
    if b % process_count:
        raise ValueError(f"config.train.batch_size={b} is not divisible by {process_count} processes")
    objects = epoch_objects(config.seed, step, b, len(cache))
    rng = np.random.default_rng([int(config.seed), int(step), 16])
    rows = []
    for o in objects:
        item = cache.items[o]
        v = rng.integers(item["images"].shape[0])
        c = rng.integers(item["input_images"].shape[0])
        idx = rng.integers(item["points"].shape[0], size=config.data.pointcloud_n)
        rows.append((item, v, c, idx))
    local = rows[process_index * b // process_count : (process_index + 1) * b // process_count]
    return {
        "image": np.stack([it["images"][v] for it, v, _, _ in local]).astype(np.float32) / 255.0,
        "depth": np.stack([it["depths"][v] for it, v, _, _ in local]),
        "world_mat": np.stack([it["world_mat"][v] for it, v, _, _ in local]),
        "camera_mat": np.stack([it["camera_mat"][v] for it, v, _, _ in local]),
        "points": np.stack([it["points"][i] for it, _, _, i in local]),
        "normals": np.stack([it["normals"][i] for it, _, _, i in local]),
        "condition": np.stack([it["input_images"][c] for it, _, c, _ in local]).astype(np.float32) / 255.0,
    }


# ---------------------------------------------------------------------------
# Rendering with a trained state (validation, generation, textured meshes).
# ---------------------------------------------------------------------------


def create_codes_fn(config, model: tf_model.TextureFieldsModel):
    """`codes(variables, points, normals, condition, key) -> (c, z)` of a batch of objects, jitted.

    z is the image code (conditional), or drawn from the prior N(0, I) with `key`
    (VAE, GAN); `key=None` takes the prior's mean.
    """
    g = model.generator

    @jax.jit
    def codes(variables, points, normals, condition, key=None):
        c = g.apply(variables, points, normals, method=g.encode_geometry)
        if g.encoder:
            z = g.apply(variables, condition, method=g.encode_image)
        elif key is None:
            z = jnp.zeros((points.shape[0], config.model.z_dim), jnp.float32)
        else:
            z = jax.random.normal(key, (points.shape[0], config.model.z_dim), jnp.float32)
        return c, z

    return codes


def create_colour_fn(model: tf_model.TextureFieldsModel):
    """`colours(variables, p [B, K, 3], c, z) -> RGB [B, K, 3]`, jitted."""
    g = model.generator
    return jax.jit(lambda variables, p, c, z: g.apply(variables, p, c, z, method=g.decode))


def render_object(config, variables, obj: Mapping[str, np.ndarray], views, codes, colour_fn):
    """The field's images of `views` of one object, condition view 0 (as the original's evaluation).

    Args:
      obj: a `TexturedDataset` item (float images); codes: (c [1, C], z [1, Z]).
      colour_fn: from `create_colour_fn`.

    Returns:
      float32 [len(views), H, W, 3] composited over the background.
    """
    out = []
    for v in views:
        points, mask = cameras.depth_to_points(obj["depths"][v], obj["world_mat"][v], obj["camera_mat"][v])
        h, w = mask.shape
        rgb = np.full((h * w, 3), 1.0 if config.model.white_background else 0.0, np.float32)
        hit = np.flatnonzero(mask.reshape(-1))
        # Chunks of one size per image size (the whole image, at most generate.batch_pixels), so
        # that every view and object reuses one compiled decoder.
        chunk = max(1, min(int(config.generate.batch_pixels), h * w))
        rgb[hit] = colour_points(colour_fn, variables, points.reshape(-1, 3)[hit], codes, chunk)
        out.append(rgb.reshape(h, w, 3))
    return np.stack(out) if out else np.zeros((0,), np.float32)


def colour_points(colour_fn, variables, points, codes, chunk: int):
    """The field's RGB [N, 3] of points [N, 3] (numpy), in padded chunks of `chunk` points."""
    c, z = codes
    points = np.asarray(points, np.float32)
    out = np.empty((len(points), 3), np.float32)
    for s in range(0, len(points), chunk):
        part = points[s : s + chunk]
        padded = np.zeros((chunk, 3), np.float32)
        padded[: len(part)] = part
        rgb = colour_fn(variables, jnp.asarray(padded)[None], c, z)
        out[s : s + len(part)] = np.asarray(rgb)[0, : len(part)]
    return out


def variables_of(state) -> Dict[str, Any]:
    """The generator's variables of a train state (for `apply`)."""
    return _g_vars(state.params, state.batch_stats)


def create_task(config, workdir: str, model: tf_model.TextureFieldsModel, mesh: Mesh) -> trainer.Task:
    """The training task: cached training objects, the batch of a step, the loss, validation."""
    del workdir
    num_devices = mesh.devices.size
    if config.train.batch_size % num_devices:
        raise ValueError(
            f"config.train.batch_size={config.train.batch_size} must be a multiple of the "
            f"{num_devices} devices the batch is split over"
        )
    trainer.lead_first("dataset", ensure_data, config)  # one process writes it (multi-host runs)
    train_set, n_train = load_split(config, "train", config.data.img_size)
    cache = ObjectCache(train_set, n_train, progress=config.logging.progress)
    logger.info("cached %d training objects", len(cache))
    val_set, n_val = None, 0
    try:
        val_set, n_val = load_split(config, "val", config.data.img_size, limit=config.train.val_objects)
    except ValueError as e:
        logger.warning("no validation: %s", e)
    codes_fn = create_codes_fn(config, model)
    colour_fn = create_colour_fn(model)

    def evaluate(state):
        variables = variables_of(state)
        psnrs, l1s = [], []
        for i in range(n_val):
            o = val_set[i]
            v = i % o["images"].shape[0]
            codes = object_codes(config, codes_fn, variables, o)
            fake = render_object(config, variables, o, [v], codes, colour_fn)[0]
            real = np.asarray(o["images"][v], np.float32)
            l1s.append(image_metrics.l1(fake, real))
            psnrs.append(image_metrics.psnr(np.clip(fake, 0, 1), real))
        return {"psnr": float(np.mean(psnrs)), "l1": float(np.mean(l1s))}

    batch_fn = functools.partial(
        make_batch, config, cache, process_index=jax.process_index(), process_count=jax.process_count()
    )
    s = config.data.img_size
    return trainer.Task(
        loss_fn=functools.partial(loss_fn, model, config),
        batch_fn=batch_fn,
        eval_fn=evaluate if n_val else None,
        best_metric="psnr",
        items_per_step=config.train.batch_size * s * s,
        items_name="pixels",
        progress_keys=(),
    )


def object_codes(config, codes_fn, variables, obj, key: Optional[jax.Array] = None):
    """(c, z) of one object: a fixed subset of its surface points (seed 0) and condition view 0."""
    n = config.data.pointcloud_n
    idx = np.random.default_rng(0).integers(obj["points"].shape[0], size=n)
    return codes_fn(
        variables,
        jnp.asarray(obj["points"][idx][None], jnp.float32),
        jnp.asarray(obj["normals"][idx][None], jnp.float32),
        jnp.asarray(obj["input_images"][None, 0], jnp.float32),
        key,
    )
