"""Triggers, history limits and conditions (the progress endpoint: test_progress_endpoint.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from api.manifests import load_example
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import FineTunePipelineStatus, RunStatus
from kaizen_operator import pipeline_status
from kaizen_operator.conditions import get_condition
from kaizen_operator.pipeline_status import Blocker
from kaizen_operator.schedule import contains, next_time
from kaizen_operator.triggers import cancel_targets, concurrency_decision, manual_request, schedule_requests

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


def test_concurrency_policies() -> None:
    active = [RunStatus(name="r1", phase="Running")]
    assert concurrency_decision("Forbid", active)[0] == "skip"
    assert concurrency_decision("Replace", active)[0] == "replace"
    assert concurrency_decision("Allow", active)[0] == "start"
    assert concurrency_decision("Forbid", [])[0] == "start"


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


def test_next_schedule_time_in_the_zone_and_spec_subset() -> None:
    nightly = spec(type="schedule", schedule="0 3 * * *", timeZone="Asia/Tokyo")
    assert next_time(nightly, NOW) == datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    assert next_time(spec(type="schedule", schedule="@daily", suspend=True), NOW) is None
    assert contains({"a": 1, "b": {"c": [1, 2]}, "x": 0}, {"b": {"c": [1, 2]}})
    assert not contains({"a": 1}, {"a": 2})
