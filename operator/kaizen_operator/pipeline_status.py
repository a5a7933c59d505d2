"""A pipeline's status from its runs: history within the spec's limits, conditions, phase (pure).

Conditions (metav1, each with observedGeneration):
- Accepted: the spec reads through the API models.
- Ready: the operator can start runs of this spec; False names the cause (UnknownModel,
  ModelNotReady, QuotaExceeded, CRDMissing, ReconcileError, …).
- Running: a run is active (reason Preflight, Starting, Queued or Training).
- Succeeded / Failed: how the newest finished run ended; Failed's reason is its cause (OOMKilled,
  ExitCode<N>, DeadlineExceeded, Evicted, DataInvalid, Diverged, Cancelled, …).
- Suspended: `spec.trigger.suspend`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import RunStatus

from kaizen_operator.conditions import Condition, set_condition
from kaizen_operator.kube import ApiError

RUNS_MAX = 100  # the CRD's bound on status.runs


@dataclass(frozen=True)
class Blocker:
    """Why runs cannot start: becomes Ready=False with this reason."""

    reason: str
    message: str


def prune(runs: list[RunStatus], spec: FineTunePipelineSpec) -> list[RunStatus]:
    """Newest first: every active run, then finished ones within the spec's history limits."""
    kept: list[RunStatus] = []
    succeeded = failed = 0
    for run in runs:
        if not run.finished:
            kept.append(run)
        elif run.phase == "Succeeded":
            succeeded += 1
            if succeeded <= spec.successful_runs_history_limit:
                kept.append(run)
        else:
            failed += 1
            if failed <= spec.failed_runs_history_limit:
                kept.append(run)
    return kept[:RUNS_MAX]


def active_runs(runs: list[RunStatus]) -> list[RunStatus]:
    return [r for r in runs if not r.finished]


def _last_finished(runs: list[RunStatus]) -> RunStatus | None:
    return next((r for r in runs if r.finished and r.phase != "Skipped"), None)


def conditions(
    old: list[Condition] | None,
    spec: FineTunePipelineSpec,
    runs: list[RunStatus],
    generation: int,
    blocker: Blocker | None,
) -> list[Condition]:
    out = set_condition(old, "Accepted", "True", "SpecValid", "the spec is valid", generation)
    if blocker is None:
        out = set_condition(out, "Ready", "True", "Reconciled", "the pipeline can start runs", generation)
    else:
        out = set_condition(out, "Ready", "False", blocker.reason, blocker.message, generation)
    active = active_runs(runs)
    if active:
        run = active[0]
        out = set_condition(
            out,
            "Running",
            "True",
            run.reason or run.phase,
            f"run {run.name} is {run.phase.lower()}",
            generation,
        )
    else:
        out = set_condition(out, "Running", "False", "NoActiveRun", "no run is active", generation)
    last = _last_finished(runs)
    if last is None:
        out = set_condition(out, "Succeeded", "Unknown", "NoFinishedRun", "no run has finished", generation)
        out = set_condition(out, "Failed", "False", "NoFinishedRun", "no run has finished", generation)
    elif last.phase == "Succeeded":
        message = f"run {last.name} produced version {last.output_version}"
        out = set_condition(out, "Succeeded", "True", "RunSucceeded", message, generation)
        out = set_condition(out, "Failed", "False", "RunSucceeded", message, generation)
    else:
        reason = last.reason or last.phase
        message = f"run {last.name}: {last.message or reason}"[:32768]
        out = set_condition(out, "Succeeded", "False", reason, message, generation)
        out = set_condition(out, "Failed", "True", reason, message, generation)
    if spec.trigger.suspend:
        out = set_condition(out, "Suspended", "True", "Suspended", "spec.trigger.suspend is true", generation)
    else:
        out = set_condition(out, "Suspended", "False", "NotSuspended", "runs are not suspended", generation)
    return out


def failed_pass(old: list[Condition] | None, err: Exception, generation: int) -> list[Condition]:
    """Ready=False/ReconcileError for a pass that raised, so the pipeline says what the log says. The
    API server's answer is quoted; any other exception is named by its type only, as its text may
    quote the spec or a child's manifest (the operator's log has the traceback)."""
    if isinstance(err, ApiError):
        message = f"the API server answered {err}"[:4096]
    else:
        message = f"the reconcile pass failed with {type(err).__name__}; the operator's log has the details"
    return set_condition(old, "Ready", "False", "ReconcileError", message, generation)


def phase(spec: FineTunePipelineSpec, runs: list[RunStatus], blocker: Blocker | None) -> str:
    """One word for `kubectl get`: the active run's phase, else Suspended/Blocked/the last outcome."""
    active = active_runs(runs)
    if active:
        return active[0].phase
    if blocker is not None:
        return "Blocked"
    if spec.trigger.suspend:
        return "Suspended"
    last = _last_finished(runs)
    return last.phase if last else ("Scheduled" if spec.trigger.type == "schedule" else "Ready")
