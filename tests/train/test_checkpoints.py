"""Checkpoints in the store: only marked ones count, the newest N are kept, resume finds the latest."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from kaizen_runner.train.checkpoints import (
    MARKER,
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


def save(sync: CheckpointSync, trainer_dir: Path, step: int) -> None:
    local_checkpoint(trainer_dir, step)
    sync.on_save(
        SimpleNamespace(output_dir=str(trainer_dir)), SimpleNamespace(global_step=step, epoch=0.1), None
    )


def test_sync_marks_and_keeps_the_newest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    sync = CheckpointSync(store, keep=2)
    for step in (2, 4, 6):
        save(sync, tmp_path / "trainer", step)
    assert stored_checkpoints(store) == ["checkpoint-4", "checkpoint-6"]
    assert (store.root / "checkpoint-6" / MARKER).is_file()
    assert not (store.root / "checkpoint-2").exists()


def test_unmarked_checkpoints_are_ignored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_dir(local_checkpoint(tmp_path / "a", 3), "checkpoint-3")
    assert latest_checkpoint(store) is None
    store.put_bytes(b"{}", f"checkpoint-3/{MARKER}")
    store.put_dir(local_checkpoint(tmp_path / "b", 10), "checkpoint-10")  # upload cut off: no marker
    assert latest_checkpoint(store) == "checkpoint-3"


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
