"""The one exception an evaluation raises for problems with a cause the user can read (no traceback)."""

from __future__ import annotations

from kaizen_api.results import FailureReason


class EvalError(Exception):
    """`reason` is the condition reason the operator shows (ConfigInvalid, ModelInvalid, DataNotStaged…)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.message = message
