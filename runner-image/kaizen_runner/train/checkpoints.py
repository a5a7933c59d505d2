"""Checkpoints kept in the output store, so a restarted pod resumes where its predecessor stopped.

The trainer writes `checkpoint-<step>/` to local scratch as usual; after each save every node
uploads what it wrote (DeepSpeed shards live on the node that owns them), then rank 0 writes a
marker last and prunes old checkpoints. Only checkpoints with the marker count, so one cut off
mid-upload by a kill is never resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from kaizen_runner.train.distributed import barrier, current_ranks
from kaizen_runner.train.errors import RunnerError
from kaizen_runner.train.store import Store, open_store

log = logging.getLogger(__name__)

MARKER = "kaizen-checkpoint.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
# Test hook: end the process right after the first checkpoint is safely stored (simulates a kill).
EXIT_AFTER_CHECKPOINT_ENV = "KAIZEN_TEST_EXIT_AFTER_CHECKPOINT"
EXIT_AFTER_CHECKPOINT_CODE = 75


def checkpoint_step(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def stored_checkpoints(store: Store) -> list[str]:
    """Names of the complete checkpoints in the store, oldest first."""
    complete = [
        key.split("/", 1)[0]
        for key in store.list_files()
        if key.endswith("/" + MARKER) and checkpoint_step(key.split("/", 1)[0]) is not None
    ]
    return sorted(set(complete), key=lambda name: checkpoint_step(name) or 0)


def latest_checkpoint(store: Store) -> str | None:
    names = stored_checkpoints(store)
    return names[-1] if names else None


def fetch_checkpoint(store: Store, name: str, scratch: Path) -> Path:
    """Download a stored checkpoint into `scratch/<name>` (replacing any stale local copy)."""
    target = scratch / name
    if target.exists():
        shutil.rmtree(target)
    store.download(name, target)
    (target / MARKER).unlink(missing_ok=True)
    return target


def resolve_resume(
    setting: str, store: Store, scratch: Path, *, fetch: bool = True, connection: str | None = None
) -> Path | None:
    """The local checkpoint to resume from, per `resume_from_checkpoint`: auto, false, a path or an s3:// URI
    (read with the output's `connection`).

    Only each node's local rank 0 fetches; its other ranks (fetch=False) get the path of that copy.
    """
    value = setting.strip()
    if value.lower() in ("false", "no", "none", ""):
        return None
    if value.lower() == "auto":
        name = latest_checkpoint(store)
        if name is None:
            return None
        log.info("resuming from %s/%s", store.uri, name)
        return fetch_checkpoint(store, name, scratch) if fetch else scratch / name
    if value.startswith("s3://"):
        from kaizen_api.runconfig import RunLocation

        parent, _, name = value.rstrip("/").rpartition("/")
        if not fetch:
            return scratch / name
        return fetch_checkpoint(open_store(RunLocation(uri=parent, connection=connection)), name, scratch)
    path = Path(value)
    if not (path / "trainer_state.json").is_file():
        raise RunnerError(
            f"resumeFromCheckpoint {value!r} is not a checkpoint folder (no trainer_state.json)"
        )
    return path


class CheckpointSync(TrainerCallback):
    """Uploads each finished checkpoint, marks it complete, and keeps the newest `keep` of them."""

    def __init__(self, store: Store, keep: int) -> None:
        self.store = store
        self.keep = keep
        self.exit_after_first = os.environ.get(EXIT_AFTER_CHECKPOINT_ENV) == "1"

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        name = f"checkpoint-{state.global_step}"
        local = Path(args.output_dir) / name
        ranks = current_ranks()
        barrier()  # every rank has written its part
        if ranks.is_local_main and local.is_dir():
            self.store.put_dir(local, name, skip=frozenset({MARKER}))
        barrier()  # every node has uploaded its part
        if ranks.is_main:
            marker = {"step": state.global_step, "epoch": state.epoch, "world_size": ranks.world_size}
            self.store.put_bytes(json.dumps(marker).encode(), f"{name}/{MARKER}")
            self.prune()
            log.info("checkpoint %s stored at %s", name, self.store.uri)
        barrier()
        if self.exit_after_first:
            logging.shutdown()
            os._exit(EXIT_AFTER_CHECKPOINT_CODE)

    def prune(self) -> None:
        names = stored_checkpoints(self.store)
        for name in names[: max(0, len(names) - self.keep)]:
            # The marker goes first: a half-deleted checkpoint must not look complete.
            self.store.delete(f"{name}/{MARKER}")
            self.store.delete(name)
