"""The FineTunePipeline controller against the real control plane, pods "run" by kwok.

One operator (in-process, kopf's KopfRunner) serves the module. Every namespace enforces the
restricted Pod Security profile, so every run pod created here was admitted under it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ftp_support import (
    BAD_RECORDS,
    MODELS,
    PIPELINES,
    PLAN,
    conditions,
    fake,
    fire_cronjob,
    first_run_phase,
    get_pipeline,
    jobs,
    kopf_operator,
    message,
    operator_env,
    pipeline,
    pods,
    prepare_namespace,
    requests_gpu,
    runs,
    set_pytorchjob_condition,
    wait_pipeline,
)
from kaizen_api.results import EXIT_USER_ERROR
from support.reports import send_report

pytestmark = pytest.mark.cluster
SECRETS_SEEN: list[str] = []  # token values read by tests; the last test checks none leaked


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        env = operator_env(control_plane)
        with kopf_operator(control_plane, env, patch) as runner:
            yield runner
    # The operator has stopped: its whole log is in. No token a test read may be in it.
    assert SECRETS_SEEN, "the progress test reads tokens"
    assert not [s for s in SECRETS_SEEN if s in runner.output]


@pytest.fixture
def ns(operator, control_plane, namespace) -> str:
    return prepare_namespace(operator, control_plane, namespace)


def create(cluster: Any, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    return cluster.request("POST", PIPELINES.format(namespace), manifest)  # type: ignore[no-any-return]


def run_token(cluster: Any, namespace: str, run: dict[str, Any]) -> str:
    secret = cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{run['objectName']}-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    SECRETS_SEEN.append(token)
    return token


def progress_url(cluster: Any, namespace: str, run: dict[str, Any]) -> str:
    config_map = cluster.request(
        "GET", f"/api/v1/namespaces/{namespace}/configmaps/{run['objectName']}-config"
    )
    config = json.loads(next(iter(config_map["data"].values())))
    return str(config["progress"]["url"])


def post(url: str, token: str, body: dict[str, Any]) -> int:
    return send_report(url, token, body)[0]


def test_job_path_end_to_end(ns, control_plane) -> None:
    created = create(control_plane, ns, pipeline("sft"))
    obj = wait_pipeline(control_plane, ns, "sft", first_run_phase("Succeeded"))
    (run,) = runs(obj)
    assert run["name"].startswith("ft_Qwen2.5-0.5B-Instruct_") and run["trigger"] == "manual"
    assert run["preflight"]["totalSteps"] == PLAN.total_steps
    assert run["metrics"]["trainTotalLoss"] == 0.42
    assert run["outputVersion"] == run["name"] and run["jobKind"] == "Job"
    assert run["startTime"] <= run["completionTime"]
    cond = conditions(obj)
    assert cond["Succeeded"]["status"] == "True" and cond["Failed"]["status"] == "False"
    assert cond["Running"]["status"] == "False" and cond["Ready"]["status"] == "True"
    assert all(c["observedGeneration"] == obj["metadata"]["generation"] for c in cond.values())
    assert obj["status"]["phase"] == "Succeeded" and "currentRun" not in obj["status"]
    assert obj["spec"] == created["spec"], "the operator never writes spec"
    # The preflight holds no GPU; the workload does; both pods were admitted under `restricted`.
    (preflight,) = jobs(control_plane, ns, "kaizen.dev/component=preflight")
    assert not requests_gpu(preflight["spec"]["template"]["spec"])
    (train,) = jobs(control_plane, ns, "kaizen.dev/component=train")
    assert requests_gpu(train["spec"]["template"]["spec"])
    assert {p["metadata"]["labels"]["kaizen.dev/component"] for p in pods(control_plane, ns)} == {
        "preflight",
        "train",
    }
    model = control_plane.request("GET", f"{MODELS.format(ns)}/out")
    versions = {v["name"]: v for v in model["status"]["versions"]}
    assert versions[run["name"]]["status"] == "ready"


def test_oom_is_retried_then_fails_as_oomkilled(ns, control_plane) -> None:
    create(control_plane, ns, pipeline("oom", workload=fake(137)))
    obj = wait_pipeline(control_plane, ns, "oom", first_run_phase("Failed"), timeout=90)
    (run,) = runs(obj)
    assert run["reason"] == "OOMKilled" and run["exitCode"] == 137
    assert conditions(obj)["Failed"]["reason"] == "OOMKilled"
    assert len(pods(control_plane, ns, "kaizen.dev/component=train")) == 2, (
        "exit 137 is retried (backoffLimit 1)"
    )


def test_user_error_is_not_retried(ns, control_plane) -> None:
    term = message(phase="Failed", reason="ConfigInvalid", message="lora target module q_proj not found")
    create(control_plane, ns, pipeline("usererr", workload=fake(EXIT_USER_ERROR, term)))
    obj = wait_pipeline(control_plane, ns, "usererr", first_run_phase("Failed"))
    (run,) = runs(obj)
    assert run["reason"] == "ConfigInvalid" and "q_proj" in run["message"]
    time.sleep(2)
    assert len(pods(control_plane, ns, "kaizen.dev/component=train")) == 1, (
        "a user error fails the Job at once"
    )


def test_bad_records_fail_preflight_without_a_gpu_pod(ns, control_plane) -> None:
    create(control_plane, ns, pipeline("bad", preflight=BAD_RECORDS))
    obj = wait_pipeline(control_plane, ns, "bad", first_run_phase("Failed"))
    (run,) = runs(obj)
    assert run["reason"] == "DataInvalid" and conditions(obj)["Failed"]["reason"] == "DataInvalid"
    assert "record 1: missing field 'instruction'" in run["message"] and "record 4" in run["message"]
    assert [p["index"] for p in run["preflight"]["firstProblems"]] == [1, 4]
    time.sleep(1)
    assert not jobs(control_plane, ns, "kaizen.dev/component=train")
    assert not any(requests_gpu(p["spec"]) for p in pods(control_plane, ns))


def test_run_token_change_starts_another_run(ns, control_plane) -> None:
    create(control_plane, ns, pipeline("again"))
    wait_pipeline(control_plane, ns, "again", first_run_phase("Succeeded"))
    patch = {"spec": {"trigger": {"runToken": "second"}}}
    control_plane.request(
        "PATCH", f"{PIPELINES.format(ns)}/again", patch, content_type="application/merge-patch+json"
    )
    obj = wait_pipeline(
        control_plane, ns, "again", lambda o: len(runs(o)) == 2 and runs(o)[0]["phase"] == "Succeeded"
    )
    assert [r.get("token") for r in runs(obj)] == ["second", ""]
    assert obj["status"]["lastRunToken"] == "second"


def test_progress_reports_reach_status_and_other_tokens_are_refused(ns, control_plane) -> None:
    from kaizen_runner.train.progress import Sender, progress_payload

    slow = fake(0, message(phase="Succeeded"), duration="120s")
    create(control_plane, ns, pipeline("live", workload=slow))
    create(control_plane, ns, pipeline("other", workload=slow))
    obj = wait_pipeline(control_plane, ns, "live", first_run_phase("Running"))
    other = wait_pipeline(control_plane, ns, "other", first_run_phase("Running"))
    run, other_run = runs(obj)[0], runs(other)[0]
    url, token = progress_url(control_plane, ns, run), run_token(control_plane, ns, run)
    report = progress_payload(
        run["name"], step=3, total_steps=6, epoch=0.5, eta_seconds=40, metrics={"train_total_loss": 1.25}
    )
    payload = report.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert post(url, run_token(control_plane, ns, other_run), payload) == 403
    assert post(url, "not-a-token", payload) == 403
    assert post(url, "", payload) == 401
    assert (get_pipeline(control_plane, ns, "live")["status"]["currentRun"]).get("progress") is None
    sent = time.monotonic()
    sender = Sender(url, token)  # the runner's own client, from its background thread
    sender.submit(report)
    sender.flush(timeout_s=10)
    assert sender.sent == 1 and sender.failed == 0
    obj = wait_pipeline(
        control_plane,
        ns,
        "live",
        lambda o: (o["status"].get("currentRun") or {}).get("progress", {}).get("step") == 3,
    )
    assert time.monotonic() - sent < 5
    current = obj["status"]["currentRun"]
    assert current["metrics"]["trainTotalLoss"] == 1.25 and current["progress"]["etaSeconds"] == 40
    assert current["lossHistory"] == [{"step": 3, "loss": 1.25}]
    assert post(url, token, payload) == 200  # a replay is accepted as stale and changes nothing
    assert get_pipeline(control_plane, ns, "live")["status"]["currentRun"]["progress"] == current["progress"]
    later = {"step": 4, "totalSteps": 6, "updatedTime": datetime.now(UTC).isoformat()}
    for field, report in (  # hand-made reports with numbers Python's json reads and no status holds
        ("metrics.trainTotalLoss", {"progress": later, "metrics": {"trainTotalLoss": float("nan")}}),
        ("metrics.evalTotalLoss", {"progress": later, "metrics": {"evalTotalLoss": float("-inf")}}),
        ("progress.totalSteps", {"progress": later | {"totalSteps": 2**64}}),
    ):
        time.sleep(1.0)  # within the run's rate: one report a second after a burst of three
        status, body = send_report(url, token, {"runName": run["name"], **report})
        assert status == 400 and body["error"].startswith(f"{field} is "), body
    assert get_pipeline(control_plane, ns, "live")["status"]["currentRun"] == current
    time.sleep(1.0)
    assert post(url, token, {"runName": run["name"], "x": "y" * 70_000}) == 413
    # Cancelling: the workload goes, the run ends Cancelled.
    control_plane.request(
        "PATCH",
        f"{PIPELINES.format(ns)}/live",
        {"metadata": {"annotations": {"kaizen.dev/cancel": run["name"]}}},
        content_type="application/merge-patch+json",
    )
    obj = wait_pipeline(control_plane, ns, "live", first_run_phase("Cancelled"))
    assert conditions(obj)["Failed"]["reason"] == "Cancelled"
    deadline = time.monotonic() + 20
    while jobs(control_plane, ns, f"kaizen.dev/run={run['objectName']},kaizen.dev/component=train"):
        assert time.monotonic() < deadline, "the cancelled run's Job was not deleted"
        time.sleep(0.3)


def test_schedule_forbid_suspend_and_resume(ns, control_plane) -> None:
    trigger = {"type": "schedule", "schedule": "0 3 * * *", "timeZone": "Asia/Tokyo"}
    create(
        control_plane,
        ns,
        pipeline("nightly", workload=fake(0, message(phase="Succeeded"), "120s"), trigger=trigger),
    )
    obj = wait_pipeline(
        control_plane, ns, "nightly", lambda o: (o.get("status") or {}).get("nextScheduleTime")
    )
    assert not runs(obj), "a schedule pipeline starts no run on creation"
    (cronjob,) = control_plane.request("GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs")["items"]
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 3 * * *" and spec["timeZone"] == "Asia/Tokyo" and spec["suspend"] is False
    assert spec["concurrencyPolicy"] == "Allow"
    assert not requests_gpu(spec["jobTemplate"]["spec"]["template"]["spec"])
    assert obj["status"]["nextScheduleTime"].endswith(("18:00:00Z",)), obj["status"]["nextScheduleTime"]

    fire_cronjob(control_plane, cronjob, datetime(2026, 12, 1, 18, 0, tzinfo=UTC))
    obj = wait_pipeline(control_plane, ns, "nightly", first_run_phase("Running"))
    assert runs(obj)[0]["name"].endswith("_20261201180000") and runs(obj)[0]["trigger"] == "schedule"
    fire_cronjob(control_plane, cronjob, datetime(2026, 12, 2, 18, 0, tzinfo=UTC))
    obj = wait_pipeline(control_plane, ns, "nightly", lambda o: len(runs(o)) == 2)
    skipped = runs(obj)[0]
    assert skipped["phase"] == "Skipped" and skipped["reason"] == "ConcurrencyForbidden"
    assert runs(obj)[1]["phase"] == "Running", "Forbid leaves the active run alone"

    suspend = {"spec": {"trigger": {"suspend": True}}}
    control_plane.request(
        "PATCH", f"{PIPELINES.format(ns)}/nightly", suspend, content_type="application/merge-patch+json"
    )
    obj = wait_pipeline(
        control_plane, ns, "nightly", lambda o: conditions(o).get("Suspended", {}).get("status") == "True"
    )
    assert "nextScheduleTime" not in obj["status"]
    cj = control_plane.request(
        "GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs/{cronjob['metadata']['name']}"
    )
    assert cj["spec"]["suspend"] is True
    suspend["spec"]["trigger"]["suspend"] = False
    control_plane.request(
        "PATCH", f"{PIPELINES.format(ns)}/nightly", suspend, content_type="application/merge-patch+json"
    )
    wait_pipeline(control_plane, ns, "nightly", lambda o: conditions(o)["Suspended"]["status"] == "False")
    cj = control_plane.request(
        "GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs/{cronjob['metadata']['name']}"
    )
    assert cj["spec"]["suspend"] is False


def test_pytorchjob_follows_the_training_operator(ns, control_plane) -> None:
    resources = {"gpusPerNode": 2, "nodes": 2}
    create(control_plane, ns, pipeline("ok2", resources=resources))
    create(control_plane, ns, pipeline("bad2", resources=resources))
    path = f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs"
    for name, final in (("ok2", "Succeeded"), ("bad2", "Failed")):
        obj = wait_pipeline(control_plane, ns, name, lambda o: runs(o) and runs(o)[0].get("jobName"))
        (run,) = runs(obj)
        assert run["jobKind"] == "PyTorchJob"
        job = control_plane.request("GET", f"{path}/{run['jobName']}")
        assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}
        set_pytorchjob_condition(control_plane, f"{path}/{run['jobName']}", "Running", "PyTorchJobRunning")
        wait_pipeline(control_plane, ns, name, first_run_phase("Running"))
        set_pytorchjob_condition(control_plane, f"{path}/{run['jobName']}", final, f"PyTorchJob{final}")
        obj = wait_pipeline(control_plane, ns, name, first_run_phase(final))
        if final == "Failed":
            assert runs(obj)[0]["reason"] == "PyTorchJobFailed"


def test_indexed_job_backend(ns, control_plane) -> None:
    resources = {"gpusPerNode": 1, "nodes": 2, "multiNodeBackend": "indexedjob"}
    create(control_plane, ns, pipeline("idx", resources=resources))
    obj = wait_pipeline(control_plane, ns, "idx", first_run_phase("Succeeded"))
    (run,) = runs(obj)
    assert run["jobKind"] == "Job"
    job = control_plane.request("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{run['jobName']}")
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    assert job["spec"]["template"]["spec"]["subdomain"] == run["jobName"]
    assert len(pods(control_plane, ns, "kaizen.dev/component=train")) == 2
    # The headless Service and the token Secret serve a running run only: the run's end deletes them.
    for path in (f"services/{run['jobName']}", f"secrets/{run['objectName']}-token"):
        assert control_plane.request("GET", f"/api/v1/namespaces/{ns}/{path}", missing_ok=True) is None


def test_unknown_model_blocks_with_a_reason(ns, control_plane) -> None:
    create(control_plane, ns, pipeline("nomodel", baseModel={"catalog": "No-Such-Model-1B"}))
    obj = wait_pipeline(
        control_plane, ns, "nomodel", lambda o: conditions(o).get("Ready", {}).get("status") == "False"
    )
    assert conditions(obj)["Ready"]["reason"] == "UnknownModel" and not runs(obj)
    assert not jobs(control_plane, ns, "kaizen.dev/pipeline=nomodel")


def test_a_refused_child_reaches_a_condition(ns, control_plane) -> None:
    """An admission policy refuses the run's Jobs: the cause is on Ready, the run waits and is retried."""
    path = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    rules = [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": ns},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "validations": [
                {"expression": "false", "message": "jobs are closed here", "reason": "Forbidden"}
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": ns},
        "spec": {
            "policyName": ns,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
        },
    }
    control_plane.request("POST", path, policy)
    control_plane.request("POST", path.replace("policies", "policybindings"), binding)
    try:
        time.sleep(2)  # the apiserver loads policies asynchronously
        create(control_plane, ns, pipeline("refused"))
        obj = wait_pipeline(
            control_plane, ns, "refused", lambda o: conditions(o).get("Ready", {}).get("status") == "False"
        )
        ready = conditions(obj)["Ready"]
        assert ready["reason"] == "ReconcileError" and "jobs are closed here" in ready["message"]
        assert runs(obj)[0]["phase"] == "Pending", "the run waits and is retried"
        assert not jobs(control_plane, ns, "kaizen.dev/pipeline=refused")
    finally:
        control_plane.request("DELETE", f"{path.replace('policies', 'policybindings')}/{ns}", missing_ok=True)
        control_plane.request("DELETE", f"{path}/{ns}", missing_ok=True)


def test_without_the_pytorchjob_crd_a_multinode_run_is_an_indexed_job(ns, control_plane) -> None:
    from kaizen_local.cluster import CrdRef, load_crds, third_party_crd_files

    (crd,) = load_crds(f for f in third_party_crd_files() if f.name == "kubeflow.org_pytorchjobs.yaml")
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    control_plane.request("DELETE", crd_path)
    try:
        deadline = time.monotonic() + 60
        while control_plane.request("GET", crd_path, missing_ok=True) is not None:
            assert time.monotonic() < deadline, "the CRD was not removed"
            time.sleep(0.5)
        time.sleep(6)  # the operator's discovery cache (5 s)
        create(control_plane, ns, pipeline("nocrd", resources={"gpusPerNode": 1, "nodes": 2}))
        obj = wait_pipeline(control_plane, ns, "nocrd", first_run_phase("Succeeded"))
        assert runs(obj)[0]["jobKind"] == "Job"
        job = control_plane.request("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{runs(obj)[0]['jobName']}")
        assert job["spec"]["completionMode"] == "Indexed"
    finally:
        control_plane.install_crds([crd])
        control_plane.wait_established([CrdRef.of(crd)])


def test_no_secret_value_leaks(operator, control_plane) -> None:
    """Runs last in the module: no token a test read is in a ConfigMap, a status or an Event (the
    operator's log is checked when the module's operator stops)."""
    assert SECRETS_SEEN, "the progress test reads tokens"
    haystacks = []
    haystacks.append(json.dumps(control_plane.request("GET", "/api/v1/configmaps")))
    haystacks.append(json.dumps(control_plane.request("GET", "/api/v1/events")))
    haystacks.append(json.dumps(control_plane.request("GET", "/apis/kaizen.dev/v1alpha1/finetunepipelines")))
    for secret in SECRETS_SEEN:
        assert all(secret not in text for text in haystacks)
