"""One scan of a PrivateModel's storage: list it, judge each version, write the full listings of
versions too large to list inline, and return the status patch."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaizen_api.base import GROUP
from kaizen_api.privatemodel import FILES_INLINE_MAX, PrivateModelSpec
from kaizen_runner.storage import StorageError, parse_s3_url

from kaizen_operator.registry.readiness import CONTROL_FILES, Reader, StoredFile, Verdict, assess_version
from kaizen_operator.registry.storage import SMALL_FILE_MAX, ModelStorage, S3ModelStorage, open_storage
from kaizen_operator.registry.summary import scan_failed_status, scan_status
from kaizen_operator.registry.versions import (
    PENDING,
    build_versions,
    group_versions,
    listing_document,
    listing_key,
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
    base_config: Callable[[str], dict[str, Any] | None] | None = None,
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
            base_config=base_config,
        )
    return verdicts


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
        previous = {v["name"]: v for v in status.get("versions") or [] if isinstance(v, dict) and "name" in v}
        annotations = body["metadata"].get("annotations") or {}
        verify = annotations.get(VERIFY_ANNOTATION) == "true"
        verdicts = judge(storage, groups, previous, verify, base_configs(storage))
        versions, total = build_versions(
            groups, verdicts, list(previous.values()), now, lambda v: f"{storage.uri}/{listing_key(v)}"
        )
        _write_listings(storage, groups, versions, previous)
    except StorageError as err:
        return scan_failed_status(status, str(err), now, generation), list(status.get("versions") or [])
    size = sum(f.size for files in groups.values() for p, f in files.items() if p not in CONTROL_FILES)
    return scan_status(status, versions, total, size, storage.uri, now, generation), versions


def base_configs(
    storage: ModelStorage, *, local_paths: bool = False
) -> Callable[[str], dict[str, Any] | None]:
    """Reads an adapter base's config.json: an s3:// prefix through this storage's connection, or (on a
    workstation, `local_paths`) a folder; a base elsewhere, such as a hub id, gives None (no size tag).
    The operator never follows local paths: they come from a user's file. Each base is read once."""
    cache: dict[str, dict[str, Any] | None] = {}

    def read(uri: str) -> dict[str, Any] | None:
        if uri not in cache:
            cache[uri] = _read_base_config(storage, uri, local_paths)
        return cache[uri]

    return read


def _read_base_config(storage: ModelStorage, uri: str, local_paths: bool) -> dict[str, Any] | None:
    raw: bytes | None = None
    try:
        if uri.startswith("s3://") and isinstance(storage, S3ModelStorage):
            bucket, prefix = parse_s3_url(uri)
            key = f"{prefix.strip('/')}/config.json".lstrip("/")
            raw = storage.objects.get_bytes(bucket, key, max_bytes=SMALL_FILE_MAX)
        elif local_paths and "://" not in uri and Path(uri, "config.json").is_file():
            raw = Path(uri, "config.json").read_bytes()
        config = json.loads(raw) if raw is not None else None
    except (StorageError, OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def check_version(storage: ModelStorage, *, verify: bool = False) -> Verdict:
    """The verdict on one version folder: the storage's root (`kaizen-runner model check`)."""
    files = {f.path: f for f in storage.list() if not f.path.endswith(".partial")}
    checksum = storage.sha256 if verify else None
    read: Reader = lambda path: storage.read(path) if path in files else None  # noqa: E731
    return assess_version(files, read, checksum=checksum, base_config=base_configs(storage, local_paths=True))
