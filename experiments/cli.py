"""What every command-line script shares: a problem is one line on stderr and exit code 2.

Scripts end in `cli.run_absl(main)` (absl flags) or `cli.run(fn, ...)`
(argparse). An error a user can fix (a bad flag, config key or value, a
missing, unreadable or corrupt file, a run that cannot resume) prints

  error: <file or key>: <problem>

and exits with code 2, without a traceback. `IMPLICIT_FIELDS_DEBUG=1` (or
`--debug` where a script defines it) shows the traceback instead. A bug,
anything else, still raises with its full traceback.
"""

import argparse
import difflib
import os
import re
import sys
from typing import Any, Callable, NoReturn

DEBUG_ENV = "IMPLICIT_FIELDS_DEBUG"

# The errors a user can fix: bad values and keys, files (missing, unreadable, a
# folder where a file belongs, read-only), and a training run that diverged.
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def debugging() -> bool:
    """Whether tracebacks are shown (`IMPLICIT_FIELDS_DEBUG` set to anything but '', '0' or 'false')."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(error: BaseException) -> str:
    """The error's message on one line (an OSError with its file name, as `<file>: <problem>`)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    if isinstance(error, KeyError) and text.startswith("'"):
        text = text.strip("'")
    return re.sub(r"\s*\n\s*", "; ", text.strip())


def fail(message: str) -> NoReturn:
    """Prints `error: message` (one line) to stderr and exits with code 2."""
    text = _config_file_error(re.sub(r"\s*\n\s*", "; ", message.strip()))
    print(f"error: {text}", file=sys.stderr)
    sys.exit(2)


def _config_file_error(text: str) -> str:
    """A one-line message for ml_collections' 'Failed loading config file' chain."""
    if "Failed loading config file" not in text:
        return text
    missing = re.search(r"No such file or directory: '([^']*)'", text)
    if missing:
        return f"--config: {missing.group(1)}: no such config file"
    return "--config: " + text.split("Failed loading config file", 1)[1].lstrip(" ;:")


def run(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Calls `fn`; a user's error becomes one line and exit code 2 (unless debugging)."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as e:
        if debugging():
            raise
        fail(one_line(e))


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line, `error: <flag>: <problem>`, with exit code 2."""

    def error(self, message):
        fail(message.replace("argument ", "", 1) if message.startswith("argument ") else message)


def _config_override_error(argv, error: Exception) -> str:
    """A one-line message for an exception raised while absl parsed `argv` (config overrides)."""
    from absl import flags

    overrides = [a for a in argv[1:] if a.startswith("--") and "." in a.split("=", 1)[0]]
    quoted = re.search(r"'([^'\\]+)\\?'", str(error))
    missing = quoted.group(1) if quoted else ""
    for arg in overrides:
        name = arg[2:].split("=", 1)[0]
        flag_name, _, key = name.partition(".")
        if missing not in key.split("."):
            continue
        hint = ""
        try:
            config = flags.FLAGS[flag_name].value
            flat = _flat_keys(config) if config is not None else []
            close = difflib.get_close_matches(key, flat, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        except Exception:  # noqa: BLE001 - only for the hint
            pass
        return f"{arg}: unknown config key {key!r}{hint}"
    return f"command line: {one_line(error)}"


def _flat_keys(config, prefix: str = ""):
    keys = []
    for k, v in config.items():
        if hasattr(v, "items"):
            keys += _flat_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def run_absl(main: Callable[[list], Any], argv=None) -> None:
    """`absl.app.run(main)`, with one-line errors for bad flags, config overrides and user errors."""
    from absl import app, flags

    def parse(args):
        try:
            return flags.FLAGS(args)
        except flags.Error as e:
            if debugging():
                raise
            fail(f"command line: {one_line(e)}")
        except SyntaxError as e:
            if debugging():
                raise
            fail(f"{e.filename}:{e.lineno}: {e.msg} (in the config file)")
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            # ml_collections' config flags raise these for an unknown key or a bad value.
            if debugging():
                raise
            fail(_config_override_error(args, e))
        except Exception as e:  # noqa: BLE001 - a config file's own code failed while loading
            if debugging():
                raise
            fail(f"--config: loading the config file raised {type(e).__name__}: {one_line(e)}")

    try:
        app.run(main, argv=argv, flags_parser=parse)
    except USER_ERRORS as e:
        if debugging():
            raise
        fail(one_line(e))
