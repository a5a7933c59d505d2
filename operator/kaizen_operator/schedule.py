"""A schedule pipeline's CronJob, kept as the builders render it, and its next firing time.

The CronJob's own concurrencyPolicy is Allow: its trigger Jobs only ask for runs, and the operator
applies the pipeline's policy to them (triggers.concurrency_decision), so a skipped firing is
recorded in the history instead of vanishing inside the CronJob controller. For the same reason
the CronJob stays while runs are blocked (the model not ready, say): each firing is recorded Skipped
with the blocker's reason. Only a pipeline over a namespace cap (nothing is created for it), whose
schedule never fires, or whose CronJob the API server refuses has none, and then no nextScheduleTime
either, and no firings: a trigger Job is a run request only when the pipeline's CronJob made it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter
from kaizen_api.finetune import FineTunePipelineSpec, Trigger

from kaizen_operator.adoption import conflict, delete_owned
from kaizen_operator.kube import ApiError, Kube, path_of
from kaizen_operator.naming import cronjob_name
from kaizen_operator.pipeline_status import Blocker
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads import build_cronjob


def _next_firing(trigger: Trigger, now: datetime) -> datetime | None:
    """None for a schedule that never fires: CRON_PATTERN checks each field alone, so `0 0 30 2 *`
    (February 30th) passes admission."""
    assert trigger.schedule
    start = now.astimezone(ZoneInfo(trigger.time_zone)) if trigger.time_zone else now
    expression = {"@annually": "@yearly", "@midnight": "@daily"}.get(trigger.schedule, trigger.schedule)
    try:
        fires: datetime = croniter(expression, start).get_next(datetime)
    except CroniterBadDateError:
        return None
    return fires.astimezone(UTC)


def next_time(spec: FineTunePipelineSpec, now: datetime) -> datetime | None:
    trigger = spec.trigger
    if trigger.type != "schedule" or trigger.suspend or not trigger.schedule:
        return None
    return _next_firing(trigger, now)


def schedule_blocker(spec: FineTunePipelineSpec, now: datetime) -> Blocker | None:
    """InvalidSchedule for a schedule that never fires (such a pipeline gets no CronJob)."""
    trigger = spec.trigger
    if trigger.type != "schedule" or not trigger.schedule or _next_firing(trigger, now) is not None:
        return None
    return Blocker(
        "InvalidSchedule",
        f"spec.trigger.schedule {trigger.schedule!r} never fires: no month has that day",
    )


def refused_cronjob(err: ApiError, trigger: Trigger) -> Blocker | None:
    """The blocker of a CronJob the API server will never accept (422), instead of an error at every
    pass: InvalidSchedule when it names the schedule or time zone (one admission let through that the
    CronJob API refuses), CronJobRejected otherwise (an operator setting, say). None for an error
    worth retrying."""
    if err.status != 422:
        return None
    if "spec.schedule" in err.message or "spec.timeZone" in err.message:
        zone = f" (time zone {trigger.time_zone})" if trigger.time_zone else ""
        return Blocker(
            "InvalidSchedule",
            f"spec.trigger.schedule {trigger.schedule!r}{zone}: the API server refused the CronJob: "
            f"{err.message}",
        )
    return Blocker("CronJobRejected", f"the API server refused the pipeline's CronJob: {err.message}")


def contains(actual: Any, wanted: Any) -> bool:
    """Whether `actual` (as the API server returns it, defaults filled in) has everything `wanted` sets."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(contains(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(contains(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


@dataclass(frozen=True)
class CronJobSync:
    """What `sync_cronjob` left: the blocker of a CronJob refused or not the pipeline's, and the uid of
    the pipeline's own CronJob as read (None: it has none, or made it just now). Only the trigger
    Jobs that CronJob made are the pipeline's firings: one left by the CronJob of a deleted pipeline
    of the same name carries the same labels."""

    blocker: Blocker | None = None
    uid: str | None = None


def sync_cronjob(
    kube: Kube,
    pipeline: dict[str, Any],
    spec: FineTunePipelineSpec,
    settings: OperatorSettings,
    allowed: bool,
    before_create: Callable[[], None],
) -> CronJobSync:
    """Create or update the CronJob of a schedule pipeline; delete it when the pipeline has none.
    `before_create` runs before it is created (the pass confirms its pipeline exists). A CronJob the
    API server refuses is a blocker; one it refuses to update is deleted, so the old schedule does
    not go on firing. A CronJob of the name that the pipeline does not own is neither patched nor
    deleted: its `NameConflict` blocks the pipeline."""
    meta = pipeline["metadata"]
    path = path_of("batch/v1", "CronJob", meta["namespace"], cronjob_name(meta["name"]))
    if spec.trigger.type != "schedule" or not allowed:
        if (pipeline.get("status") or {}).get("nextScheduleTime") or spec.trigger.type == "schedule":
            delete_owned(kube, path, meta["uid"])
        return CronJobSync()
    desired = build_cronjob(pipeline, settings)
    existing = kube.get(path)
    if existing is not None and (clash := conflict(existing, desired)) is not None:
        return CronJobSync(Blocker(clash.reason, clash.message))
    try:
        if existing is None:
            before_create()
            kube.create(desired)  # none of its firings can exist yet
        elif not contains(existing.get("spec"), desired["spec"]):
            kube.merge_patch(path, {"spec": desired["spec"]})
    except ApiError as err:
        refused = refused_cronjob(err, spec.trigger)
        if refused is None:
            raise
        if existing is not None:
            kube.delete(path)
        return CronJobSync(refused)
    return CronJobSync(uid=existing["metadata"]["uid"] if existing is not None else None)
