"""Stream an image from buildah's storage into containerd, leaving out the layers containerd has.

``buildah push`` to an archive rewrites every layer (the runner image's are 7 GB, most of them the
unchanged dependency layer) each time Kaizen's code changes, and compresses them on the way. Yet
containers-storage keeps, for each layer, a *tar-split* record: the tar's headers and padding as raw
bytes, with each file's content left in the layer's diff directory. Replaying it rebuilds the layer's
tar byte for byte, so its digest is the one the image's manifest names. Here the archive is written
straight into ``ctr images import -``, holding only the layers whose snapshot (keyed by chain ID)
containerd does not have yet: after a code change that is a few megabytes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

LAYER_MEDIA_TYPES = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar")
CHUNK = 1 << 20


class ImageStreamError(RuntimeError):
    """The stored image cannot be streamed (a compressed layer, a missing record)."""


@dataclass(frozen=True)
class StoredLayer:
    digest: str  # of the uncompressed tar: the manifest's layer digest and the config's diff ID
    size: int
    tar_split: Path
    diff_dir: Path


@dataclass(frozen=True)
class StoredImage:
    manifest: bytes
    config: bytes
    layers: tuple[StoredLayer, ...]

    @property
    def chain_ids(self) -> list[str]:
        """containerd's snapshot keys for the layers (OCI image-spec's ChainID)."""
        chain: list[str] = []
        for layer in self.layers:
            chain.append(
                layer.digest
                if not chain
                else "sha256:" + hashlib.sha256(f"{chain[-1]} {layer.digest}".encode()).hexdigest()
            )
        return chain


def _buildah(*args: str) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True)
    if result.returncode:
        raise ImageStreamError(f"buildah {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def stored_image(reference: str) -> StoredImage:
    """The image's manifest, config and layer records in buildah's (root) storage."""
    manifest = _buildah("inspect", "--type", "image", "--format", "{{.Manifest}}", reference).strip().encode()
    config = _buildah("inspect", "--type", "image", "--format", "{{.Config}}", reference).strip().encode()
    parsed: dict[str, Any] = json.loads(manifest)
    if parsed["config"]["digest"] != "sha256:" + hashlib.sha256(config).hexdigest():
        raise ImageStreamError(f"{reference}: the config buildah printed is not the one its manifest names")
    root = Path(_buildah("info", "--format", "{{.store.GraphRoot}}").strip())
    records = json.loads((root / "overlay-layers" / "layers.json").read_text())
    by_digest = {r["diff-digest"]: r["id"] for r in records if r.get("diff-digest")}
    layers = []
    for layer in parsed["layers"]:
        if layer["mediaType"] not in LAYER_MEDIA_TYPES or layer["digest"] not in by_digest:
            raise ImageStreamError(
                f"{reference}: layer {layer['digest']} is not an uncompressed stored layer"
            )
        layer_id = by_digest[layer["digest"]]
        layers.append(
            StoredLayer(
                layer["digest"],
                int(layer["size"]),
                root / "overlay-layers" / f"{layer_id}.tar-split.gz",
                root / "overlay" / layer_id / "diff",
            )
        )
    return StoredImage(manifest, config, tuple(layers))


def layer_bytes(layer: StoredLayer) -> Iterator[bytes]:
    """The layer's tar, replayed from its tar-split record and its diff directory."""
    with gzip.open(layer.tar_split, "rt") as records:
        for line in records:
            entry = json.loads(line)
            if entry["type"] == 2:  # raw bytes: headers, padding, the end-of-archive blocks
                yield base64.b64decode(entry["payload"])
            elif entry.get("size"):
                with (layer.diff_dir / entry["name"]).open("rb") as content:
                    while chunk := content.read(CHUNK):
                        yield chunk


def write_archive(image: StoredImage, tag: str, have: set[str], out: IO[bytes]) -> list[str]:
    """An OCI archive of ``image`` named ``tag``, without the layers whose chain ID is in ``have``;
    returns the digests of the layers it holds."""
    manifest_digest = "sha256:" + hashlib.sha256(image.manifest).hexdigest()
    parsed = json.loads(image.manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": parsed.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
                "digest": manifest_digest,
                "size": len(image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    config_digest = parsed["config"]["digest"]
    written = []
    small = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index).encode(),
        _blob(manifest_digest): image.manifest,
        _blob(config_digest): image.config,
    }
    for name, data in small.items():
        _write_member(out, name, len(data), iter([data]))
    for layer, chain_id in zip(image.layers, image.chain_ids, strict=True):
        if chain_id not in have:
            _write_member(out, _blob(layer.digest), layer.size, layer_bytes(layer))
            written.append(layer.digest)
    out.write(b"\0" * 2 * tarfile.BLOCKSIZE)  # the end-of-archive marker
    return written


def _write_member(out: IO[bytes], name: str, size: int, chunks: Iterator[bytes]) -> None:
    """One tar member, streamed: its header, its bytes (exactly ``size``), padding to a block."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    out.write(info.tobuf(tarfile.PAX_FORMAT))
    written = 0
    for chunk in chunks:
        out.write(chunk)
        written += len(chunk)
    if written != size:
        raise ImageStreamError(f"{name}: replayed {written} bytes, the manifest says {size}")
    out.write(b"\0" * (-size % tarfile.BLOCKSIZE))


def _blob(digest: str) -> str:
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"
