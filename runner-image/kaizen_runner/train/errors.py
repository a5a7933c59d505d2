"""The one exception a training run raises for problems the user can fix (shown without a traceback)."""

from __future__ import annotations


class RunnerError(Exception):
    """A configuration, data or storage problem; the message is meant for the user as is."""
