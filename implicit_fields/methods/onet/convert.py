"""Loading the original PyTorch Occupancy Networks checkpoints into our variables.

A checkpoint of `autonomousvision/occupancy_networks` is a `torch.save`d dict whose
'model' entry is the `OccupancyNetwork`'s state dict, with names prefixed by the
sub-network: `decoder.*`, `encoder.*` (point cloud, voxel or image encoder) and, for the
VAE / unconditional models, `encoder_latent.*`. Our modules use the original's names
(`decoder_net/block0/bn_0/conv_gamma` <-> `decoder.block0.bn_0.conv_gamma`), so the map is
one to one; what differs is the layout of the weights:

* `nn.Linear` weight [out, in] -> our `Dense` kernel [in, out] (transpose);
* `nn.Conv1d(k=1)` weight [out, in, 1] -> `Dense` kernel [in, out] (squeeze, transpose): the
  layers of the conditional-batch-norm decoder (`fc_p`, the blocks' `fc_0`, `fc_1`,
  `shortcut`, the CBN's `conv_gamma` / `conv_beta`, `fc_out`; not `fc_z`, a Linear);
* `nn.Conv3d` weight [out, in, kd, kh, kw] -> `nn.Conv` kernel [kd, kh, kw, in, out], and
  `nn.Conv2d` likewise;
* batch-norm `running_mean` / `running_var` -> our `batch_stats` `mean` / `var`
  (`num_batches_tracked` is not needed: we use a fixed momentum, as the original);
  an affine batch norm's `weight` / `bias` -> `scale` / `bias`.

Checkpoints of the legacy CBN decoder (`CBatchNorm1d_legacy`: Linear `fc_gamma` /
`fc_beta`) are recognised by those names. `load_state_dict` (a `.pt` with torch's safe
loader, numpy scalars allowed, or a `.npz` of the arrays: `NPZ_RECIPE`), `check_output`
and `ConversionError` are those of `implicit_fields.torch_checkpoints`, shared with
ConvONet's converter.

`from_state_dict` checks the whole state dict against the model the config describes
and reports every missing, unexpected, mis-shaped, non-float and non-finite entry at
once (`ConversionError`); `to_state_dict` is its inverse (our variables in the original's
names and layouts). `check_output` / `save_as_run` never write into a folder that is not
empty.
"""

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from implicit_fields import checkpointing, torch_checkpoints, train_utils
from implicit_fields.methods.onet import model as models
from implicit_fields.methods.onet import task

__all__ = [
    "ConversionError",
    "load_state_dict",
    "parameter_map",
    "from_state_dict",
    "to_state_dict",
    "convert_checkpoint",
    "check_output",
    "save_as_run",
    "NPZ_RECIPE",
]

# Shared with the other converters (`implicit_fields.torch_checkpoints`).
ConversionError = torch_checkpoints.ConversionError
load_state_dict = torch_checkpoints.load_state_dict
check_output = torch_checkpoints.check_output
NPZ_RECIPE = torch_checkpoints.NPZ_RECIPE

_PREFIXES = {"encoder_net": "encoder", "decoder_net": "decoder", "encoder_latent_net": "encoder_latent"}
_STATS = {"mean": "running_mean", "var": "running_var"}
_IGNORED_SUFFIXES = (".num_batches_tracked",)


# --------------------------------------------------------------------------------------
# The name and layout map.
# --------------------------------------------------------------------------------------


def _kind(model: models.OccupancyNetwork, path: Tuple[str, ...], ndim: int, legacy: bool) -> str:
    """How the original stores the weight at our `path`: linear, conv1d, conv2d or conv3d."""
    if ndim == 5:
        return "conv3d"
    if ndim == 4:
        return "conv2d"
    if path[0] == "decoder_net" and model.decoder == "cbatchnorm":
        layer = path[-2]
        if layer == "fc_z":
            return "linear"
        if legacy and layer in ("conv_gamma", "conv_beta"):
            return "linear"
        return "conv1d"
    return "linear"


def _torch_name(path: Tuple[str, ...], collection: str, legacy: bool) -> str:
    parts = [_PREFIXES.get(path[0], path[0])] + list(path[1:-1])
    if legacy:
        parts = [{"conv_gamma": "fc_gamma", "conv_beta": "fc_beta"}.get(p, p) for p in parts]
    leaf = path[-1]
    if collection == "batch_stats":
        leaf = _STATS[leaf]
    else:
        leaf = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    return ".".join(parts + [leaf])


def _torch_shape(shape: Tuple[int, ...], kind: str, leaf: str) -> Tuple[int, ...]:
    if leaf != "kernel":
        return tuple(shape)
    if kind == "linear":
        return (shape[1], shape[0])
    if kind == "conv1d":
        return (shape[1], shape[0], 1)
    if kind == "conv2d":
        return (shape[3], shape[2], shape[0], shape[1])
    return (shape[4], shape[3], shape[0], shape[1], shape[2])


def _to_ours(array: np.ndarray, kind: str, leaf: str) -> np.ndarray:
    if leaf != "kernel":
        return array
    if kind == "linear":
        return array.T
    if kind == "conv1d":
        return array[:, :, 0].T
    if kind == "conv2d":
        return np.transpose(array, (2, 3, 1, 0))
    return np.transpose(array, (2, 3, 4, 1, 0))


def _to_torch(array: np.ndarray, kind: str, leaf: str) -> np.ndarray:
    if leaf != "kernel":
        return array
    if kind == "linear":
        return array.T
    if kind == "conv1d":
        return array.T[:, :, None]
    if kind == "conv2d":
        return np.transpose(array, (3, 2, 0, 1))
    return np.transpose(array, (4, 3, 0, 1, 2))


def _flatten(tree) -> Dict[Tuple[str, ...], Any]:
    return {tuple(k): v for k, v in flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)).items()}


def variable_shapes(model: models.OccupancyNetwork, config) -> Dict[str, Any]:
    """The model's variables as shape structs (no computation), {'params', 'batch_stats'}."""
    return jax.eval_shape(lambda: task.init_variables(config, model, jax.random.key(0)))


def parameter_map(model: models.OccupancyNetwork, shapes, legacy: bool = False) -> List[Dict[str, Any]]:
    """One entry per variable of the model: how it is named and stored in the original.

    Args:
      model: the network.
      shapes: its variables (arrays or shape structs), {'params', 'batch_stats'}.
      legacy: the decoder's CBN is `CBatchNorm1d_legacy` (Linear `fc_gamma` / `fc_beta`).

    Returns:
      list of dicts with 'collection', 'path' (tuple), 'torch_name', 'kind'
      ('linear', 'conv1d', 'conv2d', 'conv3d'), 'shape' (ours) and 'torch_shape'.
    """
    entries = []
    for collection in ("params", "batch_stats"):
        for path, leaf in sorted(_flatten(shapes.get(collection, {})).items()):
            shape = tuple(leaf.shape)
            kind = _kind(model, path, len(shape), legacy)
            entries.append(
                {
                    "collection": collection,
                    "path": path,
                    "torch_name": _torch_name(path, collection, legacy),
                    "kind": kind,
                    "shape": shape,
                    "torch_shape": _torch_shape(shape, kind, path[-1]),
                }
            )
    return entries


def _is_legacy(state: Mapping[str, Any]) -> bool:
    return any(".fc_gamma." in k or k.endswith(".fc_gamma.weight") for k in state)


def from_state_dict(
    state: Mapping[str, np.ndarray], model: models.OccupancyNetwork, shapes
) -> Dict[str, Any]:
    """Our variables from an original state dict, checked entry by entry.

    Args:
      state: name -> array, in the original's names and layouts (see
        `load_state_dict`; 'model.' / 'module.' prefixes already removed).
      model: the network the config describes.
      shapes: its variables or their shape structs (`variable_shapes`).

    Returns:
      {'params': ..., 'batch_stats': ...} of float32 arrays (the collections
      `shapes` has).

    Raises:
      ConversionError: listing every missing, unexpected, mis-shaped, non-float
        (e.g. int64) and non-finite entry, each by name.
    """
    legacy = _is_legacy(state)
    entries = parameter_map(model, shapes, legacy)
    expected = {e["torch_name"]: e for e in entries}
    missing = [n for n in expected if n not in state]
    unexpected = sorted(n for n in state if n not in expected and not n.endswith(_IGNORED_SUFFIXES))
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
        raise ConversionError(_report(missing, unexpected, mismatched, model, wrong_dtype, non_finite))
    out: Dict[str, Dict] = {k: {} for k in ("params", "batch_stats") if k in shapes}
    for name, e in expected.items():
        value = _to_ours(np.asarray(state[name], np.float32), e["kind"], e["path"][-1])
        out[e["collection"]][e["path"]] = jnp.asarray(np.ascontiguousarray(value))
    return {k: flax.traverse_util.unflatten_dict(v) for k, v in out.items()}


def _report(missing, unexpected, mismatched, model, wrong_dtype=(), non_finite=()) -> str:
    def block(title, items):
        if not items:
            return ""
        shown = "\n    ".join(items[:25])
        more = f"\n    ... and {len(items) - 25} more" if len(items) > 25 else ""
        return f"\n  {title} ({len(items)}):\n    {shown}{more}"

    description = (
        f"encoder={model.encoder!r}, decoder={model.decoder!r}, c_dim={model.c_dim}, "
        f"encoder_hidden={model.encoder_hidden}, decoder_hidden={model.decoder_hidden}, "
        f"decoder_blocks={model.decoder_blocks}, z_dim={model.z_dim}"
    )
    return (
        f"the state dict does not match the model ({description}); check the config"
        + block("missing from the checkpoint", missing)
        + block("in the checkpoint but not in the model", unexpected)
        + block("wrong shape", mismatched)
        + block("not floating point (weights must be floats)", list(wrong_dtype))
        + block("NaN or infinite values", list(non_finite))
    )


def to_state_dict(variables, model: models.OccupancyNetwork, legacy: bool = False) -> Dict[str, np.ndarray]:
    """Our variables in the original's names and layouts (the inverse of `from_state_dict`).

    Every batch norm also gets a `num_batches_tracked` (int64 0), as a PyTorch
    state dict has, so the result loads into the original modules with `strict=True`.

    Returns:
      dict name -> numpy array.
    """
    out = {}
    for e in parameter_map(model, variables, legacy):
        tree = variables[e["collection"]]
        for key in e["path"]:
            tree = tree[key]
        out[e["torch_name"]] = np.ascontiguousarray(_to_torch(np.asarray(tree), e["kind"], e["path"][-1]))
        if e["collection"] == "batch_stats" and e["path"][-1] == "mean":
            out[e["torch_name"][: -len("running_mean")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return out


def convert_checkpoint(path: str, config, allow_pickle: bool = False):
    """Loads an original checkpoint for the model of `config`.

    Returns:
      (model, variables) with variables {'params', 'batch_stats'}.

    Raises:
      ConversionError: see `load_state_dict` and `from_state_dict`.
    """
    model = models.create_model(config.model)
    state = load_state_dict(path, allow_pickle)
    try:
        variables = from_state_dict(state, model, variable_shapes(model, config))
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None
    return model, variables


def _differences(variables, shapes) -> List[str]:
    """Where `variables` differ from the model's `shapes` in names or shapes ('collection/path: ...')."""
    out = []
    for collection, tree in variables.items():
        ours = {p: tuple(np.shape(x)) for p, x in _flatten(tree).items()}
        model = {p: tuple(x.shape) for p, x in _flatten(shapes.get(collection, {})).items()}
        for path in sorted(set(ours) | set(model)):
            name, shape = "/".join((collection,) + path), ours.get(path)
            if path not in model:
                out.append(f"{name}: not in the model")
            elif shape != model[path]:
                out.append(f"{name}: {'missing' if shape is None else shape}, the model's {model[path]}")
    return out


def save_as_run(config, variables, workdir: str, source: Optional[str] = None) -> str:
    """Writes converted variables as a run folder that `experiments.main` / `.sample` read.

    `workdir/config.json` and a step-0 checkpoint in `workdir/best` (optimiser
    state freshly initialised), so `--mode generate` / `--mode eval` work on it.
    Without (or with empty) 'batch_stats' in `variables`, the model's initial ones are saved.

    Returns:
      the absolute workdir.

    Raises:
      ValueError: `workdir` is not a new or empty folder (`check_output`), or the
        variables are not those of the config's model; nothing is written then.
    """
    workdir = check_output(workdir)
    model = models.create_model(config.model)
    given = {k: variables[k] for k in ("params", "batch_stats") if variables.get(k)}
    differences = _differences(given, variable_shapes(model, config))
    if "params" not in given or differences:
        shown = "; ".join(differences[:3]) + (
            f"; ... and {len(differences) - 3} more" if len(differences) > 3 else ""
        )
        raise ValueError(
            f"{workdir}: the variables are not those of the config's model ({shown or 'no params'}; "
            "nothing was written)"
        )
    init_key, _ = train_utils.rng_keys(config.seed)

    # The method's own fresh state with the converted variables; under jit the unused
    # initialisation of the variables is left out (0.3-0.5 s instead of 3-6 s on a CPU, onet.py).
    def fresh_state(key, params, batch_stats):
        state = task.init_state(config, model, key)
        return state.replace(params=params, batch_stats=batch_stats if batch_stats else state.batch_stats)

    state = jax.jit(fresh_state)(init_key, given["params"], given.get("batch_stats", {}))
    repl, _ = train_utils.shardings(train_utils.create_mesh())
    state = jax.device_put(state, repl)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "best"), max_to_keep=1)
    ckpt.save(state, {"converted_from": os.path.abspath(source) if source else None}, wait=True)
    ckpt.close()
    return workdir
