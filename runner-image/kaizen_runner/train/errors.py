"""The one exception a training run raises for problems it can name (shown without a traceback)."""

from __future__ import annotations

from kaizen_api.results import FailureReason


class RunnerError(Exception):
    """A configuration, data, model or storage problem; the message is meant for the user as is.

    `reason` is the API's failure class: it picks the exit code (user error or retryable
    infrastructure error) and the condition the operator shows.
    """

    def __init__(self, message: str, *, reason: FailureReason = "ConfigInvalid") -> None:
        super().__init__(message)
        self.message = message
        self.reason: FailureReason = reason
