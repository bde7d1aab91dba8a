"""Reading the state dicts of PyTorch checkpoints, and where a converted run may go.

What the checkpoint converters of the methods share (`implicit_fields.methods.onet.convert`,
`implicit_fields.methods.convonet.convert`, which re-export these names): `load_state_dict`
reads a `.pt` file with torch (when installed) or, without torch, a `.npz` holding the
state dict's arrays under their names (`NPZ_RECIPE` writes one where torch is);
`check_output` refuses an output folder that is not new or empty.

The original projects' checkpoints hold numpy scalars (`loss_val_best`, pickled by numpy
1.x as `numpy.core.multiarray.scalar`), which torch >= 2.6's safe loader (the default,
`weights_only=True`) refuses: "Unsupported global numpy.core.multiarray.scalar". Here
the safe loader is kept and only numpy's scalar reconstructor and dtypes are added to
what it accepts (`torch.serialization.safe_globals`, under both numpy names); nothing
else is unpickled. A `.npz` is read without pickled objects.

No JAX and no torch at import: torch is imported when a `.pt` is read.
"""

import contextlib
import os
import re
from typing import Dict, Mapping

import numpy as np

__all__ = ["ConversionError", "load_state_dict", "check_output", "NPZ_RECIPE"]

NPZ_RECIPE = """\
import numpy as np, torch

# The original checkpoints hold a numpy float ('loss_val_best'): allow numpy's scalars, nothing else.
scalar = np.float64(0).__reduce__()[0]
torch.serialization.add_safe_globals(
    [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        type(np.dtype("float64")),
    ]
)
state = torch.load("model.pt", map_location="cpu")["model"]
np.savez("state.npz", **{k: v.numpy() for k, v in state.items()})
"""
"""Python that writes a `.npz` of an original checkpoint's state dict (torch >= 2.6; older
torch loads it with a plain `torch.load('model.pt', map_location='cpu')`)."""

# Numpy dtypes whose scalars the safe loader may rebuild.
_SCALAR_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


class ConversionError(ValueError):
    """A checkpoint cannot be read or does not match the model; the message names every problem."""


def load_state_dict(path: str, allow_pickle: bool = False) -> Dict[str, np.ndarray]:
    """Reads a state dict from a `.pt` checkpoint (needs torch) or a `.npz` of its arrays.

    A '.pt' file holding a dict with a 'model' entry (the original's `CheckpointIO`
    format) yields that entry; a bare state dict is used as is. A 'module.' prefix
    (from `nn.DataParallel`) is removed from every name.

    Args:
      path: the file.
      allow_pickle: let torch unpickle arbitrary objects (`weights_only=False`); only
        for files you trust. By default only tensors, plain containers and numpy scalars load.

    Returns:
      dict name -> numpy array.

    Raises:
      ConversionError: naming the file: not found, unreadable, torch missing for a '.pt',
        or no arrays in it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: file not found")
    if path.endswith(".npz"):
        state = _read_npz(path)
        if not state:
            raise ConversionError(f"{path}: holds no arrays")
    else:
        try:
            import torch
        except ImportError as e:
            raise ConversionError(
                f"{path}: reading a PyTorch checkpoint needs torch; without it, give a .npz of its "
                "state dict, written where torch is available (see NPZ_RECIPE of "
                "implicit_fields.torch_checkpoints, or the README)"
            ) from e
        obj = _torch_load(torch, path, allow_pickle)
        if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
            obj = obj["model"]
        if not isinstance(obj, Mapping):
            raise ConversionError(
                f"{path}: expected a state dict (or a dict with 'model'), got {type(obj).__name__}"
            )
        state = {}
        for k, v in obj.items():
            if hasattr(v, "detach"):
                v = v.detach().cpu()
                if v.is_floating_point() and v.dtype not in (torch.float16, torch.float32, torch.float64):
                    v = v.float()  # bfloat16 and the like have no numpy dtype.
                state[k] = v.numpy()
            elif isinstance(v, np.ndarray):
                state[k] = v
        if not state:
            raise ConversionError(f"{path}: holds no tensors (keys: {sorted(obj)[:10]})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _read_npz(path: str) -> Dict[str, np.ndarray]:
    """Every array of the `.npz` at `path`; pickled objects are never loaded."""

    def problem(e):  # Without numpy's hint about loading pickled data.
        if "pickle" in str(e).lower():
            return "it holds Python objects (pickled data), not plain arrays; such files are never loaded"
        return f"{type(e).__name__}: {e}"

    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise ConversionError(f"{path}: cannot read the file ({problem(e)})") from e
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # A zip with members, an empty zip.
        what = "a single .npy array" if head == b"\x93NUMPY" else f"bytes {head[:4]!r}"
        what = f"it starts with {what}, not the zip signature of an .npz" if head else "the file is empty"
        raise ConversionError(f"{path}: not a valid .npz file ({what})")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - zipfile, OSError, EOFError, ValueError on bad input.
        raise ConversionError(f"{path}: not a valid .npz file ({problem(e)})") from e
    with data:
        state = {}
        for key in data.files:
            try:
                state[key] = data[key]
            except Exception as e:  # noqa: BLE001 - object arrays, corrupt or truncated members.
                raise ConversionError(f"{path}: cannot read '{key}' ({problem(e)})") from e
            if not isinstance(state[key], np.ndarray):  # numpy gives a non-.npy member's bytes.
                raise ConversionError(f"{path}: '{key}' is not an array (a member not in .npy format)")
    return state


def _torch_load(torch, path: str, allow_pickle: bool):
    """`torch.load` of `path` on the CPU with the safe loader, numpy scalars allowed."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    allowed = safe_globals(_numpy_scalar_globals()) if safe_globals else contextlib.nullcontext()
    try:
        with allowed:
            return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001 - torch raises many types here
        text = str(e)
        unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if unsupported and not allow_pickle:
            old = (
                ""
                if safe_globals
                else f" (torch {torch.__version__} cannot allow numpy scalars: use torch >= 2.5)"
            )
            raise ConversionError(
                f"{path}: holds a {unsupported.group(1)!r} object, which the safe loader of torch does not "
                f"read{old}; an original (Convolutional) Occupancy Networks checkpoint holds only tensors, "
                "plain containers and numpy scalars"
            ) from e
        weights_only = re.search(r"WeightsUnpickler error:\s*(.*?)(?:Check the documentation|$)", text, re.S)
        if weights_only and weights_only.group(1).strip():
            detail = "the safe loader failed: " + " ".join(weights_only.group(1).split())
        else:
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            detail = f"{type(e).__name__}: {first}"
        raise ConversionError(f"{path}: cannot load with torch {torch.__version__}: {detail}") from e


def _alias(fn, module: str, name: str):
    """`fn` under another importable name (what an older pickle calls it)."""

    def alias(*args):
        return fn(*args)

    alias.__module__, alias.__name__, alias.__qualname__ = module, name, name
    return alias


def _numpy_scalar_globals():
    """What a pickled numpy scalar needs: numpy's scalar reconstructor and the dtypes.

    Numpy 1.x pickles the reconstructor as `numpy.core.multiarray.scalar`, numpy 2 as
    `numpy._core.multiarray.scalar`; the safe loader matches names, so the one this
    numpy does not have gets an alias.
    """
    scalar = np.float64(0).__reduce__()[0]
    allowed = [scalar, np.dtype, *{type(np.dtype(t)) for t in _SCALAR_DTYPES}]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        if scalar.__module__ != module:
            allowed.append(_alias(scalar, module, "scalar"))
    return allowed


def check_output(workdir: str) -> str:
    """Checks that `workdir` is a folder a converter may write: new, or empty.

    Returns:
      the absolute path.

    Raises:
      ValueError: `workdir` (or a folder above it) is a file, or `workdir` is not
        empty (a run, or anything else, is never overwritten).
    """
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path}: is a file; the output must be a new or empty folder")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{path}: {parent} is a file; the output must be a new or empty folder")
    entries = sorted(os.listdir(path)) if os.path.isdir(path) else []
    if entries:
        run = [e for e in ("config.json", "best", "checkpoints") if e in entries]
        what = "a run (" + ", ".join(run) + ")" if run else ", ".join(entries[:5])
        more = f" and {len(entries) - 5} more" if not run and len(entries) > 5 else ""
        raise ValueError(
            f"{path}: already holds {what}{more}; the output must be a new or empty folder "
            "(nothing was written)"
        )
    return path
