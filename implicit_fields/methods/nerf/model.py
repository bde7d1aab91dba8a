"""NeRF's model: the MLP, coarse-to-fine rendering of rays and the loss.

As jaxnerf (`nerf/models.py`, `nerf/model_utils.py`; Mildenhall et al., ECCV 2020),
written with the library's `volume` functions:

* `NeRFMLP`: 8 x 256 ReLU layers on the encoded point (10 octaves), the input
  concatenated again after layer 4; the density from the trunk (ReLU); a 256-wide
  bottleneck concatenated with the encoded view direction (4 octaves), one layer of
  128, RGB (sigmoid). Glorot-uniform weights, zero biases (flax's defaults, as
  jaxnerf).
* `NeRF`: separate coarse and fine MLPs. A ray's coarse samples are stratified in
  [near, far]; the fine samples are drawn from the coarse weights (`volume.sample_pdf`
  on the midpoints, without the first and last weight, as jaxnerf) and the fine MLP
  evaluates the sorted union (64 + 128 = 192).
* The loss is MSE(coarse) + MSE(fine) over the rays (jaxnerf `train.py`).

Points enter the networks in the field's object space (the padded unit cube of every
field of the library), directions as world-space unit vectors. Samples are only taken
on each ray's [near, far]; rays without an interval (missing the cube) are background.
"""

import functools
from typing import Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields import render, volume

__all__ = [
    "NeRFMLP",
    "NeRF",
    "ray_bounds",
    "render_rays",
    "nerf_loss",
    "create_renderer",
    "ray_max_density",
    "density_fn",
]


class NeRFMLP(nn.Module):
    """jaxnerf's `MLP` on encoded inputs.

    Attributes:
      net_depth, net_width: the trunk (8 x 256).
      skip_layer: the encoded point is concatenated after layers skip_layer, 2 skip_layer, ...
      net_depth_condition, net_width_condition: the view branch (1 x 128).
      deg_point, deg_view: octaves of the encodings (10, 4).
      use_viewdirs: condition the colour on the view direction.
    """

    net_depth: int = 8
    net_width: int = 256
    skip_layer: int = 4
    net_depth_condition: int = 1
    net_width_condition: int = 128
    deg_point: int = 10
    deg_view: int = 4
    use_viewdirs: bool = True

    @nn.compact
    def __call__(self, points, viewdirs):
        """Args:
          points: float [..., 3] in object space.
          viewdirs: float [..., 3] unit view directions (broadcast to points' shape).

        Returns:
          (raw_rgb [..., 3], raw_sigma [...]): pre-activation colour and density.
        """
        inputs = volume.positional_encoding(points, self.deg_point)
        x = inputs
        for i in range(self.net_depth):
            x = nn.relu(nn.Dense(self.net_width, name=f"trunk_{i}")(x))
            if i % self.skip_layer == 0 and i > 0:
                x = jnp.concatenate([x, inputs], axis=-1)
        raw_sigma = nn.Dense(1, name="sigma")(x)[..., 0]
        if self.use_viewdirs:
            bottleneck = nn.Dense(self.net_width, name="bottleneck")(x)
            cond = volume.positional_encoding(jnp.broadcast_to(viewdirs, points.shape), self.deg_view)
            x = jnp.concatenate([bottleneck, cond], axis=-1)
            for i in range(self.net_depth_condition):
                x = nn.relu(nn.Dense(self.net_width_condition, name=f"view_{i}")(x))
        raw_rgb = nn.Dense(3, name="rgb")(x)
        return raw_rgb, raw_sigma


_MLP_FIELDS = (
    "net_depth",
    "net_width",
    "skip_layer",
    "net_depth_condition",
    "net_width_condition",
    "deg_point",
    "deg_view",
    "use_viewdirs",
)


class NeRF(nn.Module):
    """The coarse and the fine MLP (separate weights, as jaxnerf); `fine` False: coarse only.

    Attributes: those of `NeRFMLP` (both levels share them) and `fine`.
    """

    net_depth: int = 8
    net_width: int = 256
    skip_layer: int = 4
    net_depth_condition: int = 1
    net_width_condition: int = 128
    deg_point: int = 10
    deg_view: int = 4
    use_viewdirs: bool = True
    fine: bool = True

    def setup(self):
        mlp = {name: getattr(self, name) for name in _MLP_FIELDS}
        self.coarse_mlp = NeRFMLP(**mlp)
        if self.fine:
            self.fine_mlp = NeRFMLP(**mlp)

    def __call__(self, points, viewdirs, level: str = "coarse"):
        """(rgb [..., 3] in [0, 1], density sigma [...] >= 0) of one level's network."""
        mlp = self.fine_mlp if level == "fine" else self.coarse_mlp
        raw_rgb, raw_sigma = mlp(points, viewdirs)
        return jax.nn.sigmoid(raw_rgb), nn.relu(raw_sigma)

    def init_all(self, key):
        """Initialises both levels."""
        p = jnp.zeros((1, 3), jnp.float32)

        def both(module, points, viewdirs):
            out = module(points, viewdirs, "coarse")
            if module.fine:
                out = module(points, viewdirs, "fine")
            return out

        return self.init(key, p, p, method=both)


def ray_bounds(origins, directions, padding: float, near: float = 0.0, far: float = 0.0):
    """Each ray's sampling interval: (near [N], far [N], valid [N]).

    With `near` = `far` = 0 the interval is the ray's intersection with the padded cube
    (`render.intersect_box`; rays that miss it are not valid); else the fixed camera-depth
    interval [near, far] (valid where the ray is finite).
    """
    if near == 0.0 and far == 0.0:
        valid = render.valid_rays(origins, directions)
        o = jnp.where(valid[:, None], origins, 0.0)
        w = jnp.where(valid[:, None], directions, 1.0)
        d_near, d_far, hit = render.intersect_box(o, w, padding)
        return d_near, d_far, hit & valid & (d_far > d_near)
    n = origins.shape[0]
    valid = render.valid_rays(origins, directions)
    return jnp.full((n,), near, origins.dtype), jnp.full((n,), far, origins.dtype), valid


def _level(model, params, origins, directions, viewdirs, t, valid, level, white_background):
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]
    vd = jnp.broadcast_to(viewdirs[:, None, :], points.shape)
    rgb, sigma = model.apply({"params": params}, points, vd, level)
    sigma = jnp.where(valid[:, None], sigma, 0.0)  # No interval: nothing to see (background).
    return volume.composite(sigma, rgb, t, directions, white_background=white_background)


def render_rays(
    model: NeRF,
    params,
    origins,
    directions,
    key: Optional[jax.Array],
    *,
    num_coarse: int,
    num_fine: int,
    padding: float,
    near: float = 0.0,
    far: float = 0.0,
    white_background: bool = True,
) -> Dict[str, Dict[str, jax.Array]]:
    """Renders rays with the coarse network and, with `num_fine` > 0, the fine one.

    Args:
      model, params: the `NeRF` module and its parameters.
      origins, directions: float [N, 3]; the ray parameter is in units of |directions|
        (camera depth for our cameras).
      key: PRNG key for stratified and inverse-CDF sampling (training), or None for
        midpoints and quantile midpoints (rendering).
      num_coarse, num_fine: samples per ray.
      padding: the field's cube padding; near, far: see `ray_bounds`.

    Returns:
      {'coarse': composite dict, 'fine': composite dict (absent without fine samples)},
      each with rgb, depth, opacity, weights, plus 't' (the samples' distances).
    """
    valid = render.valid_rays(origins, directions)
    o = jnp.where(valid[:, None], origins, 0.0)
    w = jnp.where(valid[:, None], directions, 1.0)
    t_near, t_far, inside = ray_bounds(o, w, padding, near, far)
    viewdirs = w / jnp.linalg.norm(w, axis=-1, keepdims=True)
    k_coarse, k_fine = jax.random.split(key) if key is not None else (None, None)
    t = volume.sample_stratified(k_coarse, t_near, t_far, num_coarse)
    out = {"coarse": dict(_level(model, params, o, w, viewdirs, t, inside, "coarse", white_background), t=t)}
    if num_fine:
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        t_fine = volume.sample_pdf(k_fine, mids, out["coarse"]["weights"][:, 1:-1], num_fine)
        t_all = jnp.sort(jnp.concatenate([t, t_fine], axis=-1), axis=-1)
        out["fine"] = dict(
            _level(model, params, o, w, viewdirs, t_all, inside, "fine", white_background), t=t_all
        )
    return out


def nerf_loss(model: NeRF, params, batch, key, **render_kwargs):
    """MSE(coarse) + MSE(fine) against the rays' colours (jaxnerf), and the PSNRs.

    Returns:
      (loss, metrics: mse and psnr of each level).
    """
    out = render_rays(model, params, batch["origins"], batch["directions"], key, **render_kwargs)
    metrics, loss = {}, 0.0
    for level, res in out.items():
        mse = jnp.mean((res["rgb"] - batch["rgb"]) ** 2)
        loss = loss + mse
        metrics[f"mse_{level}"] = mse
        metrics[f"psnr_{level}"] = -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))
    return loss, metrics


def ray_max_density(model: NeRF, params, origins, directions, **render_kwargs):
    """The largest density along each ray at its rendering samples (the finest level's), [N].

    A ray crosses the level set {sigma > s} exactly when its maximum exceeds s, so these
    maxima give the silhouettes of every level set at once (`generation.auto_threshold`).
    Rays without an interval get 0.
    """
    out = render_rays(model, params, origins, directions, None, **render_kwargs)
    level = "fine" if "fine" in out else "coarse"
    t = out[level]["t"]
    valid = render.valid_rays(origins, directions)
    o = jnp.where(valid[:, None], origins, 0.0)
    w = jnp.where(valid[:, None], directions, 1.0)
    _, _, inside = ray_bounds(o, w, render_kwargs["padding"], render_kwargs["near"], render_kwargs["far"])
    points = o[:, None, :] + t[..., None] * w[:, None, :]
    _, sigma = model.apply({"params": params}, points, jnp.zeros_like(points), level)
    return jnp.where(inside, jnp.max(sigma, axis=-1), 0.0)


def density_fn(model: NeRF, params, level: str = "fine"):
    """`points [N, 3] -> sigma [N]` of one level (the view direction does not change it)."""

    def fn(points):
        _, sigma = model.apply({"params": params}, points, jnp.zeros_like(points), level)
        return sigma

    return fn


def create_renderer(model: NeRF, *, chunk: int = 4096, **render_kwargs):
    """A host-side renderer of many rays in jitted chunks.

    Returns:
      `render(params, origins [N, 3], directions [N, 3]) -> dict of numpy arrays`:
      rgb [N, 3], depth [N] (the expected distance divided by the opacity: the depth of
      the visible part; inf where the opacity is below 0.5) and opacity [N], of the
      finest level.
    """

    @jax.jit
    def render_chunk(params, o, w):
        out = render_rays(model, params, o, w, None, **render_kwargs)
        res = out["fine"] if "fine" in out else out["coarse"]
        acc = res["opacity"]
        depth = jnp.where(acc >= 0.5, res["depth"] / jnp.maximum(acc, 1e-10), jnp.inf)
        return res["rgb"], depth, acc

    @functools.wraps(render_chunk)
    def render_all(params, origins, directions):
        n = origins.shape[0]
        pad = (-n) % chunk
        o = np.concatenate([origins, np.repeat(origins[-1:], pad, 0)]).astype(np.float32)
        w = np.concatenate([directions, np.repeat(directions[-1:], pad, 0)]).astype(np.float32)
        parts = [
            jax.device_get(render_chunk(params, o[i : i + chunk], w[i : i + chunk]))
            for i in range(0, n + pad, chunk)
        ]
        rgb, depth, acc = (np.concatenate([p[k] for p in parts])[:n] for k in range(3))
        return {"rgb": rgb, "depth": depth, "opacity": acc}

    return render_all
