"""An EvalJob's runs from what exists: when a new run starts, and where a run stands given its Job and pod.

Pure (the reconciler does the I/O). A job runs once on creation and again each time `spec.runToken`
changes, one run at a time: a token changed during a run starts the next run when it ends. A run is
named `<displayName>-<n>`; its object name (every child's name) is derived from the job and `n`, so
a restarted operator adopts the children it finds. The Job's outcome and the runner's termination
message are read with the training runs' helpers (`runs.py`); a Job seen once and gone later ends
the run as `WorkloadDeleted`, like a pipeline's run, instead of evaluating again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kaizen_api.evaljob import EvalJobSpec, EvalRunRecord, EvaluatedVersion, Notification

from kaizen_operator.eval_workload import EVALUATED_ANNOTATION
from kaizen_operator.naming import RUN_NAME_MAX, fit_label, short_hash, slug
from kaizen_operator.runs import termination_message, workload_failure, workload_outcome
from kaizen_operator.triggers import CANCEL_ANNOTATION, cancel_names

CANCEL_ALL = ("true", "True", "yes", "1")  # "cancel the current run" (a run's name is the pipelines' form)
EvalAction = Literal["create_children", "delete_children"]
FINISHED = ("Succeeded", "Failed", "Cancelled")
SENDING = "Sending"  # the Notified reason of a claimed mail whose outcome is not recorded yet


def run_number(record: EvalRunRecord) -> int:
    tail = record.run_name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def run_object_name(job_name: str, number: int) -> str:
    """`<job>-r<n>-<hash>`, a DNS label of at most 52 characters (the pipelines' run-name budget)."""
    return fit_label(slug(job_name), f"r{number}-{short_hash(job_name, str(number))}", RUN_NAME_MAX)


def new_run(
    spec: EvalJobSpec, runs: list[EvalRunRecord], now: datetime, annotations: Mapping[str, str]
) -> EvalRunRecord | None:
    """The run to start now, if any: the first one, or the next after a runToken change. A cancel
    "true" already there is an earlier run's, and is remembered as seen."""
    if runs and runs[0].phase not in FINISHED:
        return None
    if runs and (runs[0].run_token or None) == (spec.run_token or None):
        return None
    number = (run_number(runs[0]) if runs else 0) + 1
    return EvalRunRecord(
        run_name=f"{spec.display_name}-{number}",
        run_token=spec.run_token,
        phase="Pending",
        start_time=now,
        cancel_seen=_cancel_all(annotations),
    )


def _cancel_all(annotations: Mapping[str, str]) -> str | None:
    value = (annotations.get(CANCEL_ANNOTATION) or "").strip()
    return value if value in CANCEL_ALL else None


def cancel_requested(
    annotations: Mapping[str, str], record: EvalRunRecord, object_name: str
) -> tuple[bool, EvalRunRecord]:
    """Whether `kaizen.dev/cancel` cancels this run, and the run with the value remembered.

    As for pipelines, the value names runs (display or object name, comma-separated). "true" cancels
    the run that is current when it first appears: one seen already (left from an earlier run, or
    there when this run started) does not, so a runToken change after a cancel runs again."""
    if record.run_name in cancel_names(annotations) or object_name in cancel_names(annotations):
        return True, record
    value = _cancel_all(annotations)
    return value is not None and value != record.cancel_seen, record.model_copy(update={"cancel_seen": value})


def evaluated_version(job: Mapping[str, Any]) -> EvaluatedVersion | None:
    """The PrivateModel version a Job evaluates, from the annotation it was built with."""
    value = (job["metadata"].get("annotations") or {}).get(EVALUATED_ANNOTATION) or ""
    model, _, version = value.partition("/")
    return EvaluatedVersion(private_model=model, version=version) if model and version else None


@dataclass(frozen=True)
class EvalChildren:
    job: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class EvalAdvance:
    run: EvalRunRecord
    actions: tuple[EvalAction, ...] = ()
    message: str | None = None  # the runner's or the Job's message, for status.message
    warnings: tuple[str, ...] = ()
    event: tuple[str, str, str] | None = None


def _end(run: EvalRunRecord, phase: str, now: datetime, **changes: Any) -> EvalRunRecord:
    return run.model_copy(update={"phase": phase, "completion_time": now, **changes})


def advance_eval(
    run: EvalRunRecord, children: EvalChildren, *, now: datetime, cancel: bool = False
) -> EvalAdvance:
    """The run as its children show it, and what to do."""
    if run.phase in FINISHED:
        return EvalAdvance(run)
    if cancel:
        ended = _end(run, "Cancelled", now, reason="Cancelled")
        return EvalAdvance(
            ended,
            ("delete_children",),
            "cancelled by annotation kaizen.dev/cancel",
            event=("Normal", "Cancelled", f"run {run.run_name} cancelled"),
        )
    if children.job is None:
        if run.job_name:  # seen once and gone: deleted by someone, or TTL while the operator was down
            message = f"Job {run.job_name} was deleted before the run's outcome was recorded"
            ended = _end(run, "Failed", now, reason="WorkloadDeleted")
            return EvalAdvance(ended, message=message, event=("Warning", "WorkloadDeleted", message))
        return EvalAdvance(run, ("create_children",))
    evaluated = evaluated_version(children.job) or run.evaluated
    run = run.model_copy(update={"job_name": children.job["metadata"]["name"], "evaluated": evaluated})
    outcome, condition = workload_outcome({**children.job, "kind": "Job"})
    if outcome == "Succeeded":
        terms = [termination_message(p)[0] for p in children.pods]
        term = next((t for t in terms if t is not None and t.results is not None), None)
        ended = _end(
            run,
            "Succeeded",
            now,
            reason="Completed",
            results=term.results if term else None,
            results_uri=term.results_uri if term else None,
        )
        warnings = tuple(term.warnings or ()) if term else ()
        return EvalAdvance(
            ended, warnings=warnings, event=("Normal", "Succeeded", f"run {run.run_name} succeeded")
        )
    if outcome == "Failed":
        failure = workload_failure({**children.job, "kind": "Job"}, condition, children.pods)
        ended = _end(run, "Failed", now, reason=failure.reason)
        return EvalAdvance(
            ended,
            message=failure.message,
            event=("Warning", failure.reason, f"run {run.run_name}: {failure.message}"),
        )
    phase = "Running" if outcome == "Running" else "Pending"
    return EvalAdvance(run.model_copy(update={"phase": phase}))


def notification_action(
    wanted: Notification | None, run: EvalRunRecord, notified: Mapping[str, Any] | None
) -> Literal["send"] | tuple[str, str, str] | None:
    """What a finished run's `Notified` condition needs: nothing (settled for this run), "send" (claim
    it in status, then mail), or (status, reason, message) without mail.

    At most once: a mail is claimed (reason Sending) with the object's resourceVersion before it goes
    out, so a pass that loses a status conflict, or a restart, never sends it again; a claim found
    unsettled is reported as unconfirmed rather than retried (a duplicate costs more than a gap)."""
    if wanted is None or run.phase not in FINISHED:
        return None
    about = f"run {run.run_name}:"
    if notified is not None and str(notified.get("message", "")).startswith(about):
        if notified.get("reason") != SENDING:
            return None
        note = "the pass sending the mail ended before recording whether it went out; not sent again"
        return "Unknown", "SendUnconfirmed", f"{about} {note}"
    if run.phase not in wanted.on:
        return "False", "NotRequested", f"{about} no mail for outcome {run.phase}"
    return "send"
