"""Probes for whole runs in tests."""

import contextlib

import pytest

from implicit_fields import trainer


@contextlib.contextmanager
def recording_lead_first():
    """Yields the list of names that `trainer.lead_first` is called with (the real function still runs).

    A method prepares its data through `lead_first`, so that in a multi-host run one
    process writes a missing built-in dataset or scene while the others wait.
    """
    calls = []
    real = trainer.lead_first

    def recorder(name, fn, *args, **kwargs):
        calls.append(name)
        return real(name, fn, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "lead_first", recorder)
        yield calls
