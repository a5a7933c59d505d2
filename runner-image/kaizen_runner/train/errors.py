"""The one exception a training run raises for problems it can name (shown without a traceback)."""

from __future__ import annotations

from kaizen_api.results import FailureReason

# The optional packages a runner image may lack: the setting that needs each, and the words by which
# the libraries' own ImportErrors name it (transformers says "FlashAttention2", not the module).
OPTIONAL_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bitsandbytes": ("quantizationBit", ("bitsandbytes",)),
    "flash_attn": ("flashAttentionV2", ("flash_attn", "flash-attn", "flashattention")),
    "liger_kernel": ("ligerKernel", ("liger_kernel", "liger-kernel")),
}


class RunnerError(Exception):
    """A configuration, data, model or storage problem; the message is meant for the user as is.

    `reason` is the API's failure class: it picks the exit code (user error or retryable
    infrastructure error) and the condition the operator shows.
    """

    def __init__(self, message: str, *, reason: FailureReason = "ConfigInvalid") -> None:
        super().__init__(message)
        self.message = message
        self.reason: FailureReason = reason


def missing_package(module: str | None, detail: str) -> RunnerError:
    """A package the runner image lacks. ConfigInvalid, so the Job is not retried: a new pod runs the
    same image and fails the same way. An optional extra is named with the setting that needs it,
    whether the runner's check or the library's own import found it missing."""
    package = (module or "").partition(".")[0]
    if package in OPTIONAL_PACKAGES:
        setting = OPTIONAL_PACKAGES[package][0]
        return RunnerError(
            f"{setting} needs the {package} package ({detail}), which this runner image does not include; "
            f"unset {setting} or use an image that installs {package}"
        )
    what = f"the Python module {module}" if module else "a Python module"
    return RunnerError(
        f"the runner image cannot import {what} ({detail}); a retry in the same image fails the same "
        "way: use a runner image that installs it"
    )
