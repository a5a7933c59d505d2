"""The PrivateModel's status summary and labels after a scan: pure, so they are unit-tested as is.

Labels make the registry searchable with label selectors (`kubectl get pm -l kaizen.dev/family=llama`,
`-l kaizen.dev/size-bucket=1b-10b`, `-l subject.tags.kaizen.dev/medicine`); the operator writes only
metadata labels it owns, never spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kaizen_api.base import GROUP, NAME_MAX
from kaizen_api.privatemodel import PrivateModelSpec

from kaizen_operator.conditions import set_condition
from kaizen_operator.registry.params import size_bucket
from kaizen_operator.registry.versions import human_bytes, latest_ready

BASE_LABEL = f"{GROUP}/base-model"
FAMILY_LABEL = f"{GROUP}/family"
SIZE_LABEL = f"{GROUP}/size-bucket"
TYPE_LABEL = f"{GROUP}/type"
TAGS_DOMAIN = f"tags.{GROUP}"
_OWN_KEYS = (BASE_LABEL, FAMILY_LABEL, SIZE_LABEL, TYPE_LABEL)
_SCALE = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
# Periodic resync of every model, and the backoff after failed scans (doubling up to the resync).
RESYNC_SECONDS = 1800.0
FIRST_RETRY_SECONDS = 30.0


def label_value(text: str) -> str | None:
    """A valid label value (63 characters of [a-z0-9._-], alphanumeric at both ends), or None."""
    value = re.sub(r"[^a-z0-9._-]+", "-", text.lower())[:63].strip("._-")
    return value or None


def _parameters(spec: PrivateModelSpec, tags: Mapping[str, Any]) -> int | None:
    if isinstance(tags.get("parameters"), int):
        return int(tags["parameters"])
    if spec.model_size:
        return int(float(spec.model_size[:-1]) * _SCALE[spec.model_size[-1]])
    return None


def model_labels(
    spec: PrivateModelSpec, versions: list[dict[str, Any]], current: Mapping[str, str] | None
) -> dict[str, str | None]:
    """The labels to patch: desired values, and None for owned labels that no longer apply."""
    latest = latest_ready(versions)
    tags: Mapping[str, Any] = next((v.get("tags") or {} for v in versions if v["name"] == latest), {})
    family = tags.get("family") or (
        spec.tags.architecture[0] if spec.tags and spec.tags.architecture else None
    )
    parameters = _parameters(spec, tags)
    wanted: dict[str, str | None] = {
        BASE_LABEL: label_value(spec.base_model) if spec.base_model else None,
        FAMILY_LABEL: label_value(family) if family else None,
        SIZE_LABEL: size_bucket(parameters) if parameters is not None else None,
        TYPE_LABEL: label_value(tags["type"]) if tags.get("type") else None,
    }
    for category, values in (spec.tags.model_dump() if spec.tags else {}).items():
        for value in values or []:
            if name := label_value(value):
                wanted[f"{category}.{TAGS_DOMAIN}/{name}"] = "true"
    owned = [k for k in current or {} if k in _OWN_KEYS or k.split("/", 1)[0].endswith(f".{TAGS_DOMAIN}")]
    patch: dict[str, str | None] = {k: None for k in owned if wanted.get(k) is None}
    patch.update({k: v for k, v in wanted.items() if v is not None and (current or {}).get(k) != v})
    return patch


def scan_status(
    previous: Mapping[str, Any],
    versions: list[dict[str, Any]],
    total: int,
    storage_bytes: int,
    where: str,
    now: datetime,
    generation: int,
    skipped: list[str] | None = None,
) -> dict[str, Any]:
    """Status after a successful scan: versions, counts, sizes, latest ready version, conditions;
    `skipped` names folders that cannot be versions (their names are too long)."""
    latest = latest_ready(versions)
    scanned = f"{total} version(s) in {where}"
    if skipped:
        names = ", ".join(f"{name[:40]}…" for name in skipped[:3]) + (" …" if len(skipped) > 3 else "")
        scanned += f"; {len(skipped)} folder(s) skipped, names over {NAME_MAX} characters: {names}"
    conditions = set_condition(
        previous.get("conditions"), "StorageReachable", "True", "Scanned", scanned, generation
    )
    if latest is not None:
        ready = ("True", "VersionReady", f"version {latest} is ready")
    elif versions:
        newest = versions[-1]
        detail = newest.get("message") or f"status {newest['status']}"
        ready = ("False", "NoReadyVersion", f"no version is ready; {newest['name']}: {detail}")
    else:
        ready = ("False", "NoVersions", f"no version in {where} yet")
    conditions = set_condition(conditions, "Ready", *ready, generation)
    return {
        "observedGeneration": generation,
        "phase": "Ready" if latest else "Empty" if not versions else "NotReady",
        "conditions": conditions,
        "versions": versions,
        "versionCount": total,
        "readyVersionCount": sum(1 for v in versions if v.get("ready")),
        "latestVersion": latest,
        "storageBytes": storage_bytes,
        "storageSize": human_bytes(storage_bytes),
        "lastScanTime": now.isoformat(),
        "scanFailures": 0,
    }


def scan_failed_status(previous: Mapping[str, Any], error: str, now: datetime, generation: int) -> dict:
    """Status after a failed scan: the error on StorageReachable, Ready Unknown (nothing was learnt)."""
    conditions = set_condition(
        previous.get("conditions"), "StorageReachable", "False", "StorageError", error, generation
    )
    conditions = set_condition(conditions, "Ready", "Unknown", "StorageUnavailable", error, generation)
    return {
        "observedGeneration": generation,
        "phase": "StorageUnavailable",
        "conditions": conditions,
        "lastScanTime": now.isoformat(),
        "scanFailures": int(previous.get("scanFailures") or 0) + 1,
    }


def retry_delay(failures: int) -> float:
    """Seconds until the next scan after `failures` failed scans in a row: 30, 60, 120 ... up to a resync."""
    if failures <= 0:
        return RESYNC_SECONDS
    return min(RESYNC_SECONDS, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
