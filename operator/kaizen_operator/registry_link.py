"""A succeeded run's output becomes a version entry in its target PrivateModel's status, and the
evaluation gate marks that entry promoted.

The one place the FineTunePipeline controller writes a PrivateModel. The registry controller owns
everything else there (storage scan, readiness, tags, sizes), so this merges by version name and
keeps every field already set: an entry that exists is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from kaizen_api.base import API_VERSION
from kaizen_api.privatemodel import VERSIONS_MAX

from kaizen_operator.kube import ApiError, Kube, path_of

ATTEMPTS = 3


def version_entry(name: str, index: int, created: datetime | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": index, "name": name, "status": "ready"}
    if created is not None:
        entry["createdTime"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return entry


def merge_version(
    versions: list[dict[str, Any]], name: str, created: datetime | None
) -> list[dict[str, Any]] | None:
    """`versions` with `name` appended (oldest first, the oldest dropped beyond VERSIONS_MAX as a scan
    drops it), or None when it is already there."""
    if any(v.get("name") == name for v in versions):
        return None
    index = max((int(v.get("index", -1)) for v in versions), default=-1) + 1
    return [*versions, version_entry(name, index, created)][-VERSIONS_MAX:]


def promote_version(versions: list[dict[str, Any]], name: str) -> list[dict[str, Any]] | None:
    """`versions` with `name` marked promoted, or None when it is already marked (or not there)."""
    if not any(v.get("name") == name and not v.get("promoted") for v in versions):
        return None
    return [{**v, "promoted": True} if v.get("name") == name else v for v in versions]


def record_version(kube: Kube, namespace: str, model: str, version: str, created: datetime | None) -> None:
    """Add the version to PrivateModel `model`'s status."""
    update_versions(kube, namespace, model, lambda versions: merge_version(versions, version, created))


def mark_promoted(kube: Kube, namespace: str, model: str, version: str) -> None:
    """Mark the version promoted in PrivateModel `model`'s status (the gate's thresholds all held)."""
    update_versions(kube, namespace, model, lambda versions: promote_version(versions, version))


def update_versions(
    kube: Kube,
    namespace: str,
    model: str,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None],
    *,
    missing_ok: bool = False,
) -> None:
    """Write `change(versions)` unless it is None; optimistic concurrency, retried on conflict. A
    missing PrivateModel is an error unless `missing_ok`."""
    path = path_of(API_VERSION, "PrivateModel", namespace, model)
    for attempt in range(ATTEMPTS):
        current = kube.get(path)
        if current is None:
            if missing_ok:
                return
            raise ApiError(404, f'{{"reason": "NotFound", "message": "PrivateModel {model} not found"}}')
        versions = list((current.get("status") or {}).get("versions") or [])
        merged = change(versions)
        if merged is None:
            return
        body = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "status": {"versions": merged},
        }
        try:
            kube.merge_patch(f"{path}/status", body)
            return
        except ApiError as err:
            if err.status != 409 or attempt == ATTEMPTS - 1:
                raise
