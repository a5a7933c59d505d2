"""An EvalJob run's bookkeeping, as pure decisions: the version it evaluated, a Job gone from under it,
a cancel annotation's reach, and the at-most-once notification."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.manifests import load_example
from kaizen_api.evaljob import EvalJobSpec, EvalRunRecord, EvaluatedVersion, Notification
from kaizen_operator.catalog import load_catalog
from kaizen_operator.conditions import get_condition, set_condition
from kaizen_operator.eval_resolve import resolve_eval_run
from kaizen_operator.eval_runs import (
    SENDING,
    EvalChildren,
    advance_eval,
    cancel_requested,
    new_run,
    notification_action,
    run_object_name,
)
from kaizen_operator.eval_workload import build_eval_job
from kaizen_operator.settings import OperatorSettings

NOW = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(progress_url="http://op:8081")
RUN = EvalRunRecord(run_name="testj-1", phase="Pending", start_time=NOW)
OBJ = run_object_name("support-standard", 1)


def _private_model(*versions: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "support-assistant"},
        "spec": {
            "title": "t",
            "storage": {"s3": {"connection": {"name": "d"}, "bucket": "models", "key": "support/"}},
        },
        "status": {
            "versions": [
                {
                    "index": i,
                    "name": name,
                    "status": "ready",
                    "ready": True,
                    "tags": {"type": "LLM", "size": "0.5B", "instructionTuned": True},
                    "files": [{"name": "model/config.json", "sizeBytes": 1}],
                }
                for i, name in enumerate(versions)
            ]
        },
    }


def _evaljob() -> dict[str, Any]:
    job = load_example("evaljob-standard.yaml")  # spec.model.privateModel without a version
    job["metadata"].update(namespace="team-a", uid="u1", generation=1)
    return job


def _built_job(*versions: str) -> dict[str, Any]:
    job = _evaljob()
    objects = {"PrivateModel/support-assistant": _private_model(*versions)}
    resolved = resolve_eval_run(job, "testj-1", OBJ, load_catalog(), objects, SETTINGS)
    return build_eval_job(resolved, job, SETTINGS)


def _complete(job: dict[str, Any]) -> dict[str, Any]:
    return {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}


def test_a_run_keeps_the_version_its_job_evaluated_not_the_newest_at_its_end():
    """No version in the spec: v1 was newest when the Job was made; v2 became ready during the run."""
    job = _built_job("v1")
    assert _built_job("v1", "v2")["metadata"]["annotations"]["kaizen.dev/evaluated-version"].endswith("/v2")
    seen = advance_eval(RUN, EvalChildren(job=job), now=NOW).run
    assert seen.evaluated == EvaluatedVersion(private_model="support-assistant", version="v1")
    ended = advance_eval(seen, EvalChildren(job=_complete(job)), now=NOW).run
    assert ended.phase == "Succeeded" and ended.evaluated and ended.evaluated.version == "v1"
    # Read back from status, as the pass that records the scores does.
    assert EvalRunRecord.model_validate(ended.to_manifest()).evaluated == ended.evaluated


def test_a_job_seen_once_and_gone_fails_the_run_instead_of_evaluating_again():
    never_seen = advance_eval(RUN, EvalChildren(), now=NOW)
    assert never_seen.actions == ("create_children",)
    running = advance_eval(RUN, EvalChildren(job=_built_job("v1")), now=NOW).run
    assert running.job_name == _built_job("v1")["metadata"]["name"]
    gone = advance_eval(running, EvalChildren(), now=NOW)
    assert gone.actions == ()
    assert (gone.run.phase, gone.run.reason, gone.run.completion_time) == ("Failed", "WorkloadDeleted", NOW)
    assert gone.message and running.job_name in gone.message
    assert advance_eval(gone.run, EvalChildren(), now=NOW).actions == ()  # recorded: final


def test_cancel_true_cancels_only_the_run_current_when_it_first_appears():
    true = {"kaizen.dev/cancel": "true"}
    cancel, seen = cancel_requested(true, RUN, OBJ)
    assert cancel and seen.cancel_seen == "true"
    spec = EvalJobSpec.model_validate({**_evaljob()["spec"], "runToken": "again"})
    ended = seen.model_copy(update={"phase": "Cancelled"})
    second = new_run(spec, [ended], NOW, true)  # the annotation is still there when the next run starts
    assert second and second.run_name.endswith("-2") and second.cancel_seen == "true"
    cancel, second = cancel_requested(true, second, run_object_name("support-standard", 2))
    assert not cancel
    _, second = cancel_requested({}, second, OBJ)  # removed ...
    assert second.cancel_seen is None
    assert cancel_requested(true, second, OBJ)[0]  # ... and set again: this run is cancelled
    assert cancel_requested({"kaizen.dev/cancel": second.run_name}, second, OBJ)[0]  # named: always
    assert not cancel_requested({"kaizen.dev/cancel": "testj-1"}, second, OBJ)[0]  # another run's name


def _notified(run: EvalRunRecord, reason: str) -> dict[str, Any] | None:
    message = f"run {run.run_name}: mail sent to a@example.com"
    return get_condition(set_condition(None, "Notified", "True", reason, message, 1), "Notified")


def test_mail_is_claimed_before_sending_and_never_sent_twice():
    wanted = Notification(emails=["a@example.com"])
    done = RUN.model_copy(update={"phase": "Succeeded"})
    assert notification_action(wanted, RUN, None) is None  # not finished
    assert notification_action(None, done, None) is None
    assert notification_action(wanted, done, None) == "send"
    assert notification_action(wanted, done, _notified(done, "Sent")) is None
    assert notification_action(wanted, done, _notified(done, "SendFailed")) is None
    status, reason, _ = notification_action(wanted, done, _notified(done, SENDING))  # type: ignore[misc]
    assert (status, reason) == ("Unknown", "SendUnconfirmed")  # claimed, outcome lost: not resent
    tenth = done.model_copy(update={"run_name": "testj-10"})
    assert notification_action(wanted, tenth, _notified(done, "Sent")) == "send"  # testj-1 is another run
    failed_only = Notification(emails=["a@example.com"], on=["Failed"])
    assert notification_action(failed_only, done, None) == (
        "False",
        "NotRequested",
        "run testj-1: no mail for outcome Succeeded",
    )
