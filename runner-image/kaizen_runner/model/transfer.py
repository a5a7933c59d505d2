"""Moving a model version between a workstation and the registry's storage.

Uploads are resumable: a file already stored with the same bytes (its size, and an ETag that is the MD5
of the local file) is skipped, and a large file goes up in parts, reusing the parts of an earlier
interrupted multipart upload whose MD5 matches. The version's marker (`.kaizen-uploading`) is written
first and the manifest last, so the registry shows the version as `uploading` until every file is in place.
Downloads resume the same way: a local file is kept only when its bytes are the stored ones (the
manifest's sha256, else the object's ETag), never for its size alone.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kaizen_api.results import ManifestFile, VersionManifest
from kaizen_operator.registry.readiness import MANIFEST, UPLOAD_MARKER

from kaizen_runner.storage import ObjectInfo, ObjectStore, StorageError
from kaizen_runner.train.output import read_manifest, sha256_file

PART_SIZE = 64 << 20  # S3 allows at most 10,000 parts: 64 MiB parts carry files up to 625 GiB
MIN_PART_SIZE = 5 << 20  # S3's minimum for every part but the last
Progress = Callable[[int], None]


@contextmanager
def _errors(action: str, bucket: str, key: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(
            f"cannot {action} s3://{bucket}/{key}: {exc}", cause="failed", bucket=bucket
        ) from None


def local_files(folder: Path) -> list[Path]:
    """The files of a version folder to upload (symlinks are not followed; our control files are not sent)."""
    return [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not p.is_symlink()
        and p.relative_to(folder).as_posix() not in (MANIFEST, UPLOAD_MARKER)
    ]


def build_manifest(folder: Path, version: str, base_model: str | None = None) -> VersionManifest:
    files = [
        ManifestFile(path=p.relative_to(folder).as_posix(), size=p.stat().st_size, sha256=sha256_file(p))
        for p in local_files(folder)
    ]
    return VersionManifest(
        version=version, base_model=base_model, created_time=datetime.now(UTC), files=files
    )


def _stored(objects: ObjectStore, bucket: str, prefix: str) -> dict[str, ObjectInfo]:
    return {info.key: info for info in objects.list(bucket, prefix.rstrip("/") + "/")}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _uploads_in_progress(client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """The multipart uploads begun under `key`. rclone's S3 server (the local stack's) answers NoSuchUpload
    rather than an empty list while a bucket has none, which is no error for a first upload."""
    try:
        return client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads") or []
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return []
        raise


def _content_etags(path: Path, part_size: int) -> set[str]:
    """The ETags an S3 server may give `path`'s bytes as `upload_version` sends them: the MD5 of the whole
    file (a single-part object, and a multipart one on servers such as rclone's), and AWS's multipart form,
    the MD5 of the parts' MD5s and the part count. A size alone cannot tell a rewritten file from the one
    an earlier attempt stored."""
    whole, digests = hashlib.md5(usedforsecurity=False), []
    with path.open("rb") as handle:
        while data := handle.read(part_size):
            whole.update(data)
            digests.append(hashlib.md5(data, usedforsecurity=False).digest())
    return {whole.hexdigest(), f"{_md5(b''.join(digests))}-{len(digests)}"}


def _already_stored(info: ObjectInfo | None, path: Path, size: int, part_size: int) -> bool:
    """Whether the stored object holds `path`'s bytes; an ETag that is no MD5 (SSE-KMS, another part
    size) reads as different, so the file is sent again rather than trusted."""
    return info is not None and info.size == size and info.etag in _content_etags(path, part_size)


def upload_file_resumable(
    client: Any,
    path: Path,
    bucket: str,
    key: str,
    *,
    part_size: int = PART_SIZE,
    progress: Progress | None = None,
) -> int:
    """Upload one file in parts, continuing an earlier multipart upload of the same key; returns the bytes
    actually sent (the rest was already stored)."""
    if part_size < MIN_PART_SIZE:
        raise StorageError(
            f"part size {part_size} is below S3's minimum of {MIN_PART_SIZE}", cause="bad_config"
        )
    size = path.stat().st_size
    with _errors("upload", bucket, key):
        uploads = _uploads_in_progress(client, bucket, key)
        upload_id = next((u["UploadId"] for u in uploads if u["Key"] == key), None)
        done: dict[int, str] = {}
        if upload_id is None:
            upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        else:
            listed = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts") or []
            done = {int(p["PartNumber"]): str(p["ETag"]).strip('"') for p in listed}
        sent, parts = 0, []
        with path.open("rb") as handle:
            for number, offset in enumerate(range(0, max(size, 1), part_size), start=1):
                handle.seek(offset)
                data = handle.read(part_size)
                etag = _md5(data)
                if done.get(number) != etag:
                    etag = client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                    )["ETag"].strip('"')
                    sent += len(data)
                parts.append({"PartNumber": number, "ETag": f'"{etag}"'})
                if progress:
                    progress(len(data))
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    return sent


def upload_version(
    objects: ObjectStore,
    folder: Path,
    bucket: str,
    prefix: str,
    manifest: VersionManifest,
    *,
    part_size: int = PART_SIZE,
    progress: Progress | None = None,
) -> int:
    """Upload `folder` as the version at `prefix`: marker, files (resuming), manifest, marker removed.
    Returns the bytes sent."""
    prefix = prefix.strip("/")
    stored = _stored(objects, bucket, prefix)
    if f"{prefix}/{MANIFEST}" in stored:
        raise StorageError(
            f"s3://{bucket}/{prefix} is already a complete version; versions are immutable, "
            "choose another --version",
            cause="bad_config",
        )
    marker = json.dumps({"version": manifest.version, "started": datetime.now(UTC).isoformat()}).encode()
    objects.put_bytes(bucket, f"{prefix}/{UPLOAD_MARKER}", marker)
    sent = 0
    for entry in manifest.files:
        key = posixpath.join(prefix, entry.path)
        path = folder / entry.path
        if _already_stored(stored.get(key), path, entry.size, part_size):
            if progress:
                progress(entry.size)
        elif entry.size > part_size:
            sent += upload_file_resumable(
                objects.client, path, bucket, key, part_size=part_size, progress=progress
            )
        else:
            objects.put_bytes(bucket, key, path.read_bytes())
            sent += entry.size
            if progress:
                progress(entry.size)
    body = manifest.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()
    objects.put_bytes(bucket, f"{prefix}/{MANIFEST}", body, "application/json")
    objects.delete_keys(bucket, [f"{prefix}/{UPLOAD_MARKER}"], where=prefix)
    return sent


def _part_size(objects: ObjectStore, bucket: str, info: ObjectInfo) -> int:
    """The part size behind a multipart ETag ("<md5 of md5s>-<n>"): the size of part 1, which S3 tells
    on request; any other ETag is checked as the MD5 of the body, where the part size plays no role."""
    if "-" not in info.etag:
        return PART_SIZE
    try:
        return int(objects.client.head_object(Bucket=bucket, Key=info.key, PartNumber=1)["ContentLength"])
    except (ClientError, BotoCoreError, KeyError, ValueError):
        return PART_SIZE  # unknown: the check fails and the file is fetched again


def _holds(
    objects: ObjectStore, bucket: str, info: ObjectInfo, target: Path, entry: ManifestFile | None
) -> bool:
    """Whether the local `target` already holds the object's bytes (an earlier, interrupted download):
    the manifest's sha256 where it lists the file (the stronger check), else the object's ETag."""
    if not (target.is_file() and target.stat().st_size == info.size):
        return False
    if entry is not None and entry.sha256:
        return entry.size == info.size and sha256_file(target) == entry.sha256
    return _already_stored(info, target, info.size, _part_size(objects, bucket, info))


def _listed_files(objects: ObjectStore, bucket: str, prefix: str, keys: set[str]) -> dict[str, ManifestFile]:
    """The files the version's manifest lists, by path; none when it has no (readable) manifest."""
    if prefix + MANIFEST not in keys:
        return {}
    manifest = read_manifest(objects.get_bytes(bucket, prefix + MANIFEST))
    return {entry.path: entry for entry in manifest.files} if manifest is not None else {}


def download_version(
    objects: ObjectStore, bucket: str, prefix: str, dest: Path, *, progress: Progress | None = None
) -> list[Path]:
    """Download every file of the version at `prefix` into `dest` (paths kept; never outside `dest`)."""
    prefix = prefix.strip("/") + "/"
    root = dest.resolve()
    written = []
    infos = list(objects.list(bucket, prefix))
    listed = _listed_files(objects, bucket, prefix, {info.key for info in infos})
    for info in infos:
        relative = info.key[len(prefix) :]
        if not relative or relative.endswith("/") or relative == UPLOAD_MARKER:
            continue
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise StorageError(f"s3://{bucket}/{info.key} would be written outside {dest}", cause="failed")
        if not _holds(objects, bucket, info, target, listed.get(relative)):
            objects.download_file(bucket, info.key, target)
        written.append(target)
        if progress:
            progress(info.size)
    return written
