"""A child's deterministic name taken by an object the pipeline does not own (its token Secret,
ConfigMap or workload Job), against the real control plane (pods "run" by kwok): the run never
adopts it, fails `NameConflict` naming it, and the object is left exactly as it was.

A new manual pipeline's first run is named after its creation time, so the foreign objects are made
beforehand for every second around it. Objects that carry a run's or pipeline's labels without being
its own (pods, a schedule's trigger Jobs) count for nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ftp_support import (
    GATE,
    MODELS,
    PIPELINES,
    PLAN,
    conditions,
    fake,
    fire_cronjob,
    in_process_operator,
    jobs,
    make_version_ready,
    message,
    pipeline,
    prepare_namespace,
    private_model,
    runs,
    wait_pipeline,
)
from kaizen_api.base import GROUP, VERSION
from kaizen_api.finetune_status import RunStatus
from kaizen_api.results import EXIT_USER_ERROR
from kaizen_operator import eval_runs
from kaizen_operator.eval_gate import build_gate_evaljob
from kaizen_operator.naming import ChildNames, cronjob_name, run_display_name, run_object_name
from kaizen_operator.workloads.meta import PREFLIGHT, TRAIN, run_labels

pytestmark = pytest.mark.cluster
MODEL = "Qwen2.5-0.5B-Instruct"  # the display name's model part of the S3 SFT spec's base model
WINDOW_S = range(-3, 15)  # seconds around now that the pipeline's creation time falls in
EVALJOBS = f"/apis/{GROUP}/{VERSION}/namespaces/{{}}/evaljobs"


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[Any]:
    with in_process_operator(control_plane) as runner:
        yield runner


@pytest.fixture
def ns(operator, control_plane, namespace) -> str:
    return prepare_namespace(operator, control_plane, namespace)


def first_run_children(pipeline_name: str) -> list[ChildNames]:
    """The children's names of the pipeline's first run, for each creation second in the window."""
    now = datetime.now(UTC).replace(microsecond=0)
    names = [
        run_object_name(pipeline_name, run_display_name(MODEL, now + timedelta(seconds=s))) for s in WINDOW_S
    ]
    return [ChildNames.of(n) for n in names]


PATHS = {"Secret": "/api/v1/namespaces/{}/secrets", "ConfigMap": "/api/v1/namespaces/{}/configmaps"}
PATHS["Job"] = "/apis/batch/v1/namespaces/{}/jobs"
POD = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.invalid/none"}]}
BODIES: dict[str, dict[str, Any]] = {
    "Secret": {"apiVersion": "v1", "data": {"token": "Zm9yZWlnbg=="}},
    "ConfigMap": {"apiVersion": "v1", "data": {"config.json": "{}"}},
    "Job": {"apiVersion": "batch/v1", "spec": {"suspend": True, "template": {"spec": POD}}},
}


def child_name(names: ChildNames, kind: str) -> str:
    return {"Secret": names.token_secret, "ConfigMap": names.config_map, "Job": names.job}[kind]


def plant(cluster: Any, namespace: str, kind: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """A user's object (no owner) of `kind` under each name; returns them as created, by name."""
    made = {}
    for name in names:
        body = {"kind": kind, "metadata": {"name": name}, **BODIES[kind]}
        made[name] = cluster.request("POST", PATHS[kind].format(namespace), body)
    return made


def ended(obj: dict[str, Any]) -> bool:
    return bool(runs(obj)) and runs(obj)[-1].get("phase") in ("Succeeded", "Failed")


@pytest.mark.parametrize("kind", ["Secret", "ConfigMap", "Job"])
def test_a_foreign_child_is_never_adopted_and_is_left_as_it_was(ns, control_plane, kind) -> None:
    name = f"clash-{kind.lower()}"
    children = first_run_children(name)
    planted = [child_name(c, kind) for c in children]
    before = plant(control_plane, ns, kind, planted)

    control_plane.request("POST", PIPELINES.format(ns), pipeline(name))
    obj = wait_pipeline(control_plane, ns, name, ended)
    (run,) = runs(obj)
    taken = ChildNames.of(run["objectName"])
    conflicting = child_name(taken, kind)
    assert conflicting in before, "the run's name fell in the planted window"
    assert run["phase"] == "Failed" and run["reason"] == "NameConflict", run
    assert f"{kind} {conflicting} exists and is not owned" in run["message"]
    assert not jobs(control_plane, ns, f"kaizen.dev/pipeline={name},kaizen.dev/component=train")

    found = control_plane.request("GET", f"{PATHS[kind].format(ns)}/{conflicting}")
    kept = before[conflicting]["metadata"]
    assert found["metadata"]["uid"] == kept["uid"], "the foreign object was not deleted"
    for key in ("data", "spec"):  # a Job's status is its controller's: the Job stays suspended
        assert found.get(key) == before[conflicting].get(key), f"nor its {key} changed"
    for key in ("labels", "annotations", "ownerReferences"):
        assert found["metadata"].get(key) == kept.get(key), f"nor its {key}"


def gated(name: str, model: str) -> dict[str, Any]:
    """A pipeline with the evaluation gate, whose gate pod would pass it (rougeL 0.9)."""
    body = pipeline(name, output={"privateModel": model}, evaluation=GATE)
    fakes = json.loads(body["metadata"]["annotations"]["kaizen.dev/fake-pods"])
    fakes["gate"] = fake(0, message(phase="Succeeded", results={"rougeL": 0.9}, resultsUri="s3://data/x"))
    body["metadata"]["annotations"]["kaizen.dev/fake-pods"] = json.dumps(fakes)
    return body


def evaluation(obj: dict[str, Any]) -> dict[str, Any]:
    return (runs(obj)[0].get("evaluation") or {}) if runs(obj) else {}


def test_the_gate_adopts_neither_a_foreign_evaljob_nor_a_foreign_child_of_its_own(ns, control_plane) -> None:
    """`gate-job`: a user's EvalJob has the gate's name; `gate-secret`: a user's Secret has the name of
    the gate EvalJob's token Secret. Neither version is promoted, and both objects stay as they were."""
    waiting = {}
    for name in ("gate-job", "gate-secret"):
        control_plane.request("POST", MODELS.format(ns), private_model(name))
        control_plane.request("POST", PIPELINES.format(ns), gated(name, name))
    for name in ("gate-job", "gate-secret"):
        obj = wait_pipeline(
            control_plane, ns, name, lambda o: evaluation(o).get("state") == "WaitingForVersion"
        )
        waiting[name] = obj
    run = runs(waiting["gate-job"])[0]
    foreign_job = build_gate_evaljob(waiting["gate-job"], RunStatus.model_validate(run))
    del foreign_job["metadata"]["ownerReferences"]
    planted_job = control_plane.request("POST", EVALJOBS.format(ns), foreign_job)
    gate_name = f"{runs(waiting['gate-secret'])[0]['objectName']}-eval"
    token = ChildNames.of(eval_runs.run_object_name(gate_name, 1)).token_secret
    planted_secret = plant(control_plane, ns, "Secret", [token])[token]
    for name, obj in waiting.items():
        make_version_ready(control_plane, ns, name, runs(obj)[0]["outputVersion"])

    decided = {
        name: evaluation(
            wait_pipeline(control_plane, ns, name, lambda o: evaluation(o).get("promoted") is not None)
        )
        for name in waiting
    }
    job_name = planted_job["metadata"]["name"]
    assert decided["gate-job"]["state"] == "EvaluationFailed" and decided["gate-job"]["promoted"] is False
    assert f"EvalJob {job_name} exists and is not owned" in decided["gate-job"]["message"]
    found = control_plane.request("GET", f"{EVALJOBS.format(ns)}/{job_name}")
    assert found["metadata"]["uid"] == planted_job["metadata"]["uid"] and not found["metadata"].get(
        "ownerReferences"
    )

    assert decided["gate-secret"]["state"] == "EvaluationFailed", decided["gate-secret"]
    own = control_plane.request("GET", f"{EVALJOBS.format(ns)}/{gate_name}")
    assert own["status"]["runs"][0]["reason"] == "NameConflict"
    assert f"Secret {token} exists and is not owned" in own["status"]["message"]
    kept = control_plane.request("GET", f"/api/v1/namespaces/{ns}/secrets/{token}")
    assert kept["metadata"]["resourceVersion"] == planted_secret["metadata"]["resourceVersion"]


def test_a_foreign_cronjob_is_neither_patched_nor_deleted(ns, control_plane) -> None:
    name = "nightly-clash"
    cronjobs = f"/apis/batch/v1/namespaces/{ns}/cronjobs"
    template = {"spec": {"template": {"spec": POD}}}
    spec = {"schedule": "0 1 * * *", "suspend": True, "jobTemplate": template}
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": cronjob_name(name)},
        "spec": spec,
    }
    planted = control_plane.request("POST", cronjobs, body)

    trigger = {"type": "schedule", "schedule": "0 3 * * *"}
    control_plane.request("POST", PIPELINES.format(ns), pipeline(name, trigger=trigger))
    obj = wait_pipeline(
        control_plane, ns, name, lambda o: conditions(o).get("Ready", {}).get("status") == "False"
    )
    ready = conditions(obj)["Ready"]
    assert ready["reason"] == "NameConflict", ready
    assert f"CronJob {cronjob_name(name)} exists and is not owned" in ready["message"]
    assert "nextScheduleTime" not in obj["status"]

    # A schedule that never fires gets no CronJob: the pass deletes the pipeline's own, only.
    switch = {"spec": {"trigger": {"schedule": "0 0 30 2 *"}}}
    path = f"{PIPELINES.format(ns)}/{name}"
    switched = control_plane.request("PATCH", path, switch, content_type="application/merge-patch+json")
    generation = switched["metadata"]["generation"]
    wait_pipeline(control_plane, ns, name, lambda o: o["status"].get("observedGeneration") == generation)
    found = control_plane.request("GET", f"{cronjobs}/{cronjob_name(name)}")
    assert found["metadata"]["uid"] == planted["metadata"]["uid"], "not deleted"
    assert found["spec"]["schedule"] == "0 1 * * *" and not found["metadata"].get("ownerReferences")


# A user's pod under the restricted Pod Security profile, ended by kwok as its `fake` labels say.
RESTRICTED_POD = {
    "restartPolicy": "Never",
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "c",
            "image": "registry.invalid/none",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
}


def plant_pod(
    cluster: Any, namespace: str, name: str, labels: dict[str, str], outcome: dict[str, Any]
) -> None:
    """A pod no Job of the run made, carrying `labels` (the run's) and ending as `outcome` says."""
    meta = {"name": name, "labels": labels | outcome["labels"], "annotations": outcome["annotations"]}
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": RESTRICTED_POD}
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", body)


def test_pods_count_only_under_the_runs_own_jobs(ns, control_plane) -> None:
    """Pods with a run's labels that its Jobs did not make (a user's, or those of a Job left by a
    deleted pipeline of the same name) say nothing of the run. `foreign-plan`: its own preflight pod
    ends without a plan, a foreign one with a plan; `foreign-oom`: its own training pod fails with a
    user error, a foreign one (another node's, by its completion index) is OOM-killed."""
    user_error = message(
        phase="Failed", reason="ConfigInvalid", message="lora target module q_proj not found"
    )
    specs = {
        "foreign-plan": {"preflight": fake(0, message(phase="Succeeded"), "10s")},
        "foreign-oom": {"workload": fake(EXIT_USER_ERROR, user_error, "6s")},
    }
    for name, fakes in specs.items():
        control_plane.request("POST", PIPELINES.format(ns), pipeline(name, **fakes))
    named = {
        name: runs(wait_pipeline(control_plane, ns, name, lambda o: runs(o) and runs(o)[0].get("objectName")))
        for name in specs
    }
    plan_run = named["foreign-plan"][0]["objectName"]
    plant_pod(
        control_plane,
        ns,
        f"0-{plan_run}",
        run_labels("foreign-plan", plan_run, PREFLIGHT),
        fake(0, message(phase="Succeeded", plan=PLAN)),
    )
    oom_run = named["foreign-oom"][0]["objectName"]
    index = {"batch.kubernetes.io/job-completion-index": "1"}
    plant_pod(control_plane, ns, f"0-{oom_run}", run_labels("foreign-oom", oom_run, TRAIN) | index, fake(137))

    (run,) = runs(wait_pipeline(control_plane, ns, "foreign-plan", ended, timeout=90))
    assert (run["phase"], run["reason"]) == ("Failed", "PreflightFailed"), run
    assert "preflight" not in run, "no plan is taken from a pod the run's preflight Job did not make"
    (run,) = runs(wait_pipeline(control_plane, ns, "foreign-oom", ended, timeout=90))
    assert (run["phase"], run["reason"]) == ("Failed", "ConfigInvalid"), run
    assert run["exitCode"] == EXIT_USER_ERROR


def test_a_trigger_job_another_cronjob_made_is_not_a_firing(ns, control_plane) -> None:
    """A trigger Job with the pipeline's labels that its own CronJob did not make (one left by the
    CronJob of a deleted pipeline of the same name, here a user's copy of the CronJob) asks for no run
    and is not marked handled; the pipeline's own firing, taken in the same pass or later, is a run."""
    name = "nightly-again"
    trigger = {"type": "schedule", "schedule": "0 3 * * *"}
    control_plane.request("POST", PIPELINES.format(ns), pipeline(name, trigger=trigger))
    wait_pipeline(control_plane, ns, name, lambda o: (o.get("status") or {}).get("nextScheduleTime"))
    cronjobs = f"/apis/batch/v1/namespaces/{ns}/cronjobs"
    own = control_plane.request("GET", f"{cronjobs}/{cronjob_name(name)}")
    copy = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": f"leftover-{name}"}}
    copy["spec"] = {**own["spec"], "suspend": True}
    leftover = control_plane.request("POST", cronjobs, copy)

    fire_cronjob(control_plane, leftover, datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    fire_cronjob(control_plane, own, datetime(2026, 12, 2, 3, 0, tzinfo=UTC))
    obj = wait_pipeline(control_plane, ns, name, lambda o: bool(runs(o)))
    assert [r["scheduledTime"] for r in runs(obj)] == ["2026-12-02T03:00:00Z"], runs(obj)
    made = jobs(control_plane, ns, "kaizen.dev/trigger=schedule")
    (planted,) = [
        j for j in made if j["metadata"]["ownerReferences"][0]["uid"] == leftover["metadata"]["uid"]
    ]
    assert "kaizen.dev/handled" not in (planted["metadata"].get("annotations") or {})
