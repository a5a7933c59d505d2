"""An EvalJob's runs from what exists: when a new run starts, and where a run stands given its Job and pod.

Pure (the reconciler does the I/O). A job runs once on creation and again each time `spec.runToken`
changes, one run at a time: a token changed during a run starts the next run when it ends. A run is
named `<displayName>-<n>`; its object name (every child's name) is derived from the job and `n`, so
a restarted operator adopts the children it finds. The Job's outcome and the runner's termination
message are read with the training runs' helpers (`runs.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kaizen_api.evaljob import EvalJobSpec, EvalRunRecord

from kaizen_operator.naming import RUN_NAME_MAX, fit_label, short_hash, slug
from kaizen_operator.runs import termination_message, workload_failure, workload_outcome

CANCEL_ANNOTATION = "kaizen.dev/cancel"
EvalAction = Literal["create_children", "delete_children"]
FINISHED = ("Succeeded", "Failed", "Cancelled")


def run_number(record: EvalRunRecord) -> int:
    tail = record.run_name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def run_object_name(job_name: str, number: int) -> str:
    """`<job>-r<n>-<hash>`, a DNS label of at most 52 characters (the pipelines' run-name budget)."""
    return fit_label(slug(job_name), f"r{number}-{short_hash(job_name, str(number))}", RUN_NAME_MAX)


def new_run(spec: EvalJobSpec, runs: list[EvalRunRecord], now: datetime) -> EvalRunRecord | None:
    """The run to start now, if any: the first one, or the next after a runToken change."""
    if runs and runs[0].phase not in FINISHED:
        return None
    if runs and (runs[0].run_token or None) == (spec.run_token or None):
        return None
    number = (run_number(runs[0]) if runs else 0) + 1
    return EvalRunRecord(
        run_name=f"{spec.display_name}-{number}", run_token=spec.run_token, phase="Pending", start_time=now
    )


def cancel_requested(annotations: dict[str, str], record: EvalRunRecord) -> bool:
    """`kaizen.dev/cancel` set to the run's name, or to anything for the current run ("true")."""
    value = annotations.get(CANCEL_ANNOTATION)
    return bool(value) and value in (record.run_name, "true", "True", "yes", "1")


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
        return EvalAdvance(run, ("create_children",))
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
