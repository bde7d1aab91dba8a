"""Image metrics of Texture Fields: SSIM against a direct windowed computation (and skimage when
installed), PSNR and L1 against analytic values, FID against an eigendecomposition reference,
and the Inception-v3 feature path on random weights written as a torchvision-named `.npz`."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicit_fields import image_metrics, inception
from implicit_fields.torch_checkpoints import ConversionError

HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None
HAS_TORCHVISION = (
    importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None
)


def _pair(shape, seed=0, noise=0.2):
    """Two correlated images in [0, 1] (SSIM well away from 0 and 1)."""
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    return a, np.clip(a + noise * rng.normal(size=shape), 0, 1)


def _ssim_direct(a, b, data_range):
    """SSIM by its definition: every 7x7 window inside the image, sample (co)variances, per channel."""
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    h, w, c = a.shape
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for ch in range(c):
        for i in range(h - 6):
            for j in range(w - 6):
                x = a[i : i + 7, j : j + 7, ch].ravel()
                y = b[i : i + 7, j : j + 7, ch].ravel()
                mx, my = x.mean(), y.mean()
                vx, vy = x.var(ddof=1), y.var(ddof=1)
                cxy = np.sum((x - mx) * (y - my)) / (x.size - 1)
                values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


# ----------------------------------------------------------------------------
# SSIM
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 7), (9, 11), (7, 7, 3), (16, 12, 3), (20, 25, 1)])
@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_of_identical_images_is_one(shape, data_range):
    a, _ = _pair(shape)
    assert image_metrics.ssim(a, a.copy(), data_range) == pytest.approx(1.0, abs=1e-12)
    batch = np.stack([a, a]) if a.ndim == 3 else np.stack([a, a])[..., None]
    assert image_metrics.ssim_batch(batch, batch.copy(), data_range) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(9, 11, 3), (7, 8, 3), (12, 10), (10, 9, 1)])
@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_matches_the_direct_windowed_formula(shape, data_range):
    a, b = _pair(shape, seed=len(shape) + shape[0])
    expected = _ssim_direct(a, b, data_range)
    assert 0.2 < expected < 0.99
    assert image_metrics.ssim(a, b, data_range) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_ssim_with_the_original_data_range_is_higher(noise):
    a, b = _pair((16, 16, 3), noise=noise)
    default = image_metrics.ssim(a, b)
    original = image_metrics.ssim(a, b, data_range=image_metrics.ORIGINAL_SSIM_DATA_RANGE)
    assert default < original < 1
    assert original == pytest.approx(_ssim_direct(a, b, 2.0), abs=1e-12)


@pytest.mark.parametrize("shape", [(3, 9, 11, 3), (2, 8, 7, 1)])
def test_ssim_batch_is_the_mean_of_per_image_ssims(shape):
    a, b = _pair(shape, seed=3)
    per_image = [_ssim_direct(x, y, 1.0) for x, y in zip(a, b)]
    assert image_metrics.ssim_batch(a, b) == pytest.approx(np.mean(per_image), abs=1e-12)


@pytest.mark.parametrize("shape", [(9, 11, 3), (12, 10)])
def test_ssim_on_jax_arrays_matches_numpy_and_traces(shape):
    a, b = _pair(shape, seed=5)
    ja, jb = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    expected = image_metrics.ssim(a, b)
    assert isinstance(image_metrics.ssim(ja, jb), jax.Array)
    assert float(image_metrics.ssim(ja, jb)) == pytest.approx(expected, abs=1e-5)
    value, grad = jax.jit(jax.value_and_grad(image_metrics.ssim))(ja, jb)
    assert float(value) == pytest.approx(expected, abs=1e-5)
    assert grad.shape == ja.shape and bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.skipif(not HAS_SKIMAGE, reason="scikit-image is not installed")
@pytest.mark.parametrize("shape", [(9, 11, 3), (32, 40, 3), (7, 7, 3), (20, 20)])
@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_matches_skimage(shape, data_range):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = _pair(shape, seed=7)
    channel = {"channel_axis": -1} if len(shape) == 3 else {}
    expected = structural_similarity(a, b, win_size=7, data_range=data_range, **channel)
    assert image_metrics.ssim(a, b, data_range) == pytest.approx(expected, abs=1e-12)
    assert image_metrics.psnr(a, b, data_range) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=data_range), abs=1e-10
    )


# ----------------------------------------------------------------------------
# PSNR, L1
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.1, 0.25, -0.05])
@pytest.mark.parametrize("data_range", [1.0, 2.0])
@pytest.mark.parametrize("shape", [(8, 8), (5, 6, 3), (2, 4, 4, 3)])
def test_psnr_of_a_constant_offset(offset, data_range, shape):
    a, _ = _pair(shape)
    expected = 10 * np.log10(data_range**2 / offset**2)
    assert image_metrics.psnr(a, a + offset, data_range) == pytest.approx(expected, abs=1e-9)
    assert float(image_metrics.psnr(jnp.asarray(a), jnp.asarray(a + offset), data_range)) == pytest.approx(
        expected, abs=1e-3
    )


@pytest.mark.parametrize("shape", [(8, 8), (5, 6, 3), (2, 4, 4, 3)])
def test_psnr_of_identical_images_is_inf(shape):
    a, _ = _pair(shape)
    assert image_metrics.psnr(a, a.copy()) == np.inf
    assert float(image_metrics.psnr(jnp.asarray(a), jnp.asarray(a))) == np.inf


@pytest.mark.parametrize("offset", [0.1, -0.3])
@pytest.mark.parametrize("shape", [(8, 8), (5, 6, 3)])
def test_l1_of_an_image_is_the_offset(offset, shape):
    a, _ = _pair(shape)
    assert image_metrics.l1(a, a + offset) == pytest.approx(abs(offset), abs=1e-12)
    assert float(image_metrics.l1(jnp.asarray(a), jnp.asarray(a + offset))) == pytest.approx(
        abs(offset), abs=1e-6
    )


@pytest.mark.parametrize("offsets", [(0.1, -0.3), (0.0, 0.2, 0.5)])
def test_l1_of_a_batch_is_the_mean_of_per_image_means(offsets):
    a, _ = _pair((len(offsets), 4, 5, 3))
    b = a + np.asarray(offsets)[:, None, None, None]
    assert image_metrics.l1(a, b) == pytest.approx(np.mean(np.abs(offsets)), abs=1e-12)


# ----------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------


def _with(value, index=(1, 2)):
    a, _ = _pair((9, 9, 3))
    a[index] = value
    return a


GOOD = _pair((9, 9, 3))[0]


@pytest.mark.parametrize("fn", ["ssim", "psnr", "l1"])
@pytest.mark.parametrize(
    "a, b, match",
    [
        (GOOD, GOOD[:8], "differ in shape"),
        (_with(np.nan), GOOD, "a holds 3 non-finite"),
        (GOOD, _with(np.inf), "b holds 3 non-finite"),
        (GOOD, _with(-np.inf, (0, 0, 0)), "b holds 1 non-finite"),
        (GOOD.astype(complex), GOOD, "dtype complex"),
        (np.zeros(9), np.zeros(9), "expected"),
    ],
)
def test_bad_images_raise(fn, a, b, match):
    with pytest.raises(ValueError, match=f"{fn}: .*{match}"):
        getattr(image_metrics, fn)(a, b)


@pytest.mark.parametrize(
    "shape, match",
    [((6, 9, 3), "6x9 pixels are smaller than the 7x7"), ((9, 3), "9x3 pixels"), ((9, 9, 5), "5 channels")],
)
def test_ssim_refuses_small_images_and_odd_channels(shape, match):
    with pytest.raises(ValueError, match=f"ssim: .*{match}"):
        image_metrics.ssim(np.zeros(shape), np.zeros(shape))
    batch = (2, *shape) if len(shape) == 3 else (2, *shape, 1)
    with pytest.raises(ValueError, match=f"ssim_batch: .*{match}"):
        image_metrics.ssim_batch(np.zeros(batch), np.zeros(batch))


@pytest.mark.parametrize("fn", ["ssim", "psnr"])
@pytest.mark.parametrize("data_range", [0, -1.0, np.nan, np.inf, "x", None])
def test_bad_data_range_raises(fn, data_range):
    with pytest.raises(ValueError, match=f"{fn}: data_range must be a positive"):
        getattr(image_metrics, fn)(GOOD, GOOD, data_range)


@pytest.mark.parametrize("shape", [(9, 9, 3), (9, 9)])
def test_ssim_batch_wants_a_batch(shape):
    with pytest.raises(ValueError, match=r"ssim_batch: expected a batch of images \(N, H, W, C\)"):
        image_metrics.ssim_batch(np.zeros(shape), np.zeros(shape))


# ----------------------------------------------------------------------------
# FID, Feature-L1
# ----------------------------------------------------------------------------


def _fid_reference(real, fake):
    """FID with tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)) (symmetric eigendecompositions only)."""
    s1, s2 = np.atleast_2d(np.cov(fake, rowvar=False)), np.atleast_2d(np.cov(real, rowvar=False))
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root @ s2 @ root)
    diff = fake.mean(0) - real.mean(0)
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(lam, 0, None)))


# Both sets of at most D vectors, one of more than D, both of more than D (pytorch-fid's sqrtm).
@pytest.mark.parametrize(
    "n_real, n_fake, dim",
    [(5, 7, 16), (2, 2, 64), (3, 50, 8), (40, 4, 10), (30, 40, 4), (60, 25, 6)],
)
def test_fid_matches_the_eigendecomposition_reference(n_real, n_fake, dim):
    rng = np.random.default_rng(dim)
    real = rng.normal(size=(n_real, dim)) @ rng.normal(size=(dim, dim))
    fake = rng.normal(size=(n_fake, dim)) * 1.5 + 0.3
    expected = _fid_reference(real, fake)
    assert expected > 1
    assert image_metrics.fid(real, fake) == pytest.approx(expected, rel=1e-8)
    assert image_metrics.fid(real, real.copy()) == pytest.approx(0.0, abs=1e-9 * np.trace(np.cov(real.T)))


@pytest.mark.parametrize("m1, s1, m2, s2", [(0.0, 1.0, 1.0, 4.0), (2.0, 0.25, -1.0, 0.25)])
def test_fid_of_one_dimensional_gaussians(m1, s1, m2, s2):
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 400))
    real = ((z1 - z1.mean()) / z1.std(ddof=1) * np.sqrt(s1) + m1)[:, None]
    fake = ((z2 - z2.mean()) / z2.std(ddof=1) * np.sqrt(s2) + m2)[:, None]
    expected = (m1 - m2) ** 2 + (np.sqrt(s1) - np.sqrt(s2)) ** 2
    assert image_metrics.fid(real, fake) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("dim", [3, 12])
def test_frechet_distance_is_pytorch_fids_with_sqrtm(dim):
    rng = np.random.default_rng(dim)
    real, fake = rng.normal(size=(50, dim)), rng.normal(size=(40, dim)) * 2
    value = image_metrics.frechet_distance(fake.mean(0), np.cov(fake.T), real.mean(0), np.cov(real.T))
    assert value == pytest.approx(_fid_reference(real, fake), rel=1e-8)


@pytest.mark.parametrize("offset", [0.5, -2.0])
def test_feature_l1_of_an_offset(offset):
    real = np.random.default_rng(0).normal(size=(3, 10))
    assert image_metrics.feature_l1(real, real + offset) == pytest.approx(abs(offset), abs=1e-12)
    assert image_metrics.feature_l1(real, real) == 0.0


@pytest.mark.parametrize("fn", ["fid", "feature_l1"])
@pytest.mark.parametrize(
    "real, fake, match",
    [
        (np.zeros((3, 4)), np.zeros((3, 5)), "real_features and fake_features differ in dimension"),
        (np.zeros((3,)), np.zeros((3, 4)), "real_features must be \\(N, D\\)"),
        (np.zeros((3, 4)), np.full((3, 4), np.nan), "fake_features holds 12 non-finite"),
        (np.zeros((0, 4)), np.zeros((3, 4)), "real_features has shape \\(0, 4\\)"),
    ],
)
def test_bad_features_raise(fn, real, fake, match):
    with pytest.raises(ValueError, match=f"{fn}: {match}"):
        getattr(image_metrics, fn)(real, fake)


@pytest.mark.parametrize("n_real, n_fake", [(1, 5), (5, 1)])
def test_fid_needs_two_vectors_per_set(n_real, n_fake):
    with pytest.raises(ValueError, match="fid: .*needs at least 2"):
        image_metrics.fid(np.zeros((n_real, 4)), np.ones((n_fake, 4)))


@pytest.mark.parametrize("n_real, n_fake", [(2, 3), (4, 1)])
def test_feature_l1_needs_pairs(n_real, n_fake):
    with pytest.raises(ValueError, match="feature_l1: .*pairs of one shape"):
        image_metrics.feature_l1(np.zeros((n_real, 4)), np.ones((n_fake, 4)))


# ----------------------------------------------------------------------------
# Inception-v3 features on random weights
# ----------------------------------------------------------------------------

# torchvision's inception_v3 has 27,161,264 parameters; fc (2048 -> 1000) and AuxLogits are not
# part of the pool3 features.
TORCHVISION_PARAMS = 27_161_264
FC_PARAMS = 2048 * 1000 + 1000
AUX_PARAMS = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)

# Flax leaf -> torchvision suffix (written here, independently of the module's own mapping).
_TORCH_NAMES = {
    ("conv", "kernel"): "conv.weight",
    ("bn", "scale"): "bn.weight",
    ("bn", "bias"): "bn.bias",
    ("bn", "mean"): "bn.running_mean",
    ("bn", "var"): "bn.running_var",
}


def _random_variables(seed=0):
    """Flax variables of InceptionV3 (structure from its init) with random values: He-normal
    kernels and batch norms near identity, so that features depend on the image."""
    shapes = jax.eval_shape(inception.InceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:3])), leaf.shape).astype(np.float32)
        low, high = {"scale": (0.8, 1.2), "var": (0.8, 1.2), "bias": (-0.1, 0.1), "mean": (-0.1, 0.1)}[name]
        return rng.uniform(low, high, leaf.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _torchvision_state(variables):
    """The torchvision state dict of Flax variables: names joined by '.', kernels (kh, kw, in, out) ->
    (out, in, kh, kw); plus what a real torchvision file also holds (fc, num_batches_tracked)."""
    state = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables[collection])[0]:
            names = [p.key for p in path]
            key = ".".join(names[:-2] + [_TORCH_NAMES[tuple(names[-2:])]])
            state[key] = np.transpose(leaf, (3, 2, 0, 1)) if names[-1] == "kernel" else np.asarray(leaf)
            if key.endswith("running_var"):
                state[key[: -len("running_var")] + "num_batches_tracked"] = np.array(0, np.int64)
    state["fc.weight"] = np.zeros((1000, 2048), np.float32)
    state["fc.bias"] = np.zeros(1000, np.float32)
    return state


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    variables = _random_variables()
    state = _torchvision_state(variables)
    path = tmp_path_factory.mktemp("inception") / "inception_v3.npz"
    np.savez(path, **state)
    return variables, state, path


def test_the_network_has_torchvisions_parameters(random_weights):
    variables, state, _ = random_weights
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    assert n_params == TORCHVISION_PARAMS - FC_PARAMS - AUX_PARAMS
    convs = [k for k in state if k.endswith("conv.weight")]
    assert len(convs) == 94  # torchvision's 96 BasicConv2d less the 2 of AuxLogits.
    assert state["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)


def test_load_inception_reads_the_torchvision_names_back(random_weights):
    variables, state, path = random_weights
    loaded = image_metrics.load_inception(path)
    flat, tree = jax.tree_util.tree_flatten(loaded)
    assert tree == jax.tree_util.tree_structure(variables)
    for got, want in zip(flat, jax.tree.leaves(variables)):
        np.testing.assert_array_equal(np.asarray(got), want)
    written = inception.to_state_dict(loaded)
    assert len(written) == 470
    for key, value in written.items():
        np.testing.assert_array_equal(value, state[key])


def test_fid_and_feature_l1_on_random_weights(random_weights):
    _, _, path = random_weights
    rng = np.random.default_rng(0)
    real = rng.random((2, 32, 32, 3)).astype(np.float32)
    fake = np.stack([np.full((32, 32, 3), 0.5, np.float32), real[0] ** 2])

    same = image_metrics.fid_and_feature_l1(real, real.copy(), path)
    assert same["feature_l1"] == 0.0 and same["note"] is None
    assert abs(same["fid"]) < 1e-6

    # In batches of 3 (the second padded with 2 blank images); fid_and_feature_l1 runs one batch of 4.
    weights = image_metrics.load_inception(path)
    features = image_metrics.inception_features(np.concatenate([fake, real]), weights, batch_size=3)
    assert features.shape == (4, 2048) and features.dtype == np.float64
    assert np.all(np.isfinite(features))
    assert np.abs(features[0] - features[2]).mean() > 1e-3 * np.abs(features).mean()  # depends on the image

    other = image_metrics.fid_and_feature_l1(fake, real, path)
    assert other["fid"] > 0 and other["feature_l1"] > 0
    assert other["feature_l1"] == pytest.approx(np.mean(np.abs(features[:2] - features[2:])), rel=1e-5)
    # Two vectors per set: S = u u^T with u = (f_1 - f_0) / sqrt(2), and tr sqrt(S_fake S_real) = |u . v|.
    u, v = (features[1] - features[0]) / np.sqrt(2), (features[3] - features[2]) / np.sqrt(2)
    mean_diff = (features[0] + features[1] - features[2] - features[3]) / 2
    expected = mean_diff @ mean_diff + u @ u + v @ v - 2 * abs(u @ v)
    assert other["fid"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("offset", [0.0, 0.25])
def test_one_pair_gives_feature_l1_and_no_fid(monkeypatch, offset):
    # The network is replaced by the first 8 pixel values (it is tested above): only the dict's logic here.
    monkeypatch.setattr(image_metrics, "load_inception", lambda path: {"params": {}, "batch_stats": {}})
    monkeypatch.setattr(
        image_metrics,
        "inception_features",
        lambda images, weights, batch_size: images.reshape(len(images), -1)[:, :8],
    )
    real = np.full((1, 8, 8, 3), 0.5)
    result = image_metrics.fid_and_feature_l1(real + offset, real, "weights.npz")
    assert result["fid"] is None and result["feature_l1"] == pytest.approx(offset)
    assert result["note"] == "fid not computed: it needs at least 2 image pairs, got 1"


@pytest.mark.parametrize("n", [1, 2, 5])
def test_without_weights_there_are_no_numbers(n):
    images = np.random.default_rng(n).random((n, 16, 16, 3))
    result = image_metrics.fid_and_feature_l1(images, images * 0.5, None)
    assert result["fid"] is None and result["feature_l1"] is None
    assert "not computed" in result["note"] and "eval.inception_weights" in result["note"]


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 16, 16)), r"must be RGB images \(N, H, W, 3\)"),
        (np.zeros((2, 16, 16, 4)), r"must be RGB images"),
        (np.full((2, 16, 16, 3), 255.0), r"values in \[255, 255\].*in \[0, 1\]"),
        (np.full((2, 16, 16, 3), -0.5), r"values in \[-0.5, -0.5\]"),
        (np.full((2, 16, 16, 3), np.nan), r"holds 1536 non-finite"),
        (np.zeros((2, 0, 16, 3)), r"fake_images is empty"),
    ],
)
def test_bad_images_for_fid_raise(images, match):
    with pytest.raises(ValueError, match=f"fid_and_feature_l1: .*{match}"):
        image_metrics.fid_and_feature_l1(images, np.zeros_like(images), None)


def test_fid_images_must_be_pairs():
    with pytest.raises(
        ValueError, match="fid_and_feature_l1: fake_images and real_images must be pairs of one shape"
    ):
        image_metrics.fid_and_feature_l1(np.zeros((2, 8, 8, 3)), np.zeros((3, 8, 8, 3)), None)


def _broken(state, case):
    state = dict(state)
    if case == "missing":
        del state["Mixed_6e.branch7x7dbl_3.bn.running_var"]
    elif case == "unknown":
        state["Mixed_8a.conv.weight"] = np.zeros(3, np.float32)
    elif case == "shape":
        state["Mixed_6b.branch7x7_2.conv.weight"] = np.zeros((128, 128, 7, 1), np.float32)
    elif case == "nan":
        state["Conv2d_1a_3x3.bn.bias"] = np.full(32, np.nan, np.float32)
    elif case == "negative variance":
        state["Mixed_5b.branch_pool.bn.running_var"] = -np.ones(32, np.float32)
    elif case == "tf inception":
        state["fc.weight"] = np.zeros((1008, 2048), np.float32)
    return state


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "1 missing key.*Mixed_6e.branch7x7dbl_3.bn.running_var"),
        ("unknown", "not of torchvision's inception_v3: Mixed_8a.conv.weight"),
        (
            "shape",
            r"'Mixed_6b.branch7x7_2.conv.weight' has shape \(128, 128, 7, 1\), expected \(128, 128, 1, 7\)",
        ),
        ("nan", "'Conv2d_1a_3x3.bn.bias' holds 32 non-finite"),
        ("negative variance", "'Mixed_5b.branch_pool.bn.running_var' holds negative variances"),
        ("tf inception", "pytorch-fid's TF-ported Inception"),
    ],
)
def test_bad_state_dicts_raise_naming_the_key(random_weights, case, match):
    _, state, _ = random_weights
    with pytest.raises(ConversionError, match=f"^weights.npz: .*{match}"):
        inception.from_state_dict(_broken(state, case), source="weights.npz")


@pytest.mark.parametrize(
    "name, content", [("missing.npz", None), ("empty.npz", b""), ("array.npz", b"\x93NUMPY")]
)
def test_bad_weight_files_raise_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConversionError, match=f"{name}: "):
        image_metrics.load_inception(path)
    with pytest.raises(ConversionError, match=f"{name}: "):
        image_metrics.fid_and_feature_l1(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3)), path)


def test_a_file_with_a_missing_key_is_named(random_weights, tmp_path):
    _, state, _ = random_weights
    path = tmp_path / "partial.npz"
    np.savez(path, **{k: v for k, v in state.items() if not k.startswith("Mixed_7c.")})
    with pytest.raises(ConversionError, match=r"partial.npz: .*missing key\(s\): Mixed_7c\."):
        image_metrics.load_inception(path)


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torch and torchvision are not installed")
def test_features_match_torchvision_and_the_original_preprocessing(tmp_path):
    import torch
    import torch.nn.functional as F
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, (2 / m.weight[0].numel()) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2), m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.8, 1.2)
    path = tmp_path / "inception_v3.npz"
    np.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()})
    images = np.random.default_rng(0).random((2, 40, 56, 3)).astype(np.float32)

    # The original's InceptionV3 (mesh2tex/utils/FID/inception.py), output block 3.
    blocks = [model.Conv2d_1a_3x3, model.Conv2d_2a_3x3, model.Conv2d_2b_3x3, torch.nn.MaxPool2d(3, 2)]
    blocks += [model.Conv2d_3b_1x1, model.Conv2d_4a_3x3, torch.nn.MaxPool2d(3, 2)]
    blocks += [
        getattr(model, f"Mixed_{n}")
        for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")
    ]
    with torch.no_grad():
        x = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2), size=(299, 299), mode="bilinear")
        x = x.clone()
        x[:, 0] = x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x[:, 1] = x[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x[:, 2] = x[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        expected = torch.nn.Sequential(*blocks)(x).mean(dim=(2, 3)).numpy()
    features = image_metrics.inception_features(images, image_metrics.load_inception(path))
    assert np.abs(expected[0] - expected[1]).max() > 1e-2
    np.testing.assert_allclose(features, expected, atol=1e-5 * np.abs(expected).max())
