"""Config checks: every key a config sets must exist in the reference config."""

import difflib
from typing import List


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
