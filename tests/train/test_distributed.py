"""The torchrun command a pod starts, checked through torchrun's own parser, for the environments the
training operator (PyTorchJob) and an Indexed Job really produce; and the ranks inside torchrun."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from kaizen_api.results import TerminationMessage
from kaizen_runner.train.distributed import current_ranks, under_launcher
from kaizen_runner.train.launch import needs_launcher, torchrun_argv, worker_failure

MODULE_ARGS = ["train", "--config", "/etc/kaizen/run.json"]


def torchrun_config(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, nproc: int | None = None) -> Any:
    """What torchrun makes of this pod: its parser reads PET_* from the environment, as in the pod."""
    import torch.distributed.run as torchrun

    for name in list(__import__("os").environ):
        if name.startswith(("PET_", "TORCHELASTIC")) or name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = torchrun.parse_args(torchrun_argv(env, nproc, MODULE_ARGS))
    config, _, cmd_args = torchrun.config_from_args(args)
    assert cmd_args[-3:] == MODULE_ARGS and "kaizen_runner.cli" in cmd_args
    config.standalone = args.standalone  # torchrun.run() turns it into a local c10d rendezvous
    return config


def test_one_pod_one_process_runs_without_torchrun() -> None:
    assert not needs_launcher({"PET_NPROC_PER_NODE": "1"})
    assert not needs_launcher({})
    assert not needs_launcher({"LOCAL_RANK": "0", "PET_NPROC_PER_NODE": "2"})  # already a worker


def test_one_pod_two_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PET_NPROC_PER_NODE": "2"}  # what the operator's Job sets for two GPUs
    assert needs_launcher(env)
    config = torchrun_config(env, monkeypatch)
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (1, 1, 2)
    assert config.standalone  # a free port and a fresh run id, not 29500 shared with other runs


def test_nproc_flag_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    assert needs_launcher({}, 2) and not needs_launcher({}, 1)
    config = torchrun_config({}, monkeypatch, nproc=2)
    assert config.nproc_per_node == 2 and config.max_nodes == 1


def pytorchjob(pods: int, procs: str, pod: int) -> dict[str, str]:
    """The environment kubeflow's training operator gives a PyTorchJob pod (WORLD_SIZE counts processes)."""
    per_node = int(procs) if procs.isdigit() else 1
    return {
        "MASTER_ADDR": "ft-run-master-0",
        "MASTER_PORT": "23456",
        "WORLD_SIZE": str(pods * per_node),
        "RANK": str(pod),
        "PET_NNODES": str(pods),
        "PET_NODE_RANK": str(pod),
        "PET_NPROC_PER_NODE": procs,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.mark.parametrize(("pods", "procs"), [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_pytorchjob_pods(pods: int, procs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    env = pytorchjob(pods, str(procs), pods - 1)
    assert needs_launcher(env) == (pods * procs > 1)
    if pods * procs == 1:
        return
    config = torchrun_config(env, monkeypatch)
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (pods, pods, procs)
    assert config.standalone == (pods == 1)
    if pods > 1:
        assert config.rdzv_backend == "static" and config.rdzv_configs["rank"] == pods - 1
        assert config.rdzv_endpoint == "ft-run-master-0:23456"


def test_pytorchjob_default_nproc_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """nprocPerNode defaults to auto: torchrun resolves it (GPUs, or CPUs on a CPU node); no crash."""
    import os

    env = pytorchjob(2, "auto", 0)
    assert needs_launcher(env)
    config = torchrun_config(env, monkeypatch)
    assert config.max_nodes == 2 and config.nproc_per_node in (1, os.cpu_count())


@pytest.mark.parametrize(("pods", "procs"), [(2, 1), (2, 2)])
def test_indexed_job_pods(pods: int, procs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """An Indexed Job knows its pod by JOB_COMPLETION_INDEX; the master is pod 0's stable hostname."""
    env = {
        "JOB_COMPLETION_INDEX": "1",
        "PET_NNODES": str(pods),
        "PET_NPROC_PER_NODE": str(procs),
        "MASTER_ADDR": "ft-run-0.ft-run",
        "MASTER_PORT": "29500",
    }
    config = torchrun_config(env, monkeypatch)
    assert (config.max_nodes, config.nproc_per_node) == (pods, procs)
    assert config.rdzv_configs["rank"] == 1 and config.rdzv_endpoint == "ft-run-0.ft-run:29500"


def test_pods_counted_by_world_size_without_pet_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"MASTER_ADDR": "m", "MASTER_PORT": "29500", "WORLD_SIZE": "3", "RANK": "2"}
    config = torchrun_config(env, monkeypatch)
    assert (config.max_nodes, config.nproc_per_node, config.rdzv_configs["rank"]) == (3, 1, 2)


def test_a_worker_failure_keeps_its_reason_and_exit_code(tmp_path: Path) -> None:
    (tmp_path / "rank-1.json").write_text(
        TerminationMessage(phase="Failed", reason="DataInvalid", message="no usable records").model_dump_json(
            by_alias=True
        )
    )
    code, message = worker_failure(1, 2, tmp_path)
    assert code == 2 and message.reason == "DataInvalid" and message.message == "no usable records"
    code, message = worker_failure(0, -signal.SIGKILL, tmp_path)  # killed before it could say why
    assert code == 3 and message.reason == "InfrastructureError" and "SIGKILL" in (message.message or "")


def test_ranks_inside_torchrun() -> None:
    env = {"LOCAL_RANK": "1", "RANK": "3", "WORLD_SIZE": "4", "TORCHELASTIC_RUN_ID": "x"}
    assert under_launcher(env)
    ranks = current_ranks(env)
    assert (ranks.rank, ranks.local_rank, ranks.world_size, ranks.is_main, ranks.is_local_main) == (
        3,
        1,
        4,
        False,
        False,
    )
    assert current_ranks({}).is_main
