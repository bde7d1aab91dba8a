"""Configs: the sections every method shares, key checks, and a run's stored config.

A config is an `ml_collections.ConfigDict`. Every method's defaults
(`implicit_fields.methods.<name>.config.get_config()`) start from
`common_config(method)`, which holds what the trainer reads: the seed, the
field's iso-level and box, the training schedule, the optimiser, logging and
the debug switches. The method adds its own sections (data, model, ...). The
defaults are the method's schema: a config may set only the keys they define
(`check_keys`), so a typo stops the run before any work.
"""

import dataclasses
import difflib
import json
import math
import os
from typing import Any, List, Mapping, Optional, Sequence

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
    # Worker processes that build the batches (grain's `mp_prefetch`); 0 builds them in the
    # trainer's process. The batch of a step is the same whatever the count.
    train.workers = 0
    # 'float32', or 'bfloat16': the forward and backward passes compute in bfloat16 while the
    # parameters, the optimiser state, batch-norm statistics and the loss stay float32.
    train.compute_dtype = "float32"

    config.optim = optim = ml_collections.ConfigDict()
    optim.optimizer = "adam"  # 'adam' (ONet, DVR, ConvONet) or 'rmsprop' (Texture Fields), as PyTorch's.
    optim.learning_rate = 1e-4  # Peak learning rate.
    # 'constant', 'cosine' (decay to learning_rate * final_lr_fraction over train.num_steps) or
    # 'multistep' (times gamma at each of `milestones`, PyTorch's MultiStepLR) or 'exponential'
    # (log-linear to learning_rate * final_lr_fraction at train.num_steps, NeRF's).
    optim.schedule = "constant"
    optim.final_lr_fraction = 0.0  # With 'cosine' or 'exponential' (> 0): the final rate as a fraction.
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


def get(config, key: str):
    """`config.<key>` of a dotted name ('train.batch_size')."""
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def check_int(config, key: str, minimum: int = 1) -> None:
    """Raises ValueError unless `config.<key>` (a dotted name) is an integer >= `minimum`."""
    Int(minimum).check(f"config.{key}", get(config, key))


# ---------------------------------------------------------------------------
# Value checks: what each key means, checked before any work.
# ---------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer in [minimum, maximum]."""

    minimum: int = 1
    maximum: Optional[int] = None
    meaning: str = ""

    def check(self, name: str, value) -> None:
        too_big = self.maximum is not None and _is_int(value) and value > self.maximum
        if not _is_int(value) or value < self.minimum or too_big:
            limits = f">= {self.minimum}" if self.maximum is None else f"in [{self.minimum}, {self.maximum}]"
            raise ValueError(f"{name}={value!r} must be an integer {limits}" + _meaning(self.meaning))


@dataclasses.dataclass(frozen=True)
class Float:
    """A finite number in the interval given by `minimum`/`maximum` (open ends where `*_open`)."""

    minimum: Optional[float] = None
    maximum: Optional[float] = None
    min_open: bool = False
    max_open: bool = False
    meaning: str = ""
    want: str = ""  # What to say it must be, instead of the interval.

    def check(self, name: str, value) -> None:
        ok = _is_number(value) and math.isfinite(value)
        if ok and self.minimum is not None:
            ok = value > self.minimum if self.min_open else value >= self.minimum
        if ok and self.maximum is not None:
            ok = value < self.maximum if self.max_open else value <= self.maximum
        if not ok:
            want = self.want or f"a finite number{self._limits()}{_meaning(self.meaning)}"
            raise ValueError(f"{name}={value!r} must be {want}")

    def _limits(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            lo, hi = "(" if self.min_open else "[", ")" if self.max_open else "]"
            return f" in {lo}{self.minimum}, {self.maximum}{hi}"
        if self.minimum is not None:
            return f" {'>' if self.min_open else '>='} {self.minimum}"
        if self.maximum is not None:
            return f" {'<' if self.max_open else '<='} {self.maximum}"
        return ""


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `choices`."""

    choices: Sequence[Any]

    def check(self, name: str, value) -> None:
        if isinstance(value, bool) or value not in tuple(self.choices):
            raise ValueError(f"{name}={value!r} must be one of {tuple(self.choices)}")


@dataclasses.dataclass(frozen=True)
class Bool:
    """True or False."""

    def check(self, name: str, value) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be True or False")


@dataclasses.dataclass(frozen=True)
class Str:
    """A string (non-empty unless `empty`)."""

    empty: bool = False
    meaning: str = ""

    def check(self, name: str, value) -> None:
        if not isinstance(value, str) or (not self.empty and not value.strip()):
            want = "a string" if self.empty else "a non-empty string"
            raise ValueError(f"{name}={value!r} must be {want}" + _meaning(self.meaning))


@dataclasses.dataclass(frozen=True)
class Strings:
    """A list of non-empty strings."""

    def check(self, name: str, value) -> None:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError(f"{name}={value!r} must be a list of non-empty strings")


@dataclasses.dataclass(frozen=True)
class Ints:
    """A non-empty list of distinct integers in [minimum, maximum]."""

    minimum: int
    maximum: int

    def check(self, name: str, value) -> None:
        items = list(value) if isinstance(value, (list, tuple)) else None
        ok = bool(items) and all(_is_int(v) and self.minimum <= v <= self.maximum for v in items)
        if not ok or len(set(items)) != len(items):
            raise ValueError(
                f"{name}={value!r} must be a non-empty list of distinct integers "
                f"in [{self.minimum}, {self.maximum}]"
            )


@dataclasses.dataclass(frozen=True)
class Steps:
    """Increasing positive step numbers (milestones)."""

    def check(self, name: str, value) -> None:
        steps = list(value) if isinstance(value, (list, tuple)) else None
        if steps is None or not all(_is_int(m) and m > 0 for m in steps) or steps != sorted(set(steps)):
            raise ValueError(f"{name}={value!r} must be increasing positive step numbers")


def _meaning(text: str) -> str:
    return f" ({text})" if text else ""


# The checks of `common_config`'s keys (every method's config has them).
COMMON_CHECKS = {
    "method": Str(),
    "seed": Int(0),
    "field.threshold": Float(0.0, 1.0, min_open=True, max_open=True, want="a probability in (0, 1)"),
    "field.padding": Float(0.0),
    "train.num_steps": Int(1),
    "train.eval_every": Int(1),
    "train.checkpoint_every": Int(1),
    "train.max_to_keep": Int(1),
    "train.prefetch": Int(0),
    "train.workers": Int(0),
    "train.compute_dtype": Choice(("float32", "bfloat16")),
    "optim.optimizer": Choice(("adam", "rmsprop")),
    "optim.learning_rate": Float(0.0, min_open=True),
    "optim.schedule": Choice(("constant", "cosine", "multistep", "exponential")),
    "optim.final_lr_fraction": Float(0.0, 1.0),
    "optim.milestones": Steps(),
    "optim.gamma": Float(0.0, min_open=True),
    "optim.grad_clip_norm": Float(0.0, meaning="0 disables clipping"),
    "generate.checkpoint": Choice(("best", "latest")),
    "logging.log_every": Int(1),
    "logging.tensorboard": Bool(),
    "logging.progress": Bool(),
    "debug.disable_jit": Bool(),
    "debug.nans": Bool(),
}


def check_values(config, checks: Mapping[str, Any]) -> None:
    """Checks every key of `checks` that `config` has against the meaning of its value.

    Raises:
      ValueError: naming the first bad key (`config.<key>=<value>`) and what it must be.
    """
    flat = _flatten(config)
    for key, check in checks.items():
        if key in flat:
            check.check(f"config.{key}", flat[key])


def unchecked_keys(config, checks: Mapping[str, Any]) -> List[str]:
    """The keys of `config` that no entry of `checks` covers (tests keep this empty)."""
    return [k for k in _flatten(config) if k not in checks]


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
        raise FileNotFoundError(f"{path}: does not exist; is {workdir} a training run's workdir?")
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
