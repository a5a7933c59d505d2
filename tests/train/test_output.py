"""Model versions: the manifest lists every file with its checksum and is written last; a restart after
publishing reports the published version instead of training again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kaizen_api.finetune_status import RunMetrics
from kaizen_api.results import (
    MANIFEST_SCHEMA,
    BaseModelInfo,
    RunReport,
    TerminationMessage,
    VersionManifest,
)
from kaizen_api.runconfig import TrainRunConfig
from kaizen_operator.registry.readiness import UPLOAD_MARKER, StoredFile, assess_version
from kaizen_runner.train.output import (
    MANIFEST,
    is_version_complete,
    plot_loss_curve,
    publish_version,
    verify_local_version,
)
from kaizen_runner.train.run import run_training
from kaizen_runner.train.store import LocalStore, open_store

from train.helpers import run_config


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


def _published_run(tmp_path: Path, *, with_report: bool) -> tuple[TrainRunConfig, VersionManifest]:
    """A run whose version is published, its checkpoints gone, its base model and data gone too: a
    restart that tried to train would fail."""
    cfg = TrainRunConfig.model_validate(
        run_config(base=tmp_path / "gone", output=str(tmp_path / "out"), data=tmp_path / "gone.json")
    )
    folder = version_folder(tmp_path)
    report = RunReport(
        run_name=cfg.run_name,
        trainer="sft",
        base_model=BaseModelInfo(name="tiny", uri=cfg.base_model.uri),
        config={},
        global_step=12,
        epoch=3.0,
        train_runtime_seconds=42.0,
        metrics=RunMetrics(train_total_loss=0.5),
    )
    if with_report:
        (folder / "training_report.json").write_text(report.model_dump_json(by_alias=True))
    else:
        (folder / "training_report.json").unlink()
    store = open_store(cfg.output).child(cfg.run_name)
    info = VersionManifest(version=cfg.run_name, metrics=RunMetrics(train_total_loss=0.75))
    manifest = publish_version(folder, store, info)
    store.put_bytes(b"{}", UPLOAD_MARKER)  # the attempt stopped right after its manifest
    open_store(cfg.output).put_bytes(b"x", f".checkpoints/{cfg.run_name}/checkpoint-4/model.bin")
    return cfg, manifest


@pytest.mark.parametrize("with_report", [True, False])
def test_a_restart_after_publishing_reports_the_version_instead_of_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_report: bool
) -> None:
    """The pod died after publishing, before its termination message: the restart must not train from
    step 0 (the checkpoints are gone) only for its result to be dropped in favour of the published one."""
    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(termination_log))
    cfg, manifest = _published_run(tmp_path, with_report=with_report)

    result = run_training(cfg, work_dir=tmp_path / "work")

    version = open_store(cfg.output).child(cfg.run_name)
    assert result.trainer is None and result.manifest == manifest and result.version_uri == version.uri
    message = TerminationMessage.model_validate_json(termination_log.read_text())
    assert (message.phase, message.output_version, message.output_uri) == (
        "Succeeded",
        cfg.run_name,
        version.uri,
    )
    assert message.metrics is not None
    if with_report:  # the published training report's numbers
        assert (message.global_step, message.metrics.train_total_loss) == (12, 0.5)
        assert message.train_runtime_seconds == 42.0
    else:  # the manifest's metrics
        assert message.global_step is None and message.metrics.train_total_loss == 0.75
    assert UPLOAD_MARKER not in version.list_files() and is_version_complete(version)
    assert open_store(cfg.output).child(f".checkpoints/{cfg.run_name}").list_files() == {}
