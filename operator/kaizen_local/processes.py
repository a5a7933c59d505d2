"""Child processes of the local cluster: spawned so that they die with their parent, probed for health
over one kept-alive connection, their log tails quoted in errors."""

from __future__ import annotations

import ctypes
import http.client
import signal
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


class ControlPlaneError(RuntimeError):
    """A component failed to start or died; the message carries the tail of its log."""


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


_PROBE_TLS = ssl.create_default_context()
_PROBE_TLS.check_hostname = False  # health probes on local addresses before any CA is known
_PROBE_TLS.verify_mode = ssl.CERT_NONE


class Probe:
    """Polls a health endpoint over one kept-alive connection: a TLS handshake per poll would cost the
    starting apiserver more CPU than the check itself."""

    def __init__(
        self, port: int, path: str, tls: bool = True, token: str | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.host, self.port, self.path, self.tls = host, port, path, tls
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.connection: http.client.HTTPConnection | None = None

    def __call__(self) -> bool:
        if self.connection is None:
            self.connection = (
                http.client.HTTPSConnection(self.host, self.port, timeout=2, context=_PROBE_TLS)
                if self.tls
                else http.client.HTTPConnection(self.host, self.port, timeout=2)
            )
        try:
            self.connection.request("GET", self.path, headers=self.headers)
            response = self.connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):  # not listening yet, reset, TLS not ready
            self.close()
            return False
        return response.status == 200

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: deliver SIGTERM to it when the spawning thread dies, so a killed
    pytest (kill -9, os._exit on timeout) leaves no etcd/apiserver behind."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
