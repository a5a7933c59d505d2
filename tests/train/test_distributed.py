"""Topology from torchrun/PyTorchJob environments, and the torchrun command the runner re-executes."""

from __future__ import annotations

import sys

from kaizen_runner.train.distributed import (
    current_ranks,
    launcher_command,
    launcher_env,
    topology_from_env,
    under_launcher,
)


def test_plain_pod_is_a_single_process() -> None:
    topology = topology_from_env({})
    assert not topology.multi_process
    assert (topology.nnodes, topology.node_rank, topology.master_addr) == ("1", 0, "127.0.0.1")
    assert topology.master_port > 0


def test_nproc_flag_starts_several_local_processes() -> None:
    topology = topology_from_env({}, nproc_per_node=2)
    assert topology.multi_process and topology.nproc_per_node == 2


def test_pytorchjob_environment() -> None:
    env = {
        "MASTER_ADDR": "job-master-0",
        "MASTER_PORT": "23456",
        "WORLD_SIZE": "2",
        "RANK": "1",
        "PET_NNODES": "2",
        "PET_NODE_RANK": "1",
        "PET_NPROC_PER_NODE": "4",
    }
    topology = topology_from_env(env)
    assert topology.multi_process
    assert (topology.nnodes, topology.node_rank, topology.nproc_per_node) == ("2", 1, 4)
    assert (topology.master_addr, topology.master_port) == ("job-master-0", 23456)


def test_pod_rank_without_pet_variables() -> None:
    """A PyTorchJob without nprocPerNode: one process per pod, the pods counted by WORLD_SIZE/RANK."""
    topology = topology_from_env({"MASTER_ADDR": "m", "MASTER_PORT": "29500", "WORLD_SIZE": "3", "RANK": "2"})
    assert (topology.nnodes, topology.node_rank, topology.nproc_per_node) == ("3", 2, 1)
    assert topology.multi_process


def test_launcher_command_and_env() -> None:
    topology = topology_from_env(
        {"PET_NNODES": "2", "PET_NODE_RANK": "0", "MASTER_ADDR": "m", "MASTER_PORT": "1"}
    )
    command = launcher_command(topology, ["train", "--config", "/c.json"])
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[command.index("--nnodes") + 1] == "2"
    assert command[command.index("--master_addr") + 1] == "m"
    assert command[-4:] == ["kaizen_runner.cli", "train", "--config", "/c.json"]
    env = launcher_env({"RANK": "1", "WORLD_SIZE": "2", "PATH": "/bin"})
    assert "RANK" not in env and "WORLD_SIZE" not in env and env["PATH"] == "/bin"


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
