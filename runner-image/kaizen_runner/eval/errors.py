"""The exception an evaluation raises for a problem it can name: the training runs' RunnerError, so one
classification (`kaizen_runner.train.failures`) gives every run its reason and exit code."""

from __future__ import annotations

from kaizen_api.results import FailureReason

from kaizen_runner.train.errors import RunnerError


class EvalError(RunnerError):
    """`reason` is the condition reason the operator shows (ConfigInvalid, ModelInvalid, DataNotStaged…)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message, reason=reason)


# An endpoint's answers that a retry cannot change: a wrong URL, model name or key (the user's to fix).
USER_HTTP_STATUSES = frozenset({400, 401, 403, 404})


def endpoint_status_reason(status: int | None) -> FailureReason:
    """ConfigInvalid for the statuses above; anything else from an endpoint may be gone on a retry."""
    return "ConfigInvalid" if status in USER_HTTP_STATUSES else "InfrastructureError"
