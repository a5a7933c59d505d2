"""Where a run's checkpoints and model version go: an S3 prefix or a folder (a mounted volume).

Both behave as a flat key space under a root, so checkpoint sync, resume and version publishing are
written once. Keys are POSIX paths relative to the store's root. S3 goes through the runner's one
S3 layer (`kaizen_runner.storage.ObjectStore`: managed, retried transfers); folders are copied
with a rename at the end, so a reader never sees half a file. Several files move at once.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from kaizen_api.runconfig import RunLocation

from kaizen_runner.storage import ObjectStore, StorageError, parse_s3_url
from kaizen_runner.train.connections import object_store
from kaizen_runner.train.errors import RunnerError

# Files in flight at once (each large one is itself sent in parallel parts by the S3 layer).
FILE_CONCURRENCY = 4
T = TypeVar("T")


class Store(ABC):
    """A key space under one root; `child` narrows it to a sub-folder."""

    uri: str

    @abstractmethod
    def child(self, *parts: str) -> Store: ...

    @abstractmethod
    def put_file(self, local: Path, key: str) -> None: ...

    @abstractmethod
    def put_bytes(self, data: bytes, key: str) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """The object's content, or None when it does not exist."""

    @abstractmethod
    def list_files(self, prefix: str = "") -> dict[str, int]:
        """Every key under `prefix` (recursively) with its size in bytes."""

    @abstractmethod
    def delete(self, prefix: str) -> None:
        """Remove the key `prefix` (a file) or every key under it (a folder)."""

    def put_dir(self, local: Path, prefix: str, *, skip: frozenset[str] = frozenset()) -> list[str]:
        """Upload every file under `local` to `prefix/…`; returns the keys written (relative to prefix)."""
        files = [
            (path, rel)
            for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.is_symlink())
            if (rel := path.relative_to(local).as_posix()) not in skip
        ]
        _each(lambda item: self.put_file(item[0], _join(prefix, item[1])), files)
        return [rel for _, rel in files]

    def download(self, prefix: str, local: Path) -> Path:
        """Copy every key under `prefix` into `local`, keeping the relative layout."""
        files = self.list_files(prefix)
        if not files:
            raise RunnerError(f"nothing found at {self.uri}/{prefix}")
        root = local.resolve()
        targets = []
        for key in files:
            target = (root / (key[len(prefix) :].lstrip("/") if prefix else key)).resolve()
            if not target.is_relative_to(root):
                raise RunnerError(f"{self.uri}/{key} would be written outside {local}", reason="StorageError")
            target.parent.mkdir(parents=True, exist_ok=True)
            targets.append((key, target))
        _each(lambda item: self._download_file(*item), targets)
        return local

    def _download_file(self, key: str, target: Path) -> None:
        data = self.get_bytes(key)
        if data is None:
            raise RunnerError(f"{self.uri}/{key} disappeared while downloading", reason="StorageError")
        target.write_bytes(data)


def _each(action: Callable[[T], object], items: Sequence[T]) -> None:
    """Run `action` on every item, FILE_CONCURRENCY at a time; the first error is raised."""
    with ThreadPoolExecutor(max_workers=FILE_CONCURRENCY) as pool:
        for _ in pool.map(action, items):
            pass


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


class LocalStore(Store):
    """A folder, e.g. a PersistentVolumeClaim mounted into the pod."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def child(self, *parts: str) -> LocalStore:
        return LocalStore(self.root.joinpath(*[p for p in parts if p]))

    def put_file(self, local: Path, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        shutil.copyfile(local, tmp)
        tmp.replace(target)

    def put_bytes(self, data: bytes, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        tmp.write_bytes(data)
        tmp.replace(target)

    def get_bytes(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def list_files(self, prefix: str = "") -> dict[str, int]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return {}
        return {
            p.relative_to(self.root).as_posix(): p.stat().st_size
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".partial")
        }

    def delete(self, prefix: str) -> None:
        path = self.root / prefix
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def _download_file(self, key: str, target: Path) -> None:
        shutil.copyfile(self.root / key, target)


class S3Store(Store):
    """A key prefix in an S3-compatible bucket (through the data layer's ObjectStore)."""

    def __init__(self, objects: ObjectStore, bucket: str, prefix: str) -> None:
        self.objects = objects
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return _join(self.prefix, key)

    def child(self, *parts: str) -> S3Store:
        return S3Store(self.objects, self.bucket, _join(self.prefix, *parts))

    def put_file(self, local: Path, key: str) -> None:
        self.objects.upload_file(local, self.bucket, self._key(key))

    def put_bytes(self, data: bytes, key: str) -> None:
        self.objects.put_bytes(self.bucket, self._key(key), data)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.objects.get_bytes(self.bucket, self._key(key))
        except StorageError as err:
            if err.cause == "not_found":
                return None
            raise

    def list_files(self, prefix: str = "") -> dict[str, int]:
        base = self._key(prefix)
        base = base + "/" if base else ""
        root = self.prefix + "/" if self.prefix else ""
        return {info.key[len(root) :]: info.size for info in self.objects.list(self.bucket, base)}

    def delete(self, prefix: str) -> None:
        key = self._key(prefix)
        if not key:
            raise RunnerError(f"refusing to delete everything in bucket {self.bucket!r}")
        keys = [
            info.key
            for info in self.objects.list(self.bucket, key)
            if info.key == key or info.key.startswith(key + "/")  # not a sibling such as checkpoint-40
        ]
        self.objects.delete_keys(self.bucket, keys, where=key)

    def _download_file(self, key: str, target: Path) -> None:
        self.objects.download_file(self.bucket, self._key(key), target)


def open_store(location: RunLocation) -> Store:
    """The store a RunLocation names: s3://bucket/prefix (with its connection) or a local folder."""
    uri = location.uri
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_url(uri)
        return S3Store(object_store(location.connection), bucket, prefix)
    if "://" in uri and not uri.startswith("file://"):
        raise RunnerError(f"{uri}: the output must be an s3:// URI or a folder (a mounted volume)")
    return LocalStore(Path(uri.removeprefix("file://")))
