"""Model versions: the manifest lists every file with its checksum and is written last."""

from __future__ import annotations

import json
from pathlib import Path

from kaizen_api.results import MANIFEST_SCHEMA, VersionManifest
from kaizen_operator.registry.readiness import UPLOAD_MARKER, StoredFile, assess_version
from kaizen_runner.train.output import (
    MANIFEST,
    is_version_complete,
    plot_loss_curve,
    publish_version,
    verify_local_version,
)
from kaizen_runner.train.store import LocalStore


class RecordingStore(LocalStore):
    """A LocalStore that remembers the order keys were written in."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writes: list[str] = []

    def put_file(self, local: Path, key: str) -> None:
        super().put_file(local, key)
        self.writes.append(key)

    def put_bytes(self, data: bytes, key: str) -> None:
        super().put_bytes(data, key)
        self.writes.append(key)


def version_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "version"
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 100)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "training_report.json").write_text("{}")
    return folder


def test_manifest_is_written_last_and_lists_every_file(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "store")
    manifest = publish_version(version_folder(tmp_path), store, VersionManifest(version="ft_x_1"))
    assert store.writes[0] == UPLOAD_MARKER and store.writes[-1] == MANIFEST
    assert sorted(store.writes[1:-1]) == sorted(entry.path for entry in manifest.files)
    assert UPLOAD_MARKER not in store.list_files()
    assert {e.path for e in manifest.files} == {
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "training_report.json",
    }
    assert all(e.sha256 is not None and len(e.sha256) == 64 for e in manifest.files)
    stored = json.loads((store.root / MANIFEST).read_text())  # the wire form readers parse
    assert stored["schema"] == MANIFEST_SCHEMA and stored["version"] == "ft_x_1"
    assert "createdTime" in stored and set(stored["files"][0]) == {"path", "size", "sha256"}
    assert is_version_complete(store)
    assert verify_local_version(store.root) == []


class JudgedStore(RecordingStore):
    """A RecordingStore that asks the registry's readiness verdict after every write, as a scan
    running at that moment would."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.verdicts: list[tuple[str, str]] = []

    def _judge(self) -> None:
        files = {path: StoredFile(path, size) for path, size in self.list_files().items()}
        read = lambda path: self.get_bytes(path) if path in files else None  # noqa: E731
        self.verdicts.append((self.writes[-1], assess_version(files, read).status))

    def put_file(self, local: Path, key: str) -> None:
        super().put_file(local, key)
        self._judge()

    def put_bytes(self, data: bytes, key: str) -> None:
        super().put_bytes(data, key)
        self._judge()


def test_a_scan_during_publishing_never_sees_a_ready_version_before_the_manifest(tmp_path: Path) -> None:
    folder = version_folder(tmp_path)
    config = {"peft_type": "LORA", "base_model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    store = JudgedStore(tmp_path / "store")
    publish_version(folder, store, VersionManifest(version="ft_x_1", artifacts={"adapter": "adapter"}))
    assert store.verdicts[-1] == (MANIFEST, "ready")
    assert all(status == "uploading" for _, status in store.verdicts[:-1]), store.verdicts
    assert UPLOAD_MARKER not in store.list_files()


def test_a_leftover_marker_of_an_attempt_stopped_after_its_manifest_is_removed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    folder = version_folder(tmp_path)
    publish_version(folder, store, VersionManifest(version="v"))
    store.put_bytes(b"{}", UPLOAD_MARKER)
    publish_version(folder, store, VersionManifest(version="v"))
    assert UPLOAD_MARKER not in store.list_files()


def test_a_version_without_its_manifest_or_with_a_missing_file_is_incomplete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    folder = version_folder(tmp_path)
    store.put_dir(folder, "")
    assert not is_version_complete(store)
    publish_version(folder, store, VersionManifest(version="v"))
    assert is_version_complete(store)
    (store.root / "training_report.json").unlink()
    assert not is_version_complete(store)
    assert verify_local_version(store.root) == ["training_report.json is missing"]


def test_republishing_removes_leftovers_of_an_interrupted_attempt(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes(b"partial", "adapter/stale.bin")
    publish_version(version_folder(tmp_path), store, VersionManifest(version="v"))
    assert "adapter/stale.bin" not in store.list_files()
    manifest = json.loads((store.root / MANIFEST).read_text())
    assert len(manifest["files"]) == 3


def test_loss_curve_png(tmp_path: Path) -> None:
    history = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "eval_loss": 2.7}]
    path = plot_loss_curve(history, tmp_path / "loss.png", "run")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_loss_curve([], tmp_path / "none.png", "run") is None
