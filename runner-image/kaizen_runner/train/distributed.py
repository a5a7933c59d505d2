"""Process topology: one process, torchrun on one node, or a multi-node PyTorchJob.

A PyTorchJob's pods get MASTER_ADDR/MASTER_PORT, WORLD_SIZE/RANK (pods) and PET_NNODES,
PET_NODE_RANK, PET_NPROC_PER_NODE (torchrun's settings). The runner starts as one plain process
per pod and re-executes itself under torchrun with that topology, so the same command works in a
Job, a PyTorchJob and on a laptop.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Topology:
    """What torchrun needs to start this node's processes."""

    nnodes: str
    node_rank: int
    nproc_per_node: int
    master_addr: str
    master_port: int

    @property
    def multi_process(self) -> bool:
        return self.nproc_per_node > 1 or self.nnodes not in ("1", "1:1")


def under_launcher(env: Mapping[str, str]) -> bool:
    """True inside a process torchrun started (it sets LOCAL_RANK and TORCHELASTIC_RUN_ID)."""
    return "LOCAL_RANK" in env or "TORCHELASTIC_RUN_ID" in env


def _int(env: Mapping[str, str], *names: str, default: int) -> int:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not an integer") from None
    return default


def free_port() -> int:
    """A free TCP port on the loopback interface (for single-node runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def topology_from_env(env: Mapping[str, str], nproc_per_node: int | None = None) -> Topology:
    """The topology from PET_* (torchrun's env spelling), else the pod-level RANK/WORLD_SIZE.

    An explicit `nproc_per_node` (the CLI flag) wins over PET_NPROC_PER_NODE.
    """
    nnodes = env.get("PET_NNODES") or env.get("WORLD_SIZE") or "1"
    node_rank = _int(env, "PET_NODE_RANK", "NODE_RANK", "RANK", default=0)
    nproc = nproc_per_node or _int(env, "PET_NPROC_PER_NODE", default=1)
    if nproc < 1:
        raise ValueError(f"nproc_per_node must be at least 1, not {nproc}")
    single_node = nnodes in ("1", "1:1")
    addr = env.get("PET_MASTER_ADDR") or env.get("MASTER_ADDR") or "127.0.0.1"
    port = _int(env, "PET_MASTER_PORT", "MASTER_PORT", default=0) or (free_port() if single_node else 29500)
    return Topology(
        nnodes=nnodes, node_rank=node_rank, nproc_per_node=nproc, master_addr=addr, master_port=port
    )


def launcher_command(topology: Topology, module_args: list[str]) -> list[str]:
    """`python -m torch.distributed.run … -m kaizen_runner.cli <args>` for this node."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        topology.nnodes,
        "--node_rank",
        str(topology.node_rank),
        "--nproc_per_node",
        str(topology.nproc_per_node),
        "--master_addr",
        topology.master_addr,
        "--master_port",
        str(topology.master_port),
        "-m",
        "kaizen_runner.cli",
        *module_args,
    ]


def launcher_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment for torchrun: pod-level RANK/WORLD_SIZE removed so they can't shadow torchrun's."""
    out = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    out.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its warning
    return out


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job, as torchrun describes it (single process: all zeros)."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0


def current_ranks(env: Mapping[str, str] | None = None) -> Ranks:
    env = os.environ if env is None else env
    if not under_launcher(env):
        return Ranks(0, 0, 1)
    return Ranks(
        rank=_int(env, "RANK", default=0),
        local_rank=_int(env, "LOCAL_RANK", default=0),
        world_size=_int(env, "WORLD_SIZE", default=1),
    )


def barrier() -> None:
    """Wait for every rank, when a process group exists (a no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wait_for_local_main(marker: Path, timeout_s: float = 6 * 3600, poll_s: float = 1.0) -> None:
    """Block until the node's local rank 0 writes `marker` (before a process group exists, files are
    the only channel: every rank of a node shares the pod's scratch folder)."""
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"local rank 0 did not finish staging ({marker} missing after {timeout_s:.0f}s)"
            )
        time.sleep(poll_s)
