"""Staging once per node: markers written atomically and keyed by this container start, datasets
converted by the node's local rank 0 and memory-mapped by its other ranks."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train import staging
from kaizen_runner.train.data import DataPlan
from kaizen_runner.train.staging import RunPaths, stage_base_model, stage_datasets, write_atomically
from kaizen_runner.train.store import LocalStore


def as_worker(monkeypatch: pytest.MonkeyPatch, local_rank: int, launch: str) -> None:
    env = {"RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    for name, value in {**env, "TORCHELASTIC_RUN_ID": "none", "KAIZEN_LAUNCH_ID": launch}.items():
        monkeypatch.setenv(name, value)


def config(tmp_path: Path, data: Path) -> TrainRunConfig:
    return TrainRunConfig.model_validate(
        {
            "runName": "ft_x_1",
            "trainer": "sft",
            "baseModel": {"uri": str(tmp_path / "model")},
            "baseModelName": "x",
            "dataset": {"uri": str(data), "format": "alpaca"},
            "output": {"uri": str(tmp_path / "out")},
        }
    )


def test_a_marker_from_an_earlier_container_start_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    paths = RunPaths(scratch=tmp_path / "scratch", store=LocalStore(tmp_path / "out"), run_name="ft_x_1")
    as_worker(monkeypatch, 0, "attempt-1")
    write_atomically(paths.launch_dir / "base-model.path", "/stale/model")  # the killed attempt's marker
    as_worker(monkeypatch, 1, "attempt-2")  # the restarted container: rank 1 must wait for the new one
    fresh = paths.launch_dir / "base-model.path"
    threading.Timer(0.5, write_atomically, args=(fresh, "/fresh/model")).start()
    from kaizen_runner.train import distributed

    monkeypatch.setattr(
        staging, "wait_for_local_main", lambda marker: distributed.wait_for_local_main(marker, poll_s=0.05)
    )
    assert stage_base_model(config(tmp_path, data_dir / "alpaca_train.json"), paths) == Path("/fresh/model")
    assert not list(paths.launch_dir.glob("*.partial"))  # written under a temporary name, then renamed


@contextlib.contextmanager
def first(**_: Any) -> Any:
    yield


def test_the_other_ranks_of_a_node_read_the_converted_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    cfg = config(tmp_path, data_dir / "alpaca_train.json")
    paths = RunPaths(scratch=tmp_path / "scratch", store=LocalStore(tmp_path / "out"), run_name="ft_x_1")
    args = SimpleNamespace(main_process_first=first)
    as_worker(monkeypatch, 0, "launch-a")
    train, validation, reports = stage_datasets(cfg, paths, DataPlan(trainer="sft"), args)
    assert validation is None and reports["train"]["usable"] == 8 and len(train) == 8

    def no_second_conversion(*_: Any) -> Any:
        raise AssertionError("local rank 1 converted the dataset again")

    monkeypatch.setattr(staging, "load_dataset", no_second_conversion)
    as_worker(monkeypatch, 1, "launch-a")
    again, _, reports_again = stage_datasets(cfg, paths, DataPlan(trainer="sft"), args)
    assert again[0] == train[0] and reports_again == reports
    assert again._fingerprint == train._fingerprint  # so TRL's tokenisation cache is shared too
