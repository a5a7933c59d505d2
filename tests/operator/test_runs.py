"""Run derivation from children, without a cluster: every phase and failure reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from api.manifests import load_example
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import PreflightPlan, RecordProblem, RunProgress, RunStatus
from kaizen_api.results import TerminationMessage
from kaizen_operator import pipeline_status
from kaizen_operator.conditions import get_condition
from kaizen_operator.runs import RunChildren, advance, pod_failure, workload_outcome

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PLAN = PreflightPlan(records=4, usable_records=4, total_steps=8)


def run(**fields: Any) -> RunStatus:
    return RunStatus(name="ft_m_20261201120000", object_name="p-20261201120000-abc123", **fields)


def job(*conditions: str, reason: str = "", active: int = 0, suspend: bool = False) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": "p-20261201120000-abc123"},
        "spec": {"suspend": suspend},
        "status": {
            "active": active,
            "conditions": [
                {"type": c, "status": "True", "reason": reason, "message": reason} for c in conditions
            ],
        },
    }


def pod(phase: str, exit_code: int | None = None, message: str = "", **status: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "train"}
    if exit_code is not None:
        container["state"] = {
            "terminated": {"exitCode": exit_code, "message": message, "finishedAt": "2026-12-01T12:00:00Z"}
        }
    return {
        "metadata": {"name": "pod"},
        "status": {"phase": phase, "containerStatuses": [container], **status},
    }


def term(**fields: Any) -> str:
    return TerminationMessage(**fields).model_dump_json(by_alias=True, exclude_none=True)


def test_a_new_run_asks_for_its_preflight() -> None:
    step = advance(run(), RunChildren(), now=NOW)
    assert step.actions == ("create_preflight",) and step.run.phase == "Pending"


def test_preflight_success_records_the_plan_and_asks_for_the_workload() -> None:
    children = RunChildren(
        preflight_job=job("Complete"),
        preflight_pods=[pod("Succeeded", 0, term(phase="Succeeded", plan=PLAN))],
    )
    step = advance(run(), children, now=NOW)
    assert step.run.preflight == PLAN and step.actions == ("create_workload",)


def test_preflight_data_invalid_fails_with_the_records() -> None:
    plan = PreflightPlan(first_problems=[RecordProblem(index=7, reason="empty output")])
    message = term(phase="Failed", reason="DataInvalid", message="bad data", plan=plan)
    children = RunChildren(
        preflight_job=job("Failed", reason="PodFailurePolicy"), preflight_pods=[pod("Failed", 2, message)]
    )
    step = advance(run(), children, now=NOW)
    assert step.run.phase == "Failed" and step.run.reason == "DataInvalid"
    assert "record 7: empty output" in (step.run.message or "") and step.actions == ("delete_leftovers",)
    assert step.event and step.event[0] == "Warning"


def test_preflight_without_a_plan_fails() -> None:
    children = RunChildren(preflight_job=job("Complete"), preflight_pods=[pod("Succeeded", 0)])
    assert advance(run(), children, now=NOW).run.reason == "PreflightFailed"


@pytest.mark.parametrize(
    "pods,condition,reason,exit_code",
    [
        ([pod("Failed", 137)], "BackoffLimitExceeded", "OOMKilled", 137),
        ([pod("Failed", 1)], "BackoffLimitExceeded", "ExitCode1", 1),
        (
            [pod("Failed", 2, term(phase="Failed", reason="OutOfMemory", message="CUDA"))],
            "PodFailurePolicy",
            "OOMKilled",
            2,
        ),
        (
            [pod("Failed", 2, term(phase="Failed", reason="ConfigInvalid", message="x"))],
            "PodFailurePolicy",
            "ConfigInvalid",
            2,
        ),
        ([pod("Failed", 1)], "DeadlineExceeded", "DeadlineExceeded", None),
        (
            [pod("Failed", None, reason="Evicted", message="node pressure")],
            "BackoffLimitExceeded",
            "Evicted",
            None,
        ),
        ([], "BackoffLimitExceeded", "BackoffLimitExceeded", None),
    ],
)
def test_workload_failure_reasons(
    pods: list[dict[str, Any]], condition: str, reason: str, exit_code: int | None
) -> None:
    children = RunChildren(workload=job("Failed", reason=condition), workload_pods=pods)
    step = advance(run(preflight=PLAN, job_name="p-20261201120000-abc123", job_kind="Job"), children, now=NOW)
    assert (step.run.phase, step.run.reason, step.run.exit_code) == ("Failed", reason, exit_code)
    assert step.run.completion_time == NOW


def test_a_diverged_run_fails_as_diverged_with_the_runners_advice() -> None:
    """The runner's reason, not a generic one; its message (the step, what to change) is kept, and the
    pipeline's Failed condition carries the reason."""
    advice = (
        "training diverged: the training loss is nan at step 40 (not finite since step 31), so no "
        "version was published; lower learningRate or maxGradNorm, use bf16 rather than fp16"
    )
    message = term(phase="Failed", reason="Diverged", message=advice)
    children = RunChildren(
        workload=job("Failed", reason="PodFailurePolicy"), workload_pods=[pod("Failed", 2, message)]
    )
    step = advance(run(preflight=PLAN, job_name="p-20261201120000-abc123", job_kind="Job"), children, now=NOW)
    assert (step.run.phase, step.run.reason, step.run.message) == ("Failed", "Diverged", advice)
    assert step.event == ("Warning", "RunFailed", f"run {step.run.name}: Diverged: {advice}")
    spec = FineTunePipelineSpec.model_validate(load_example("finetune-sft-alpaca.yaml")["spec"])
    failed = get_condition(pipeline_status.conditions(None, spec, [step.run], 1, None), "Failed")
    assert failed and (failed["status"], failed["reason"]) == ("True", "Diverged")
    assert "at step 40" in failed["message"]


def test_a_pytorchjob_past_its_deadline_fails_with_deadline_exceeded() -> None:
    """The training operator's reason is PyTorchJobFailed; its message names the deadline."""

    def pj(message: str) -> dict[str, Any]:
        failed = {"type": "Failed", "status": "True", "reason": "PyTorchJobFailed", "message": message}
        return {"kind": "PyTorchJob", "metadata": {"name": "p"}, "status": {"conditions": [failed]}}

    recorded = run(preflight=PLAN, job_name="p", job_kind="PyTorchJob")
    late = pj("Job p has failed because it was active longer than specified deadline")
    step = advance(recorded, RunChildren(workload=late, workload_pods=[pod("Failed", 1)]), now=NOW)
    assert (step.run.reason, step.run.exit_code) == ("DeadlineExceeded", None)
    backoff = pj("Job p has failed because it has reached the specified backoff limit")
    assert advance(recorded, RunChildren(workload=backoff), now=NOW).run.reason == "PyTorchJobFailed"


def test_an_oom_kill_on_one_node_beats_the_exit_codes_of_the_others() -> None:
    """Rank 1 is OOM-killed, rank 0 then dies on the lost peer: the run failed of the OOM kill. Only
    each node's newest failure counts: a retry that failed otherwise says why the run ended."""

    def ranked(index: str | None, code: int, finished: str) -> dict[str, Any]:
        failed = pod("Failed", code)
        failed["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = finished
        if index is not None:
            failed["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": index}
        return failed

    def reason(pods: list[dict[str, Any]]) -> str | None:
        failure = pod_failure(pods)
        return failure.reason if failure else None

    oom, nccl = ranked("1", 137, "2026-12-01T10:00:00Z"), ranked("0", 1, "2026-12-01T10:05:00Z")
    assert reason([oom, nccl]) == reason([nccl, oom]) == "OOMKilled"
    assert reason([oom, nccl, ranked("1", 3, "2026-12-01T10:10:00Z")]) == "ExitCode3"
    one_node = [ranked(None, 137, "2026-12-01T10:00:00Z"), ranked(None, 1, "2026-12-01T10:05:00Z")]
    assert reason(one_node) == "ExitCode1"


def test_success_takes_metrics_from_the_termination_message() -> None:
    message = term(phase="Succeeded", metrics={"trainTotalLoss": 0.5}, outputVersion="v1")
    children = RunChildren(workload=job("Complete"), workload_pods=[pod("Succeeded", 0, message)])
    step = advance(run(preflight=PLAN), children, now=NOW)
    assert step.run.phase == "Succeeded" and step.run.output_version == "v1"
    assert step.run.metrics and step.run.metrics.train_total_loss == 0.5


def test_success_completes_progress_whose_last_reports_were_lost() -> None:
    """The runner's last reports can be refused (rate limit) or lost; the termination message's step
    ends the run at its last step, at 100 % with no time left."""
    live = RunProgress(step=6, total_steps=10, percentage=60, eta_seconds=4)
    message = term(phase="Succeeded", globalStep=10)
    children = RunChildren(workload=job("Complete"), workload_pods=[pod("Succeeded", 0, message)])
    progress = advance(run(preflight=PLAN, progress=live), children, now=NOW).run.progress
    assert progress and (progress.step, progress.total_steps, progress.percentage) == (10, 10, 100)
    assert progress.eta_seconds == 0
    no_step = RunChildren(workload=job("Complete"), workload_pods=[pod("Succeeded", 0)])
    progress = advance(run(preflight=PLAN, progress=live), no_step, now=NOW).run.progress
    assert progress and progress.step == 10


def test_success_without_a_message_names_the_version_after_the_run() -> None:
    children = RunChildren(workload=job("Complete"), workload_pods=[pod("Succeeded", 0)])
    assert advance(run(preflight=PLAN), children, now=NOW).run.output_version == "ft_m_20261201120000"


def test_running_queued_and_deleted() -> None:
    active = RunChildren(workload=job(active=1), workload_pods=[pod("Running")])
    step = advance(run(preflight=PLAN), active, now=NOW)
    assert step.run.phase == "Running" and step.event and step.event[1] == "RunRunning"
    queued = RunChildren(workload=job(suspend=True))
    assert advance(run(preflight=PLAN), queued, now=NOW).run.reason == "Queued"
    gone = advance(run(preflight=PLAN, job_name="x", job_kind="Job"), RunChildren(), now=NOW)
    assert gone.run.reason == "WorkloadDeleted"


def test_cancel_deletes_children_and_finished_runs_are_final() -> None:
    step = advance(run(preflight=PLAN), RunChildren(), now=NOW, cancel=True)
    assert step.run.phase == "Cancelled" and step.actions == ("delete_children",)
    assert advance(step.run, RunChildren(workload=job("Complete")), now=NOW).run.phase == "Cancelled"


def test_a_run_that_ends_deletes_its_leftovers_once() -> None:
    """Its Service and token Secret (owned by the pipeline, they would stay as long as it does) go
    with the pass that ends it, whatever the end; a cancel deletes them with the rest."""
    recorded = run(preflight=PLAN, job_name="p-20261201120000-abc123", job_kind="Job")
    ends = [
        RunChildren(workload=job("Complete"), workload_pods=[pod("Succeeded", 0)]),
        RunChildren(workload=job("Failed", reason="BackoffLimitExceeded"), workload_pods=[pod("Failed", 1)]),
        RunChildren(workload=job("Failed", reason="DeadlineExceeded")),
        RunChildren(),  # the workload was deleted
    ]
    for children in ends:
        step = advance(recorded, children, now=NOW)
        assert step.run.finished and step.actions == ("delete_leftovers",), step.run.reason
        assert advance(step.run, children, now=NOW).actions == (), "a finished run is final"
    preflight_failed = RunChildren(preflight_job=job("Failed", reason="BackoffLimitExceeded"))
    assert advance(run(), preflight_failed, now=NOW).actions == ("delete_leftovers",)
    running = RunChildren(workload=job(active=1), workload_pods=[pod("Running")])
    assert advance(recorded, running, now=NOW).actions == ()
    assert advance(recorded, running, now=NOW, cancel=True).actions == ("delete_children",)


def test_a_cancel_gives_way_to_an_outcome_the_children_already_show() -> None:
    """Cancelled only while the run is unfinished: a version that completed is registered, not lost."""
    recorded = run(preflight=PLAN, job_name="p-20261201120000-abc123", job_kind="Job")
    done = RunChildren(workload=job("Complete"), workload_pods=[pod("Succeeded", 0)])
    step = advance(recorded, done, now=NOW, cancel=True)
    ended = ("Succeeded", "ft_m_20261201120000", ("delete_leftovers",))
    assert (step.run.phase, step.run.output_version, step.actions) == ended
    failed = RunChildren(
        workload=job("Failed", reason="BackoffLimitExceeded"), workload_pods=[pod("Failed", 1)]
    )
    assert advance(recorded, failed, now=NOW, cancel=True).run.reason == "ExitCode1"
    running = RunChildren(workload=job(active=1), workload_pods=[pod("Running")])
    assert advance(recorded, running, now=NOW, cancel=True).run.phase == "Cancelled"
    # A cancel whose record was lost left the workload deleted: still Cancelled, not WorkloadDeleted.
    gone = advance(recorded, RunChildren(), now=NOW, cancel=True)
    assert (gone.run.phase, gone.run.reason, gone.actions) == ("Cancelled", "Cancelled", ("delete_children",))


def test_pytorchjob_conditions() -> None:
    def pj(type_: str) -> dict[str, Any]:
        return {"kind": "PyTorchJob", "status": {"conditions": [{"type": type_, "status": "True"}]}}

    assert workload_outcome(pj("Running"))[0] == "Running"
    assert workload_outcome(pj("Succeeded"))[0] == "Succeeded"
    assert workload_outcome(pj("Failed"))[0] == "Failed"
    assert workload_outcome(pj("Suspended"))[0] == "Suspended"
    assert workload_outcome({"kind": "PyTorchJob"})[0] == "Pending"
