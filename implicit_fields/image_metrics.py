"""Image metrics of Texture Fields: SSIM, PSNR, L1, and FID / Feature-L1 on Inception-v3 features.

Follows the original's `mesh2tex/utils/SSIM_L1/ssim_l1_score.py` (SSIM and pixel L1 per
image pair, averaged over the pairs), `mesh2tex/utils/FID/fid_score.py` (FID, pytorch-fid's
Frechet distance) and `mesh2tex/utils/FID/feature_l1.py` (mean absolute difference of the
pool3 features of image pairs), with the network of `mesh2tex/utils/FID/inception.py`.

Images are float arrays, channels last: (H, W) grey, (H, W, C) or a batch (N, H, W, C).

SSIM is skimage's `structural_similarity(a, b, win_size=7, channel_axis=-1,
data_range=...)`: 7x7 uniform windows, K1 = 0.01, K2 = 0.03, sample (co)variances
(normalised by N - 1, N = 49), each channel separately; the mean is over the windows that
lie inside the image (skimage filters the whole image, then crops (7 - 1) // 2 = 3
pixels at each border, which leaves exactly those windows, so its padding mode plays no
part), then over the channels. `ssim`, `ssim_batch`, `psnr` and `l1` take numpy arrays
(computed in float64, returning Python floats) or JAX arrays (computed with jax.numpy in
the arrays' float dtype, returning a JAX scalar; they also trace under `jit` and `grad`,
where the checks of values, not shapes, are skipped).

Data range. The original calls `skimage.measure.compare_ssim(fake, real,
multichannel=True)` on float64 images in [0, 1]; skimage 0.14 then takes the data range
from the dtype (-1..1 for floats), i.e. data_range = 2 (`ORIGINAL_SSIM_DATA_RANGE`). The
default here is data_range = 1, the range of the images (what skimage >= 0.19 requires
for floats). The constants C1 = (0.01 R)^2 and C2 = (0.03 R)^2 grow with R^2, so SSIM
with data_range = 2 is higher than with 1 for the same images; only
`ssim(..., data_range=ORIGINAL_SSIM_DATA_RANGE)` is comparable with the paper's numbers.

FID and Feature-L1 need the weights of torchvision's ImageNet Inception-v3
(`inception_v3(pretrained=True)`, the file `inception_v3_google-0cc3c7bd.pth`), which the
user supplies (`load_inception`); nothing is downloaded. `fid_and_feature_l1` without a
weights file returns no numbers, only a note saying why. See `inception_features` for the
preprocessing (the original's, including its normalisation) and `fid` for how the trace
of the matrix square root is computed.
"""

import os
import warnings
from typing import Any, Dict, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from implicit_fields import inception, torch_checkpoints

__all__ = [
    "ORIGINAL_SSIM_DATA_RANGE",
    "ssim",
    "ssim_batch",
    "psnr",
    "l1",
    "load_inception",
    "inception_features",
    "fid",
    "frechet_distance",
    "feature_l1",
    "fid_and_feature_l1",
]

ORIGINAL_SSIM_DATA_RANGE = 2.0
"""The data range the original's SSIM used for its [0, 1] float images (old skimage's dtype range).

Pass it as `data_range` for numbers comparable with the Texture Fields paper; the default
1.0 gives lower SSIMs for the same images (C1 and C2 scale with data_range^2).
"""

SSIM_WIN_SIZE = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03

INCEPTION_SIZE = 299
"""The original resizes every image bilinearly to 299x299 before the network."""

# The original's `normalize_input` (torchvision's `transform_input` formula, applied to [0, 1] images):
# x * (std / 0.5) + (mean - 0.5) / 0.5 per channel.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_NO_WEIGHTS_NOTE = (
    "not computed: no Inception-v3 weights file given (eval.inception_weights); FID and Feature-L1 "
    "need torchvision's ImageNet inception_v3 state dict (inception_v3_google-0cc3c7bd.pth, or a .npz "
    "of it), which is never downloaded"
)


# ----------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------


def _is_jax(x) -> bool:
    return isinstance(x, jax.Array)


def _as_float(x, what: str, fn: str, xp):
    """`x` as a float array of `xp` (float64 for numpy); refuses non-numeric and complex arrays."""
    if xp is np:
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
            raise ValueError(f"{fn}: {what} has dtype {x.dtype}; expected real numbers")
        return x.astype(np.float64, copy=False)
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise ValueError(f"{fn}: {what} has dtype {x.dtype}; expected real numbers")
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _check_finite(x, what: str, fn: str):
    if isinstance(x, jax.core.Tracer):
        return
    bad = int(np.sum(~np.isfinite(np.asarray(x))))
    if bad:
        raise ValueError(f"{fn}: {what} holds {bad} non-finite value(s) (NaN or inf)")


def _check_data_range(data_range, fn: str) -> float:
    try:
        value = float(data_range)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: data_range must be a positive number, got {data_range!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{fn}: data_range must be a positive finite number, got {data_range!r}")
    return value


def _pair(a, b, fn: str, ndims, shape_text: str):
    """(xp, a, b): both as float arrays of one library, same shape, ndim in `ndims`, finite."""
    xp = jnp if (_is_jax(a) or _is_jax(b)) else np
    a = _as_float(a, "a", fn, xp)
    b = _as_float(b, "b", fn, xp)
    if a.shape != b.shape:
        raise ValueError(f"{fn}: a and b differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim not in ndims:
        raise ValueError(f"{fn}: expected {shape_text}, got shape {tuple(a.shape)}")
    if a.size == 0:
        raise ValueError(f"{fn}: the images are empty (shape {tuple(a.shape)})")
    _check_finite(a, "a", fn)
    _check_finite(b, "b", fn)
    return xp, a, b


def _result(xp, value):
    return float(value) if xp is np else value


# ----------------------------------------------------------------------------
# SSIM, PSNR, L1
# ----------------------------------------------------------------------------


def _window_mean(x, win: int):
    """Mean over every win x win window inside the image: (..., H, W, C) -> (..., H-win+1, W-win+1, C)."""
    h, w = x.shape[-3], x.shape[-2]
    rows = sum(x[..., k : h - win + 1 + k, :, :] for k in range(win))
    return sum(rows[..., k : w - win + 1 + k, :] for k in range(win)) / (win * win)


def _ssim_per_image(xp, a, b, data_range: float):
    """Mean SSIM over the windows and channels of each image of (..., H, W, C) -> (...)."""
    win = SSIM_WIN_SIZE
    n = win * win
    cov_norm = n / (n - 1)
    ux, uy = _window_mean(a, win), _window_mean(b, win)
    uxx, uyy, uxy = _window_mean(a * a, win), _window_mean(b * b, win), _window_mean(a * b, win)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return xp.mean(s, axis=(-3, -2, -1))


def _check_image_size(shape, fn: str):
    h, w = shape[-3], shape[-2]
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise ValueError(
            f"{fn}: images of {h}x{w} pixels are smaller than the {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} SSIM window"
        )
    c = shape[-1]
    if not 1 <= c <= 4:
        raise ValueError(
            f"{fn}: images have {c} channels (shape {tuple(shape)}); expected 1 to 4, channels last"
            + ("; a batch of images goes to ssim_batch" if fn == "ssim" else "")
        )


def ssim(a, b, data_range: float = 1.0):
    """Mean SSIM of two images, as skimage's `structural_similarity(a, b, win_size=7, channel_axis=-1)`.

    Args:
      a, b: images of one shape, (H, W) grey or (H, W, C) with C <= 4 channels last,
        H, W >= 7; numpy (computed in float64) or JAX arrays.
      data_range: R of the constants C1 = (0.01 R)^2, C2 = (0.03 R)^2: 1 for images in
        [0, 1]; `ORIGINAL_SSIM_DATA_RANGE` (2) for numbers comparable with the original.

    Returns:
      the mean over the 7x7 windows inside the image and over the channels: a float
      (a JAX scalar for JAX inputs). 1 for identical images.

    Raises:
      ValueError: different shapes, another number of dimensions or channels, images
        smaller than 7x7, non-finite values, data_range not positive.
    """
    fn = "ssim"
    data_range = _check_data_range(data_range, fn)
    xp, a, b = _pair(a, b, fn, (2, 3), "an image (H, W) or (H, W, C)")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    _check_image_size(a.shape, fn)
    return _result(xp, _ssim_per_image(xp, a, b, data_range))


def ssim_batch(a, b, data_range: float = 1.0):
    """Mean over image pairs of `ssim` (the original's SSIM of a set: per-pair SSIMs averaged).

    Args:
      a, b: (N, H, W, C) image batches of one shape (grey as C = 1).
      data_range: as for `ssim`.

    Returns:
      a float (a JAX scalar for JAX inputs).

    Raises:
      ValueError: as `ssim`.
    """
    fn = "ssim_batch"
    data_range = _check_data_range(data_range, fn)
    xp, a, b = _pair(a, b, fn, (4,), "a batch of images (N, H, W, C)")
    _check_image_size(a.shape, fn)
    return _result(xp, xp.mean(_ssim_per_image(xp, a, b, data_range)))


def psnr(a, b, data_range: float = 1.0):
    """Peak signal-to-noise ratio 10 log10(data_range^2 / MSE), in dB.

    The MSE is over every element of the arrays: for a batch (N, H, W, C) that is the PSNR
    of the pooled MSE, not the mean of per-image PSNRs.

    Args:
      a, b: (H, W), (H, W, C) or (N, H, W, C) arrays of one shape.
      data_range: the images' range (1 for [0, 1]).

    Returns:
      a float (a JAX scalar for JAX inputs); +inf for identical images (MSE 0), never NaN.

    Raises:
      ValueError: different shapes, empty or non-finite inputs, data_range not positive.
    """
    fn = "psnr"
    data_range = _check_data_range(data_range, fn)
    xp, a, b = _pair(a, b, fn, (2, 3, 4), "(H, W), (H, W, C) or (N, H, W, C) images")
    mse = xp.mean((a - b) ** 2)
    if xp is np:
        return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))
    safe = jnp.where(mse > 0, mse, 1.0)
    return jnp.where(mse > 0, 10 * jnp.log10(data_range**2 / safe), jnp.inf)


def l1(a, b):
    """Mean absolute pixel difference, the original's L1 (per image pair, then averaged over pairs).

    Args:
      a, b: (H, W), (H, W, C) or a batch (N, H, W, C), of one shape.

    Returns:
      the mean |a - b| of an image; for a batch the mean of the per-image means. A float
      (a JAX scalar for JAX inputs).

    Raises:
      ValueError: different shapes, empty or non-finite inputs.
    """
    fn = "l1"
    xp, a, b = _pair(a, b, fn, (2, 3, 4), "(H, W), (H, W, C) or (N, H, W, C) images")
    d = xp.abs(a - b)
    per_image = xp.mean(d, axis=(1, 2, 3)) if d.ndim == 4 else d
    return _result(xp, xp.mean(per_image))


# ----------------------------------------------------------------------------
# Inception-v3 features
# ----------------------------------------------------------------------------


def load_inception(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Reads torchvision Inception-v3 weights for `inception_features`.

    Args:
      path: a PyTorch state dict (`.pth` / `.pt`, e.g. torchvision's
        `inception_v3_google-0cc3c7bd.pth`; needs torch) or a `.npz` of it (key -> array,
        torchvision's names), written where torch is with
        `np.savez("inception_v3.npz", **{k: v.numpy() for k, v in torch.load(pth).items()})`.
        `AuxLogits.*`, `fc.*` and `*.num_batches_tracked` may be present and are not used.

    Returns:
      the Flax variables {'params', 'batch_stats'} of `inception.InceptionV3`.

    Raises:
      torch_checkpoints.ConversionError (a ValueError): naming the file: not found,
        unreadable, a missing or unknown key, a key of the wrong shape, non-finite values.
    """
    state = torch_checkpoints.load_state_dict(path)
    return inception.from_state_dict(state, source=os.fspath(path))


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of torch's bilinear resize with align_corners=False (no antialiasing).

    `F.upsample(x, size, mode='bilinear')` of the original (torch 1.0: align_corners
    False): source = (i + 0.5) * n_in / n_out - 0.5, clamped at 0, linear between the two
    neighbours (the last pixel repeated at the far border).
    """
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(m, (np.arange(n_out), i1), w1)
    return m.astype(np.float32)


_NETWORK = inception.InceptionV3()


@jax.jit
def _features_jit(variables, images, rows, cols):
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", rows, images, precision=hi)
    x = jnp.einsum("pw,nowc->nopc", cols, x, precision=hi)
    scale = jnp.asarray([s / 0.5 for s in _IMAGENET_STD], jnp.float32).reshape(1, 1, 1, 3)
    shift = jnp.asarray([(m - 0.5) / 0.5 for m in _IMAGENET_MEAN], jnp.float32).reshape(1, 1, 1, 3)
    return _NETWORK.apply(variables, x * scale + shift)


def _check_images(images, what: str, fn: str) -> np.ndarray:
    images = np.asarray(images)
    if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        raise ValueError(f"{fn}: {what} has dtype {images.dtype}; expected float images in [0, 1]")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{fn}: {what} must be RGB images (N, H, W, 3), got shape {images.shape}")
    if min(images.shape[:3]) == 0:
        raise ValueError(f"{fn}: {what} is empty (shape {images.shape})")
    images = images.astype(np.float32)
    _check_finite(images, what, fn)
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{fn}: {what} has values in [{lo:g}, {hi:g}]; the Inception features take images in [0, 1] "
            "(as the original; scale or clip them first)"
        )
    return images


def inception_features(images, weights, batch_size: int = 64) -> np.ndarray:
    """The 2048-d pool3 Inception-v3 features of images, as the original computes them.

    Each image (float32, as the original feeds it) is resized bilinearly to 299x299 as
    torch's `F.upsample(..., mode='bilinear')` (align_corners False, no antialiasing),
    then every channel c becomes x * (std_c / 0.5) + (mean_c - 0.5) / 0.5 with ImageNet's
    mean and std (the original's `normalize_input`, torchvision's `transform_input`
    formula applied to [0, 1] images; kept as it is for comparable numbers), and goes
    through torchvision's blocks `Conv2d_1a_3x3` ... `Mixed_7c` and the average pool.

    Unlike the original, which drops the images after the last full batch
    (`n_batches = N // batch_size`), every image gets its features.

    Args:
      images: (N, H, W, 3) RGB in [0, 1], channels last (the original: (N, 3, H, W)).
      weights: what `load_inception` returns, or the path of a weights file.
      batch_size: images per network call (the last batch is padded, so that one
        compiled program serves every batch).

    Returns:
      (N, 2048) float64.

    Raises:
      ValueError: images not (N, H, W, 3), non-finite or outside [0, 1]; batch_size < 1;
        for a path, what `load_inception` raises.
    """
    fn = "inception_features"
    if isinstance(weights, (str, os.PathLike)):
        weights = load_inception(weights)
    if not isinstance(weights, Mapping) or not {"params", "batch_stats"} <= set(weights):
        raise ValueError(f"{fn}: weights must be what load_inception returns (or a file path)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive integer, got {batch_size!r}")
    images = _check_images(images, "images", fn)
    n, h, w, _ = images.shape
    rows, cols = _resize_matrix(h, INCEPTION_SIZE), _resize_matrix(w, INCEPTION_SIZE)
    size = min(int(batch_size), n)
    out = np.empty((n, inception.FEATURES), np.float64)
    for start in range(0, n, size):
        batch = images[start : start + size]
        count = len(batch)
        if count < size:
            batch = np.concatenate([batch, np.zeros((size - count, h, w, 3), np.float32)])
        out[start : start + count] = np.asarray(_features_jit(weights, batch, rows, cols))[:count]
    bad = int(np.sum(~np.isfinite(out)))
    if bad:
        raise ValueError(f"{fn}: the network gave {bad} non-finite feature value(s); check the weights")
    return out


# ----------------------------------------------------------------------------
# FID, Feature-L1
# ----------------------------------------------------------------------------


def _check_features(real, fake, fn: str, min_rows: int):
    out = []
    for what, x in (("real_features", real), ("fake_features", fake)):
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"{fn}: {what} has dtype {x.dtype}; expected real numbers")
        if x.ndim != 2:
            raise ValueError(f"{fn}: {what} must be (N, D) feature vectors, got shape {x.shape}")
        if x.shape[0] < min_rows or x.shape[1] == 0:
            raise ValueError(
                f"{fn}: {what} has shape {x.shape}; needs at least {min_rows} vector(s) of D >= 1"
            )
        x = x.astype(np.float64)
        _check_finite(x, what, fn)
        out.append(x)
    if out[0].shape[1] != out[1].shape[1]:
        raise ValueError(
            f"{fn}: real_features and fake_features differ in dimension: {out[0].shape} vs {out[1].shape}"
        )
    return out


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """`scipy.linalg.sqrtm(m, disp=False)[0]` of pytorch-fid, silent on every scipy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        warnings.filterwarnings(
            "ignore", message=".*`disp` argument is deprecated", category=DeprecationWarning
        )
        try:
            out = linalg.sqrtm(m, disp=False)
        except TypeError:  # A scipy without `disp`.
            out = linalg.sqrtm(m)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """pytorch-fid's `calculate_frechet_distance` (the original's), with scipy's `sqrtm`.

    d^2 = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2)). When the square
    root is not finite, eps is added to the diagonals of both covariances and it is taken
    again; an imaginary part (numerical error) is dropped when the diagonal's is within
    1e-3 of 0, as there.

    Raises:
      ValueError: shapes that do not match; an imaginary part above 1e-3 on the diagonal;
        a result that is still not finite.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"frechet_distance: the means differ in shape: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"frechet_distance: covariances of shapes {sigma1.shape}, {sigma2.shape} for means of {mu1.shape}"
        )
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"frechet_distance: the matrix square root has an imaginary component of {m:g}")
        covmean = covmean.real
    value = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
    if not np.isfinite(value):
        raise ValueError("frechet_distance: the distance is not finite (the covariances are degenerate)")
    return value


def _trace_sqrt_product_low_rank(centered1, sigma1, centered2, sigma2) -> float:
    """tr sqrtm(S1 S2) from the centred samples X_i (n_i x D) of S_i = X_i^T X_i / (n_i - 1), n_1 <= D.

    The non-zero eigenvalues of S1 S2 are those of (X1 A)(X1 A)^T / (n1 - 1) for any A with
    A A^T = S2, so the trace of the square root is the sum of the singular values of X1 A
    over sqrt(n1 - 1), with A = X2^T / sqrt(n2 - 1) when n2 <= D too (an n1 x n2 problem),
    else the symmetric square root of S2 (n1 x D). Exact, for one set of at most D vectors.
    """
    (x1, _), (x2, s2) = sorted([(centered1, sigma1), (centered2, sigma2)], key=lambda p: len(p[0]))
    n1, n2 = len(x1), len(x2)
    if n2 <= x2.shape[1]:
        s = np.linalg.svd(x1 @ x2.T, compute_uv=False) / np.sqrt(n2 - 1)
    else:
        w, v = np.linalg.eigh(s2)
        s = np.linalg.svd(x1 @ ((v * np.sqrt(np.clip(w, 0, None))) @ v.T), compute_uv=False)
    return float(np.sum(s) / np.sqrt(n1 - 1))


def fid(real_features, fake_features) -> float:
    """Frechet Inception distance between two sets of features (the original's FID).

    Means and covariances (`np.cov`, N - 1) as pytorch-fid. With at least D + 1 vectors in
    each set (D = 2048: both covariances of full rank) the distance is pytorch-fid's
    (`frechet_distance`, scipy's `sqrtm`). With fewer in a set, its covariance is singular,
    where `sqrtm` of the product is slow (about 14 s for D = 2048 on 2 cores) and
    inaccurate (-0.007 instead of 0 for two equal sets of 2 vectors); there the trace of
    its square root is computed exactly from the samples by singular values
    (`_trace_sqrt_product_low_rank`): the same quantity, without sqrtm's error. FID from
    few images is strongly biased upwards either way; compare numbers from equal counts.

    Args:
      real_features, fake_features: (N1, D) and (N2, D), N1, N2 >= 2.

    Returns:
      the distance, a float (can be slightly negative from rounding for equal sets).

    Raises:
      ValueError: shapes, fewer than 2 vectors in a set, non-finite values.
    """
    fn = "fid"
    real, fake = _check_features(real_features, fake_features, fn, 2)
    # The original's order: (fake, real).
    mu1, mu2 = fake.mean(axis=0), real.mean(axis=0)
    sigma1, sigma2 = np.cov(fake, rowvar=False), np.cov(real, rowvar=False)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if min(len(fake), len(real)) > fake.shape[1]:
        return frechet_distance(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    tr_covmean = _trace_sqrt_product_low_rank(fake - mu1, sigma1, real - mu2, sigma2)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def feature_l1(real_features, fake_features) -> float:
    """The original's Feature-L1: `np.mean(np.abs(feat_fake - feat_real))` over pairs and dimensions.

    Args:
      real_features, fake_features: (N, D) of one shape; row i of both is one image pair.

    Returns:
      a float.

    Raises:
      ValueError: different shapes, non-finite values.
    """
    fn = "feature_l1"
    real, fake = _check_features(real_features, fake_features, fn, 1)
    if real.shape != fake.shape:
        raise ValueError(
            f"{fn}: real_features and fake_features must be pairs of one shape: {real.shape} vs {fake.shape}"
        )
    return float(np.mean(np.abs(fake - real)))


def fid_and_feature_l1(
    fake_images, real_images, weights_path: Optional[Union[str, os.PathLike]], batch_size: int = 64
) -> Dict[str, Any]:
    """FID and Feature-L1 of generated images against the real ones (pairs: same view of the same object).

    Args:
      fake_images, real_images: (N, H, W, 3) RGB in [0, 1], of one shape; image i of both
        is a pair.
      weights_path: torchvision Inception-v3 weights (see `load_inception`), or None.
      batch_size: images per network call.

    Returns:
      {'fid': float, 'feature_l1': float, 'note': None}. No number stands in for one that
      cannot be computed: with `weights_path` None, {'fid': None, 'feature_l1': None,
      'note': '<why not>'}; with a single pair, 'fid' is None (a covariance needs two
      vectors) and the note says so.

    Raises:
      ValueError: images (see `inception_features`; different shapes) or the weights file
        (see `load_inception`).
    """
    fn = "fid_and_feature_l1"
    fake = _check_images(fake_images, "fake_images", fn)
    real = _check_images(real_images, "real_images", fn)
    if fake.shape != real.shape:
        raise ValueError(
            f"{fn}: fake_images and real_images must be pairs of one shape: {fake.shape} vs {real.shape}"
        )
    if weights_path is None:
        return {"fid": None, "feature_l1": None, "note": _NO_WEIGHTS_NOTE}
    weights = load_inception(weights_path)
    features = inception_features(np.concatenate([fake, real]), weights, batch_size=batch_size)
    fake_features, real_features = features[: len(fake)], features[len(fake) :]
    if len(fake) < 2:
        note = f"fid not computed: it needs at least 2 image pairs, got {len(fake)}"
        return {"fid": None, "feature_l1": feature_l1(real_features, fake_features), "note": note}
    return {
        "fid": fid(real_features, fake_features),
        "feature_l1": feature_l1(real_features, fake_features),
        "note": None,
    }
