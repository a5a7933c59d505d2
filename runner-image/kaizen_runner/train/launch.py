"""Starting this pod's training processes under torchrun, and carrying their failure out of it.

A PyTorchJob's pods get PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE (`auto` by default) and the
pod-level MASTER_ADDR/MASTER_PORT, WORLD_SIZE (pods x processes) and RANK; an Indexed Job's pods
get JOB_COMPLETION_INDEX and whatever the operator adds. torchrun reads every PET_* variable
itself and understands `auto`/`gpu`, so the runner hands it only what it cannot find there: the
`--nproc-per-node` flag when given, a node rank and master address from the pod-level variables,
and a standalone rendezvous on a single node.

torchrun is run inside this process (not exec'd) so that when a worker fails, its reason and exit
code (user error or infrastructure error) survive: torchrun itself would exit 1 either way. Each
worker writes its failure as a TerminationMessage to `$KAIZEN_FAILURE_DIR/rank-<rank>.json`; this
process reads the first failure back.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from kaizen_api.results import EXIT_INFRA_ERROR, FailureReason, TerminationMessage

from kaizen_runner.train.distributed import under_launcher
from kaizen_runner.train.failures import exit_code

log = logging.getLogger(__name__)

FAILURE_DIR_ENV = "KAIZEN_FAILURE_DIR"
LAUNCH_ID_ENV = "KAIZEN_LAUNCH_ID"
_SINGLE = ("1", "1:1")
# Set by torchrun for each worker; pod-level values would shadow them.
_WORKER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


def _nnodes(env: Mapping[str, str]) -> str:
    """Nodes of the job: PET_NNODES, else the pod count (WORLD_SIZE counts pods only while there is one
    process per pod, i.e. without PET_NPROC_PER_NODE)."""
    if env.get("PET_NNODES"):
        return env["PET_NNODES"]
    if "PET_NPROC_PER_NODE" not in env and env.get("WORLD_SIZE"):
        return env["WORLD_SIZE"]
    return "1"


def node_rank(env: Mapping[str, str]) -> int:
    """This pod's index: PET_NODE_RANK, an Indexed Job's completion index, or the PyTorchJob pod RANK."""
    for name in ("PET_NODE_RANK", "JOB_COMPLETION_INDEX", "RANK"):
        value = env.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not an integer") from None
    return 0


def needs_launcher(env: Mapping[str, str], nproc_per_node: int | None = None) -> bool:
    """More than one process in the job: this pod's processes must be started by torchrun."""
    if under_launcher(env):
        return False
    per_node = str(nproc_per_node) if nproc_per_node is not None else env.get("PET_NPROC_PER_NODE", "1")
    return per_node != "1" or _nnodes(env) not in _SINGLE


def torchrun_argv(env: Mapping[str, str], nproc_per_node: int | None, module_args: list[str]) -> list[str]:
    """torchrun's command line for this pod; what is in PET_* is left for torchrun to read."""
    argv: list[str] = []
    if nproc_per_node is not None:
        argv += ["--nproc-per-node", str(nproc_per_node)]
    nnodes = _nnodes(env)
    if nnodes in _SINGLE:
        argv.append("--standalone")  # a free port, and a fresh run id for every start
    else:
        if not env.get("PET_NNODES"):
            argv += ["--nnodes", nnodes]
        if not env.get("PET_NODE_RANK"):
            argv += ["--node-rank", str(node_rank(env))]
        if not env.get("PET_MASTER_ADDR") and not env.get("PET_RDZV_ENDPOINT") and env.get("MASTER_ADDR"):
            argv += ["--master-addr", env["MASTER_ADDR"], "--master-port", env.get("MASTER_PORT", "29500")]
    return [*argv, "--module", "kaizen_runner.cli", *module_args]


def _worker_env(env: MutableMapping[str, str], failure_dir: Path) -> None:
    for name in _WORKER_VARIABLES:
        env.pop(name, None)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its warning
    env[FAILURE_DIR_ENV] = str(failure_dir)
    env[LAUNCH_ID_ENV] = uuid.uuid4().hex  # new for each container start: stale markers never match


def launch(nproc_per_node: int | None, module_args: list[str]) -> tuple[int, TerminationMessage | None]:
    """Run this pod's workers under torchrun; (exit code, the failure to report or None)."""
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    argv = torchrun_argv(os.environ, nproc_per_node, module_args)
    failure_dir = Path(tempfile.mkdtemp(prefix="kaizen-failures-"))
    _worker_env(os.environ, failure_dir)
    log.info("starting torch.distributed.run %s", " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        return worker_failure(rank, failure.exitcode, failure_dir)
    return 0, None


def write_worker_failure(message: TerminationMessage, rank: int) -> None:
    """Inside a worker: leave the failure where the launcher looks for it."""
    folder = os.environ.get(FAILURE_DIR_ENV)
    if folder:
        target = Path(folder) / f"rank-{rank}.json"
        tmp = target.with_suffix(".partial")
        tmp.write_text(message.model_dump_json(by_alias=True, exclude_none=True))
        tmp.replace(target)


def worker_failure(rank: int, code: int, failure_dir: Path) -> tuple[int, TerminationMessage]:
    """The first failed worker's own account, or what its exit says when it died without one."""
    path = failure_dir / f"rank-{rank}.json"
    if path.is_file():
        message = TerminationMessage.model_validate_json(path.read_text())
        if message.reason is not None:
            return exit_code(message.reason), message
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (often the kernel's out-of-memory killer)" if -code == signal.SIGKILL else ""
        text = f"training process rank {rank} was killed by {name}{hint}"
    else:
        text = f"training process rank {rank} exited with code {code} without a reason"
    reason: FailureReason = "InfrastructureError"
    return EXIT_INFRA_ERROR, TerminationMessage(phase="Failed", reason=reason, message=text)
