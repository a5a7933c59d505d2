"""Files from the Hugging Face Hub, its failures sorted as every run's are: a model the Hub (or, offline,
the local cache) does not have is the user's to fix; a Hub that cannot be reached is worth a retry.

Training's base model and the preflight's tokenizer both come through here, so both say the same.
"""

from __future__ import annotations

import os
from pathlib import Path

from kaizen_api.results import FailureReason

from kaizen_runner.train.errors import RunnerError

_TRUE = ("1", "true", "yes", "on")
INVALID: FailureReason = "ModelInvalid"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


def hub_snapshot(
    repo_id: str, allow_patterns: list[str], *, what: str, ignore_patterns: list[str] | None = None
) -> Path:
    """A local folder with `repo_id`'s files that match the patterns (the cache only, offline).

    `what` names the files for messages, e.g. "base model" or "the tokenizer of".
    """
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id,
            local_files_only=hub_offline(),
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
        )
    except Exception as err:
        failure = hub_failure(err, f"{what} hf://{repo_id}")
        if failure is None:
            raise
        raise failure from err
    return Path(folder)


def hub_failure(err: BaseException, subject: str) -> RunnerError | None:
    """ModelInvalid for a model that is not there to fetch, StorageError for a Hub that could not be
    reached; None for an error that is not the Hub's (the run's usual classification takes it)."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, LocalEntryNotFoundError):
        # huggingface_hub raises it when the cache lacks the files, chained to why it did not ask the
        # Hub: nothing (offline) or the connection or HTTP error that stopped it.
        cause = err.__cause__
        if cause is None or isinstance(cause, OfflineModeIsEnabled):
            return RunnerError(
                f"{subject} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; mirror it "
                "to S3 or a volume and point the catalog entry there",
                reason=INVALID,
            )
        return RunnerError(
            f"cannot reach the Hugging Face Hub for {subject}: {type(cause).__name__}: {cause}",
            reason="StorageError",
        )
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, RepositoryNotFoundError | RevisionNotFoundError) or (
        isinstance(err, HfHubHTTPError) and status in (401, 403)
    ):
        return RunnerError(f"{subject} is not on the Hub, or not open to this token: {err}", reason=INVALID)
    if isinstance(err, HFValidationError):
        return RunnerError(f"{subject} is not a Hugging Face repo id: {err}", reason=INVALID)
    if isinstance(err, HfHubHTTPError | OSError):
        return RunnerError(f"cannot download {subject}: {err}", reason="StorageError")
    return None
