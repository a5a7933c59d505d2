"""Triggers, history limits, conditions and the progress endpoint's pure half."""

from __future__ import annotations

from datetime import UTC, datetime

from api.manifests import load_example
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import FineTunePipelineStatus, RunStatus
from kaizen_operator import pipeline_status
from kaizen_operator.conditions import get_condition
from kaizen_operator.kube import ApiError
from kaizen_operator.pipeline_status import Blocker
from kaizen_operator.schedule import contains, next_time, refused_cronjob, schedule_blocker
from kaizen_operator.triggers import (
    cancel_targets,
    concurrency_decision,
    manual_request,
    recorded_run,
    replaced_runs,
    schedule_requests,
    seen_token,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def spec(**trigger: object) -> FineTunePipelineSpec:
    body = load_example("finetune-sft-alpaca.yaml")["spec"]
    return FineTunePipelineSpec.model_validate(body | {"trigger": trigger, "successfulRunsHistoryLimit": 1})


CREATED = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
RECONCILED = FineTunePipelineStatus(observed_generation=1)


def test_manual_requests_follow_the_token() -> None:
    assert manual_request(spec(), RECONCILED, NOW, CREATED).token == ""  # type: ignore[union-attr]
    done = RECONCILED.model_copy(update={"last_run_token": ""})
    assert manual_request(spec(), done, NOW, CREATED) is None
    changed = manual_request(spec(runToken="b"), done, NOW, CREATED)
    assert changed is not None and changed.token == "b"
    assert manual_request(spec(suspend=True), FineTunePipelineStatus(), NOW, CREATED) is None


def test_a_new_pipeline_asks_for_its_first_run_at_its_creation_time() -> None:
    """Never reconciled: every pass derives the same run (so its preflight may start before its record)."""
    first = manual_request(spec(), FineTunePipelineStatus(), NOW, CREATED)
    assert first is not None and (first.when, first.early) == (CREATED, True)
    # Once status is written (say the first pass met a quota), a run is timed when it is started.
    later = manual_request(spec(), RECONCILED, NOW, CREATED)
    assert later is not None and (later.when, later.early) == (NOW, False)


def test_a_schedule_pipeline_switched_to_manual_runs_only_when_its_token_changes() -> None:
    """A schedule pipeline's passes record its token as seen; switched to manual it is not new."""
    schedule = {"type": "schedule", "schedule": "0 3 * * *"}
    seen = RECONCILED.model_copy(update={"last_run_token": seen_token(spec(**schedule), RECONCILED)})
    assert seen.last_run_token == ""
    assert manual_request(spec(), seen, NOW, CREATED) is None
    changed = manual_request(spec(runToken="go"), seen, NOW, CREATED)
    assert changed is not None and changed.token == "go"
    # A token changed while it was a schedule pipeline is seen too; a manual pass keeps the record.
    assert seen_token(spec(**schedule, runToken="x"), seen) == "x"
    assert seen_token(spec(runToken="y"), seen) == ""
    # A manual pipeline created suspended never had a pass as schedule: resumed, it starts its run.
    suspended = seen_token(spec(suspend=True), RECONCILED)
    assert suspended is None
    never_run = RECONCILED.model_copy(update={"last_run_token": suspended})
    resumed = manual_request(spec(), never_run, NOW, CREATED)
    assert resumed is not None and resumed.token == ""


def test_schedule_requests_are_unhandled_trigger_jobs_oldest_first() -> None:
    def job(name: str, stamp: str, handled: bool = False) -> dict:
        annotations = {"batch.kubernetes.io/cronjob-scheduled-timestamp": stamp}
        if handled:
            annotations["kaizen.dev/handled"] = "Running x"
        return {"metadata": {"name": name, "creationTimestamp": stamp, "annotations": annotations}}

    requests = schedule_requests(
        [
            job("b", "2026-12-02T03:00:00Z"),
            job("a", "2026-12-01T03:00:00Z"),
            job("c", "2026-12-03T03:00:00Z", True),
        ]
    )
    assert [r.trigger_job for r in requests] == ["a", "b"]


def test_a_firing_already_on_record_is_not_taken_again() -> None:
    """Its trigger Job's handled mark was lost after the status recorded the run (a 5xx, a restart):
    the next pass finds the run by its firing time and only marks the Job, whatever the policy."""
    stamp = {"batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-12-02T03:00:00Z"}
    (firing,) = schedule_requests([{"metadata": {"name": "t", "annotations": stamp}}])
    taken = RunStatus(name="ft_m_20261202030000", trigger="schedule", scheduled_time=firing.when)
    skipped = taken.model_copy(update={"phase": "Skipped"})
    earlier = taken.model_copy(update={"scheduled_time": datetime(2026, 12, 1, 3, tzinfo=UTC)})
    manual = RunStatus(name="ft_m_20261202030000", trigger="manual")
    assert recorded_run(firing, [taken]) is taken
    assert recorded_run(firing, [skipped]) is skipped
    assert recorded_run(firing, [earlier, manual]) is None


def test_concurrency_policies() -> None:
    active = [RunStatus(name="r1", phase="Running")]
    assert concurrency_decision("Forbid", active)[0] == "skip"
    assert concurrency_decision("Replace", active)[0] == "replace"
    assert concurrency_decision("Allow", active)[0] == "start"
    assert concurrency_decision("Forbid", [])[0] == "start"


def test_replace_cancels_what_the_newest_scheduled_run_replaced() -> None:
    """From the record alone: a pass that recorded the new run and died before cancelling the old
    ones leaves them to the next pass. Runs newer than that scheduled run are not its to replace."""
    manual_after = RunStatus(name="m2", trigger="manual", phase="Running")
    newest = RunStatus(name="s2", trigger="schedule", phase="Pending")
    old_scheduled = RunStatus(name="s1", trigger="schedule", phase="Running")
    old_manual = RunStatus(name="m1", trigger="manual", phase="Running")
    done = RunStatus(name="s0", trigger="schedule", phase="Succeeded")
    runs = [manual_after, newest, old_scheduled, old_manual, done]  # newest first, as in status
    assert replaced_runs("Replace", runs) == {"s1", "m1"}
    assert replaced_runs("Forbid", runs) == replaced_runs("Allow", runs) == set()
    assert replaced_runs("Replace", [manual_after, old_manual]) == set()


def test_cancel_names_active_runs_by_either_name() -> None:
    runs = [
        RunStatus(name="ft_a", object_name="p-a", phase="Running"),
        RunStatus(name="ft_b", phase="Failed"),
    ]
    assert cancel_targets({"kaizen.dev/cancel": "p-a, ft_b"}, runs) == {"ft_a"}


def test_history_limits_keep_active_runs() -> None:
    runs = [
        RunStatus(name="4", phase="Running"),
        RunStatus(name="3", phase="Succeeded"),
        RunStatus(name="2", phase="Succeeded"),
        RunStatus(name="1", phase="Failed"),
    ]
    assert [r.name for r in pipeline_status.prune(runs, spec())] == ["4", "3", "1"]


def test_conditions_name_the_cause() -> None:
    runs = [RunStatus(name="r", phase="Failed", reason="OOMKilled", message="exit 137")]
    conds = pipeline_status.conditions(None, spec(), runs, 3, Blocker("QuotaExceeded", "2 runs active"))
    assert get_condition(conds, "Failed")["reason"] == "OOMKilled"
    assert get_condition(conds, "Ready")["reason"] == "QuotaExceeded"
    assert get_condition(conds, "Running")["status"] == "False"
    assert {c["observedGeneration"] for c in conds} == {3}
    assert pipeline_status.phase(spec(), runs, None) == "Failed"


def test_a_pass_that_raised_says_so_without_quoting_the_exception() -> None:
    ready = pipeline_status.conditions(None, spec(), [], 2, None)
    bug = ValueError("input_value='s3-secret-key'")
    conds = pipeline_status.failed_pass(ready, bug, 2)
    failed = get_condition(conds, "Ready")
    assert failed["status"] == "False" and failed["reason"] == "ReconcileError"
    assert "ValueError" in failed["message"] and "s3-secret-key" not in failed["message"]
    assert get_condition(conds, "Accepted") == get_condition(ready, "Accepted")  # the others stay
    assert pipeline_status.failed_pass(conds, bug, 2) == conds  # unchanged: nothing to write
    refused = ApiError(500, '{"reason": "InternalError", "message": "etcdserver: request timed out"}')
    message = get_condition(pipeline_status.failed_pass(None, refused, 2), "Ready")["message"]
    assert message == "the API server answered 500 InternalError: etcdserver: request timed out"


def test_next_schedule_time_in_the_zone_and_spec_subset() -> None:
    nightly = spec(type="schedule", schedule="0 3 * * *", timeZone="Asia/Tokyo")
    assert next_time(nightly, NOW) == datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    assert next_time(spec(type="schedule", schedule="@daily", suspend=True), NOW) is None
    assert schedule_blocker(nightly, NOW) is None
    assert contains({"a": 1, "b": {"c": [1, 2]}, "x": 0}, {"b": {"c": [1, 2]}})
    assert not contains({"a": 1}, {"a": 2})


def test_a_schedule_that_never_fires_blocks_the_pipeline() -> None:
    february_30 = spec(type="schedule", schedule="0 0 30 2 *")  # each field is in range: admitted
    assert next_time(february_30, NOW) is None
    blocker = schedule_blocker(february_30, NOW)
    assert blocker is not None and blocker.reason == "InvalidSchedule"
    assert "spec.trigger.schedule" in blocker.message and "never fires" in blocker.message
    assert schedule_blocker(spec(type="schedule", schedule="0 0 29 2 *"), NOW) is None  # leap years
    assert schedule_blocker(spec(type="manual"), NOW) is None


def test_a_cronjob_the_api_server_refuses_blocks_the_pipeline_instead_of_failing_every_pass() -> None:
    nightly = spec(type="schedule", schedule="0 3 * * *", timeZone="America/Ciudad_Juarez")
    body = (
        '{"kind": "Status", "reason": "Invalid", "message": "CronJob.batch \\"nightly\\" is invalid: '
        'spec.timeZone: Invalid value: \\"America/Ciudad_Juarez\\": unknown time zone"}'
    )
    blocker = refused_cronjob(ApiError(422, body), nightly.trigger)
    assert blocker is not None and blocker.reason == "InvalidSchedule"
    assert "spec.trigger.schedule '0 3 * * *' (time zone America/Ciudad_Juarez)" in blocker.message
    assert "unknown time zone" in blocker.message
    other = refused_cronjob(
        ApiError(422, '{"message": "spec.jobTemplate...cpu: Invalid value"}'), nightly.trigger
    )
    assert other is not None and other.reason == "CronJobRejected"
    for retried in (409, 429, 500):
        assert refused_cronjob(ApiError(retried, "{}"), nightly.trigger) is None
