"""The output store on the real S3 server (through a mounted connection) and on a folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaizen_api.results import VersionManifest
from kaizen_api.runconfig import RunLocation
from kaizen_runner.train.errors import RunnerError
from kaizen_runner.train.output import is_version_complete, publish_version
from kaizen_runner.train.store import LocalStore, S3Store, open_store


@pytest.mark.s3
def test_s3_store_round_trip(s3_bucket: str, s3_connection_dir: str, tmp_path: Path) -> None:
    store = open_store(RunLocation(uri=f"s3://{s3_bucket}/models/m1", connection=s3_connection_dir))
    assert isinstance(store, S3Store) and store.uri == f"s3://{s3_bucket}/models/m1"
    local = tmp_path / "dir"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_text("a")
    (local / "sub" / "b.bin").write_bytes(b"bb")
    assert store.child("v1").put_dir(local, "") == ["a.txt", "sub/b.bin"]
    assert store.list_files() == {"v1/a.txt": 1, "v1/sub/b.bin": 2}
    assert store.get_bytes("v1/sub/b.bin") == b"bb" and store.get_bytes("nope") is None
    copy = store.download("v1", tmp_path / "copy")
    assert (copy / "sub" / "b.bin").read_bytes() == b"bb"
    store.put_bytes(b"keep", "v1/sub2")  # a sibling whose name starts like the folder
    store.delete("v1/sub")
    assert store.list_files() == {"v1/a.txt": 1, "v1/sub2": 4}
    store.delete("v1/a.txt")  # a single object, as checkpoint pruning deletes its marker first
    assert store.list_files() == {"v1/sub2": 4}


@pytest.mark.s3
def test_version_on_s3_is_complete_only_with_manifest(
    s3_bucket: str, s3_connection_dir: str, tmp_path: Path
) -> None:
    store = open_store(RunLocation(uri=f"s3://{s3_bucket}/pm/ft_x_1", connection=s3_connection_dir))
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "training_report.json").write_text("{}")
    store.put_dir(folder, "")
    assert not is_version_complete(store)
    publish_version(folder, store, VersionManifest(version="ft_x_1"))
    assert is_version_complete(store)


def test_folder_store_and_unknown_schemes(tmp_path: Path) -> None:
    assert isinstance(open_store(RunLocation(uri=str(tmp_path))), LocalStore)
    with pytest.raises(RunnerError, match="s3:// URI or a folder"):
        open_store(RunLocation(uri="gs://bucket/x"))


def test_missing_connection_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_CONNECTIONS_DIR", str(tmp_path))
    with pytest.raises(RunnerError, match="connection 'nope' is not mounted"):
        open_store(RunLocation(uri="s3://b/x", connection="nope"))
