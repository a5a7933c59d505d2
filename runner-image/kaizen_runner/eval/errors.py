"""The exception an evaluation raises for a problem it can name: the training runs' RunnerError, so one
classification (`kaizen_runner.train.failures`) gives every run its reason and exit code."""

from __future__ import annotations

from kaizen_api.results import FailureReason

from kaizen_runner.train.errors import RunnerError


class EvalError(RunnerError):
    """`reason` is the condition reason the operator shows (ConfigInvalid, ModelInvalid, DataNotStaged…)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message, reason=reason)
