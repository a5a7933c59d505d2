"""Certificates for the real node, made with the openssl CLI: a private CA, the kubelet's serving cert
and the client cert the apiserver presents to the kubelet (``kubectl logs``/``exec`` go that way).

The kubelet itself signs in to the apiserver with a static token (``system:node:<name>``, group
``system:nodes``), so the Node authorizer gives it exactly a node's permissions.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = "30"


class PkiError(RuntimeError):
    """openssl failed; the message carries its output."""


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode:
        raise PkiError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))


@dataclass(frozen=True)
class NodePki:
    """Where the node's certificates are; ``create`` makes them."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def kubelet_cert(self) -> Path:
        return self.dir / "kubelet.crt"

    @property
    def kubelet_key(self) -> Path:
        return self.dir / "kubelet.key"

    @property
    def apiserver_client_cert(self) -> Path:
        return self.dir / "apiserver-kubelet-client.crt"

    @property
    def apiserver_client_key(self) -> Path:
        return self.dir / "apiserver-kubelet-client.key"

    @classmethod
    def create(cls, directory: Path, node_name: str, node_ip: str) -> NodePki:
        pki = cls(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _key(pki.ca_key)
        _openssl(
            "req", "-x509", "-new", "-key", str(pki.ca_key), "-out", str(pki.ca_cert),
            "-days", VALID_DAYS, "-subj", "/CN=kaizen-local-node-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        pki._sign(
            pki.kubelet_key,
            pki.kubelet_cert,
            f"/CN=system:node:{node_name}/O=system:nodes",
            f"subjectAltName=DNS:{node_name},IP:{node_ip},IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        )
        pki._sign(
            pki.apiserver_client_key,
            pki.apiserver_client_cert,
            "/CN=kube-apiserver-kubelet-client/O=system:masters",
            "extendedKeyUsage=clientAuth",
        )
        return pki

    def _sign(self, key: Path, cert: Path, subject: str, extensions: str) -> None:
        _key(key)
        csr, ext = cert.with_suffix(".csr"), cert.with_suffix(".ext")
        ext.write_text(f"keyUsage=critical,digitalSignature\n{extensions}\n")
        _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", VALID_DAYS, "-extfile", str(ext),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()
