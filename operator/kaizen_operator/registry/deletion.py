"""Deleting a PrivateModel, decided purely: never under a run or evaluation that uses it, and stored files
removed only with deletionPolicy Delete *and* the confirmation annotation naming the object.

A run that is asked for but not on record yet uses the model too (a changed runToken, a new object's
first run, a schedule's firing): its reconciler records it at the next pass and then reads the model, so
a deletion that went ahead in between would remove the files under it. "Asked for" is what the
reconcilers themselves decide (`manual_request`, `new_run`, `schedule_requests` less `recorded_run`),
read from the same spec, status and trigger Jobs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from kaizen_api.base import GROUP
from kaizen_api.evaljob import EvalJobSpec, EvalJobStatus
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import FineTunePipelineStatus
from pydantic import BaseModel, ValidationError

from kaizen_operator.eval_runs import new_run
from kaizen_operator.triggers import manual_request, recorded_run, schedule_requests

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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a request's timestamp, which only its run's name uses
_REQUESTED = "a run requested by {field} is not recorded yet"
S = TypeVar("S", bound=BaseModel)
T = TypeVar("T", bound=BaseModel)


def _live(obj: Mapping[str, Any], spec_model: type[S], status_model: type[T]) -> tuple[S, T] | None:
    """The object's spec and status as its reconciler reads them; None when it is being deleted or its
    spec or status is invalid (neither ever starts a run)."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None
    try:
        return spec_model.model_validate(obj.get("spec") or {}), status_model.model_validate(
            obj.get("status") or {}
        )
    except ValidationError:
        return None


def _pipeline_requests_run(pipeline: Mapping[str, Any]) -> bool:
    """The pipeline's reconciler would record a manual run now (a new pipeline, or a changed
    spec.trigger.runToken)."""
    live = _live(pipeline, FineTunePipelineSpec, FineTunePipelineStatus)
    return live is not None and manual_request(*live, _EPOCH, _EPOCH) is not None


def _pending_firing(
    pipeline: Mapping[str, Any], trigger_jobs: Mapping[str, list[dict[str, Any]]]
) -> datetime | None:
    """The oldest firing of the pipeline's schedule that its reconciler would take now: one of its
    trigger Jobs (by its uid) not marked handled whose firing has no run on record. Even one it will
    record Skipped waits: only the reconciler knows its blockers."""
    live = _live(pipeline, FineTunePipelineSpec, FineTunePipelineStatus)
    if live is None or live[0].trigger.type != "schedule":
        return None
    runs = list(live[1].runs or [])
    own = trigger_jobs.get(pipeline["metadata"].get("uid") or "", [])
    return next((r.when for r in schedule_requests(own) if recorded_run(r, runs) is None), None)


def _eval_requests_run(job: Mapping[str, Any]) -> bool:
    """The EvalJob's reconciler would record a run now (none yet, or spec.runToken changed since the
    newest one)."""
    live = _live(job, EvalJobSpec, EvalJobStatus)
    if live is None:
        return False
    spec, status = live
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return new_run(spec, list(status.runs or []), _EPOCH, annotations) is not None


def model_users(
    name: str,
    pipelines: Iterable[dict[str, Any]],
    eval_jobs: Iterable[dict[str, Any]],
    trigger_jobs: Mapping[str, list[dict[str, Any]]],
) -> list[str]:
    """The FineTunePipelines with a run in progress or asked for (by runToken or by one of their
    schedule's `trigger_jobs`, by pipeline uid: those the CronJob the pipeline owns made, as its
    reconciler selects them), and the EvalJobs with an unfinished or asked-for run, that use model
    `name` (as base model, output or evaluation target, the latter directly or through a pipeline's
    run)."""
    pipelines = list(pipelines)
    outputs = {p["metadata"]["name"]: _output(p) for p in pipelines}
    users = []
    for pipeline in pipelines:
        spec, status = pipeline.get("spec") or {}, pipeline.get("status") or {}
        uses = _refers(spec.get("baseModel"), name) or _output(pipeline) == name
        run = status.get("currentRun") or {}
        label = f"FineTunePipeline {pipeline['metadata']['name']}"
        if uses and run and run.get("phase", "Pending") not in _FINISHED:
            users.append(f"{label} (run {run.get('name', '?')})")
        elif uses and _pipeline_requests_run(pipeline):
            users.append(f"{label} ({_REQUESTED.format(field='spec.trigger.runToken')})")
        elif uses and (fired := _pending_firing(pipeline, trigger_jobs)) is not None:
            field = f"the schedule's firing at {fired.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            users.append(f"{label} ({_REQUESTED.format(field=field)})")
    for job in eval_jobs:
        spec, status = job.get("spec") or {}, job.get("status") or {}
        if not _evaluates(spec.get("model"), name, outputs):
            continue
        if status.get("phase", "Pending") not in _FINISHED:
            users.append(f"EvalJob {job['metadata']['name']}")
        elif _eval_requests_run(job):
            users.append(f"EvalJob {job['metadata']['name']} ({_REQUESTED.format(field='spec.runToken')})")
    return users
