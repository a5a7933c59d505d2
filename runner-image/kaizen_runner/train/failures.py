"""Every way a run can end badly, mapped to one of the API's failure reasons and an exit code.

The operator's podFailurePolicy fails a Job at once on EXIT_USER_ERROR and retries on
EXIT_INFRA_ERROR, so the classification decides whether a broken run is retried: errors the user
must fix (configuration, data, model) are not, errors a new pod may not meet (storage, memory,
network, the runner itself) are. A module the image cannot import is not retried either: every pod
runs the same image.
"""

from __future__ import annotations

import sys

from kaizen_api.results import EXIT_INFRA_ERROR, EXIT_USER_ERROR, USER_ERROR_REASONS, FailureReason
from pydantic import ValidationError

from kaizen_runner.data import DataError
from kaizen_runner.storage import StorageError
from kaizen_runner.train.errors import OPTIONAL_PACKAGES, RunnerError, missing_package

# Storage failures the user fixes in the connection or the URI; others are worth a retry.
_STORAGE_USER_CAUSES = frozenset({"access_denied", "no_bucket", "not_found", "bad_config", "too_large"})
# Data failures that are not the records' fault: an unreachable source is retried, a bad URI or
# connection is the run configuration's.
_DATA_SOURCE_REASONS: dict[str, FailureReason] = {
    "source_unreachable": "StorageError",
    "bad_source": "ConfigInvalid",
}
_DISTRIBUTED_WORDS = ("nccl", "gloo", "rendezvous", "process group", "watchdog", "collective")


def _is_oom(err: BaseException) -> bool:
    import torch

    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def _is_distributed(err: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(err, (dist.DistError, dist.DistBackendError)):
        return True
    if type(err).__module__.startswith("torch.distributed"):  # rendezvous and elastic agent errors
        return True
    return isinstance(err, (RuntimeError, TimeoutError)) and any(
        word in str(err).lower() for word in _DISTRIBUTED_WORDS
    )


def _unwrapped(err: BaseException) -> BaseException:
    """The error a `datasets` DatasetGenerationError stands for: it wraps whatever the rows raised (a
    DataError naming a record, a full disk), which alone says whose fault the failure is."""
    exceptions = sys.modules.get("datasets.exceptions")  # not imported: not a datasets error
    while (
        exceptions is not None
        and isinstance(err, exceptions.DatasetGenerationError)
        and (inner := err.__cause__ or err.__context__) is not None
    ):
        err = inner
    return err


def _missing_module(err: ImportError) -> str | None:
    """The module an ImportError is about: its `name`, else an optional extra its message names
    (transformers raises a bare ImportError for FlashAttention2 and bitsandbytes)."""
    if err.name:
        return err.name
    text = str(err).lower()
    return next((m for m, (_, words) in OPTIONAL_PACKAGES.items() if any(w in text for w in words)), None)


def classify(err: BaseException) -> tuple[FailureReason, str]:
    """(reason, message for the user) of an exception that ended a run."""
    err = _unwrapped(err)
    if isinstance(err, RunnerError):
        return err.reason, err.message
    if isinstance(err, DataError):
        return _DATA_SOURCE_REASONS.get(err.reason.value, "DataInvalid"), err.message
    if isinstance(err, StorageError):
        return ("ConfigInvalid" if err.cause in _STORAGE_USER_CAUSES else "StorageError"), str(err)
    if isinstance(err, ValidationError):
        return "ConfigInvalid", f"invalid run configuration: {err}"
    if isinstance(err, ImportError):
        missing = missing_package(_missing_module(err), f"{type(err).__name__}: {err}")
        return missing.reason, missing.message
    if _is_oom(err):
        return (
            "OutOfMemory",
            f"out of memory: {err}; lower batchSize or maxSequenceLength, or use LoRA, "
            "DeepSpeed ZeRO-3 or more GPUs",
        )
    if _is_distributed(err):
        return "DistributedError", f"distributed training failed: {err}"
    if isinstance(err, ValueError):
        # transformers/TRL/PEFT check their arguments with ValueError: a setting they cannot run with.
        return "ConfigInvalid", f"{type(err).__name__}: {err}"
    if isinstance(err, OSError):
        return "InfrastructureError", f"{type(err).__name__}: {err}"
    return "RunnerError", f"{type(err).__name__}: {err}"


def exit_code(reason: FailureReason) -> int:
    return EXIT_USER_ERROR if reason in USER_ERROR_REASONS else EXIT_INFRA_ERROR
