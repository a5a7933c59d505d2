"""Who uses a PrivateModel, read from objects as the API server stores them (CRD defaults and pruning
applied) with status written the way the reconcilers write it. No operator runs in this module: it would
record the runs whose absence is the point."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from api.manifests import load_example
from kaizen_api.base import GROUP, VERSION
from kaizen_operator.registry.deletion import model_users

from registry.helpers import evaljob

pytestmark = [pytest.mark.cluster]


def test_a_rerun_asked_for_and_not_yet_recorded_holds_the_model(kube, namespace) -> None:
    """The gap between a runToken change (or a new object) and the next pass recording its run, which a
    running operator closes too fast to observe."""
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}"
    job = evaljob("rerun", "bucket", "busy")
    job["spec"]["runToken"] = "a"
    pipeline = load_example("finetune-sft-alpaca.yaml")
    pipeline["spec"]["output"] = {"privateModel": "busy"}
    job_path, pipeline_path = f"{base}/evaljobs/rerun", f"{base}/finetunepipelines/sft-alpaca"
    kube.request("POST", f"{base}/evaljobs", job)
    kube.request("POST", f"{base}/finetunepipelines", pipeline)
    run = {"runName": "testj_busy-1", "runToken": "a", "phase": "Succeeded"}
    kube.merge_patch(f"{job_path}/status", {"status": {"phase": "Succeeded", "runs": [run]}})
    kube.merge_patch(f"{pipeline_path}/status", {"status": {"observedGeneration": 1, "lastRunToken": ""}})

    def users() -> list[str]:
        pipelines, jobs = kube.list(f"{base}/finetunepipelines"), kube.list(f"{base}/evaljobs")
        return model_users("busy", pipelines, jobs, {})

    assert users() == [], "finished runs of the spec's tokens hold nothing"
    kube.merge_patch(job_path, {"spec": {"runToken": "b"}})
    kube.merge_patch(pipeline_path, {"spec": {"trigger": {"runToken": "2"}}})
    requested = "a run requested by spec.{}runToken is not recorded yet"
    assert users() == [
        f"FineTunePipeline sft-alpaca ({requested.format('trigger.')})",
        f"EvalJob rerun ({requested.format('')})",
    ]


def test_a_scheduled_firing_not_yet_taken_holds_the_model(kube, namespace, control_plane) -> None:
    """A trigger Job the CronJob controller made that the pipeline's reconciler has not taken yet (not
    marked handled, no run on record for its firing) asks for a run: the deletion must wait for it, as
    for a changed runToken. Read through the delete handler's own listing."""
    from cluster.ftp_support import fire_cronjob
    from kaizen_operator.children import mark_handled
    from kaizen_operator.handlers.privatemodel import model_users_in
    from kaizen_operator.workloads import build_cronjob
    from support.pipelines import SETTINGS

    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}"
    pipeline = load_example("finetune-sft-alpaca.yaml")
    pipeline["metadata"]["name"] = "nightly"
    pipeline["spec"]["output"] = {"privateModel": "busy"}
    pipeline["spec"]["trigger"] = {"type": "schedule", "schedule": "0 3 * * *"}
    stored = kube.request("POST", f"{base}/finetunepipelines", pipeline)
    kube.merge_patch(f"{base}/finetunepipelines/nightly/status", {"status": {"observedGeneration": 1}})
    cronjobs = f"/apis/batch/v1/namespaces/{namespace}/cronjobs"
    cronjob = kube.request("POST", cronjobs, build_cronjob(stored, SETTINGS))
    assert model_users_in(kube, namespace, "busy") == [], "a schedule that has not fired asks for nothing"
    # A trigger Job with the pipeline's labels that another CronJob made (as one of a deleted pipeline
    # of the same name would have): the reconciler takes no firing from it, nor does it hold the model.
    copy = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "leftover"}}
    leftover = kube.request("POST", cronjobs, copy | {"spec": {**cronjob["spec"], "suspend": True}})
    fire_cronjob(control_plane, leftover, datetime(2026, 11, 30, 3, 0, tzinfo=UTC))
    assert model_users_in(kube, namespace, "busy") == [], "another CronJob's firing asks for nothing"

    first, second = datetime(2026, 12, 1, 3, 0, tzinfo=UTC), datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    fire_cronjob(control_plane, cronjob, first)
    waiting = "FineTunePipeline nightly (a run requested by the schedule's firing at {} is not recorded yet)"
    assert model_users_in(kube, namespace, "busy") == [waiting.format("2026-12-01T03:00:00Z")]
    assert model_users_in(kube, namespace, "other") == [], "only the pipeline's own models are held"

    # The reconciler's pass: the run on record (finished here), then the trigger Job marked.
    run = {"name": "nightly_20261201030000", "trigger": "schedule", "phase": "Succeeded"}
    run["scheduledTime"] = "2026-12-01T03:00:00Z"
    kube.merge_patch(f"{base}/finetunepipelines/nightly/status", {"status": {"runs": [run]}})
    assert model_users_in(kube, namespace, "busy") == [], "a firing on record (its mark lost) is taken"
    made = kube.list(f"/apis/batch/v1/namespaces/{namespace}/jobs")
    (job,) = [j for j in made if j["metadata"]["ownerReferences"][0]["uid"] == cronjob["metadata"]["uid"]]
    mark_handled(kube, job["metadata"]["name"], namespace, "Succeeded nightly_20261201030000")
    fire_cronjob(control_plane, cronjob, second)
    assert model_users_in(kube, namespace, "busy") == [waiting.format("2026-12-02T03:00:00Z")]
    manual = {"observedGeneration": 2, "lastRunToken": ""}  # no manual run asked for either
    kube.merge_patch(f"{base}/finetunepipelines/nightly/status", {"status": manual})
    to_manual = {"spec": {"trigger": {"type": "manual", "schedule": None}}}
    kube.merge_patch(f"{base}/finetunepipelines/nightly", to_manual)
    assert model_users_in(kube, namespace, "busy") == [], "a manual pipeline's reconciler takes no firing"
