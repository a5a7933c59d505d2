"""Deleting a PrivateModel, decided purely: never under a run or evaluation that uses it, and stored files
removed only with deletionPolicy Delete *and* the confirmation annotation naming the object."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kaizen_api.base import GROUP

CONFIRM_ANNOTATION = f"{GROUP}/confirm-delete"
_FINISHED = frozenset({"Succeeded", "Failed", "Cancelled"})


@dataclass(frozen=True)
class Decision:
    """proceed: the finalizer may go; delete_files: remove the stored files first. Otherwise `reason`
    and `message` say what the deletion waits for (a condition on the object)."""

    proceed: bool
    delete_files: bool
    reason: str
    message: str


def deletion_decision(
    name: str, policy: str, annotations: Mapping[str, str] | None, users: list[str]
) -> Decision:
    if users:
        return Decision(
            False, False, "InUse", f"in use by {', '.join(users)}; deletion waits until they finish"
        )
    if policy == "Retain":
        return Decision(True, False, "Retained", "deletionPolicy Retain: the stored files are kept")
    confirmed = (annotations or {}).get(CONFIRM_ANNOTATION)
    if confirmed != name:
        return Decision(
            False,
            False,
            "ConfirmationMissing",
            f"deletionPolicy Delete removes every stored file: set annotation {CONFIRM_ANNOTATION}: {name} "
            "to confirm, or set deletionPolicy: Retain to keep the files",
        )
    return Decision(
        True, True, "FilesDeleted", "deletionPolicy Delete, confirmed: the stored files are removed"
    )


def _refers(ref: Any, name: str) -> bool:
    return (
        isinstance(ref, dict)
        and isinstance(ref.get("privateModel"), dict)
        and (ref["privateModel"].get("name") == name)
    )


def _output(pipeline: Mapping[str, Any]) -> Any:
    return ((pipeline.get("spec") or {}).get("output") or {}).get("privateModel")


def _evaluates(ref: Any, name: str, outputs: Mapping[str, Any]) -> bool:
    """The EvalJob's model is `name`: named directly, or a pipeline run's output (the pipeline's
    output.privateModel; `outputs` maps each pipeline to it)."""
    if _refers(ref, name):
        return True
    run = ref.get("pipelineRun") if isinstance(ref, dict) else None
    return isinstance(run, dict) and outputs.get(str(run.get("pipeline"))) == name


def model_users(
    name: str, pipelines: Iterable[dict[str, Any]], eval_jobs: Iterable[dict[str, Any]]
) -> list[str]:
    """The FineTunePipelines with a run in progress and the unfinished EvalJobs that use model `name`
    (as base model, output or evaluation target, the latter directly or through a pipeline's run)."""
    pipelines = list(pipelines)
    outputs = {p["metadata"]["name"]: _output(p) for p in pipelines}
    users = []
    for pipeline in pipelines:
        spec, status = pipeline.get("spec") or {}, pipeline.get("status") or {}
        uses = _refers(spec.get("baseModel"), name) or _output(pipeline) == name
        run = status.get("currentRun") or {}
        if uses and run and run.get("phase", "Pending") not in _FINISHED:
            users.append(f"FineTunePipeline {pipeline['metadata']['name']} (run {run.get('name', '?')})")
    for job in eval_jobs:
        spec, status = job.get("spec") or {}, job.get("status") or {}
        if _evaluates(spec.get("model"), name, outputs) and status.get("phase", "Pending") not in _FINISHED:
            users.append(f"EvalJob {job['metadata']['name']}")
    return users
