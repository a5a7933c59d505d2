"""S3 connections: the Secret the operator mounts under $KAIZEN_CONNECTIONS_DIR/<name>/, or AWS_* env."""

from __future__ import annotations

import os
from pathlib import Path

from kaizen_runner.storage import ENV_NAMES, ObjectStore, S3Connection
from kaizen_runner.train.errors import RunnerError

DEFAULT_CONNECTIONS_DIR = "/var/run/kaizen/connections"


def s3_connection(name: str | None) -> S3Connection:
    """A named connection (one file per key of its mounted Secret), or the process environment."""
    if name is None:
        return S3Connection.from_env()
    folder = Path(os.environ.get("KAIZEN_CONNECTIONS_DIR", DEFAULT_CONNECTIONS_DIR)) / name
    if not folder.is_dir():
        raise RunnerError(f"S3 connection {name!r} is not mounted at {folder}")
    files = {
        key: (folder / key).read_text().strip() for key in ENV_NAMES.values() if (folder / key).is_file()
    }
    return S3Connection.from_env(files)


def object_store(name: str | None) -> ObjectStore:
    return ObjectStore(s3_connection(name))
