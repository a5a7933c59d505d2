"""A PrivateModel's versions from a listing of its storage, merged with what runs recorded: pure.

Layout of a model's storage root: one folder per version. Never a version: files at the root, the
runner's checkpoint folder (`checkpoints/`) and dotted or underscored folders (`.checkpoints/`, and the
registry's own `.kaizen/`, where a version's full file listing is written when the status lists only its
first files). Storage is the truth: a version folder that disappears leaves the status; a version a run
recorded before its files arrived stays, as `training` or `uploading`, until they do.

Beyond VERSIONS_MAX versions the status lists the newest by index and drops the oldest for good: the
status keeps the highest index ever given (`lastVersionIndex`) and the creation time of the newest
version dropped (`droppedCreatedTime`). A version the status does not list and created no later is one
of those dropped (or older still): it stays out rather than coming back with the next index as the
newest version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from kaizen_api.privatemodel import (
    FILES_INLINE_MAX,
    MESSAGE_MAX,
    MISSING_MAX,
    VERSIONS_MAX,
    ModelFile,
    ModelVersion,
)
from pydantic import ValidationError

from kaizen_operator.registry.readiness import CONTROL_FILES, StoredFile, Verdict

CHECKPOINTS = "checkpoints"
REGISTRY_DIR = ".kaizen"
# All versions together list at most this many files inline (newest versions first), whatever the count.
INLINE_FILES_TOTAL = 500
# Status a run (or an upload) gives a version before its files are complete.
PENDING = frozenset({"training", "uploading"})
# What a scan owns in a version's entry; the rest (pipeline, run, evaluations) is kept as recorded.
_SCAN_FIELDS = frozenset(
    {
        "status",
        "ready",
        "tags",
        "sizeBytes",
        "createdTime",
        "fileCount",
        "files",
        "filesListing",
        "missing",
        "message",
        "baseModel",
        "artifacts",
        "scannedTime",
        "listingDigest",
    }
)


def is_version_folder(name: str) -> bool:
    return bool(name) and name != CHECKPOINTS and not name.startswith((".", "_"))


def group_versions(files: Iterable[StoredFile]) -> dict[str, dict[str, StoredFile]]:
    """Files of the storage root -> {version: {path inside the version: file}}."""
    groups: dict[str, dict[str, StoredFile]] = {}
    for item in files:
        version, sep, rest = item.path.partition("/")
        if sep and rest and is_version_folder(version) and not rest.endswith(".partial"):
            groups.setdefault(version, {})[rest] = StoredFile(rest, item.size, item.modified)
    return groups


def listing_key(version: str) -> str:
    return f"{REGISTRY_DIR}/listings/{version}.json"


def listing_document(files: Mapping[str, StoredFile]) -> list[dict[str, Any]]:
    """The full file listing of one version, as written to `listing_key`."""
    return [_file(f).to_manifest() for f in sorted(files.values(), key=lambda f: f.path)]


def _file(item: StoredFile) -> ModelFile:
    return ModelFile(name=item.path, size_bytes=item.size, modified=item.modified)


def listing_digest(files: Mapping[str, StoredFile]) -> str:
    """Changes whenever a file of the version is added, removed, resized or rewritten."""
    digest = hashlib.sha256()
    for item in sorted(files.values(), key=lambda f: f.path):
        digest.update(
            f"{item.path}\0{item.size}\0{item.modified.isoformat() if item.modified else ''}\n".encode()
        )
    return digest.hexdigest()[:32]


def _created(files: Mapping[str, StoredFile], verdict: Verdict) -> datetime | None:
    if verdict.manifest is not None and verdict.manifest.created_time is not None:
        return verdict.manifest.created_time
    times = [f.modified for f in files.values() if f.modified is not None]
    return min(times) if times else None


def _scanned(
    name: str, files: Mapping[str, StoredFile], verdict: Verdict, previous: dict[str, Any], now: datetime
) -> dict[str, Any]:
    status = verdict.status
    if status == "ready" and previous.get("status") == "deployed":
        status = "deployed"
    shown = {p: f for p, f in files.items() if p not in CONTROL_FILES}
    found: dict[str, Any] = {
        "index": previous.get("index", 0),
        "name": name,
        "size_bytes": sum(f.size for f in shown.values()),
        "created_time": _created(files, verdict) or previous.get("createdTime"),
        "file_count": len(shown),
        "scanned_time": now,
    }
    judged: dict[str, Any] = {
        "status": status,
        "ready": verdict.ready,
        "tags": verdict.tags,
        "missing": verdict.missing[:MISSING_MAX] or None,
        "message": verdict.message,
        "base_model": verdict.base_model,
        "artifacts": verdict.artifacts,
    }
    try:
        version = ModelVersion(**found, **judged)
    except ValidationError as err:  # the files say more than an entry holds: this version fails, not the scan
        version = ModelVersion(**found, status="failed", message=_invalid_entry(err))
    kept = {k: v for k, v in previous.items() if k not in _SCAN_FIELDS}
    return {**kept, **version.to_manifest(), "listingDigest": listing_digest(files)}


def _invalid_entry(err: ValidationError) -> str:
    """Which fields of the version's entry its files would make invalid, and why."""
    fields = ModelVersion.model_fields
    parts = []
    for error in err.errors():
        first = str(error["loc"][0]) if error["loc"] else ""
        where = ".".join(
            [fields[first].alias or first if first in fields else first, *map(str, error["loc"][1:])]
        )
        parts.append(f"{where}: {error['msg']}")
    return f"the version's files do not fit its status entry: {'; '.join(parts)}"[:MESSAGE_MAX]


def _recorded(previous: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """A version a run recorded whose files are not (or no longer) in storage."""
    if previous.get("fileCount") is not None and previous.get("status") not in PENDING:
        return None  # it was in storage and has gone: storage is the truth
    status = previous.get("status")
    if status not in ("training", "failed"):
        status = "uploading"
    return {**previous, "status": status, "ready": False, "scannedTime": now.isoformat()}


class Versions(NamedTuple):
    """A scan's versions: the entries listed, how many there are in all, and the status's bounds."""

    versions: list[dict[str, Any]]
    total: int
    last_index: int | None
    dropped_created: datetime | None


def parse_time(value: datetime | str | None) -> datetime | None:
    """A status timestamp as an aware datetime (UTC when it names no zone)."""
    if not value:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _created_at(entry: Mapping[str, Any]) -> datetime:
    """The entry's createdTime (the earliest possible when it has none)."""
    return parse_time(entry.get("createdTime")) or datetime.min.replace(tzinfo=UTC)


def _floor(before: Mapping[str, Mapping[str, Any]], dropped_created: datetime | None) -> datetime | None:
    """A version the status does not list, created no later than this, stays out: the newest dropped
    one, or the oldest listed while the status is full (a run's record may have pushed one out)."""
    bounds = [dropped_created] if dropped_created is not None else []
    if len(before) >= VERSIONS_MAX:
        bounds.append(min(_created_at(v) for v in before.values()))
    return max(bounds, default=None)


def build_versions(
    groups: Mapping[str, Mapping[str, StoredFile]],
    verdicts: Mapping[str, Verdict],
    previous: list[dict[str, Any]] | None,
    now: datetime,
    listing_uri: Callable[[str], str],
    *,
    last_index: int | None = None,
    dropped_created: datetime | None = None,
) -> Versions:
    """Status entries for every version (oldest first, the newest VERSIONS_MAX by index when more), the
    count, and the bounds that keep dropped versions out (see the module's docstring). A version
    without a verdict is unchanged since its previous entry (see `unchanged`), which is kept.

    Each keeps its earlier index and the fields others recorded (pipeline, run, evaluations); new ones
    get the next indexes after `last_index` in order of creation. Files are listed inline up to
    FILES_INLINE_MAX per version and INLINE_FILES_TOTAL in all, newest versions first; the rest point
    at `listing_uri`.
    """
    before = {v["name"]: v for v in previous or [] if isinstance(v, dict) and "name" in v}
    entries = [
        _scanned(name, files, verdicts[name], before.get(name, {}), now)
        if name in verdicts
        else {**before[name], "scannedTime": now.isoformat()}  # unchanged since its last judgement
        for name, files in groups.items()
    ]
    entries += [
        e for name, v in before.items() if name not in groups and (e := _recorded(v, now)) is not None
    ]
    floor = _floor(before, dropped_created)
    fresh = sorted((e for e in entries if e["name"] not in before), key=lambda e: (_created_at(e), e["name"]))
    cut = sum(1 for e in fresh if floor is not None and _created_at(e) <= floor)  # the oldest: a prefix
    out = {e["name"] for e in fresh[:cut]}
    given = [int(v.get("index", -1)) for v in before.values()]
    next_index = max([-1 if last_index is None else last_index, *given]) + 1
    for entry in fresh[cut:]:
        entry["index"] = next_index
        next_index += 1
    listed = sorted((e for e in entries if e["name"] not in out), key=lambda e: e["index"])
    kept = listed[-VERSIONS_MAX:]
    gone = [*fresh[:cut], *listed[:-VERSIONS_MAX]]
    dropped = [_created_at(e) for e in gone if e.get("createdTime")]
    if dropped_created is not None:
        dropped.append(dropped_created)
    budget = INLINE_FILES_TOTAL
    for entry in reversed(kept):
        files = groups.get(entry["name"])
        if files is None:
            continue
        shown = sorted((f for p, f in files.items() if p not in CONTROL_FILES), key=lambda f: f.path)
        inline = shown[: min(FILES_INLINE_MAX, budget)]
        budget -= len(inline)
        # An unchanged entry still carries its last scan's files: the budget decides them afresh.
        entry.pop("files", None)
        entry.pop("filesListing", None)
        if inline:
            entry["files"] = [_file(f).to_manifest() for f in inline]
        if len(inline) < len(shown):
            entry["filesListing"] = listing_uri(entry["name"])
    return Versions(kept, len(entries), next_index - 1 if next_index else None, max(dropped, default=None))


def unchanged(files: Mapping[str, StoredFile], previous: Mapping[str, Any] | None) -> bool:
    """The version's files are exactly those its previous entry judged: no need to read them again."""
    return previous is not None and previous.get("listingDigest") == listing_digest(files)


def latest_ready(versions: list[dict[str, Any]]) -> str | None:
    ready = [v for v in versions if v.get("ready")]
    return max(ready, key=lambda v: v["index"])["name"] if ready else None


def human_bytes(size: int) -> str:
    """1536 -> 1.5Ki, as kubectl shows quantities."""
    value = float(size)
    for suffix in ("", "Ki", "Mi", "Gi", "Ti"):
        if value < 1024 or suffix == "Ti":
            return f"{value:.0f}{suffix}" if suffix == "" or value >= 10 else f"{value:.1f}{suffix}"
        value /= 1024
    return str(size)
