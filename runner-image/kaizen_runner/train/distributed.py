"""This process's place in the job (as torchrun describes it), and waiting for the other ranks.

How the processes are started is in `launch`; a single process (no torchrun) is rank 0 of 1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


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


def shut_down() -> None:
    """Destroy the process group once the run succeeded. Left to interpreter exit, gloo's worker threads
    can abort the process ("terminate called without an active exception", SIGABRT), and a run that
    succeeded would end as a failed pod. Not after a failure: a rank still inside a collective would
    make the destroy wait for ever, and torchrun ends the other workers anyway."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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
