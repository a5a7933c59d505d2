"""Checkpoints in the store: uploaded in the background (one at a time, from a snapshot), marked by
every node, the newest N kept, a failed upload only a warning, resume only from complete ones."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from kaizen_api.results import CheckpointMarker
from kaizen_runner.storage import StorageError
from kaizen_runner.train.checkpoints import (
    MARKER,
    NODE_MARKER,
    CheckpointSync,
    latest_checkpoint,
    resolve_resume,
    stored_checkpoints,
)
from kaizen_runner.train.errors import RunnerError
from kaizen_runner.train.store import LocalStore


def local_checkpoint(root: Path, step: int) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    (folder / "model.safetensors").write_bytes(b"w" * step)
    return folder


def save(sync: CheckpointSync, trainer_dir: Path, step: int, max_steps: int = 100, wait: bool = True) -> None:
    local_checkpoint(trainer_dir, step)
    state = SimpleNamespace(global_step=step, epoch=0.1, max_steps=max_steps)
    sync.on_save(SimpleNamespace(output_dir=str(trainer_dir)), state, None)
    if wait:
        sync.wait()


def marker(**fields: object) -> bytes:
    return CheckpointMarker.model_validate({"step": 3, **fields}).model_dump_json(by_alias=True).encode()


def test_sync_marks_and_keeps_the_newest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    sync = CheckpointSync(store, keep=2)
    for step in (2, 4, 6):
        save(sync, tmp_path / "trainer", step)
    assert stored_checkpoints(store) == ["checkpoint-4", "checkpoint-6"]
    assert (store.root / "checkpoint-6" / MARKER).is_file()
    assert not (store.root / "checkpoint-2").exists()
    assert not (tmp_path / "uploading" / "checkpoint-6").exists()  # the snapshot is gone after upload


class GatedStore(LocalStore):
    """Uploads block until the test opens the gate; records the order keys are written in."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.writes: list[str] = []

    def put_file(self, local: Path, key: str) -> None:
        self.gate.wait(timeout=30)
        super().put_file(local, key)
        self.writes.append(key)

    def put_bytes(self, data: bytes, key: str) -> None:
        super().put_bytes(data, key)
        self.writes.append(key)


def test_upload_runs_in_the_background_one_at_a_time_from_a_snapshot(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "store")
    sync = CheckpointSync(store, keep=3)
    trainer_dir = tmp_path / "trainer"
    save(sync, trainer_dir, 2, wait=False)
    assert latest_checkpoint(store) is None  # on_save returned while the upload waits: training goes on
    (trainer_dir / "checkpoint-2" / "model.safetensors").unlink()  # the trainer rotates it away meanwhile
    threading.Timer(0.3, store.gate.set).start()
    save(sync, trainer_dir, 4, wait=False)  # waits for checkpoint-2's upload first: one in flight
    sync.on_train_end(None, None, None)
    assert stored_checkpoints(store) == ["checkpoint-2", "checkpoint-4"]
    assert (store.root / "checkpoint-2" / "model.safetensors").read_bytes() == b"ww"  # from the snapshot
    last_of_2 = store.writes.index(f"checkpoint-2/{MARKER}")
    assert all(key.startswith("checkpoint-2/") for key in store.writes[: last_of_2 + 1])


class BrokenStore(LocalStore):
    def put_file(self, local: Path, key: str) -> None:
        raise StorageError("cannot write: the S3 endpoint is unreachable", cause="unreachable")


def test_a_failed_checkpoint_upload_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = BrokenStore(tmp_path / "store")
    sync = CheckpointSync(store, keep=2)
    with caplog.at_level(logging.WARNING):
        save(sync, tmp_path / "trainer", 2)  # does not raise: training goes on
    assert sync.failed == ["checkpoint-2"] and latest_checkpoint(store) is None
    assert "checkpoint-2 was not stored" in caplog.text


def test_the_last_steps_checkpoint_is_not_uploaded_unless_kept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    save(CheckpointSync(store, keep=2), tmp_path / "a", 10, max_steps=10)
    assert store.list_files() == {}  # its optimizer state would be deleted right after publishing
    save(CheckpointSync(store, keep=2, upload_final=True), tmp_path / "b", 10, max_steps=10)
    assert stored_checkpoints(store) == ["checkpoint-10"]


def test_a_node_other_than_the_first_rotates_its_scratch_and_writes_its_own_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "RANK": "1",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "1",
        "TORCHELASTIC_RUN_ID": "r",
    }.items():
        monkeypatch.setenv(name, value)
    store = LocalStore(tmp_path / "store")
    sync = CheckpointSync(store, keep=2, zero_stage=2)
    trainer_dir = tmp_path / "trainer"
    for step in (2, 4, 6):
        save(sync, trainer_dir, step)
    assert sorted(p.name for p in trainer_dir.iterdir()) == ["checkpoint-4", "checkpoint-6"]
    assert (store.root / "checkpoint-6" / NODE_MARKER.format(1)).is_file()
    assert not (store.root / "checkpoint-6" / MARKER).exists()  # node 0's to write


def test_the_node_that_completes_a_checkpoint_prunes_the_older_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes, one kept checkpoint: node 0 stores its part of checkpoint-4 first, so only node 1,
    whose part completes it, can see that checkpoint-2 is no longer needed."""
    store = LocalStore(tmp_path / "store")
    syncs = {rank: CheckpointSync(store, keep=1, zero_stage=2) for rank in (0, 1)}

    def save_as(rank: int, step: int) -> None:
        for name, value in {"RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": "2"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "r")
        save(syncs[rank], tmp_path / f"trainer-{rank}", step)

    for rank in (0, 1):
        save_as(rank, 2)
    save_as(0, 4)
    assert stored_checkpoints(store) == ["checkpoint-2"]  # checkpoint-4 lacks node 1's part
    save_as(1, 4)
    assert stored_checkpoints(store) == ["checkpoint-4"]
    assert not (store.root / "checkpoint-2").exists()


def test_unmarked_or_partly_marked_checkpoints_are_ignored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_dir(local_checkpoint(tmp_path / "a", 3), "checkpoint-3")
    assert latest_checkpoint(store) is None
    store.put_bytes(marker(), f"checkpoint-3/{MARKER}")
    store.put_dir(local_checkpoint(tmp_path / "b", 10), "checkpoint-10")  # upload cut off: no marker
    assert latest_checkpoint(store) == "checkpoint-3"
    store.put_bytes(marker(step=10, nnodes=2, world_size=2), f"checkpoint-10/{MARKER}")
    assert latest_checkpoint(store) == "checkpoint-3"  # node 1's part is not stored yet
    store.put_bytes(marker(step=10, nnodes=2, world_size=2, node=1), f"checkpoint-10/{NODE_MARKER.format(1)}")
    assert latest_checkpoint(store) == "checkpoint-10"


def test_a_zero_checkpoint_resumes_only_on_its_world_size(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_dir(local_checkpoint(tmp_path / "a", 3), "checkpoint-3")
    store.put_bytes(marker(world_size=4, zero_stage=3), f"checkpoint-3/{MARKER}")
    with pytest.raises(
        RunnerError, match="written by 4 processes under DeepSpeed ZeRO-3, but this run has 2"
    ):
        resolve_resume("auto", store, tmp_path / "scratch", world_size=2)
    assert (
        resolve_resume("auto", store, tmp_path / "scratch", world_size=4)
        == tmp_path / "scratch" / "checkpoint-3"
    )


def test_resume_settings(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    scratch = tmp_path / "scratch"
    assert resolve_resume("auto", store, scratch) is None
    sync = CheckpointSync(store, keep=3)
    save(sync, tmp_path / "trainer", 5)
    save(sync, tmp_path / "trainer", 12)
    fetched = resolve_resume("auto", store, scratch)
    assert fetched == scratch / "checkpoint-12"
    assert (fetched / "trainer_state.json").is_file() and not (fetched / MARKER).exists()
    assert resolve_resume("auto", store, scratch, fetch=False) == scratch / "checkpoint-12"
    assert resolve_resume("false", store, scratch) is None
    assert resolve_resume(str(fetched), store, scratch) == fetched
    with pytest.raises(RunnerError, match="not a checkpoint folder"):
        resolve_resume(str(tmp_path), store, scratch)
