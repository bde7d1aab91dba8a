"""Configs: the sections every method shares, key checks, and a run's stored config.

A config is an `ml_collections.ConfigDict`. Every method's defaults
(`implicit_fields.methods.<name>.config.get_config()`) start from
`common_config(method)`, which holds what the trainer reads: the seed, the
field's iso-level and box, the training schedule, the optimiser, logging and
the debug switches. The method adds its own sections (data, model, ...). The
defaults are the method's schema: a config may set only the keys they define
(`check_keys`), so a typo stops the run before any work.
"""

import difflib
import json
import os
from typing import List, Optional

import ml_collections


def common_config(method: str) -> ml_collections.ConfigDict:
    """The sections shared by every method, with their defaults.

    Args:
      method: the method's package name under `implicit_fields.methods`.
    """
    config = ml_collections.ConfigDict()
    config.method = method  # The method: a package of implicit_fields.methods ('onet', 'dvr', ...).
    config.seed = 0  # The one seed: initial parameters, data order and sampling derive from it.

    # The field f(p) -> occupancy logit lives in the cube of side 1 + padding centred at 0; its
    # surface is where the occupancy probability crosses `threshold`.
    config.field = field = ml_collections.ConfigDict()
    field.threshold = 0.5  # Occupancy probability of the surface (ONet evaluates at 0.2, DVR 0.5).
    field.padding = 0.1  # The field's box is the cube of side 1 + padding (the originals: 0.1).

    config.train = train = ml_collections.ConfigDict()
    train.num_steps = 1000  # Total optimiser steps.
    train.eval_every = 1000  # Steps between validations (the best model is kept in best/).
    train.checkpoint_every = 1000  # Steps between checkpoints.
    train.max_to_keep = 2  # Recent checkpoints kept.
    train.prefetch = 2  # Batches prepared ahead on a background thread (0: none).

    config.optim = optim = ml_collections.ConfigDict()
    optim.optimizer = "adam"  # Only Adam, as the originals.
    optim.learning_rate = 1e-4  # Peak learning rate.
    # 'constant', 'cosine' (decay to learning_rate * final_lr_fraction over train.num_steps) or
    # 'multistep' (times gamma at each of `milestones`, PyTorch's MultiStepLR).
    optim.schedule = "constant"
    optim.final_lr_fraction = 0.0  # With 'cosine': the final learning rate as a fraction.
    optim.milestones = ()  # With 'multistep': the steps where the learning rate is multiplied by gamma.
    optim.gamma = 0.1  # With 'multistep': the factor at each milestone.
    optim.grad_clip_norm = 0.0  # Clip the global gradient norm to this; 0 disables clipping.

    config.generate = generate = ml_collections.ConfigDict()
    # The checkpoint generation and evaluation use: 'best' (the best validation; the latest
    # when there was no validation) or 'latest'.
    generate.checkpoint = "best"

    config.logging = logging = ml_collections.ConfigDict()
    logging.log_every = 50  # Steps between metric logs (metrics.jsonl, TensorBoard, progress bar).
    logging.tensorboard = True  # Also write TensorBoard event files (WORKDIR/tensorboard).
    logging.progress = True  # Show progress bars.

    config.debug = debug = ml_collections.ConfigDict()
    debug.disable_jit = False  # Run everything op by op (jax.disable_jit), for debugging.
    debug.nans = False  # Stop at the first operation that makes a NaN (jax.debug_nans).
    return config


def check_int(config, key: str, minimum: int = 1) -> None:
    """Raises ValueError unless `config.<key>` (a dotted name) is an integer >= `minimum`."""
    value = config
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"config.{key}={value!r} must be an integer >= {minimum}")


def _flatten(cfg, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items") and not isinstance(value, (str, bytes)):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def check_keys(config, reference, source: str = "config") -> None:
    """Raises ValueError naming every key of `config` that `reference` does not have.

    Args:
      config: the ConfigDict to check.
      reference: the ConfigDict holding every allowed key (the defaults).
      source: where `config` came from, for the message (e.g. the file name).
    """
    allowed = _flatten(reference)
    unknown: List[str] = [k for k in _flatten(config) if k not in allowed]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, list(allowed), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown config key(s) in {source}: " + ", ".join(hints))


def read_run_config(workdir: str) -> dict:
    """The plain dict a run stored in `workdir/config.json`.

    Raises:
      FileNotFoundError: when there is no config.json.
      ValueError: when it is not a JSON object.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist; is {workdir!r} a training run's workdir?")
    with open(path) as f:
        try:
            stored = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(stored).__name__}")
    return stored


def load_run_config(workdir: str, reference: Optional[ml_collections.ConfigDict] = None):
    """The config a run wrote to `workdir/config.json`, as a ConfigDict.

    Args:
      workdir: the run's folder.
      reference: optional defaults; keys the stored config lacks (a run made
        before they existed) take their values from it, and keys it does not
        know raise ValueError.

    Raises:
      FileNotFoundError: when there is no config.json.
    """
    stored = read_run_config(workdir)
    if reference is None:
        return ml_collections.ConfigDict(stored)
    check_keys(ml_collections.ConfigDict(stored), reference, source=os.path.join(workdir, "config.json"))

    def merge(base, new):
        for k, v in new.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                merge(base[k], v)
            else:
                base[k] = v
        return base

    return ml_collections.ConfigDict(merge(reference.to_dict(), stored))
