"""A PrivateModel's storage as the registry reads it: a key space of files under one root (an S3 prefix
through the runner's ObjectStore, or a folder such as a mounted volume)."""

from __future__ import annotations

import hashlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from kaizen_api.common import OutputStorage
from kaizen_runner.storage import ObjectStore, S3Connection, StorageError

from kaizen_operator.registry.readiness import StoredFile

if TYPE_CHECKING:  # the kubernetes client is imported only where a Secret is read
    from kaizen_operator.kube import Kube

SMALL_FILE_MAX = 16 << 20  # configs, indexes, manifests: never read a weights file by mistake
# Where the operator finds a PersistentVolumeClaim's files: <dir>/<claimName>/, mounted into its pod.
VOLUMES_DIR_ENV = "KAIZEN_VOLUMES_DIR"


class ModelStorage(ABC):
    """Files under one root; keys are POSIX paths relative to it."""

    uri: str

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        """Every file under `prefix` (recursively), with its key relative to the root."""

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """A small file's content, or None when it does not exist."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def delete_all(self) -> int:
        """Remove every file under the root; returns how many."""

    @abstractmethod
    def sha256(self, key: str) -> str: ...


class S3ModelStorage(ModelStorage):
    def __init__(self, objects: ObjectStore, bucket: str, prefix: str) -> None:
        self.objects, self.bucket = objects, bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        root = f"{self.prefix}/" if self.prefix else ""
        for info in self.objects.list(self.bucket, root + prefix):
            if not info.key.endswith("/"):
                yield StoredFile(info.key[len(root) :], info.size, info.last_modified)

    def read(self, key: str) -> bytes | None:
        try:
            return self.objects.get_bytes(self.bucket, self.key(key), max_bytes=SMALL_FILE_MAX)
        except StorageError as err:
            if err.cause == "not_found":
                return None
            raise

    def write(self, key: str, data: bytes) -> None:
        self.objects.put_bytes(self.bucket, self.key(key), data, "application/json")

    def delete_all(self) -> int:
        if not self.prefix:
            raise StorageError(f"refusing to delete everything in bucket {self.bucket!r}", cause="bad_config")
        return self.objects.delete_prefix(self.bucket, self.prefix)

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        try:
            body = self.objects.client.get_object(Bucket=self.bucket, Key=self.key(key))["Body"]
            for chunk in body.iter_chunks(1 << 20):
                digest.update(chunk)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(
                f"cannot read s3://{self.bucket}/{self.key(key)}: {exc}", cause="failed"
            ) from None
        return digest.hexdigest()


class LocalModelStorage(ModelStorage):
    """A folder: a volume mounted into the operator, or a folder on a workstation."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def list(self, prefix: str = "") -> Iterator[StoredFile]:
        base = self.root / prefix if prefix else self.root
        for path in sorted(base.rglob("*")) if base.is_dir() else ():
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                yield StoredFile(path.relative_to(self.root).as_posix(), stat.st_size, modified)

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        if not path.is_file():
            return None
        if path.stat().st_size > SMALL_FILE_MAX:
            raise StorageError(f"{path} is larger than {SMALL_FILE_MAX} bytes", cause="too_large")
        return path.read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete_all(self) -> int:
        count = sum(1 for _ in self.list())
        if self.root.is_dir():
            shutil.rmtree(self.root)
        return count

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with (self.root / key).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()


@lru_cache(maxsize=64)
def object_store(connection: S3Connection) -> ObjectStore:
    """One client per connection: creating a boto3 client costs more than a small scan."""
    return ObjectStore(connection)


def read_secret(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """A connection Secret; StorageError (the storage cannot be reached) when it cannot be read."""
    from kaizen_operator.kube import ApiError, path_of

    try:
        found = kube.get(path_of("v1", "Secret", namespace, name))
    except ApiError as err:
        raise StorageError(
            f"cannot read connection Secret {namespace}/{name}: {err}", cause="access_denied"
        ) from None
    if found is None:
        raise StorageError(f"connection Secret {namespace}/{name} does not exist", cause="bad_config")
    return dict(found)


def open_storage(
    storage: OutputStorage,
    secret: Callable[[str], Mapping[str, Any]],
    environ: Mapping[str, str] | None = None,
) -> ModelStorage:
    """The storage a PrivateModel names; `secret(name)` returns a Secret of its namespace as a dict."""
    if storage.s3 is not None:
        connection = S3Connection.from_secret(secret(storage.s3.connection.name))
        return S3ModelStorage(object_store(connection), storage.s3.bucket, storage.s3.key)
    assert storage.pvc is not None
    volumes = (os.environ if environ is None else environ).get(VOLUMES_DIR_ENV)
    root = Path(volumes or "/nonexistent") / storage.pvc.claim_name
    if not volumes or not root.is_dir():
        raise StorageError(
            f"PersistentVolumeClaim {storage.pvc.claim_name!r} is not mounted into the operator: mount it "
            f"at ${VOLUMES_DIR_ENV}/{storage.pvc.claim_name} (read-write, to delete files) to scan it",
            cause="bad_config",
        )
    return LocalModelStorage(root / storage.pvc.path)
