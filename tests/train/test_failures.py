"""The failure classification: which errors the Job retries (infrastructure) and which it fails at once."""

from __future__ import annotations

import pytest
from kaizen_api.results import EXIT_INFRA_ERROR, EXIT_USER_ERROR
from kaizen_runner.data import DataError, Reason
from kaizen_runner.train.failures import classify, exit_code


@pytest.mark.parametrize(
    ("reason", "expected", "code"),
    [
        (Reason.SOURCE_UNREACHABLE, "StorageError", EXIT_INFRA_ERROR),
        (Reason.BAD_SOURCE, "ConfigInvalid", EXIT_USER_ERROR),
        (Reason.NO_USABLE_RECORDS, "DataInvalid", EXIT_USER_ERROR),
    ],
)
def test_data_errors(reason: Reason, expected: str, code: int) -> None:
    failure, message = classify(DataError(reason, "s3:///train.json: names no bucket"))
    assert (failure, exit_code(failure), message) == (expected, code, "s3:///train.json: names no bucket")
