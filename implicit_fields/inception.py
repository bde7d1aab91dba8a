"""Inception-v3 up to its 2048-d pool3 features, in Flax, with torchvision's variable names.

Texture Fields' FID and Feature-L1 (`mesh2tex/utils/FID/inception.py` of the original)
run the blocks of `torchvision.models.inception_v3(pretrained=True)` from `Conv2d_1a_3x3`
to `Mixed_7c` and the final average pool; `InceptionV3` here is that network
(torchvision's `Inception3` without `AuxLogits`, dropout and `fc`): `BasicConv2d` is a
convolution without bias, batch norm with eps 0.001 (in eval mode: running statistics)
and a ReLU; the average pools inside the blocks count the zero padding
(`F.avg_pool2d(..., padding=1)`), as torchvision's do. (pytorch-fid's TF-ported
Inception, `pt_inception-2015-12-05`, is another network: other pools, 1008 classes.)

Every module is named as in torchvision, so each variable maps to one state-dict key:

* `<block>.conv.weight` (out, in, kh, kw) <-> params `<block>/conv/kernel` (kh, kw, in, out)
* `<block>.bn.weight` / `.bn.bias` <-> params `<block>/bn/scale` / `bias`
* `<block>.bn.running_mean` / `.running_var` <-> batch_stats `<block>/bn/mean` / `var`

where `<block>` is e.g. `Mixed_6b.branch7x7dbl_2` (`/` in Flax, `.` in torch). The
state dict's `*.num_batches_tracked`, `AuxLogits.*` and `fc.*` are not used for the
features. `from_state_dict` and `to_state_dict` convert between the two;
`load_inception` of `implicit_fields.image_metrics` reads a file.

Convolutions run at `Precision.HIGHEST`, so that on accelerators the float32 features
are those of a float32 PyTorch run (no TF32 or bfloat16 passes).
"""

import functools
from typing import Any, Dict, Mapping, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields.torch_checkpoints import ConversionError

__all__ = ["InceptionV3", "expected_state", "from_state_dict", "to_state_dict", "UNUSED_PREFIXES"]

FEATURES = 2048
"""Dimension of the pool3 features."""

UNUSED_PREFIXES = ("AuxLogits.", "fc.")
"""Parts of torchvision's `inception_v3` state dict that the pool3 features do not use."""

BN_EPS = 1e-3
_HIGHEST = jax.lax.Precision.HIGHEST


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """torchvision's `BasicConv2d`: conv (no bias), batch norm (eps 0.001, running stats), ReLU."""

    features: int
    kernel_size: Any
    strides: Any = 1
    padding: Any = 0

    @nn.compact
    def __call__(self, x):
        ph, pw = _pair(self.padding)
        x = nn.Conv(
            self.features,
            _pair(self.kernel_size),
            strides=_pair(self.strides),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            precision=_HIGHEST,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x):
    """`F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)` (the padding counts, as in torch)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=True)


def _max_pool_3x3_s2(x):
    """`F.max_pool2d(x, kernel_size=3, stride=2)` / `nn.MaxPool2d(3, 2)` (no padding, floor)."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, 1, name="branch1x1")(x)
        b5 = BasicConv2d(48, 1, name="branch5x5_1")(x)
        b5 = BasicConv2d(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, 3, strides=2, name="branch3x3")(x)
        bd = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, 3, strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv2d(192, 1, name="branch1x1")(x)
        b7 = BasicConv2d(c7, 1, name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c7, 1, name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, 1, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, 1, name="branch3x3_1")(x)
        b3 = BasicConv2d(320, 3, strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, 3, strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(320, 1, name="branch1x1")(x)
        b3 = BasicConv2d(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = BasicConv2d(448, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        bp = BasicConv2d(192, 1, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """torchvision's Inception-v3 from `Conv2d_1a_3x3` to the average pool after `Mixed_7c`.

    Input (N, H, W, 3), already resized and normalised (the network itself does
    neither; `image_metrics.inception_features` does what the original does); output
    (N, 2048), the spatial mean of `Mixed_7c` (`AdaptiveAvgPool2d((1, 1))`).
    """

    @nn.compact
    def __call__(self, x):
        x = BasicConv2d(32, 3, strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, 3, name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = BasicConv2d(80, 1, name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, 3, name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(name="Mixed_7b")(x)
        x = InceptionE(name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


# torch suffix -> (collection, Flax leaf) under the Flax path of the block.
_LEAVES = {
    "conv.weight": ("params", ("conv", "kernel")),
    "bn.weight": ("params", ("bn", "scale")),
    "bn.bias": ("params", ("bn", "bias")),
    "bn.running_mean": ("batch_stats", ("bn", "mean")),
    "bn.running_var": ("batch_stats", ("bn", "var")),
}


def _torch_shape(suffix: str, flax_shape: Sequence[int]) -> Tuple[int, ...]:
    if suffix == "conv.weight":
        kh, kw, cin, cout = flax_shape
        return (cout, cin, kh, kw)
    return tuple(flax_shape)


@functools.lru_cache(maxsize=1)
def expected_state() -> Dict[str, Tuple[str, Tuple[str, ...], Tuple[int, ...]]]:
    """Every state-dict key the features need: key -> (collection, Flax path, torch shape)."""
    shapes = jax.eval_shape(InceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3), jnp.float32))
    out = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in jax.tree_util.tree_flatten_with_path(shapes[collection])[0]:
            names = tuple(p.key for p in path)
            block, leaf_names = names[:-2], names[-2:]
            suffix = next(s for s, (c, n) in _LEAVES.items() if c == collection and n == leaf_names)
            out[".".join(block + (suffix,))] = (collection, names, _torch_shape(suffix, leaf.shape))
    return out


def from_state_dict(state: Mapping[str, np.ndarray], source: str = "the state dict") -> Dict[str, Any]:
    """Flax variables of `InceptionV3` from a torchvision `inception_v3` state dict.

    Args:
      state: name -> array, names as torchvision's (`Mixed_5b.branch1x1.conv.weight`, ...).
      source: what to call it in errors (the file's path).

    Returns:
      {'params': ..., 'batch_stats': ...} of float32 arrays.

    Raises:
      ConversionError (a ValueError): naming `source` and the keys: missing keys, keys that are not part of
        torchvision's Inception-v3, arrays of the wrong shape, non-finite values or
        negative running variances, or the 1008-class `fc` of pytorch-fid's TF Inception.
    """
    expected = expected_state()
    fc = state.get("fc.weight")
    if fc is not None and np.shape(fc)[0] == 1008:
        raise ConversionError(
            f"{source}: 'fc.weight' has shape {tuple(np.shape(fc))}: these are the weights of "
            "pytorch-fid's TF-ported Inception (pt_inception-2015-12-05), a different network; the "
            "original Texture Fields uses torchvision's ImageNet inception_v3 "
            "(inception_v3_google-0cc3c7bd.pth)"
        )
    missing = [k for k in expected if k not in state]
    unknown = [
        k
        for k in state
        if k not in expected and not k.startswith(UNUSED_PREFIXES) and not k.endswith(".num_batches_tracked")
    ]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} missing key(s): " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        )
    if unknown:
        problems.append(
            f"{len(unknown)} key(s) not of torchvision's inception_v3: "
            + ", ".join(unknown[:5])
            + (" ..." if len(unknown) > 5 else "")
        )
    if problems:
        raise ConversionError(f"{source}: not a torchvision inception_v3 state dict: " + "; ".join(problems))
    variables: Dict[str, Any] = {"params": {}, "batch_stats": {}}
    for key, (collection, names, shape) in expected.items():
        value = np.asarray(state[key])
        if value.shape != shape:
            raise ConversionError(f"{source}: '{key}' has shape {value.shape}, expected {shape}")
        if not np.issubdtype(value.dtype, np.floating):
            raise ConversionError(f"{source}: '{key}' has dtype {value.dtype}, expected floating point")
        if not np.all(np.isfinite(value)):
            raise ConversionError(
                f"{source}: '{key}' holds {int(np.sum(~np.isfinite(value)))} non-finite value(s)"
            )
        if key.endswith("running_var") and np.any(value < 0):
            raise ConversionError(f"{source}: '{key}' holds negative variances")
        if key.endswith("conv.weight"):
            value = value.transpose(2, 3, 1, 0)
        node = variables[collection]
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = jnp.asarray(value, jnp.float32)
    return variables


def to_state_dict(variables: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """The torchvision state-dict entries (float32 numpy, torch layout) of `InceptionV3` variables.

    Only the keys the features use: no `num_batches_tracked`, `AuxLogits` or `fc`.
    """
    out = {}
    for key, (collection, names, _) in expected_state().items():
        node = variables[collection]
        for name in names:
            node = node[name]
        value = np.asarray(node, np.float32)
        out[key] = value.transpose(3, 2, 0, 1) if key.endswith("conv.weight") else value
    return out
