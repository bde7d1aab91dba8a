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

Two options beyond the original:

* a view-dependent colour (`ViewDependentDecoder`, IDR's rendering network, Yariv
  et al. 2020): the decoder gives the occupancy logit and a feature vector, and a
  separate MLP maps (x, n, positional encoding of v, feature) to RGB, with n the
  unit outward normal from the autodiff gradient of the logit (differentiable, so
  the colour loss also shapes the geometry through n) and v the unit ray direction;
* volume rendering of the occupancy field (`render_volume`, `dvr_volume_losses`):
  stratified samples in the padded cube composited with alpha = the occupancy
  probability (UNISURF's unified surface and volume rendering), an L1 colour loss
  over all rays and a BCE mask loss on the opacity.

Every colour function takes `(params, points, directions)`: a view-independent one
ignores the directions.
"""

import functools
from typing import Any, Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from implicit_fields import image_metrics, layers, losses, render, volume

__all__ = [
    "DVRDecoder",
    "RenderingNetwork",
    "ViewDependentDecoder",
    "make_field_fns",
    "ray_steps",
    "sample_in_box",
    "central_difference_normals",
    "autodiff_normals",
    "dvr_losses",
    "render_volume",
    "expected_depth",
    "dvr_volume_losses",
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


class RenderingNetwork(nn.Module):
    """IDR's rendering network M(x, n, v, z) -> RGB (Yariv et al. 2020, `RenderingNetwork`, mode 'idr').

    The input is `concat(x, n, positional_encoding(v, view_freqs), z)`; `n_layers`
    ReLU layers of `hidden_dim` and a linear output with a sigmoid (IDR: 4 x 512, 4
    view frequencies and a tanh for images in [-1, 1]; ours are in [0, 1]).

    Attributes:
      hidden_dim: width (IDR 512).
      n_layers: hidden layers (IDR 4).
      view_freqs: octaves of the view direction's positional encoding (IDR 4).
    """

    hidden_dim: int = 512
    n_layers: int = 4
    view_freqs: int = 4

    @nn.compact
    def __call__(self, points, normals, view_dirs, features):
        """Args:
          points, normals, view_dirs: float32 [..., 3] (unit normals and view directions).
          features: float32 [..., F] from the geometry network.

        Returns:
          float32 [..., 3] RGB in (0, 1).
        """
        encoded = volume.positional_encoding(view_dirs, self.view_freqs, include_input=True)
        net = jnp.concatenate([points, normals, encoded, features], axis=-1)
        for i in range(self.n_layers):
            net = nn.relu(layers.Dense(self.hidden_dim, name=f"fc_{i}")(net))
        return jax.nn.sigmoid(layers.Dense(3, name="fc_out")(net))


class ViewDependentDecoder(nn.Module):
    """DVR's decoder with IDR's view-dependent colour: the geometry network `geometry` (a
    `DVRDecoder` with `out_dim` 1 + `feature_dim` = [occupancy logit, feature]) and the
    rendering network `rendering` (`RenderingNetwork`).

    `__call__` gives the geometry network's output; `color` the rendering network's.
    The normal and view direction the colour needs come from `make_field_fns`.

    Attributes:
      hidden_dim, n_blocks, c_dim: the geometry network's, as `DVRDecoder`.
      feature_dim: size of the feature passed to the rendering network (IDR 256).
      render_hidden, render_layers, view_freqs: the rendering network's (IDR 512, 4, 4).
    """

    hidden_dim: int = 512
    n_blocks: int = 5
    c_dim: int = 0
    feature_dim: int = 256
    render_hidden: int = 512
    render_layers: int = 4
    view_freqs: int = 4

    def setup(self):
        self.geometry = DVRDecoder(self.hidden_dim, self.n_blocks, self.c_dim, out_dim=1 + self.feature_dim)
        self.rendering = RenderingNetwork(self.render_hidden, self.render_layers, self.view_freqs)

    def __call__(self, points, c=None):
        """float32 [..., 1 + feature_dim]: the occupancy logit, then the feature."""
        return self.geometry(points, c)

    def color(self, points, normals, view_dirs, features):
        """RGB [..., 3] of the rendering network."""
        return self.rendering(points, normals, view_dirs, features)

    def init_both(self, points, c=None):
        """Runs both networks (for `init`)."""
        out = self.geometry(points, c)
        return self.rendering(points, jnp.zeros_like(points), jnp.zeros_like(points), out[..., 1:])


def _unit(v, eps=1e-12):
    """v / |v| with a finite value and gradient everywhere (0 for v = 0)."""
    return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + eps)


def make_field_fns(decoder):
    """Returns `(logit_fn, rgb_fn)`: `logit_fn(params, points (N, 3))` and
    `rgb_fn(params, points (N, 3), directions=None)`.

    `params` is the decoder's `params` collection, optionally as a dict
    `{"params": ..., "c": code}` for conditioned decoders. The functions are pointwise,
    as `render.surface_depth` requires.

    For a `DVRDecoder` the colour ignores `directions`. For a `ViewDependentDecoder`
    they are required (the rays' directions, any length, broadcastable against
    `points`): the colour is `RenderingNetwork(x, n, v, feature)` with v the unit
    direction and n the unit outward normal `-grad f / |grad f|` of the occupancy
    logit f, from autodiff and differentiable in `params` (second order), so a
    colour loss reaches the geometry through n as well as through the feature.
    """

    def _apply(params, points):
        if isinstance(params, dict) and "c" in params:
            c = jnp.broadcast_to(params["c"], points.shape[:-1] + params["c"].shape[-1:])
            return decoder.apply({"params": params["params"]}, points, c)
        return decoder.apply({"params": params}, points)

    def logit_fn(params, points):
        return _apply(params, points)[..., 0]

    if not isinstance(decoder, ViewDependentDecoder):

        def rgb_fn(params, points, directions=None):
            del directions  # DVR's colour (a texture field) does not depend on the view.
            return jax.nn.sigmoid(_apply(params, points)[..., 1:4])

        return logit_fn, rgb_fn

    def color(params, points, normals, view_dirs, features):
        variables = {"params": params["params"] if isinstance(params, dict) and "c" in params else params}
        method = ViewDependentDecoder.color
        return decoder.apply(variables, points, normals, view_dirs, features, method=method)

    def rgb_fn(params, points, directions=None):
        if directions is None:
            raise ValueError(
                "a view-dependent colour (config.model.view_dependent=True) needs the rays' directions"
            )

        def total_logit(p):  # Pointwise: d(sum of logits)/dp is each point's own gradient.
            out = _apply(params, p)
            return jnp.sum(out[..., 0]), out[..., 1:]

        grad, features = jax.grad(total_logit, has_aux=True)(points)
        view_dirs = _unit(jnp.broadcast_to(directions, points.shape))
        return color(params, points, _unit(-grad), view_dirs, features)

    return logit_fn, rgb_fn


def autodiff_normals(logit_fn, params, points):
    """Unit outward normals `-grad f / |grad f|` of the occupancy logit from autodiff
    (differentiable in `params`; the normals of a view-dependent `rgb_fn`)."""
    grad = jax.grad(lambda p: jnp.sum(logit_fn(params, p)))(points)
    return _unit(-grad)


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
      logit_fn, rgb_fn: from `make_field_fns` (`rgb_fn(params, points, directions)`).
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
    rgb = rgb_fn(params, p_surface, w)
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
        diff = _normal_differences(
            logit_fn, params, p_surface, k_normal, normal_h_sample, normal_h_difference
        )
        terms["normal"] = lambda_normal * inv_b * jnp.sum(jnp.where(mask_pred, diff, 0.0))
    return _total_and_stats(terms, mask_pred, mask_gt)


def _normal_differences(logit_fn, params, points, key, h_sample, h_difference):
    """|n(p) - n(p + jitter)| per point (DVR's normal smoothness; no gradient to the points)."""
    p_n = jax.lax.stop_gradient(points)
    jitter = (jax.random.uniform(key, p_n.shape, dtype=p_n.dtype) - 0.5) * h_sample
    n0 = central_difference_normals(logit_fn, params, p_n, h_difference)
    n1 = central_difference_normals(logit_fn, params, p_n + jitter, h_difference)
    return jnp.sqrt(jnp.sum((n0 - n1) ** 2, axis=-1) + 1e-12)


def _total_and_stats(terms, mask_pred, mask_gt):
    """(the sum of the terms, the terms with the mask diagnostics and the loss)."""
    total = sum(terms.values())
    stats = dict(terms)
    stats["mask_accuracy"] = jnp.mean((mask_pred == mask_gt).astype(jnp.float32))
    inter = jnp.sum((mask_pred & mask_gt).astype(jnp.float32))
    union = jnp.sum((mask_pred | mask_gt).astype(jnp.float32))
    stats["mask_iou"] = inter / jnp.maximum(union, 1.0)
    stats["loss"] = total
    return total, stats


def render_volume(
    logit_fn,
    rgb_fn,
    params: Any,
    origins: jax.Array,
    directions: jax.Array,
    key,
    *,
    num_samples: int,
    threshold: float = 0.5,
    padding: float = 0.1,
) -> Dict[str, jax.Array]:
    """Volume rendering of the occupancy field (UNISURF's unified formulation).

    `num_samples` stratified depths over each ray's intersection with the padded cube
    (`volume.sample_stratified`: a random place in each bin with `key`, the bins'
    midpoints with None) are composited with alpha = the occupancy probability there,
    `sigmoid(logit - logit(threshold))` (the plain `sigmoid(logit)` for DVR's 0.5), on
    a white background (`volume.composite_occupancy`). A ray that misses the cube (or
    is invalid: see `render.valid_rays`) has no sample: colour white, opacity 0.

    Args:
      logit_fn, rgb_fn: from `make_field_fns`; the colour is evaluated at every sample
        (with the ray's direction: a view-dependent colour's normal is the sample's).
      params: passed to both.
      origins, directions: float32 [N, 3].
      key: PRNG key or None (midpoints, for rendering).
      num_samples: S samples per ray. As alpha is a probability, not a density, the
        rendering depends on S: render with the S of training.

    Returns:
      dict: `rgb` [N, 3], `depth` [N] (sum_i w_i t_i: divide by the opacity for the
      depth of the visible part), `opacity` [N], `weights` [N, S], `t` [N, S] and
      `hit` [N] (the ray meets the cube).
    """
    valid = render.valid_rays(origins, directions)
    o = jnp.where(valid[:, None], origins, 0.0)
    w = jnp.where(valid[:, None], directions, 0.0)
    near, far, hit = render.intersect_box(o, w, padding)  # Misses and invalid rays: [0, 0].
    hit = hit & valid
    t = volume.sample_stratified(key, near, far, num_samples).astype(o.dtype)
    points = (o[:, None, :] + t[..., None] * w[:, None, :]).reshape(-1, 3)
    logits = logit_fn(params, points).reshape(t.shape)
    alpha = jnp.where(hit[:, None], jax.nn.sigmoid(logits - losses.probability_to_logit(threshold)), 0.0)
    dirs = jnp.broadcast_to(w[:, None, :], t.shape + (3,)).reshape(-1, 3)
    colors = rgb_fn(params, points, dirs).reshape(t.shape + (3,))
    out = volume.composite_occupancy(alpha, colors, t, white_background=True)
    out["t"] = t
    out["hit"] = hit
    # log(1 - opacity) = sum_i log(1 - alpha_i) = -sum_i softplus(logit_i), without rounding
    # 1 - opacity to 0 (for the mask loss: opacity is 1 - 1e-20 on most rays at the start).
    shifted = logits - losses.probability_to_logit(threshold)
    out["log_transmittance"] = -jnp.sum(jnp.where(hit[:, None], jax.nn.softplus(shifted), 0.0), axis=-1)
    return out


def expected_depth(out, min_opacity: float = 0.5):
    """(mask [N], depth [N]) of a `render_volume` output: the rays of opacity >= `min_opacity`
    and their expected depth `depth / opacity` (inf elsewhere)."""
    mask = out["opacity"] >= min_opacity
    return mask, jnp.where(mask, out["depth"] / jnp.maximum(out["opacity"], 1e-6), jnp.inf)


def dvr_volume_losses(
    logit_fn,
    rgb_fn,
    params: Any,
    batch: Dict[str, jax.Array],
    key: jax.Array,
    *,
    num_samples: int,
    num_images: int,
    threshold: float = 0.5,
    padding: float = 0.1,
    lambda_rgb: float = 1.0,
    lambda_mask: float = 1.0,
    lambda_depth: float = 0.0,
    lambda_normal: float = 0.05,
    normal_h_sample: float = 1e-3,
    normal_h_difference: float = 1e-3,
) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """The training loss of the field rendered as a volume (`render_volume`, random samples).

    Terms (sums over the rays divided by `num_images`, as `dvr_losses`):

    * `rgb`: L1 of the composited colour (white background) against the image, on every
      ray (inside the mask or not);
    * `mask`: BCE of the opacity against the object mask, from the log transmittance (no
      clipping at 1: the gradient reaches a field that is opaque everywhere at the start);
    * `depth` (with `lambda_depth`): L1 of the expected depth `depth / opacity` on rays
      predicted (opacity >= 0.5) and known (mask, finite depth) to hit;
    * `normal` (with `lambda_normal`): DVR's normal smoothness at the expected-depth point
      of the rays of opacity >= 0.5.

    An invalid ray (non-finite origin or direction, zero direction) counts in no term.

    Args:
      logit_fn, rgb_fn, params, batch, key: as `dvr_losses`.
      num_samples: samples per ray.
      num_images: images the rays come from.

    Returns:
      (total loss, dict of the terms plus mask diagnostics with the mask opacity >= 0.5).
    """
    o, w = batch["origins"], batch["directions"]
    valid = render.valid_rays(o, w)
    o = jnp.where(valid[:, None], o, 0.0)
    w = jnp.where(valid[:, None], w, 0.0)
    mask_gt = batch["mask"] & valid
    k_samples, k_normal = jax.random.split(key)
    settings = {"num_samples": num_samples, "threshold": threshold, "padding": padding}
    out = render_volume(logit_fn, rgb_fn, params, o, w, k_samples, **settings)
    inv_b = 1.0 / num_images
    terms = {}
    rgb_gt = jnp.where(valid[:, None], batch["rgb"], 1.0)  # An invalid ray's colour is never used.
    l1 = jnp.sum(jnp.abs(out["rgb"] - rgb_gt), axis=-1)
    terms["rgb"] = lambda_rgb * inv_b * jnp.sum(jnp.where(valid, l1, 0.0))
    # BCE of the opacity 1 - exp(-s), s = -log transmittance, in a stable form: -log(1 - opacity)
    # = s exactly, and -log(opacity) = -log(-expm1(-s)) with s >= 1e-5 (opacity >= ~1e-5).
    s_opt = -out["log_transmittance"]
    target = mask_gt.astype(s_opt.dtype)
    bce = target * -jnp.log(-jnp.expm1(-jnp.maximum(s_opt, 1e-5))) + (1.0 - target) * s_opt
    terms["mask"] = lambda_mask * inv_b * jnp.sum(jnp.where(valid, bce, 0.0))
    mask_pred, depth = expected_depth(out)
    mask_pred = mask_pred & valid
    d_hat = jnp.where(mask_pred, depth, 0.0)
    if lambda_depth:
        depth_gt = batch["depth"]
        mask_depth = mask_pred & mask_gt & jnp.isfinite(depth_gt)
        diff = jnp.abs(d_hat - jnp.where(mask_depth, depth_gt, 0.0))
        terms["depth"] = lambda_depth * inv_b * jnp.sum(jnp.where(mask_depth, diff, 0.0))
    if lambda_normal:
        p_n = o + d_hat[:, None] * w
        diff = _normal_differences(logit_fn, params, p_n, k_normal, normal_h_sample, normal_h_difference)
        terms["normal"] = lambda_normal * inv_b * jnp.sum(jnp.where(mask_pred, diff, 0.0))
    return _total_and_stats(terms, mask_pred, mask_gt)


def init_decoder(key, decoder):
    """Initialises the params of a `DVRDecoder` or `ViewDependentDecoder` (PyTorch-style init,
    as the original)."""
    kwargs = {"method": ViewDependentDecoder.init_both} if isinstance(decoder, ViewDependentDecoder) else {}
    variables = decoder.init(
        key,
        jnp.zeros((1, 3), jnp.float32),
        jnp.zeros((1, decoder.c_dim), jnp.float32) if decoder.c_dim else None,
        **kwargs,
    )
    return variables["params"]


def create_renderer(
    decoder,
    *,
    n_secant: int = 8,
    threshold: float = 0.5,
    padding: float = 0.1,
    chunk: int = 4096,
    mode: str = "surface",
    volume_samples: int = 64,
):
    """A renderer of rays through the decoder's field, compiled once per marching-step count.

    Args:
      decoder: `DVRDecoder` or `ViewDependentDecoder`.
      n_secant, threshold, padding: the surface search's (as `render.surface_depth`).
      chunk: rays per call (in volume mode, `chunk * 16 / volume_samples`: the same
        number of field evaluations as 16 marching steps).
      mode: 'surface' (the first crossing of the threshold, DVR) or 'volume'
        (`render_volume` at the bins' midpoints with `volume_samples` per ray).

    Returns:
      `render(params, origins [N, 3], directions [N, 3], n_steps) -> (rgb [N, 3],
      depth [N])` on the host (numpy). Surface mode: the colour at the first surface
      crossing on a white background, and its depth (inf on a miss), marching
      `n_steps`. Volume mode (`n_steps` unused): the composited colour, and the
      expected depth `depth / opacity` where the opacity is >= 0.5 (the predicted
      mask), inf elsewhere.
    """
    if mode not in ("surface", "volume"):
        raise ValueError(f"mode must be 'surface' or 'volume', got {mode!r}")
    logit_fn, rgb_fn = make_field_fns(decoder)

    @functools.partial(jax.jit, static_argnames="n_steps")
    def render_chunk(params, o, w, n_steps):
        if mode == "volume":
            settings = {"num_samples": volume_samples, "threshold": threshold, "padding": padding}
            out = render_volume(logit_fn, rgb_fn, params, o, w, None, **settings)
            return out["rgb"], expected_depth(out)[1]
        d = render.surface_depth(
            logit_fn, params, o, w, n_steps=n_steps, n_secant=n_secant, threshold=threshold, padding=padding
        )
        hit = jnp.isfinite(d) & (d > 0)
        p = o + jnp.where(hit, d, 0.0)[:, None] * w
        rgb = jnp.where(hit[:, None], rgb_fn(params, p, w), 1.0)
        return rgb, d

    if mode == "volume":
        chunk = max(1, int(chunk) * 16 // int(volume_samples))

    def render_rays(params, origins, directions, n_steps):
        n = origins.shape[0]
        pad = (-n) % chunk
        o = np.concatenate([origins, np.repeat(origins[-1:], pad, 0)]).astype(np.float32)
        w = np.concatenate([directions, np.repeat(directions[-1:], pad, 0)]).astype(np.float32)
        rgbs, depths = [], []
        for i in range(0, n + pad, chunk):
            steps = 0 if mode == "volume" else int(n_steps)  # Volume: one compilation for all.
            rgb, d = render_chunk(params, o[i : i + chunk], w[i : i + chunk], n_steps=steps)
            rgbs.append(np.asarray(rgb))
            depths.append(np.asarray(d))
        return np.concatenate(rgbs)[:n], np.concatenate(depths)[:n]

    return render_rays


def view_metrics(rgb, depth, image, mask) -> Dict[str, float]:
    """Mask IoU, PSNR inside both masks, and PSNR and SSIM of the whole view against its ground truth.

    Args:
      rgb: rendered colours [H, W, 3] (white where nothing is hit); depth: rendered depths
        [H, W] (inf on a miss).
      image: the true image [H, W, 3] in [0, 1] (white background); mask: the true object
        mask [H, W].

    Returns:
      {'mask_iou', 'psnr_in_mask', 'psnr', 'ssim'} (PSNR in the mask NaN when the masks do
      not overlap; SSIM NaN for views smaller than its 7 x 7 window). The whole view's
      PSNR and SSIM compare with NeRF's (`methods/nerf`).
    """
    pred_mask = np.isfinite(depth) & (depth > 0)
    inter, union = np.sum(pred_mask & mask), np.sum(pred_mask | mask)
    both = pred_mask & mask
    mse = float(np.mean((rgb[both] - image[both]) ** 2)) if both.any() else float("nan")
    mse_all = float(np.mean((rgb - image) ** 2))
    small = min(rgb.shape[:2]) < 7
    return {
        "mask_iou": float(inter / max(union, 1)),
        "psnr_in_mask": float(-10.0 * np.log10(max(mse, 1e-10))) if both.any() else float("nan"),
        "psnr": float(-10.0 * np.log10(max(mse_all, 1e-10))),
        "ssim": float("nan") if small else float(image_metrics.ssim(np.clip(rgb, 0.0, 1.0), image)),
    }
