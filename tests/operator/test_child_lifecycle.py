"""Children beyond the workload itself: what a cancel or a run's end deletes, which ConfigMap an
earlier pass left is adopted, which pods are a run's, and the CronJob of a scheduled pipeline (its
trigger Jobs name it)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api.manifests import DELETE
from kaizen_api.finetune_status import RunStatus
from kaizen_operator.children import Observed, cleanup_targets, leftover_targets, same_config
from kaizen_operator.schedule import contains
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads import build_config_map, build_cronjob
from kaizen_operator.workloads.meta import pipeline_of
from support.pipelines import MULTI, SETTINGS, everything, pipeline, resolved


@pytest.mark.parametrize("example", ["finetune-sft-alpaca.yaml", MULTI])
@pytest.mark.parametrize("pytorchjob", [True, False])
def test_a_cancel_deletes_whatever_workload_a_run_may_have(example: str, pytorchjob: bool) -> None:
    """By name, not by the recorded job kind: a PyTorchJob whose record was lost to a Conflict goes too."""
    run = resolved(example)
    built = {
        (o["apiVersion"], o["kind"], o["metadata"]["name"])
        for o in everything(example, pytorchjob=pytorchjob)
    }
    kept = {("v1", "ConfigMap", run.names.config_map)}  # for inspection; the CronJob is the pipeline's
    run_children = {key for key in built - kept if key[1] != "CronJob"}
    assert run_children <= set(cleanup_targets(run.names.run, pytorchjobs=True))
    without_crd = cleanup_targets(run.names.run, pytorchjobs=False)
    assert "PyTorchJob" not in {kind for _, kind, _ in without_crd}


def test_an_ended_run_leaves_its_config_map_and_its_workload_only() -> None:
    """The headless Service (an Indexed Job's) and the token Secret are needed only while the run
    runs; the workload goes by its TTL and the ConfigMap stays for inspection."""
    run = resolved(MULTI)
    built = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in everything(MULTI, pytorchjob=False)}
    leftovers = set(leftover_targets(run.names.run))
    assert leftovers == {("v1", "Secret", run.names.token_secret), ("v1", "Service", run.names.service)}
    assert leftovers <= built and leftovers <= set(cleanup_targets(run.names.run, pytorchjobs=False))


def test_a_config_map_found_is_kept_only_with_the_config_of_the_spec_now() -> None:
    """A ConfigMap an earlier pass made (its run's record lost to a Conflict with a spec edit) holds
    the spec of then: it is not adopted for the run recorded now."""
    run = resolved()
    made = build_config_map(run, pipeline(), run.names)
    assert same_config(json.loads(json.dumps(made)), made)
    edited = resolved(changes={"spec.hyperparameters.learningRate": 2e-4})
    assert edited.names == run.names, "the same run, derived again"
    assert not same_config(made, build_config_map(edited, pipeline(), edited.names))
    assert not same_config(None, made), "gone since: made again"


def test_a_trigger_job_names_its_pipeline_in_full() -> None:
    """A trigger Job is owned by the CronJob, and the pipeline label of a name over 63 characters is
    cut and hashed: the annotation its template carries names the pipeline to reconcile."""
    long = "nightly-sharegpt-" + "x" * 60
    doc = pipeline(MULTI)
    doc["metadata"]["name"] = long
    template = build_cronjob(doc, SETTINGS)["spec"]["jobTemplate"]["metadata"]
    assert template["labels"]["kaizen.dev/pipeline"] != long  # kept for selection
    owner = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "cron", "uid": "u"}]
    assert pipeline_of(template | {"ownerReferences": owner}) == long
    made_before = {"labels": template["labels"], "ownerReferences": owner}
    assert pipeline_of(made_before) == template["labels"]["kaizen.dev/pipeline"]
    child = build_config_map(resolved(), pipeline(), resolved().names)["metadata"]
    assert pipeline_of(child) == pipeline()["metadata"]["name"]  # by its owner reference


def test_cronjob_requests_runs_with_a_cpu_only_pod_that_can_do_nothing() -> None:
    doc = pipeline(MULTI, {"spec.trigger.suspend": True})
    cron = build_cronjob(doc, SETTINGS)
    spec = cron["spec"]
    assert spec["schedule"] == "0 2 * * *" and spec["timeZone"] == "Asia/Tokyo" and spec["suspend"] is True
    assert spec["concurrencyPolicy"] == "Allow"  # the operator enforces the pipeline's Forbid
    template = spec["jobTemplate"]
    assert template["metadata"]["labels"]["kaizen.dev/trigger"] == "schedule"
    assert template["metadata"]["labels"]["kaizen.dev/pipeline"] == doc["metadata"]["name"]
    pod = template["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "volumes" not in pod
    (container,) = pod["containers"]
    assert container["command"] == ["true"] and "env" not in container
    assert "nvidia.com/gpu" not in json.dumps(cron)
    assert len(cron["metadata"]["name"]) <= 52
    with pytest.raises(ValueError):
        build_cronjob(pipeline(), SETTINGS)


def test_a_field_dropped_from_the_spec_or_settings_is_removed_from_the_cronjob() -> None:
    """The CronJob is merge-patched with the rendered spec: a dropped field must be rendered null."""
    doc = pipeline(MULTI)  # timeZone Asia/Tokyo
    before = build_cronjob(doc, OperatorSettings(image_pull_secrets=["registry"]))["spec"]
    no_zone = build_cronjob(pipeline(MULTI, {"spec.trigger.timeZone": DELETE}), SETTINGS)["spec"]
    assert no_zone["timeZone"] is None and not contains(before, no_zone)
    job = build_cronjob(doc, OperatorSettings(ttl_seconds_after_finished=None))["spec"]["jobTemplate"]["spec"]
    assert job["ttlSecondsAfterFinished"] is None and job["template"]["spec"]["imagePullSecrets"] is None
    assert not contains(before["jobTemplate"]["spec"], job)
    assert contains(before, before)


def test_a_runs_pods_are_those_its_own_workload_controls() -> None:
    """The test cluster has no training operator, so no PyTorchJob pods: a pod the run's PyTorchJob
    controls counts; one with the same labels controlled by another object (a PyTorchJob of a deleted
    pipeline of the same name) or not controlled by it does not."""
    run = RunStatus(name="r", object_name="p-r")
    workload = {"kind": "PyTorchJob", "metadata": {"name": "p-r", "uid": "ours"}}

    def pod(name: str, uid: str, controller: bool = True) -> dict[str, Any]:
        ref = {"kind": "PyTorchJob", "name": "p-r", "uid": uid, "controller": controller}
        labels = {"kaizen.dev/run": "p-r", "kaizen.dev/component": "train"}
        return {"metadata": {"name": name, "labels": labels, "ownerReferences": [ref]}}

    pods = [pod("own", "ours"), pod("leftover", "theirs"), pod("borrowed", "ours", controller=False)]
    children = Observed({}, {"p-r": [workload]}, {"p-r": pods}).of(run)
    assert [p["metadata"]["name"] for p in children.workload_pods] == ["own"]
    assert children.preflight_pods == [], "no preflight Job: no preflight pods"
