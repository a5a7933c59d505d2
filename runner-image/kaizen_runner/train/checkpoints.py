"""Checkpoints kept in the output store, so a restarted pod resumes where its predecessor stopped.

They live in `<output>/.checkpoints/<run>/checkpoint-<step>/`: a dotted folder, so a registry scan
of the output never takes them for a version. The trainer writes `checkpoint-<step>/` to local
scratch; after each save, each node's local rank 0 uploads what its node wrote (DeepSpeed shards
live on the node that owns them) in the background, from a hard-linked snapshot the trainer's own
rotation cannot pull away. At most one upload is in flight per node: the next save waits for it,
so no rank ever waits on S3 inside a collective. Each node's marker (see `CheckpointMarker`) comes
after its files; only checkpoints with every node's marker count, so one cut off mid-upload, or
whose upload failed (a warning, not a reason to stop training), is never resumed from.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from kaizen_api.results import CheckpointMarker
from pydantic import ValidationError
from transformers import TrainerCallback

from kaizen_runner.storage import StorageError
from kaizen_runner.train.distributed import barrier, current_ranks
from kaizen_runner.train.errors import RunnerError
from kaizen_runner.train.store import Store, open_store

log = logging.getLogger(__name__)

CHECKPOINTS_FOLDER = ".checkpoints"
MARKER = "kaizen-checkpoint.json"
NODE_MARKER = "kaizen-node-{}.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
# Test hook: end the process right after the first checkpoint is safely stored (simulates a kill).
EXIT_AFTER_CHECKPOINT_ENV = "KAIZEN_TEST_EXIT_AFTER_CHECKPOINT"
EXIT_AFTER_CHECKPOINT_CODE = 75


def checkpoint_store(output: Store, run_name: str) -> Store:
    return output.child(CHECKPOINTS_FOLDER, run_name)


def checkpoint_step(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def read_marker(store: Store, name: str) -> CheckpointMarker | None:
    raw = store.get_bytes(f"{name}/{MARKER}")
    if raw is None:
        return None
    try:
        return CheckpointMarker.model_validate_json(raw)
    except ValidationError:
        return None


def stored_checkpoints(store: Store) -> list[str]:
    """Names of the complete checkpoints in the store (every node's marker present), oldest first."""
    files = store.list_files()
    candidates = {key.split("/", 1)[0] for key in files if key.endswith("/" + MARKER)}
    complete = []
    for name in candidates:
        if checkpoint_step(name) is None or (marker := read_marker(store, name)) is None:
            continue
        if all(f"{name}/{NODE_MARKER.format(node)}" in files for node in range(1, marker.nnodes)):
            complete.append(name)
    return sorted(complete, key=lambda name: checkpoint_step(name) or 0)


def latest_checkpoint(store: Store) -> str | None:
    names = stored_checkpoints(store)
    return names[-1] if names else None


def fetch_checkpoint(store: Store, name: str, scratch: Path) -> Path:
    """Download a stored checkpoint into `scratch/<name>` (replacing any stale local copy)."""
    target = scratch / name
    if target.exists():
        shutil.rmtree(target)
    store.download(name, target)
    for marker in [target / MARKER, *target.glob(NODE_MARKER.format("*"))]:
        marker.unlink(missing_ok=True)
    return target


def check_resumable(marker: CheckpointMarker | None, name: str, world_size: int) -> None:
    """A ZeRO checkpoint is partitioned by rank: it resumes only on the world size that wrote it."""
    if marker is None or marker.world_size == world_size:
        return
    if marker.zero_stage is not None:
        raise RunnerError(
            f"{name} was written by {marker.world_size} processes under DeepSpeed ZeRO-{marker.zero_stage}, "
            f"but this run has {world_size}; its optimizer state cannot be re-partitioned. Run on "
            f"{marker.world_size} GPUs again, or set resumeFromCheckpoint to false to start over"
        )
    log.warning(
        "%s was written by %d processes, this run has %d: it resumes, but sees the data in a new order",
        name,
        marker.world_size,
        world_size,
    )


def resolve_resume(
    setting: str,
    store: Store,
    scratch: Path,
    *,
    fetch: bool = True,
    connection: str | None = None,
    world_size: int = 1,
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
        check_resumable(read_marker(store, name), name, world_size)
        log.info("resuming from %s/%s", store.uri, name)
        return fetch_checkpoint(store, name, scratch) if fetch else scratch / name
    if value.startswith("s3://"):
        from kaizen_api.runconfig import RunLocation

        parent, _, name = value.rstrip("/").rpartition("/")
        if not fetch:
            return scratch / name
        source = open_store(RunLocation(uri=parent, connection=connection))
        check_resumable(read_marker(source, name), name, world_size)
        return fetch_checkpoint(source, name, scratch)
    path = Path(value)
    if not (path / "trainer_state.json").is_file():
        raise RunnerError(
            f"resumeFromCheckpoint {value!r} is not a checkpoint folder (no trainer_state.json)"
        )
    return path


def _snapshot(folder: Path, target: Path) -> Path:
    """Hard links to the checkpoint's files (a copy across file systems): the upload reads these, so the
    trainer may rotate the original away meanwhile."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(folder, target, copy_function=link)
    return target


class CheckpointSync(TrainerCallback):
    """Uploads each node's part of every checkpoint in the background, marks it, keeps the newest `keep`."""

    def __init__(
        self, store: Store, keep: int, *, zero_stage: int | None = None, upload_final: bool = False
    ) -> None:
        self.store = store
        self.keep = keep
        self.zero_stage = zero_stage
        self.upload_final = (
            upload_final  # the last step's checkpoint is only worth its optimizer state if kept
        )
        self.exit_after_first = os.environ.get(EXIT_AFTER_CHECKPOINT_ENV) == "1"
        self._upload: threading.Thread | None = None
        self.stored: list[str] = []  # this node's parts stored, for tests and logs
        self.failed: list[str] = []

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        name = f"checkpoint-{state.global_step}"
        trainer_dir = Path(args.output_dir)
        ranks = current_ranks()
        barrier()  # every rank has written its part (local files only: short)
        if ranks.is_local_main:
            self.wait()
            if not ranks.is_main:
                self._rotate_local(trainer_dir)  # the trainer rotates on global rank 0's node only
            final = bool(state.max_steps) and state.global_step >= state.max_steps
            if final and not self.upload_final:
                log.info("%s is the last step's checkpoint: not uploaded (the version follows)", name)
            elif (trainer_dir / name).is_dir():
                self._start_upload(trainer_dir, name, state)
        if self.exit_after_first:
            self.wait()
            barrier()
            logging.shutdown()
            os._exit(EXIT_AFTER_CHECKPOINT_CODE)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.wait()

    def wait(self) -> None:
        """Block until this node's upload in flight, if any, is done."""
        if self._upload is not None:
            self._upload.join()
            self._upload = None

    def _start_upload(self, trainer_dir: Path, name: str, state: Any) -> None:
        ranks = current_ranks()
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        marker = CheckpointMarker(
            step=state.global_step,
            epoch=state.epoch,
            world_size=ranks.world_size,
            nnodes=max(1, ranks.world_size // max(1, local_world)),
            node=ranks.rank // max(1, local_world),
            zero_stage=self.zero_stage,
        )
        snapshot = _snapshot(trainer_dir / name, trainer_dir.parent / "uploading" / name)
        self._upload = threading.Thread(
            target=self._store_part, args=(snapshot, name, marker), name=f"kaizen-upload-{name}"
        )
        self._upload.start()

    def _store_part(self, folder: Path, name: str, marker: CheckpointMarker) -> None:
        try:
            self.store.put_dir(folder, name, skip=frozenset({MARKER}))
            body = marker.model_dump_json(by_alias=True, exclude_none=True).encode()
            self.store.put_bytes(
                body, f"{name}/{MARKER if marker.node == 0 else NODE_MARKER.format(marker.node)}"
            )
            # Every node prunes once its part is in: a checkpoint is complete only when the last
            # node's part is, and that may be any node's.
            self.prune()
            self.stored.append(name)
            log.info("checkpoint %s (node %d) stored at %s", name, marker.node, self.store.uri)
        except (StorageError, RunnerError, OSError) as err:
            self.failed.append(name)
            log.warning("checkpoint %s was not stored (%s); training goes on without it", name, err)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _rotate_local(self, trainer_dir: Path) -> None:
        local = sorted(
            (p for p in trainer_dir.glob("checkpoint-*") if checkpoint_step(p.name) is not None),
            key=lambda p: checkpoint_step(p.name) or 0,
        )
        for old in local[: max(0, len(local) - self.keep)]:
            shutil.rmtree(old, ignore_errors=True)

    def prune(self) -> None:
        """Keep the newest `keep` complete checkpoints; older ones, complete or not, are removed."""
        complete = stored_checkpoints(self.store)
        if len(complete) <= self.keep:
            return
        oldest_kept = checkpoint_step(complete[-self.keep]) or 0
        names = {key.split("/", 1)[0] for key in self.store.list_files()}
        for name in sorted(n for n in names if (checkpoint_step(n) or oldest_kept) < oldest_kept):
            # The marker goes first: a half-deleted checkpoint must not look complete.
            self.store.delete(f"{name}/{MARKER}")
            self.store.delete(name)
