"""One run's state from what exists: its Jobs (or PyTorchJob), their pods and the runner's last words.

Pure, so every outcome is unit-tested without a cluster. A run moves through preflight (a CPU Job
whose termination message carries the plan), then its GPU workload; `advance` returns the run as the
children show it now plus the actions the handler must take (create the next child, delete a
cancelled run's workload, delete what an ended run leaves: its Service and token Secret, before the
record says it ended). A finished run is final: its children may be gone (TTL) and nothing is
derived for it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kaizen_api.finetune_status import RunProgress, RunStatus
from kaizen_api.results import TerminationMessage
from pydantic import ValidationError

# delete_leftovers: a run that ends no longer needs its headless Service and token Secret.
Action = Literal["create_preflight", "create_workload", "delete_children", "delete_leftovers"]
Outcome = Literal["Pending", "Suspended", "Running", "Succeeded", "Failed"]

OOM_EXIT_CODE = 137
# The runner's failure classes that have a better-known name as a condition reason.
RUNNER_REASONS = {"OutOfMemory": "OOMKilled"}
PROBLEMS_IN_MESSAGE = 10
WORKLOAD_DELETED = "WorkloadDeleted"
# A batch/v1 Job past activeDeadlineSeconds says reason DeadlineExceeded; the Kubeflow training
# operator says reason PyTorchJobFailed, message "Job <name> has failed because it was active
# longer than specified deadline".
DEADLINE_MESSAGE = "active longer than specified deadline"
# Which node a pod ran as: an Indexed Job's completion index, a PyTorchJob's replica type and index.
RANK_KEYS = (
    "batch.kubernetes.io/job-completion-index",
    "training.kubeflow.org/replica-type",
    "training.kubeflow.org/replica-index",
)
# A node's failure that the others' generic exit codes (a lost peer) only follow from.
CAUSES_FIRST = ("OOMKilled", "Evicted")


@dataclass(frozen=True)
class RunChildren:
    """What exists of one run (found by its `kaizen.dev/run` label)."""

    preflight_job: dict[str, Any] | None = None
    workload: dict[str, Any] | None = None
    preflight_pods: list[dict[str, Any]] = field(default_factory=list)
    workload_pods: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Advance:
    run: RunStatus
    actions: tuple[Action, ...] = ()
    # (Normal|Warning, reason, message) when the run changed phase: an Event for the user.
    event: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    exit_code: int | None = None


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    items = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in items if c.get("status") == "True"}


def workload_outcome(obj: dict[str, Any]) -> tuple[Outcome, dict[str, Any] | None]:
    """A batch/v1 Job's or a PyTorchJob's state, with the condition that decided it."""
    conditions = _conditions(obj)
    for kind, outcome in (("Complete", "Succeeded"), ("Succeeded", "Succeeded")):
        if kind in conditions:
            return outcome, conditions[kind]  # type: ignore[return-value]
    for kind in ("Failed", "FailureTarget"):
        if kind in conditions:
            return "Failed", conditions[kind]
    if obj.get("kind") == "PyTorchJob":
        if "Suspended" in conditions:
            return "Suspended", conditions["Suspended"]
        return ("Running" if "Running" in conditions else "Pending"), None
    status = obj.get("status") or {}
    if (obj.get("spec") or {}).get("suspend") and not status.get("active"):
        return "Suspended", conditions.get("Suspended")
    return ("Running" if status.get("ready") or status.get("active") else "Pending"), None


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get(
            "terminated"
        )
        if state:
            return dict(state)
    return None


def termination_message(pod: dict[str, Any]) -> tuple[TerminationMessage | None, str]:
    """The runner's TerminationMessage from the pod, or None with the raw text (e.g. a log tail)."""
    text = ((_terminated(pod) or {}).get("message") or "").strip()
    if not text:
        return None, ""
    try:
        return TerminationMessage.model_validate(json.loads(text)), text
    except (ValueError, ValidationError):
        return None, text


def _finished_at(pod: dict[str, Any]) -> str:
    return str((_terminated(pod) or {}).get("finishedAt") or "")


def _is_running(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def _rank(pod: dict[str, Any]) -> tuple[str, ...]:
    """The node a pod ran as: an Indexed Job's completion index, a PyTorchJob's replica; a one-node
    Job's pods (its retries) are all one."""
    meta = pod.get("metadata") or {}
    found = (meta.get("labels") or {}) | (meta.get("annotations") or {})
    return tuple(str(found.get(key, "")) for key in RANK_KEYS)


def pod_failure(pods: list[dict[str, Any]]) -> Failure | None:
    """Why the last attempt failed: an OOM kill or eviction on any node (the other nodes then fail on
    the lost peer with a generic exit code), else the newest failed pod's cause. The last attempt is
    each node's newest failed pod."""
    last: dict[tuple[str, ...], dict[str, Any]] = {}
    for pod in sorted(pods, key=_finished_at):
        if (pod.get("status") or {}).get("phase") == "Failed":
            last[_rank(pod)] = pod
    newest_first = sorted(last.values(), key=_finished_at, reverse=True)
    causes = [c for c in map(_pod_cause, newest_first) if c is not None]
    return next((c for c in causes if c.reason in CAUSES_FIRST), next(iter(causes), None))


def _pod_cause(pod: dict[str, Any]) -> Failure | None:
    """Evicted, OOMKilled, the runner's reason, else ExitCode<N>."""
    status = pod.get("status") or {}
    disrupted = any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if status.get("reason") == "Evicted" or disrupted:
        return Failure("Evicted", status.get("message") or "the pod was evicted")
    state = _terminated(pod) or {}
    code = state.get("exitCode")
    term, raw = termination_message(pod)
    if state.get("reason") == "OOMKilled" or code == OOM_EXIT_CODE:
        return Failure("OOMKilled", "the container ran out of memory (exit code 137)", code)
    if term is not None and term.reason:
        return Failure(RUNNER_REASONS.get(term.reason, term.reason), term.message or term.reason, code)
    if code is not None:
        return Failure(f"ExitCode{code}", raw[-2000:] or f"the container exited with code {code}", code)
    return None


def workload_failure(
    obj: dict[str, Any], condition: dict[str, Any] | None, pods: list[dict[str, Any]]
) -> Failure:
    """The cause of a failed workload, most specific first; DeadlineExceeded beats what the pods show."""
    reason = (condition or {}).get("reason") or "Failed"
    message = (condition or {}).get("message") or ""
    if reason == "DeadlineExceeded" or DEADLINE_MESSAGE in message:
        return Failure("DeadlineExceeded", message or "the run was active longer than activeDeadlineSeconds")
    return pod_failure(pods) or Failure(reason, message or f"the {obj.get('kind', 'workload')} failed")


def _successful_message(pods: list[dict[str, Any]]) -> TerminationMessage | None:
    """The termination message of a succeeded pod that carries results (rank 0 writes them)."""
    found = [termination_message(p)[0] for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
    messages = [m for m in found if m is not None]
    with_results = [m for m in messages if m.metrics or m.output_version or m.plan]
    best = with_results or messages
    return best[0] if best else None


def _completed(progress: RunProgress | None, global_step: int | None) -> RunProgress | None:
    """A succeeded run's progress at its last step: the runner's final reports can be lost or refused
    (rate limit), the termination message's step is not."""
    if progress is None and global_step is None:
        return None
    progress = progress or RunProgress()
    step = progress.total_steps if global_step is None else global_step
    done = {"step": step, "total_steps": max(step, progress.total_steps), "percentage": 100, "eta_seconds": 0}
    return progress.model_copy(update=done)


def problems_text(term: TerminationMessage) -> str:
    """The runner's message followed by the first bad records, index and reason."""
    lines = [term.message or "the dataset has invalid records"]
    for problem in (term.plan.first_problems if term.plan else None) or []:
        lines.append(f"record {problem.index}: {problem.reason}")
        if len(lines) > PROBLEMS_IN_MESSAGE:
            break
    return "\n".join(lines)


def _end(run: RunStatus, phase: str, now: datetime, **changes: Any) -> Advance:
    """The run ended: what only a running run needs goes (a pass cut short before the record lands
    derives the end, and so the deletion, again)."""
    ended = run.model_copy(update={"phase": phase, "completion_time": now, **changes})
    if phase == "Succeeded":
        event = ("Normal", "RunSucceeded", f"run {run.name} succeeded")
    else:
        event = (
            "Warning",
            f"Run{phase}",
            f"run {run.name}: {changes.get('reason')}: {changes.get('message')}",
        )
    return Advance(ended, ("delete_leftovers",), event=event)


def _preflight(run: RunStatus, children: RunChildren, now: datetime) -> Advance | None:
    """The preflight stage; None once its plan is recorded and the workload stage takes over."""
    if run.preflight is not None:
        return None
    job = children.preflight_job
    if job is None:
        return Advance(run.model_copy(update={"reason": "Preflight"}), ("create_preflight",))
    outcome, condition = workload_outcome(job)
    if outcome == "Succeeded":
        term = _successful_message(children.preflight_pods)
        if term is None or term.plan is None:
            return _end(
                run, "Failed", now, reason="PreflightFailed", message="the preflight ended without a plan"
            )
        run.preflight = term.plan  # `run` is advance()'s own copy
        return None
    if outcome == "Failed":
        terms = [termination_message(p)[0] for p in children.preflight_pods]
        term = next((t for t in terms if t is not None and t.phase == "Failed"), None)
        if term is not None and term.reason:
            return _end(
                run,
                "Failed",
                now,
                reason=RUNNER_REASONS.get(term.reason, term.reason),
                message=problems_text(term) if term.reason == "DataInvalid" else term.message,
                preflight=term.plan,
            )
        failure = workload_failure(job, condition, children.preflight_pods)
        return _end(
            run,
            "Failed",
            now,
            reason=failure.reason,
            message=f"preflight: {failure.message}",
            exit_code=failure.exit_code,
        )
    return Advance(run.model_copy(update={"reason": "Preflight"}))


def advance(run: RunStatus, children: RunChildren, *, now: datetime, cancel: bool = False) -> Advance:
    """The run as its children show it, and what to do next. A cancel stops a run its children show
    unfinished; one that has already succeeded or failed keeps that outcome. A workload gone counts
    as unfinished: it is what a cancel leaves when its pass could not record it."""
    if run.finished:
        return Advance(run)
    step = _derive(run.model_copy(deep=True), children, now)
    if cancel and (not step.run.finished or step.run.reason == WORKLOAD_DELETED):
        message = "cancelled by annotation kaizen.dev/cancel"
        ended = _end(step.run, "Cancelled", now, reason="Cancelled", message=message)
        return Advance(ended.run, ("delete_children",), ended.event)
    return step


def _derive(run: RunStatus, children: RunChildren, now: datetime) -> Advance:
    """`advance` for an unfinished run (`run` is its own copy)."""
    staged = _preflight(run, children, now)
    if staged is not None:
        return staged
    workload = children.workload
    if workload is None:
        if run.job_name:  # it was created and is gone: deleted by someone, or TTL before we looked
            return _end(
                run,
                "Failed",
                now,
                reason=WORKLOAD_DELETED,
                message=f"{run.job_kind} {run.job_name} was deleted",
            )
        return Advance(run.model_copy(update={"reason": "Starting"}), ("create_workload",))
    run = run.model_copy(
        update={"job_name": workload["metadata"]["name"], "job_kind": workload.get("kind", "Job")}
    )
    outcome, condition = workload_outcome(workload)
    if outcome == "Succeeded":
        term = _successful_message(children.workload_pods)
        # The version is named after the run (SPEC §3) unless the runner said otherwise.
        return _end(
            run,
            "Succeeded",
            now,
            reason="Succeeded",
            message="the run completed",
            metrics=(term.metrics if term else None) or run.metrics,
            output_version=(term.output_version if term else None) or run.output_version or run.name,
            progress=_completed(run.progress, term.global_step if term else None),
        )
    if outcome == "Failed":
        failure = workload_failure(workload, condition, children.workload_pods)
        return _end(
            run, "Failed", now, reason=failure.reason, message=failure.message, exit_code=failure.exit_code
        )
    if outcome == "Suspended":
        return Advance(run.model_copy(update={"phase": "Pending", "reason": "Queued"}))
    running = (
        outcome == "Running"
        and any(_is_running(p) for p in children.workload_pods)
        or (outcome == "Running" and workload.get("kind") == "PyTorchJob")
    )
    if running:
        changed = run.phase != "Running"
        run = run.model_copy(update={"phase": "Running", "reason": "Training"})
        event = ("Normal", "RunRunning", f"run {run.name} is training on {run.job_kind} {run.job_name}")
        return Advance(run, event=event if changed else None)
    return Advance(run.model_copy(update={"phase": "Pending", "reason": "Starting"}))
