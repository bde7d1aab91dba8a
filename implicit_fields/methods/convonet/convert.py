"""Loading the original PyTorch Convolutional Occupancy Networks checkpoints into our variables.

A checkpoint of `autonomousvision/convolutional_occupancy_networks` is a `torch.save`d
dict whose 'model' entry is the `ConvolutionalOccupancyNetwork`'s state dict: the
encoder (`LocalPoolPointnet`, `src/encoder/pointnet.py`) under `encoder.*`, with its
2D U-Net (`src/encoder/unet.py`) under `encoder.unet.*` and its 3D U-Net
(`src/encoder/unet3d.py`) under `encoder.unet3d.*`, and the decoder (`LocalDecoder`,
`src/conv_onet/models/decoder.py`) under `decoder.*`. Our modules use the original's
names; a PyTorch list index is a suffix of ours and the 3D U-Net's `basic_module` level
is left out:

  ours (params/...)                                 the original's state dict
  encoder/blocks_0/fc_0/kernel                      encoder.blocks.0.fc_0.weight
  encoder/unet/up_convs_0/upconv/kernel             encoder.unet.up_convs.0.upconv.weight
  encoder/unet3d/encoders_1/SingleConv2/groupnorm/scale
                                                    encoder.unet3d.encoders.1.basic_module.SingleConv2.groupnorm.weight
  decoder/fc_c_2/bias                               decoder.fc_c.2.bias

What differs is the layout of the weights:

* `nn.Linear` weight [out, in] -> our `Dense` kernel [in, out] (transpose);
* `nn.Conv2d` weight [out, in, kh, kw] -> kernel [kh, kw, in, out];
* `nn.ConvTranspose2d` weight [in, out, kh, kw] -> kernel [kh, kw, in, out] (the 2D
  U-Net's `upconv`; no flip, see `implicit_fields.unet`);
* `nn.Conv3d` weight [out, in, kd, kh, kw] -> kernel [kd, kh, kw, in, out];
* `nn.GroupNorm` weight / bias -> `scale` / `bias`.

There is no batch norm: the variables are {'params'} only. The weights do not tell
the feature planes and resolutions (`model.plane_type`, `plane_resolution`,
`grid_resolution`) nor `field.padding`: the config must give those of the checkpoint
(the original's `shapenet_3plane`: planes xz, xy, yz of 64^2, our defaults;
`shapenet_grid32`: a 32^3 grid, `experiments/configs/convonet.py:grid`). A checkpoint
of the crop models (`PatchLocalPoolPointnet`) or the voxel encoder is not one of ours
and is refused, by name.

`load_state_dict` (a `.pt` with torch's safe loader, numpy scalars allowed, or a `.npz`
of the arrays: `NPZ_RECIPE`), `check_output` and `ConversionError` are those of
`implicit_fields.torch_checkpoints`, shared with ONet's converter.

`from_state_dict` checks the whole state dict against the model the config describes
and reports every missing, unexpected, mis-shaped, non-float and non-finite entry at
once (`ConversionError`), with the model settings the checkpoint's shapes imply where
they differ from the config's; `to_state_dict` is its inverse. `check_output` /
`save_as_run` never write into a folder that is not empty.
"""

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields import checkpointing, torch_checkpoints, train_utils
from implicit_fields.methods.convonet import task

__all__ = [
    "ConversionError",
    "load_state_dict",
    "parameter_map",
    "checkpoint_settings",
    "from_state_dict",
    "to_state_dict",
    "convert_checkpoint",
    "check_output",
    "save_as_run",
    "variable_shapes",
    "NPZ_RECIPE",
]

# Shared with the other converters (`implicit_fields.torch_checkpoints`).
ConversionError = torch_checkpoints.ConversionError
load_state_dict = torch_checkpoints.load_state_dict
check_output = torch_checkpoints.check_output
NPZ_RECIPE = torch_checkpoints.NPZ_RECIPE

# Our module names that are a PyTorch `nn.ModuleList` (our `blocks_0` is `blocks.0`).
_MODULE_LISTS = ("blocks", "fc_c", "down_convs", "up_convs", "encoders", "decoders")

# Our kernel's axes as the original's weight's: ours = np.transpose(torch, axes).
_TO_OURS = {
    "linear": (1, 0),
    "conv2d": (2, 3, 1, 0),
    "conv_transpose2d": (2, 3, 0, 1),
    "conv3d": (2, 3, 4, 1, 0),
}


# --------------------------------------------------------------------------------------
# The name and layout map.
# --------------------------------------------------------------------------------------


def _flatten(tree) -> Dict[Tuple[str, ...], Any]:
    return {tuple(k): v for k, v in flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)).items()}


def variable_shapes(config) -> Dict[str, Any]:
    """The variables of the config's model as shape structs (no computation), {'params'}."""
    model = task.create_model(config)
    return jax.eval_shape(lambda: task.init_variables(config, model, jax.random.key(0)))


def _torch_name(path: Tuple[str, ...]) -> str:
    parts = []
    for part in path[:-1]:
        base, _, index = part.rpartition("_")
        if base in _MODULE_LISTS and index.isdigit():
            parts += [base, index]
            if "unet3d" in path and base in ("encoders", "decoders"):
                parts.append("basic_module")  # The 3D U-Net's Encoder / Decoder hold their DoubleConv there.
        else:
            parts.append(part)
    leaf = {"kernel": "weight", "scale": "weight"}.get(path[-1], path[-1])
    return ".".join(parts + [leaf])


def _kind(layer: str, kernel_ndim: Optional[int]) -> str:
    """How the original stores the layer: linear, conv2d, conv_transpose2d, conv3d or group_norm."""
    if layer == "groupnorm":
        return "group_norm"
    if layer == "upconv":
        return "conv_transpose2d"
    return {2: "linear", 4: "conv2d", 5: "conv3d"}[kernel_ndim]


def _to_torch_axes(kind: str) -> Tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(_TO_OURS[kind]))


def parameter_map(config, shapes=None) -> List[Dict[str, Any]]:
    """One entry per parameter of the config's model: how it is named and stored in the original.

    Args:
      config: a ConvONet config (its `model` and `field.padding`).
      shapes: the model's variables or their shape structs; computed from the config
        (`variable_shapes`) when not given.

    Returns:
      list of dicts with 'path' (tuple, under 'params'), 'torch_name', 'kind' ('linear',
      'conv2d', 'conv_transpose2d', 'conv3d', 'group_norm'), 'shape' (ours) and
      'torch_shape', sorted by path.
    """
    params = _flatten((shapes if shapes is not None else variable_shapes(config))["params"])
    kernel_ndim = {path[:-1]: len(leaf.shape) for path, leaf in params.items() if path[-1] == "kernel"}
    entries = []
    for path, leaf in sorted(params.items()):
        shape = tuple(leaf.shape)
        kind = _kind(path[-2], kernel_ndim.get(path[:-1]))
        torch_shape = tuple(shape[i] for i in _to_torch_axes(kind)) if path[-1] == "kernel" else shape
        entries.append(
            {
                "path": path,
                "torch_name": _torch_name(path),
                "kind": kind,
                "shape": shape,
                "torch_shape": torch_shape,
            }
        )
    return entries


def _to_ours(array: np.ndarray, kind: str, leaf: str) -> np.ndarray:
    return np.transpose(array, _TO_OURS[kind]) if leaf == "kernel" else array


def _to_torch(array: np.ndarray, kind: str, leaf: str) -> np.ndarray:
    return np.transpose(array, _to_torch_axes(kind)) if leaf == "kernel" else array


# --------------------------------------------------------------------------------------
# Checking and converting.
# --------------------------------------------------------------------------------------


def checkpoint_settings(state: Mapping[str, Any]) -> Dict[str, Any]:
    """The `config.model` settings a state dict's names and shapes imply (those it shows).

    Only what the weights tell: widths, block and level counts and which U-Nets there
    are; not the plane types or resolutions.

    Returns:
      dict config key (e.g. 'model.c_dim') -> value.
    """

    def dim(name, axis):
        shape = np.shape(state[name]) if name in state else ()
        return int(shape[axis]) if len(shape) > axis else None

    def count(prefix):
        found = [re.match(re.escape(prefix) + r"(\d+)\.", k) for k in state]
        indices = [int(m.group(1)) for m in found if m]
        return max(indices) + 1 if indices else None

    unet3d = "encoder.unet3d.encoders.0.basic_module.SingleConv2.conv.weight"
    found = {
        "model.c_dim": dim("encoder.fc_c.weight", 0),
        "model.encoder_hidden": dim("encoder.fc_c.weight", 1),
        "model.encoder_blocks": count("encoder.blocks."),
        "model.unet": any(k.startswith("encoder.unet.") for k in state),
        "model.unet_depth": count("encoder.unet.down_convs."),
        "model.unet_start_filts": dim("encoder.unet.down_convs.0.conv1.weight", 0),
        "model.unet3d": any(k.startswith("encoder.unet3d.") for k in state),
        "model.unet3d_levels": count("encoder.unet3d.encoders."),
        "model.unet3d_f_maps": dim(unet3d, 0),
        "model.decoder_hidden": dim("decoder.fc_p.weight", 0),
        "model.decoder_blocks": count("decoder.blocks."),
    }
    return {k: v for k, v in found.items() if v is not None}


def _settings_hints(state: Mapping[str, Any], config) -> List[str]:
    """The model settings where the checkpoint's shapes and the config disagree."""
    model = config.model
    types = tuple(model.plane_type)
    planes = any(t != "grid" for t in types)
    hints = []
    for key, value in checkpoint_settings(state).items():
        name = key.split(".", 1)[1]
        ours = model.get(name)
        if name == "unet":
            if value and not (planes and ours):
                hints.append(
                    f"config.{key}: the checkpoint has a 2D U-Net (encoder.unet.*), on feature planes: "
                    f"needs model.unet=True and planes in model.plane_type (now {list(types)})"
                )
            elif not value and planes and ours:
                hints.append(f"config.{key}: the checkpoint has no 2D U-Net, the config one on its planes")
        elif name == "unet3d":
            if value and not ("grid" in types and ours):
                hints.append(
                    f"config.{key}: the checkpoint has a 3D U-Net (encoder.unet3d.*), on a grid: "
                    f"needs model.unet3d=True and 'grid' in model.plane_type (now {list(types)})"
                )
            elif not value and "grid" in types and ours:
                hints.append(f"config.{key}: the checkpoint has no 3D U-Net, the config one on its grid")
        elif ours != value:
            hints.append(f"config.{key}={ours}, the checkpoint's shapes say {value}")
    return hints


def from_state_dict(state: Mapping[str, np.ndarray], config) -> Dict[str, Any]:
    """Our variables from an original state dict, checked entry by entry.

    Args:
      state: name -> array, in the original's names and layouts (see `load_state_dict`;
        'model' / 'module.' already removed).
      config: the ConvONet config of the model the checkpoint holds.

    Returns:
      {'params': ...} of float32 arrays.

    Raises:
      ConversionError: listing every missing, unexpected, mis-shaped, non-float (e.g.
        int64) and non-finite entry, each by name, and the model settings the
        checkpoint's shapes imply where they differ from the config's.
    """
    entries = parameter_map(config)
    expected = {e["torch_name"]: e for e in entries}
    missing = [n for n in expected if n not in state]
    unexpected = sorted(n for n in state if n not in expected)
    mismatched = [
        f"{n}: checkpoint {tuple(np.shape(state[n]))}, model expects {e['torch_shape']}"
        for n, e in expected.items()
        if n in state and tuple(np.shape(state[n])) != e["torch_shape"]
    ]
    present = [n for n in expected if n in state]
    wrong_dtype = [
        f"{n}: dtype {np.asarray(state[n]).dtype}, expected floating point"
        for n in present
        if not np.issubdtype(np.asarray(state[n]).dtype, np.floating)
    ]
    non_finite = [
        f"{n}: {int(np.size(state[n]) - np.isfinite(state[n]).sum())} of {np.size(state[n])} values"
        for n in present
        if np.issubdtype(np.asarray(state[n]).dtype, np.floating) and not np.isfinite(state[n]).all()
    ]
    if missing or unexpected or mismatched or wrong_dtype or non_finite:
        hints = _settings_hints(state, config) if missing or unexpected or mismatched else []
        problems = (missing, unexpected, mismatched, wrong_dtype, non_finite, hints)
        raise ConversionError(_report(config, *problems))
    params = {}
    for name, e in expected.items():
        value = _to_ours(np.asarray(state[name], np.float32), e["kind"], e["path"][-1])
        params[e["path"]] = jnp.asarray(np.ascontiguousarray(value))
    return {"params": flax.traverse_util.unflatten_dict(params)}


def _report(config, missing, unexpected, mismatched, wrong_dtype, non_finite, hints) -> str:
    def block(title, items):
        if not items:
            return ""
        shown = "\n    ".join(items[:25])
        more = f"\n    ... and {len(items) - 25} more" if len(items) > 25 else ""
        return f"\n  {title} ({len(items)}):\n    {shown}{more}"

    m = config.model
    description = (
        f"plane_type={list(m.plane_type)}, c_dim={m.c_dim}, encoder_hidden={m.encoder_hidden}, "
        f"encoder_blocks={m.encoder_blocks}, unet={m.unet} (depth {m.unet_depth}, start_filts "
        f"{m.unet_start_filts}), unet3d={m.unet3d} (levels {m.unet3d_levels}, f_maps {m.unet3d_f_maps}), "
        f"decoder_hidden={m.decoder_hidden}, decoder_blocks={m.decoder_blocks}"
    )
    return (
        f"the state dict does not match the model ({description}); check the config"
        + block("the checkpoint's shapes imply other settings", hints)
        + block("missing from the checkpoint", missing)
        + block("in the checkpoint but not in the model", unexpected)
        + block("wrong shape", mismatched)
        + block("not floating point (weights must be floats)", list(wrong_dtype))
        + block("NaN or infinite values", list(non_finite))
    )


def to_state_dict(variables, config) -> Dict[str, np.ndarray]:
    """Our variables in the original's names and layouts (the inverse of `from_state_dict`).

    The result loads into the original `ConvolutionalOccupancyNetwork` with `strict=True`.

    Args:
      variables: {'params': ...} of the config's model.
      config: its ConvONet config.

    Returns:
      dict name -> numpy array.

    Raises:
      ValueError: the variables are not those of the config's model.
    """
    params = _flatten(variables["params"])
    entries = parameter_map(config)
    wanted = {e["path"] for e in entries}
    if set(params) != wanted:
        extra = sorted("/".join(p) for p in set(params) - wanted)[:5]
        lacking = sorted("/".join(p) for p in wanted - set(params))[:5]
        raise ValueError(
            f"the variables are not those of the config's model (not in the model: {extra}; "
            f"missing: {lacking})"
        )
    out = {}
    for e in entries:
        value = _to_torch(np.asarray(params[e["path"]]), e["kind"], e["path"][-1])
        out[e["torch_name"]] = np.array(value, order="C")  # A writable copy, as torch's .numpy() gives.
    return out


def convert_checkpoint(path: str, config, allow_pickle: bool = False):
    """Loads an original checkpoint for the model of `config`.

    Returns:
      (model, variables) with variables {'params'}.

    Raises:
      ConversionError: see `load_state_dict` and `from_state_dict`.
    """
    state = load_state_dict(path, allow_pickle)
    try:
        variables = from_state_dict(state, config)
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None
    return task.create_model(config), variables


def save_as_run(config, variables, workdir: str, source: Optional[str] = None) -> str:
    """Writes converted variables as a run folder that `experiments.main` / `.sample` read.

    `workdir/config.json` and a step-0 checkpoint in `workdir/best` (optimiser
    state freshly initialised), so `--mode generate` / `--mode eval` work on it.

    Returns:
      the absolute workdir.

    Raises:
      ValueError: `workdir` is not a new or empty folder (`check_output`), or the
        variables are not those of the config's model; nothing is written then.
    """
    workdir = check_output(workdir)
    expected = jax.tree.map(lambda x: tuple(x.shape), variable_shapes(config)["params"])
    if jax.tree.map(lambda x: tuple(np.shape(x)), variables["params"]) != expected:
        raise ValueError(
            f"{workdir}: the variables are not those of the config's model (nothing was written)"
        )
    model = task.create_model(config)
    init_key, _ = train_utils.rng_keys(config.seed)
    # The method's own fresh state with the converted parameters; under jit the unused
    # initialisation of the parameters is left out (0.4 s instead of 5-12 s on a CPU).
    state = jax.jit(lambda key, params: task.init_state(config, model, key).replace(params=params))(
        init_key, variables["params"]
    )
    repl, _ = train_utils.shardings(train_utils.create_mesh())
    state = jax.device_put(state, repl)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "best"), max_to_keep=1)
    ckpt.save(state, {"converted_from": os.path.abspath(source) if source else None}, wait=True)
    ckpt.close()
    return workdir
