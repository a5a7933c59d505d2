"""What asks for a run: a new manual pipeline, a changed `spec.trigger.runToken`, a schedule's trigger Job.

Pure. Every request is level-based: a manual request is "the spec's token differs from the token of
the newest manual run" (kept in `status.lastRunToken`, so history pruning never re-runs one; a
schedule pipeline keeps its own token there, see `seen_token`); a scheduled request is a trigger Job
the operator has not yet marked handled and whose firing has no run on record (the mark is written
after the record, so it can be lost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import FineTunePipelineStatus, RunStatus

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
TRIGGER_LABEL = "kaizen.dev/trigger"
HANDLED_ANNOTATION = "kaizen.dev/handled"
CANCEL_ANNOTATION = "kaizen.dev/cancel"


@dataclass(frozen=True)
class RunRequest:
    trigger: Literal["manual", "schedule"]
    when: datetime  # the run's timestamp: see manual_request; the firing time for scheduled runs
    token: str | None = None
    trigger_job: str | None = None
    # The run's name is a function of the pipeline alone (every pass derives the same): its preflight
    # may be created beside its record instead of after it, since a next pass would adopt it.
    early: bool = False


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def manual_request(
    spec: FineTunePipelineSpec, status: FineTunePipelineStatus, now: datetime, created: datetime
) -> RunRequest | None:
    """A run for the spec's token, unless one was started for it (a new pipeline's token is '').

    Its timestamp is now, except for a pipeline never reconciled (no observedGeneration): that asks
    for its first run at its own creation time `created`, which every pass reads alike."""
    if spec.trigger.type != "manual" or spec.trigger.suspend:
        return None
    token = spec.trigger.run_token or ""
    if status.last_run_token == token:
        return None
    if status.observed_generation is None:
        return RunRequest("manual", created, token=token, early=True)
    return RunRequest("manual", now, token=token)


def seen_token(spec: FineTunePipelineSpec, status: FineTunePipelineStatus) -> str | None:
    """`status.lastRunToken` as a pass writes it. A schedule pipeline's token starts nothing, so it is
    recorded as seen: switched to `manual`, the pipeline is not new and starts a run only once the
    token changes (a platform team switching the trigger type does not expect a GPU run at once)."""
    if spec.trigger.type == "schedule":
        return spec.trigger.run_token or ""
    return status.last_run_token


def schedule_requests(trigger_jobs: list[dict[str, Any]]) -> list[RunRequest]:
    """Unhandled trigger Jobs, oldest firing first."""
    requests = []
    for job in trigger_jobs:
        meta = job["metadata"]
        annotations = meta.get("annotations") or {}
        if HANDLED_ANNOTATION in annotations or meta.get("deletionTimestamp"):
            continue
        when = parse_time(annotations.get(SCHEDULED_ANNOTATION)) or parse_time(meta["creationTimestamp"])
        assert when is not None
        requests.append(RunRequest("schedule", when, trigger_job=meta["name"]))
    return sorted(requests, key=lambda r: r.when)


def recorded_run(request: RunRequest, runs: list[RunStatus]) -> RunStatus | None:
    """The run (or Skipped entry) already on record for a firing. A trigger Job is marked handled
    after the status records its run, so a failed mark or a restart in between leaves it unmarked;
    taking it again would record a second run of the same name (which Replace would cancel with it)."""
    return next((r for r in runs if r.trigger == "schedule" and r.scheduled_time == request.when), None)


def concurrency_decision(
    policy: str, active: list[RunStatus]
) -> tuple[Literal["start", "skip", "replace"], str]:
    """concurrencyPolicy for a scheduled run: Forbid skips while a run is active, Replace cancels it."""
    if not active:
        return "start", ""
    names = ", ".join(r.name for r in active)
    if policy == "Forbid":
        return "skip", f"concurrencyPolicy Forbid: run {names} is still active"
    if policy == "Replace":
        return "replace", f"concurrencyPolicy Replace: replaced by a scheduled run ({names} cancelled)"
    return "start", ""


def holding_slots(runs: list[RunStatus], decision: str) -> list[RunStatus]:
    """The runs that count against the concurrent-runs cap once a firing's decision is carried out:
    Replace cancels every active run, so their slots go to the new one."""
    return [r for r in runs if r.finished] if decision == "replace" else runs


def replaced_runs(policy: str, runs: list[RunStatus]) -> set[str]:
    """Under Replace, the active runs older than the newest active scheduled run (`runs` is newest
    first). Derived from the record, not from the pass that took the firing: that pass may have died
    between recording the new run and cancelling the old ones."""
    if policy != "Replace":
        return set()
    newest = next((i for i, r in enumerate(runs) if r.trigger == "schedule" and not r.finished), None)
    return set() if newest is None else {r.name for r in runs[newest + 1 :] if not r.finished}


def cancel_names(annotations: Mapping[str, str]) -> set[str]:
    """The run names (display or object) the comma-separated `kaizen.dev/cancel` annotation lists."""
    return {part.strip() for part in (annotations.get(CANCEL_ANNOTATION) or "").split(",") if part.strip()}


def cancel_targets(annotations: dict[str, str], runs: list[RunStatus]) -> set[str]:
    """Active runs named (display or object name) by the `kaizen.dev/cancel` annotation."""
    wanted = cancel_names(annotations)
    return {r.name for r in runs if not r.finished and (r.name in wanted or r.object_name in wanted)}
