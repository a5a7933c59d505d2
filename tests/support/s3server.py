"""pytest fixtures for a real S3-compatible server (``kaizen_local.s3server``: rclone on 127.0.0.1).

Fixtures: `s3_server` (session) starts it on a free port over a temporary folder and stops it at
the end; `s3_bucket` (function) creates a fresh, empty bucket; `restartable_s3` (function) is a
server of one test's own that it may stop and start again on the same port. A missing rclone binary fails the
tests that need it with a clear message; nothing is skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from kaizen_local import s3server
from kaizen_local.s3server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, S3ServerError, run_s3_server

__all__ = [
    "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY",
    "RestartableS3",
    "S3Server",
    "rclone_binary",
    "restartable_s3",
    "s3_bucket",
    "s3_server",
]

_bucket_numbers = itertools.count()


def rclone_binary() -> str:
    try:
        return s3server.rclone_binary()
    except S3ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("s3root")
    log = tmp_path_factory.mktemp("s3log") / "rclone.log"
    try:
        with run_s3_server(root, log) as server:
            yield server
    except S3ServerError as exc:  # raised only while starting
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new empty bucket for one test."""
    name = f"test-bucket-{next(_bucket_numbers)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


class RestartableS3:
    """A server over `root` on a fixed port that a test may stop and start again (the objects stay on
    disk, as with a restarted S3 service)."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log, self.port = root, log, s3server.free_port()
        self._running: ExitStack | None = None
        self.server: S3Server | None = None

    def start(self) -> None:
        stack = ExitStack()
        self.server = stack.enter_context(run_s3_server(self.root, self.log, port=self.port))
        self._running = stack

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None


@pytest.fixture
def restartable_s3(tmp_path: Path) -> Iterator[RestartableS3]:
    """A server of this test's own, for stopping and restarting it mid-transfer."""
    (tmp_path / "s3root").mkdir()
    server = RestartableS3(tmp_path / "s3root", tmp_path / "rclone.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
