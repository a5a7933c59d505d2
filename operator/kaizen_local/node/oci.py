"""Small OCI images written directly from files on this machine, for a cluster with no registry.

An image here is one uncompressed layer (a tar with fixed timestamps and owners) plus its config, in an
OCI archive that ``ctr images import`` reads. The same inputs make the same bytes, so the image's tag
is a hash of its content and an image already in containerd is never imported twice.

Two images come with the node: ``pause`` (the pod sandbox; a 20-line C program compiled statically
with gcc) and ``busybox`` (Debian's static busybox, a shell and tools for tests).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_PREFIX = "kaizen.local/"
BUSYBOX_BINARY = Path("/bin/busybox")  # Debian's busybox-static
BUSYBOX_APPLETS = ("sh", "cat", "echo", "sleep", "wget", "nc", "ls", "id", "test", "true", "false", "env")
PAUSE_SOURCE = r"""
/* The pod sandbox's process: holds the namespaces, reaps orphans, exits on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    if (getpid() != 1) return 1;  /* only meaningful as a namespace's init */
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""


class ImageError(RuntimeError):
    """An image could not be built (a missing compiler or input file)."""


@dataclass
class ImageSpec:
    """What goes in an image: files (path in the image -> content and mode), symlinks and config."""

    name: str  # without IMAGE_PREFIX or tag
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = ""
    env: list[str] = field(default_factory=lambda: ["PATH=/bin"])

    def layer(self) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            directories = sorted({str(Path(p).parent) for p in [*self.files, *self.symlinks]} - {"/", "."})
            for directory in directories:
                tar.addfile(_entry(directory, tarfile.DIRTYPE, 0o755))
            for path, (content, mode) in sorted(self.files.items()):
                tar.addfile(_entry(path, tarfile.REGTYPE, mode, len(content)), io.BytesIO(content))
            for path, target in sorted(self.symlinks.items()):
                info = _entry(path, tarfile.SYMTYPE, 0o777)
                info.linkname = target
                tar.addfile(info)
        return buffer.getvalue()


def _entry(path: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.type, info.mode, info.size, info.mtime, info.uid, info.gid = kind, mode, size, 0, 0, 0
    return info


def _blob(data: bytes, media_type: str) -> tuple[dict[str, Any], str]:
    digest = hashlib.sha256(data).hexdigest()
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}, digest


def write_archive(spec: ImageSpec, target_dir: Path) -> tuple[str, Path]:
    """Write ``spec`` as an OCI archive under ``target_dir``; return its reference and path. The tag is
    the first 16 hex digits of the manifest's digest."""
    layer = spec.layer()
    layer_desc, layer_digest = _blob(layer, "application/vnd.oci.image.layer.v1.tar")
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": spec.env, "Entrypoint": spec.entrypoint or None, "Cmd": spec.cmd or None},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
    }
    if spec.user:
        config["config"]["User"] = spec.user
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_desc, _ = _blob(config_bytes, "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "config": config_desc, "layers": [layer_desc]}
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_desc, manifest_digest = _blob(manifest_bytes, "application/vnd.oci.image.manifest.v1+json")
    reference = f"{IMAGE_PREFIX}{spec.name}:{manifest_digest[:16]}"
    manifest_desc["annotations"] = {
        "io.containerd.image.name": reference,
        "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "manifests": [manifest_desc]}
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"{spec.name}-{manifest_digest[:16]}.tar"
    members: Mapping[str, bytes] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index, sort_keys=True).encode(),
        **{f"blobs/sha256/{hashlib.sha256(b).hexdigest()}": b for b in (layer, config_bytes, manifest_bytes)},
    }
    partial = path.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        for name, data in members.items():
            tar.addfile(_entry(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    partial.rename(path)
    return reference, path


def pause_image(build_dir: Path) -> ImageSpec:
    """The sandbox image: ``pause.c`` above, compiled statically (glibc's libc.a, from libc6-dev)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    source, binary = build_dir / "pause.c", build_dir / "pause"
    source.write_text(PAUSE_SOURCE)
    try:
        result = subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)], capture_output=True, text=True
        )
    except FileNotFoundError:
        raise ImageError("gcc is not installed; it compiles the pod sandbox's pause program") from None
    if result.returncode:
        raise ImageError(f"gcc could not build the pause program:\n{result.stderr}")
    return ImageSpec("pause", files={"/pause": (binary.read_bytes(), 0o755)}, entrypoint=["/pause"])


def busybox_image() -> ImageSpec:
    """A minimal image for tests: Debian's static busybox and its applets as symlinks, under /bin."""
    if not BUSYBOX_BINARY.is_file():
        raise ImageError(f"{BUSYBOX_BINARY} is missing: install Debian's busybox-static package")
    return ImageSpec(
        "busybox",
        files={"/bin/busybox": (BUSYBOX_BINARY.read_bytes(), 0o755)},
        symlinks={f"/bin/{applet}": "busybox" for applet in BUSYBOX_APPLETS},
        cmd=["sh"],
    )
