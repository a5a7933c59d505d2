"""Which version of a PrivateModel a pipeline may fine-tune or an EvalJob may evaluate: only a ready one.

Other controllers call `ready_version(pm.status, name)` with the model's status as a dict; a version
that is not ready raises ModelNotReady naming the missing files, for their own condition message.
"""

from __future__ import annotations

from typing import Any

from kaizen_api.privatemodel import ModelVersion, PrivateModelStatus


class ModelNotReady(Exception):
    """The version cannot be used (yet); `missing` lists the files it lacks, when that is the reason."""

    def __init__(self, message: str, *, version: str | None = None, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.version, self.missing = version, missing or []


def ready_version(
    status: dict[str, Any] | PrivateModelStatus | None, name: str | None = None
) -> ModelVersion:
    """The version called `name` if it is ready (or deployed), else the newest ready version when `name`
    is None; ModelNotReady otherwise."""
    parsed = (
        status if isinstance(status, PrivateModelStatus) else PrivateModelStatus.model_validate(status or {})
    )
    versions = parsed.versions or []
    if name is None:
        ready = [v for v in versions if v.ready]
        if not ready:
            raise ModelNotReady(f"no ready version among {len(versions)} version(s)")
        return max(ready, key=lambda v: v.index)
    version = next((v for v in versions if v.name == name), None)
    if version is None:
        known = ", ".join(v.name for v in versions[-5:]) or "none"
        raise ModelNotReady(f"version {name!r} is not in the registry (latest: {known})", version=name)
    if not version.ready:
        missing = version.missing or []
        detail = (
            f"missing {', '.join(missing)}" if missing else (version.message or f"status {version.status}")
        )
        raise ModelNotReady(f"version {name!r} is not ready: {detail}", version=name, missing=missing)
    return version
