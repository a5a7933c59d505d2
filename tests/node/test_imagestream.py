"""An image streamed from buildah's storage (``imagestream``): every layer replayed from its tar-split
record is byte for byte the layer its manifest names, and layers containerd already has are left out."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator

import pytest
from kaizen_local import runnerimage
from kaizen_local.node import imagestream

pytestmark = pytest.mark.real_node
REFERENCE = "kaizen.local/streamtest:two-layers"


def buildah(*args: str) -> str:
    return subprocess.run(["buildah", *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if reason := runnerimage.unavailable_reason():
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("content")
    (folder / "first.txt").write_text("first layer\n")
    (folder / "second.bin").write_bytes(bytes(range(256)) * 300)  # not a multiple of tar's block
    container = buildah("from", "scratch")
    try:
        buildah("copy", container, str(folder / "first.txt"), "/first.txt")
        buildah("commit", "--quiet", container, f"{REFERENCE}-base")
    finally:
        buildah("rm", container)
    container = buildah("from", "--pull-never", f"{REFERENCE}-base")
    try:
        buildah("copy", container, str(folder / "second.bin"), "/data/second.bin")
        buildah("commit", "--quiet", container, REFERENCE)
    finally:
        buildah("rm", container)
    yield REFERENCE
    buildah("rmi", REFERENCE, f"{REFERENCE}-base")


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_replayed_layers_are_the_stored_layers(two_layers: str) -> None:
    image = imagestream.stored_image(two_layers)
    out = io.BytesIO()
    written = imagestream.write_archive(image, "two-layers", set(), out)
    files = members(out.getvalue())
    index = json.loads(files["index.json"])
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "two-layers"
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'][7:]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    assert written == [layer["digest"] for layer in manifest["layers"]] and len(written) == 2
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        blob = files[f"blobs/sha256/{layer['digest'][7:]}"]
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"] == diff_id
    with tarfile.open(fileobj=io.BytesIO(files[f"blobs/sha256/{written[1][7:]}"])) as layer_tar:
        member = layer_tar.extractfile("data/second.bin")
        assert member is not None and member.read() == bytes(range(256)) * 300


def test_layers_containerd_has_are_left_out(two_layers: str) -> None:
    image = imagestream.stored_image(two_layers)
    first_chain = image.chain_ids[0]
    out = io.BytesIO()
    written = imagestream.write_archive(image, "two-layers", {first_chain}, out)
    assert written == [image.layers[1].digest]
    assert f"blobs/sha256/{image.layers[0].digest[7:]}" not in members(out.getvalue())
    # The second layer's chain ID folds in the first (OCI image-spec): the same layer on another
    # parent is another snapshot.
    expected = hashlib.sha256(f"{image.layers[0].digest} {image.layers[1].digest}".encode()).hexdigest()
    assert image.chain_ids == [image.layers[0].digest, "sha256:" + expected]
