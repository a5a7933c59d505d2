"""Which workload a run becomes: a Job for one node; for several, one of the multi-node backends.

A backend is a name, the kind it creates and a pure `build` function; adding one (Volcano,
JobSet, TrainJob) is one module and one entry in `BACKENDS`. The choice: `spec.resources.
multiNodeBackend`, else the operator's `multinode_backend` setting; `auto` takes a PyTorchJob when
its CRD is installed and an Indexed Job otherwise. Asking for a PyTorchJob on a cluster without
its CRD fails the run with reason `CRDMissing` instead of falling back silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaizen_api.finetune_status import RunStatus

from kaizen_operator.naming import ChildNames
from kaizen_operator.resolve import ResolvedRun, ResolveError
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads import indexedjob, pytorchjob
from kaizen_operator.workloads.job import build_job

Builder = Callable[[ResolvedRun, Mapping[str, Any], ChildNames, OperatorSettings], list[dict[str, Any]]]


@dataclass(frozen=True)
class Backend:
    name: str
    api_version: str
    kind: str
    build: Builder


BACKENDS: dict[str, Backend] = {
    "pytorchjob": Backend("pytorchjob", pytorchjob.API_VERSION, pytorchjob.KIND, pytorchjob.build_pytorchjob),
    "indexedjob": Backend("indexedjob", "batch/v1", indexedjob.KIND, indexedjob.build_indexed_job),
}


def choose_backend(run: ResolvedRun, settings: OperatorSettings, *, pytorchjob_available: bool) -> Backend:
    """The multi-node backend for `run` (only consulted when it has more than one node)."""
    wanted = run.spec.resources.multi_node_backend or settings.multinode_backend
    if wanted == "auto":
        wanted = "pytorchjob" if pytorchjob_available else "indexedjob"
    if wanted == "pytorchjob" and not pytorchjob_available:
        raise ResolveError(
            "CRDMissing",
            f"a PyTorchJob was asked for but the CRD {pytorchjob.CRD_NAME} is not installed; install the "
            "Kubeflow training operator or set spec.resources.multiNodeBackend: indexedjob",
        )
    return BACKENDS[wanted]


def asks_for_pytorchjobs(
    runs: Sequence[RunStatus], spec_backend: str | None, settings: OperatorSettings
) -> bool:
    """Whether a pass must ask the API server if PyTorchJobs are served: to observe the PyTorchJob a
    run already has, or to create one for a multi-node run whose backend (`spec_backend`, the
    pipeline's own, else the operator's setting) may be a PyTorchJob."""
    if any(r.job_kind == pytorchjob.KIND for r in runs):
        return True
    multinode = any((r.nodes or 1) > 1 for r in runs)
    return multinode and (spec_backend or settings.multinode_backend) != "indexedjob"


def workload_kind(run: ResolvedRun, settings: OperatorSettings, *, pytorchjob_available: bool) -> str:
    if run.nodes == 1:
        return "Job"
    return choose_backend(run, settings, pytorchjob_available=pytorchjob_available).kind


def build_workload(
    run: ResolvedRun,
    pipeline: Mapping[str, Any],
    names: ChildNames,
    settings: OperatorSettings,
    *,
    pytorchjob_available: bool,
) -> list[dict[str, Any]]:
    """Every object of the GPU workload, in creation order (a Service before the pods that need it)."""
    if run.nodes == 1:
        return [build_job(run, pipeline, names, settings)]
    backend = choose_backend(run, settings, pytorchjob_available=pytorchjob_available)
    return backend.build(run, pipeline, names, settings)
