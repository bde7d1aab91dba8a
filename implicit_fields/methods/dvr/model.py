"""DVR's model: the decoder, its losses and the ray-step schedule.

As in `im2mesh/dvr/`: one decoder gives both the occupancy logit and the colour
(a texture field evaluated at the surface point). For a pixel's ray the depth of the
first surface crossing comes from `render.surface_depth` (analytic gradient); the
colour at that point is compared with the image, so shape receives a gradient from
appearance through the depth. Masks add a freespace loss (rays outside the object
mask must stay free) and an occupancy loss (rays inside the mask with no predicted
surface are pushed to occupied at a random depth), and a normal term smooths the
surface. Depth supervision is optional (`lambda_depth`).

Losses follow `dvr/training.py` with reduction 'sum', divided by the number of
images in the batch.
"""

import functools
from typing import Any, Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from implicit_fields import layers, losses, render

__all__ = [
    "DVRDecoder",
    "make_field_fns",
    "ray_steps",
    "sample_in_box",
    "central_difference_normals",
    "dvr_losses",
    "init_decoder",
    "create_renderer",
    "view_metrics",
]


class DVRDecoder(nn.Module):
    """DVR's `Decoder`: fc_p, `n_blocks` ResnetBlockFC (with fc_c per block when
    conditioned), ReLU, fc_out with `out_dim` 4 = [occupancy logit, RGB logits].

    Attributes:
      hidden_dim: width (original 512; `ours_rgb` multi-view 128 in some configs).
      n_blocks: ResNet blocks (original 5).
      c_dim: condition size; 0 for per-scene optimisation without an encoder.
      out_dim: 4 (occupancy + RGB) or 1 (occupancy only).
    """

    hidden_dim: int = 512
    n_blocks: int = 5
    c_dim: int = 0
    out_dim: int = 4

    @nn.compact
    def __call__(self, points, c=None):
        """Args:
          points: float32 [..., 3].
          c: optional code [..., c_dim] broadcastable against points' leading axes
            (ignored when c_dim is 0).

        Returns:
          float32 [..., out_dim]; channel 0 is the occupancy logit, 1:4 RGB logits.
        """
        net = layers.Dense(self.hidden_dim, name="fc_p")(points)
        for i in range(self.n_blocks):
            if self.c_dim and c is not None:
                net_c = layers.Dense(self.hidden_dim, name=f"fc_c_{i}")(c)
                net = net + jnp.broadcast_to(net_c, net.shape)
            net = layers.ResnetBlockFC(name=f"blocks_{i}")(net)
        return layers.Dense(self.out_dim, name="fc_out")(nn.relu(net))


def make_field_fns(decoder: DVRDecoder):
    """Returns `(logit_fn, rgb_fn)` taking `(params, points (N, 3))`.

    `params` is the decoder's `params` collection, optionally as a dict
    `{"params": ..., "c": code}` for conditioned decoders. The functions are pointwise,
    as `render.surface_depth` requires.
    """

    def _apply(params, points):
        if isinstance(params, dict) and "c" in params:
            c = jnp.broadcast_to(params["c"], points.shape[:-1] + params["c"].shape[-1:])
            return decoder.apply({"params": params["params"]}, points, c)
        return decoder.apply({"params": params}, points)

    def logit_fn(params, points):
        return _apply(params, points)[..., 0]

    def rgb_fn(params, points):
        return jax.nn.sigmoid(_apply(params, points)[..., 1:4])

    return logit_fn, rgb_fn


def ray_steps(
    step: int, start: int = 16, milestones: Sequence[int] = (50_000, 100_000, 250_000), maximum: int = 128
) -> int:
    """DVR's `schedule_ray_sampling`: `start` marching steps, doubled at each milestone
    passed, capped at `maximum`."""
    n = start
    for m in milestones:
        if step >= m:
            n *= 2
    return int(min(n, maximum))


def sample_in_box(key, origins, directions, padding):
    """A uniformly random depth inside each ray's intersection with the padded cube.

    Returns `(points [N, 3], hit [N])`; rays that miss the cube get their origin and
    `hit` False.
    """
    d_near, d_far, hit = render.intersect_box(origins, directions, padding)
    u = jax.random.uniform(key, d_near.shape, dtype=origins.dtype)
    d = jnp.where(hit, d_near + u * (d_far - d_near), 0.0)  # A miss's depths may be inf.
    return origins + d[:, None] * directions, hit


def central_difference_normals(logit_fn, params, points, h=1e-3):
    """Unit normals `-grad f / |grad f|` from central differences of step h (DVR's
    `get_central_difference`; the sign points outward for an occupancy logit)."""
    eye = jnp.eye(3, dtype=points.dtype) * (0.5 * h)
    offsets = jnp.concatenate([eye, -eye], axis=0)  # [6, 3]
    p = points[:, None, :] + offsets[None, :, :]
    f = logit_fn(params, p.reshape(-1, 3)).reshape(points.shape[0], 6)
    grad = f[:, :3] - f[:, 3:]
    norm = jnp.sqrt(jnp.sum(grad * grad, axis=-1, keepdims=True) + 1e-12)
    return -grad / norm


def dvr_losses(
    logit_fn,
    rgb_fn,
    params: Any,
    batch: Dict[str, jax.Array],
    key: jax.Array,
    *,
    n_steps: int,
    num_images: int,
    n_secant: int = 8,
    threshold: float = 0.5,
    padding: float = 0.1,
    lambda_rgb: float = 1.0,
    lambda_depth: float = 0.0,
    lambda_freespace: float = 1.0,
    lambda_occupied: float = 1.0,
    lambda_normal: float = 0.05,
    normal_h_sample: float = 1e-3,
    normal_h_difference: float = 1e-3,
    gradient: str = "analytic",
) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """DVR's training loss for a batch of rays.

    Args:
      logit_fn, rgb_fn: from `make_field_fns`.
      params: differentiable parameters passed to both.
      batch: per-ray arrays: `origins` [N, 3], `directions` [N, 3], `rgb` [N, 3] in
        [0, 1], `mask` [N] bool (object mask), optionally `depth` [N] (camera depth,
        inf where unknown) and `occ_depth` [N] (depth for the occupancy loss, e.g. of
        the visual hull, inf where unknown: then a random depth is used).
      key: PRNG key for the random freespace/occupancy depths and normal neighbours.
      n_steps: marching steps (see `ray_steps`).
      num_images: images the rays come from; losses are sums divided by this.

    Returns:
      (total loss, dict of the terms plus `mask_pred`-based diagnostics).
    """
    o, w = batch["origins"], batch["directions"]
    # A ray with a non-finite origin or direction (or none) counts in no term, and its
    # values are replaced before any computation, so that it cannot make the gradient
    # NaN for the others (the first half of a double where).
    valid = render.valid_rays(o, w)
    o = jnp.where(valid[:, None], o, 0.0)
    w = jnp.where(valid[:, None], w, 0.0)
    mask_gt = batch["mask"] & valid
    k_free, k_occ, k_normal = jax.random.split(key, 3)

    d = render.surface_depth(
        logit_fn,
        params,
        o,
        w,
        n_steps=n_steps,
        n_secant=n_secant,
        threshold=threshold,
        padding=padding,
        gradient=gradient,
    )
    mask_pred = jnp.isfinite(d) & (d > 0.0)
    d_hat = jnp.where(mask_pred, d, 1.0)
    p_surface = o + d_hat[:, None] * w
    tau = losses.probability_to_logit(threshold)
    terms = {}
    inv_b = 1.0 / num_images

    # RGB at predicted surface points inside both masks.
    mask_rgb = mask_pred & mask_gt
    rgb = rgb_fn(params, p_surface)
    l1 = jnp.sum(jnp.abs(rgb - batch["rgb"]), axis=-1)
    terms["rgb"] = lambda_rgb * inv_b * jnp.sum(jnp.where(mask_rgb, l1, 0.0))

    # Depth (camera depth, L1) where the ground truth has it.
    if lambda_depth:
        depth_gt = batch["depth"]
        mask_depth = mask_rgb & jnp.isfinite(depth_gt)
        diff = jnp.abs(d_hat - jnp.where(mask_depth, depth_gt, 0.0))
        terms["depth"] = lambda_depth * inv_b * jnp.sum(jnp.where(mask_depth, diff, 0.0))

    # Freespace: rays outside the mask, at a random in-cube point, or at the predicted
    # surface point where there is one (pushing a wrongly found surface away).
    p_free, hit_free = sample_in_box(k_free, o, w, padding)
    p_free = jnp.where(mask_pred[:, None], jax.lax.stop_gradient(p_surface), p_free)
    logits_free = logit_fn(params, p_free) - tau
    mask_free = ~mask_gt & (hit_free | mask_pred)
    bce_free = optax.sigmoid_binary_cross_entropy(logits_free, jnp.zeros_like(logits_free))
    terms["freespace"] = lambda_freespace * inv_b * jnp.sum(jnp.where(mask_free, bce_free, 0.0))

    # Occupancy: rays inside the mask where no surface was found, at a random in-cube
    # depth or, where the batch has one (`occ_depth`, e.g. the visual hull), at that depth.
    p_occ, hit_occ = sample_in_box(k_occ, o, w, padding)
    if "occ_depth" in batch:
        known = jnp.isfinite(batch["occ_depth"])
        d_occ = jnp.where(known, batch["occ_depth"], 0.0)
        p_occ = jnp.where(known[:, None], o + d_occ[:, None] * w, p_occ)
    logits_occ = logit_fn(params, p_occ) - tau
    mask_occ = mask_gt & ~mask_pred & hit_occ
    bce_occ = optax.sigmoid_binary_cross_entropy(logits_occ, jnp.ones_like(logits_occ))
    terms["occupied"] = lambda_occupied * inv_b * jnp.sum(jnp.where(mask_occ, bce_occ, 0.0))

    # Normal smoothness: normals at the surface point and at a random neighbour.
    if lambda_normal:
        p_n = jax.lax.stop_gradient(p_surface)
        jitter = (jax.random.uniform(k_normal, p_n.shape, dtype=p_n.dtype) - 0.5) * normal_h_sample
        n0 = central_difference_normals(logit_fn, params, p_n, normal_h_difference)
        n1 = central_difference_normals(logit_fn, params, p_n + jitter, normal_h_difference)
        diff = jnp.sqrt(jnp.sum((n0 - n1) ** 2, axis=-1) + 1e-12)
        terms["normal"] = lambda_normal * inv_b * jnp.sum(jnp.where(mask_pred, diff, 0.0))

    total = sum(terms.values())
    stats = dict(terms)
    stats["mask_accuracy"] = jnp.mean((mask_pred == mask_gt).astype(jnp.float32))
    inter = jnp.sum((mask_pred & mask_gt).astype(jnp.float32))
    union = jnp.sum((mask_pred | mask_gt).astype(jnp.float32))
    stats["mask_iou"] = inter / jnp.maximum(union, 1.0)
    stats["loss"] = total
    return total, stats


def init_decoder(key, decoder: DVRDecoder):
    """Initialises the decoder's params (PyTorch-style init, as the original)."""
    variables = decoder.init(
        key,
        jnp.zeros((1, 3), jnp.float32),
        jnp.zeros((1, decoder.c_dim), jnp.float32) if decoder.c_dim else None,
    )
    return variables["params"]


def create_renderer(
    decoder: DVRDecoder, *, n_secant: int = 8, threshold: float = 0.5, padding: float = 0.1, chunk: int = 4096
):
    """A renderer of rays through the decoder's field, compiled once per marching-step count.

    Returns:
      `render(params, origins [N, 3], directions [N, 3], n_steps) -> (rgb [N, 3],
      depth [N])` on the host (numpy): the colour at the first surface crossing
      on a white background, and its depth (inf on a miss). Rays are processed
      in chunks of `chunk`.
    """
    logit_fn, rgb_fn = make_field_fns(decoder)

    @functools.partial(jax.jit, static_argnames="n_steps")
    def render_chunk(params, o, w, n_steps):
        d = render.surface_depth(
            logit_fn, params, o, w, n_steps=n_steps, n_secant=n_secant, threshold=threshold, padding=padding
        )
        hit = jnp.isfinite(d) & (d > 0)
        p = o + jnp.where(hit, d, 0.0)[:, None] * w
        rgb = jnp.where(hit[:, None], rgb_fn(params, p), 1.0)
        return rgb, d

    def render_rays(params, origins, directions, n_steps):
        n = origins.shape[0]
        pad = (-n) % chunk
        o = np.concatenate([origins, np.repeat(origins[-1:], pad, 0)]).astype(np.float32)
        w = np.concatenate([directions, np.repeat(directions[-1:], pad, 0)]).astype(np.float32)
        rgbs, depths = [], []
        for i in range(0, n + pad, chunk):
            rgb, d = render_chunk(params, o[i : i + chunk], w[i : i + chunk], n_steps=int(n_steps))
            rgbs.append(np.asarray(rgb))
            depths.append(np.asarray(d))
        return np.concatenate(rgbs)[:n], np.concatenate(depths)[:n]

    return render_rays


def view_metrics(rgb, depth, image, mask) -> Dict[str, float]:
    """Mask IoU and PSNR inside both masks of one rendered view against its ground truth.

    Args:
      rgb: rendered colours [H, W, 3]; depth: rendered depths [H, W] (inf on a miss).
      image: the true image [H, W, 3] in [0, 1]; mask: the true object mask [H, W].

    Returns:
      {'mask_iou', 'psnr_in_mask'} (PSNR NaN when the masks do not overlap).
    """
    pred_mask = np.isfinite(depth) & (depth > 0)
    inter, union = np.sum(pred_mask & mask), np.sum(pred_mask | mask)
    both = pred_mask & mask
    mse = float(np.mean((rgb[both] - image[both]) ** 2)) if both.any() else float("nan")
    return {
        "mask_iou": float(inter / max(union, 1)),
        "psnr_in_mask": float(-10.0 * np.log10(max(mse, 1e-10))) if both.any() else float("nan"),
    }
