"""What a run needs on local disk before its trainer exists: the base model, the datasets and the
checkpoint to resume from, each prepared once per node by its local rank 0 for the node's others.

The base model is staged before any process group exists (the trainer arguments depend on it), so
the other ranks wait for a marker file, written atomically and keyed by this container start's
launch id: a marker left by an earlier attempt of the pod never counts. Datasets are converted
once per node and saved in Arrow format; the other ranks memory-map that copy, and share the
tokenisation cache TRL builds from it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizen_api.runconfig import RunDataset, TrainRunConfig

from kaizen_runner.train.checkpoints import checkpoint_store, resolve_resume
from kaizen_runner.train.data import DataPlan, load_dataset
from kaizen_runner.train.distributed import current_ranks, wait_for_local_main
from kaizen_runner.train.launch import LAUNCH_ID_ENV
from kaizen_runner.train.models import resolve_base_model
from kaizen_runner.train.store import Store


@dataclass(frozen=True)
class RunPaths:
    """Local scratch of one run, and its places in the output store."""

    scratch: Path
    store: Store
    run_name: str

    @property
    def trainer_dir(self) -> Path:
        return self.scratch / "trainer"

    @property
    def version_dir(self) -> Path:
        return self.scratch / "version"

    @property
    def logs_dir(self) -> Path:
        return self.scratch / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.scratch / "cache"

    @property
    def launch_dir(self) -> Path:
        """Per container start: what local rank 0 hands its node's other ranks."""
        return self.scratch / "launch" / launch_id()

    @property
    def checkpoints(self) -> Store:
        return checkpoint_store(self.store, self.run_name)


def launch_id() -> str:
    """Same for every process of this container start, new for the next one."""
    given = os.environ.get(LAUNCH_ID_ENV)
    if given:
        return given
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun started by hand: its agent is our parent
        return f"{os.environ['TORCHELASTIC_RUN_ID']}-{os.getppid()}"
    return f"single-{os.getpid()}"


def write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none (a rename, never a half-written marker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(text)
    tmp.replace(path)


def stage_base_model(cfg: TrainRunConfig, paths: RunPaths) -> Path:
    """Each node's local rank 0 stages the base model; the node's other ranks wait for its marker."""
    marker = paths.launch_dir / "base-model.path"
    if current_ranks().is_local_main:
        paths.cache_dir.mkdir(parents=True, exist_ok=True)
        path = resolve_base_model(cfg.base_model, paths.cache_dir)
        write_atomically(marker, str(path))
        return path
    wait_for_local_main(marker)
    return Path(marker.read_text())


def stage_datasets(cfg: TrainRunConfig, paths: RunPaths, plan: DataPlan, args: Any) -> tuple[Any, Any, dict]:
    """(train, validation or None, data reports): converted once per node, memory-mapped by the others."""
    splits: dict[str, RunDataset] = {"train": cfg.dataset}
    if cfg.validation_dataset is not None:
        splits["validation"] = cfg.validation_dataset
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) == 1:  # nobody to share with
        loaded = {split: load_dataset(location, plan) for split, location in splits.items()}
        validation = loaded.get("validation")
        reports = {split: report for split, (_, report) in loaded.items()}
        return loaded["train"][0], validation[0] if validation else None, reports
    folder = paths.launch_dir / "data"
    with args.main_process_first(local=True, desc="prepare data"):
        if current_ranks().is_local_main:
            _prepare(splits, plan, folder)
        datasets, reports = _load_prepared(splits, folder)
    return datasets["train"], datasets.get("validation"), reports


def _prepare(splits: dict[str, RunDataset], plan: DataPlan, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    for split, location in splits.items():
        dataset, report = load_dataset(location, plan)
        dataset.save_to_disk(str(folder / split))
        write_atomically(folder / f"{split}.report.json", json.dumps(report, default=str))


def _load_prepared(splits: dict[str, RunDataset], folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from datasets import load_from_disk

    datasets = {split: load_from_disk(str(folder / split)) for split in splits}
    reports = {split: json.loads((folder / f"{split}.report.json").read_text()) for split in splits}
    return datasets, reports


def resume_point(cfg: TrainRunConfig, paths: RunPaths, args: Any) -> Path | None:
    """The checkpoint to resume from, fetched by each node's local rank 0 before its other ranks look."""
    ranks = current_ranks()
    with args.main_process_first(local=True, desc="fetch checkpoint"):
        return resolve_resume(
            cfg.extended_hyperparameters.runtime.resume_from_checkpoint,
            paths.checkpoints,
            paths.trainer_dir,
            fetch=ranks.is_local_main,
            connection=cfg.output.connection,
            world_size=ranks.world_size,
        )
