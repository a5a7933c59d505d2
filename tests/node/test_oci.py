"""The node's images are written directly as OCI archives: same inputs give the same bytes (so the tag,
a content hash, finds an image already imported), and the archive is a valid OCI layout."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from kaizen_local.node.oci import ImageSpec, write_archive


def spec() -> ImageSpec:
    return ImageSpec(
        "tool",
        files={"/bin/tool": (b"#!/bin/sh\necho hi\n", 0o755)},
        symlinks={"/bin/alias": "tool"},
        entrypoint=["/bin/tool"],
        user="1000",
    )


def test_same_content_same_archive_and_tag(tmp_path: Path) -> None:
    first, first_path = write_archive(spec(), tmp_path / "a")
    second, second_path = write_archive(spec(), tmp_path / "b")
    changed = spec()
    changed.files["/bin/tool"] = (b"#!/bin/sh\necho bye\n", 0o755)
    third, _ = write_archive(changed, tmp_path / "c")

    assert first == second and first.startswith("kaizen.local/tool:")
    assert first_path.read_bytes() == second_path.read_bytes()
    assert third != first


def test_archive_is_an_oci_layout_with_the_files(tmp_path: Path) -> None:
    reference, path = write_archive(spec(), tmp_path)
    with tarfile.open(path) as archive:
        index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
        [manifest_desc] = index["manifests"]
        assert manifest_desc["annotations"]["io.containerd.image.name"] == reference

        def blob(digest: str) -> bytes:
            data = archive.extractfile(f"blobs/sha256/{digest.split(':')[1]}").read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == digest.split(":")[1]
            return data

        manifest = json.loads(blob(manifest_desc["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        [layer_desc] = manifest["layers"]
        with tarfile.open(fileobj=io.BytesIO(blob(layer_desc["digest"]))) as layer:
            members = {m.name: m for m in layer.getmembers()}

    assert config["config"]["Entrypoint"] == ["/bin/tool"] and config["config"]["User"] == "1000"
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]  # uncompressed: digest is the diff id
    assert members["bin/tool"].mode == 0o755 and members["bin/alias"].linkname == "tool"
    assert {m.mtime for m in members.values()} == {0}
