"""Config checks (every key a config sets must exist in the reference config) and loading
the config a run stored in its workdir."""

import difflib
import json
import os
from typing import List, Optional

import ml_collections


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
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist; is {workdir!r} a training run's workdir?")
    with open(path) as f:
        stored = json.load(f)
    if reference is None:
        return ml_collections.ConfigDict(stored)
    check_keys(ml_collections.ConfigDict(stored), reference, source=path)

    def merge(base, new):
        for k, v in new.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                merge(base[k], v)
            else:
                base[k] = v
        return base

    return ml_collections.ConfigDict(merge(reference.to_dict(), stored))
