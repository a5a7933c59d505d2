"""One scan of a PrivateModel's storage: list it, judge each version, write the full listings of
versions too large to list inline, and return the status patch."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kaizen_api.base import GROUP, NAME_MAX
from kaizen_api.privatemodel import FILES_INLINE_MAX, PrivateModelSpec
from kaizen_runner.storage import StorageError

from kaizen_operator.registry.bases import base_tags_reader, operator_catalog
from kaizen_operator.registry.readiness import (
    CONTROL_FILES,
    BaseTags,
    Reader,
    StoredFile,
    Verdict,
    assess_version,
)
from kaizen_operator.registry.storage import ModelStorage, open_storage
from kaizen_operator.registry.summary import scan_failed_status, scan_status
from kaizen_operator.registry.versions import (
    PENDING,
    build_versions,
    group_versions,
    listing_document,
    listing_key,
    parse_time,
    unchanged,
)

VERIFY_ANNOTATION = f"{GROUP}/verify-checksums"
SecretGetter = Callable[[str], Mapping[str, Any]]


def _reader(storage: ModelStorage, version: str, files: Mapping[str, StoredFile]) -> Reader:
    def read(path: str) -> bytes | None:
        return storage.read(f"{version}/{path}") if path in files else None

    return read


def judge(
    storage: ModelStorage,
    groups: Mapping[str, Mapping[str, StoredFile]],
    previous: Mapping[str, Mapping[str, Any]],
    verify: bool = False,
    base_tags: BaseTags | None = None,
) -> dict[str, Verdict]:
    """The verdict on every version whose files changed since the last scan (all of them with `verify`);
    a version a run or upload is writing counts as in progress."""
    verdicts = {}
    for name, files in groups.items():
        if not verify and unchanged(files, previous.get(name)):
            continue
        checksum = (lambda path, n=name: storage.sha256(f"{n}/{path}")) if verify else None
        in_progress = previous.get(name, {}).get("status") in PENDING
        verdicts[name] = assess_version(
            files,
            _reader(storage, name, files),
            checksum=checksum,
            in_progress=in_progress,
            base_tags=base_tags,
        )
    return verdicts


def _unnamable(groups: dict[str, dict[str, StoredFile]]) -> list[str]:
    """Take out the folders whose names cannot be a version's name (longer than NAME_MAX): one such
    folder must not make every scan of the model fail; the scan names them instead."""
    overlong = sorted(name for name in groups if len(name) > NAME_MAX)
    for name in overlong:
        del groups[name]
    return overlong


def _write_listings(storage: ModelStorage, groups: Mapping, versions: list[dict], previous: Mapping) -> None:
    """The full file listing of each version that lists only its first files, when it changed (best
    effort: a connection without write access still gets a scan)."""
    for entry in versions:
        files = groups.get(entry["name"])
        if files is None or entry.get("fileCount", 0) <= FILES_INLINE_MAX and "filesListing" not in entry:
            continue
        before = previous.get(entry["name"], {})
        if (before.get("fileCount"), before.get("sizeBytes"), before.get("filesListing")) == (
            entry.get("fileCount"),
            entry.get("sizeBytes"),
            entry.get("filesListing"),
        ):
            continue
        shown = {p: f for p, f in files.items() if p not in CONTROL_FILES}
        try:
            storage.write(listing_key(entry["name"]), json.dumps(listing_document(shown)).encode())
        except StorageError:
            entry.pop("filesListing", None)  # a read-only connection: the count and first files remain


def scan(
    body: Mapping[str, Any], secret: SecretGetter, now: datetime | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(status patch, versions) for the PrivateModel `body`; a storage error gives the failed-scan status."""
    now = now or datetime.now(UTC)
    status = dict(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 0)
    try:
        spec = PrivateModelSpec.model_validate(body["spec"])
        storage = open_storage(spec.storage, secret)
        groups = group_versions(storage.list())
        skipped = _unnamable(groups)
        previous = {v["name"]: v for v in status.get("versions") or [] if isinstance(v, dict) and "name" in v}
        annotations = body["metadata"].get("annotations") or {}
        verify = annotations.get(VERIFY_ANNOTATION) == "true"
        verdicts = judge(
            storage, groups, previous, verify, base_tags_reader(storage, catalog=operator_catalog())
        )
        built = build_versions(
            groups,
            verdicts,
            list(previous.values()),
            now,
            lambda v: f"{storage.uri}/{listing_key(v)}",
            last_index=status.get("lastVersionIndex"),
            dropped_created=parse_time(status.get("droppedCreatedTime")),
        )
        _write_listings(storage, groups, built.versions, previous)
    except StorageError as err:
        return scan_failed_status(status, str(err), now, generation), list(status.get("versions") or [])
    size = sum(f.size for files in groups.values() for p, f in files.items() if p not in CONTROL_FILES)
    result = scan_status(status, built.versions, built.total, size, storage.uri, now, generation, skipped)
    result["lastVersionIndex"] = built.last_index
    result["droppedCreatedTime"] = built.dropped_created.isoformat() if built.dropped_created else None
    return result, built.versions


def check_version(storage: ModelStorage, *, verify: bool = False) -> Verdict:
    """The verdict on one version folder: the storage's root (`kaizen-runner model check`)."""
    files = {f.path: f for f in storage.list() if not f.path.endswith(".partial")}
    checksum = storage.sha256 if verify else None
    read: Reader = lambda path: storage.read(path) if path in files else None  # noqa: E731
    bases = base_tags_reader(storage, local_paths=True, catalog=operator_catalog())
    return assess_version(files, read, checksum=checksum, base_tags=bases)
