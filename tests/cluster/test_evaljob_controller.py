"""Acceptance: a standard-suite EvalJob on a tiny local model and a shared sample dataset, end to end
through the controller on the real control plane.

The operator creates the run's ConfigMap, token Secret and Job; kwok "runs" the pod. The test runs
`kaizen-runner eval` with the ConfigMap's eval.json, the mounted connection and the token Secret, as
the pod would (the model, data and results live on the local S3 server), so its live progress goes
to the operator's endpoint; then kwok ends the pod with the runner's own termination message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ftp_support import (
    MODELS,
    conditions,
    fake,
    kopf_operator,
    message,
    operator_env,
    pods,
    restrict,
)
from kaizen_api.base import GROUP, VERSION
from support.reports import send_report
from support.smtp import smtp_secret
from support.tinymodels import SAMPLES, build_tiny_causal_lm

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]
EVALJOBS = f"/apis/{GROUP}/{VERSION}/namespaces/{{}}/evaljobs"
DATASET = SAMPLES / "alpaca" / "alpaca_test_mini.json"


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        env = operator_env(control_plane)
        with kopf_operator(control_plane, env, patch) as runner:
            runner.env = env
            yield runner


@pytest.fixture
def ns(operator, control_plane, namespace, s3_server, smtp) -> str:
    restrict(control_plane, namespace)
    control_plane.request("POST", f"/api/v1/namespaces/{namespace}/secrets", s3_server.secret("datahub"))
    control_plane.request("POST", f"/api/v1/namespaces/{namespace}/secrets", smtp_secret(smtp[1]))
    return namespace


@pytest.fixture
def staged_model(tmp_path, s3_server, control_plane, ns) -> str:
    """A tiny Qwen2 uploaded as version v1 of PrivateModel `tiny` (the registry's status set by hand)."""
    client = s3_server.client()
    for bucket in ("models", "data"):
        with contextlib.suppress(client.exceptions.ClientError):  # already there from another test
            client.create_bucket(Bucket=bucket)
    folder = build_tiny_causal_lm(tmp_path / "tiny", "qwen2")
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"tiny/v1/{path.relative_to(folder).as_posix()}"
        client.upload_file(str(path), "models", key)
        files.append({"name": path.relative_to(folder).as_posix(), "sizeBytes": path.stat().st_size})
    client.upload_file(str(DATASET), "data", "alpaca_test_mini.json")
    storage = {"s3": {"connection": {"name": "datahub"}, "bucket": "models", "key": "tiny/"}}
    model = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PrivateModel",
        "metadata": {"name": "tiny"},
        "spec": {"title": "Tiny", "storage": storage},
    }
    control_plane.request("POST", MODELS.format(ns), model)
    version = {
        "index": 0, "name": "v1", "status": "ready", "ready": True, "files": files,
        "tags": {"type": "LLM", "size": "30K", "instructionTuned": True},
    }  # fmt: skip
    status = {"status": {"latestVersion": "v1", "versionCount": 1, "versions": [version]}}
    control_plane.request(
        "PATCH", f"{MODELS.format(ns)}/tiny/status", status, content_type="application/merge-patch+json"
    )
    return "tiny"


def evaljob(name: str) -> dict[str, Any]:
    fake = {"workload": {"annotations": {"kaizen.dev/fake-duration": "10m"}}}  # runs until the test ends it
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalJob",
        "metadata": {"name": name, "annotations": {"kaizen.dev/fake-pods": json.dumps(fake)}},
        "spec": {
            "displayName": "testj_tiny",
            "model": {"privateModel": {"name": "tiny", "version": "v1"}},
            "suite": "standard",
            "dataset": {
                "format": "alpaca",
                "s3": {"connection": {"name": "datahub"}, "bucket": "data", "key": "alpaca_test_mini.json"},
            },
            "parameters": {"maxTokens": 4, "seed": 3, "logSamples": True},
            "resources": {"gpusPerNode": 0},
            "output": {"s3": {"connection": {"name": "datahub"}, "bucket": "data", "key": "eval-results"}},
            "notification": {"emails": ["ml-team@example.com"]},
        },
    }


def wait(cluster: Any, path: str, check: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj = cluster.request("GET", path)
        if check(obj):
            return obj  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: not reached in {timeout}s; status: {obj.get('status')}")
        time.sleep(0.3)


def run_as_the_pod(cluster: Any, ns: str, run_obj: str, s3_server: Any, tmp: Path) -> dict[str, Any]:
    """`kaizen-runner eval --config` with what the pod mounts: eval.json, the connection, the token."""
    config_map = cluster.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{run_obj}-config")
    config = tmp / "run.json"
    config.write_text(config_map["data"]["run.json"])
    secret = cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets/{run_obj}-token")
    connections = tmp / "connections" / "datahub"
    connections.mkdir(parents=True)
    for key, value in s3_server.secret("datahub")["stringData"].items():
        (connections / key).write_text(value)
    env = {
        **os.environ,
        "KAIZEN_CONNECTIONS_DIR": str(connections.parent),
        "KAIZEN_PROGRESS_TOKEN": base64.b64decode(secret["data"]["token"]).decode(),
        "KAIZEN_TERMINATION_LOG": str(tmp / "termination-log"),
        "KAIZEN_WORK_DIR": str(tmp / "work"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "kaizen_runner.cli", "eval", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {"termination": (tmp / "termination-log").read_text(), "stdout": done.stdout}


def test_standard_suite_end_to_end(ns, control_plane, staged_model, s3_server, smtp, tmp_path) -> None:
    control_plane.request("POST", EVALJOBS.format(ns), evaljob("tiny-eval"))
    path = f"{EVALJOBS.format(ns)}/tiny-eval"
    obj = wait(control_plane, path, lambda o: (o.get("status") or {}).get("jobName"))
    run_obj = obj["status"]["jobName"]
    wait(control_plane, f"/apis/batch/v1/namespaces/{ns}/jobs/{run_obj}", lambda j: True)
    [pod] = wait_pods(control_plane, ns, run_obj)
    assert pod["metadata"]["labels"]["kaizen.dev/evaljob"] == "tiny-eval"

    outcome = run_as_the_pod(control_plane, ns, run_obj, s3_server, tmp_path)
    running = control_plane.request("GET", path)
    progress = running["status"]["progress"]  # live progress reached status through the endpoint
    assert progress["total"] == 100 and progress["done"] == 100 and progress["percentage"] == 100

    pod_path = f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}"
    end = {
        "metadata": {
            "labels": {"kaizen.dev/fake-exit-code": "0"},
            "annotations": {
                "kaizen.dev/fake-termination-message": outcome["termination"],
                "kaizen.dev/fake-duration": "0s",
            },
        }
    }
    control_plane.request("PATCH", pod_path, end, content_type="application/merge-patch+json")
    # The mail is claimed (Notified Unknown/Sending) in the status write that records the outcome, and
    # settled once it is sent: wait for both.
    done = wait(
        control_plane,
        path,
        lambda o: (
            (o.get("status") or {}).get("phase") == "Succeeded"
            and conditions(o).get("Notified", {}).get("reason") not in (None, "Sending")
        ),
        timeout=120,
    )

    status = done["status"]
    summary = json.loads(outcome["stdout"].strip().splitlines()[-1])
    assert status["results"] == summary["results"]
    assert set(status["results"]) == {"bleu", "fuzzy_match", "rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert status["resultsUri"] == "s3://data/eval-results/testj_tiny-1"
    assert status["runName"] == "testj_tiny-1" and status["runs"][0]["phase"] == "Succeeded"
    cond = conditions(done)
    assert cond["Succeeded"]["status"] == "True" and cond["Running"]["status"] == "False"
    assert cond["Notified"]["status"] == "True", cond["Notified"]
    results = json.loads(
        s3_server.client()
        .get_object(Bucket="data", Key="eval-results/testj_tiny-1/results.json")["Body"]
        .read()
    )
    assert results["tasks"][0]["samples"] == 100
    assert any("testj_tiny-1 succeeded" in m for m in smtp[0].messages)
    model = control_plane.request("GET", f"{MODELS.format(ns)}/tiny")
    [evaluation] = model["status"]["versions"][0]["evaluations"]
    assert evaluation["runName"] == "testj_tiny-1" and evaluation["results"] == status["results"]
    assert done["spec"]["displayName"] == "testj_tiny", "the operator never writes spec"


def wait_pods(cluster: Any, ns: str, run_obj: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [
            p for p in pods(cluster, ns, f"kaizen.dev/run={run_obj}") if p["status"].get("phase") == "Running"
        ]
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no running pod of {run_obj} in {timeout}s")
        time.sleep(0.3)


def harness_job(name: str, workload: dict[str, Any]) -> dict[str, Any]:
    """An lm-eval EvalJob whose pod kwok ends as `workload` says (no runner runs)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalJob",
        "metadata": {
            "name": name,
            "annotations": {"kaizen.dev/fake-pods": json.dumps({"workload": workload})},
        },
        "spec": {
            "displayName": name,
            "model": {"catalog": "Qwen2.5-0.5B-Instruct"},
            "suite": "lm-eval-harness",
            "tasks": ["gsm8k"],
            "resources": {"gpusPerNode": 1},
        },
    }


def phase_is(*phases: str) -> Any:
    return lambda o: (o.get("status") or {}).get("phase") in phases


def test_run_token_runs_again_and_keeps_the_history(ns, control_plane) -> None:
    done = fake(
        0, message(phase="Succeeded", results={"gsm8k/exact_match@strict-match": 0.25}, resultsUri="s3://r/1")
    )
    control_plane.request("POST", EVALJOBS.format(ns), harness_job("again", done))
    path = f"{EVALJOBS.format(ns)}/again"
    first = wait(control_plane, path, phase_is("Succeeded"))
    assert first["status"]["results"] == {"gsm8k/exact_match@strict-match": 0.25}
    assert [r["runName"] for r in first["status"]["runs"]] == ["again-1"]
    patch = {"spec": {"runToken": "second"}}
    control_plane.request("PATCH", path, patch, content_type="application/merge-patch+json")
    second = wait(
        control_plane, path, lambda o: phase_is("Succeeded")(o) and o["status"]["runName"] == "again-2"
    )
    runs = second["status"]["runs"]
    assert [(r["runName"], r.get("runToken"), r["phase"]) for r in runs] == [
        ("again-2", "second", "Succeeded"),
        ("again-1", None, "Succeeded"),
    ]
    job = control_plane.request("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{second['status']['jobName']}")
    assert job["metadata"]["labels"]["kaizen.dev/evaljob"] == "again"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_a_runner_failure_names_its_reason_and_cancel_stops_a_run(ns, control_plane) -> None:
    failed = fake(2, message(phase="Failed", reason="DataNotStaged", message="gsm8k is not staged"))
    control_plane.request("POST", EVALJOBS.format(ns), harness_job("broken", failed))
    obj = wait(control_plane, f"{EVALJOBS.format(ns)}/broken", phase_is("Failed"))
    cond = conditions(obj)
    assert cond["Succeeded"]["status"] == "False" and cond["Succeeded"]["reason"] == "DataNotStaged"
    assert obj["status"]["message"] == "gsm8k is not staged"
    about_it = f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name=broken"
    events = wait(control_plane, about_it, lambda found: found["items"])["items"]  # posted after the status
    assert [(e["type"], e["reason"], e["involvedObject"]["kind"]) for e in events] == [
        ("Warning", "DataNotStaged", "EvalJob")
    ]

    control_plane.request("POST", EVALJOBS.format(ns), harness_job("long", fake(0, None, "10m")))
    path = f"{EVALJOBS.format(ns)}/long"
    running = wait(control_plane, path, phase_is("Running"))
    refuses_reports_json_cannot_hold(control_plane, ns, running)
    cancel = {"metadata": {"annotations": {"kaizen.dev/cancel": "true"}}}
    control_plane.request("PATCH", path, cancel, content_type="application/merge-patch+json")
    cancelled = wait(control_plane, path, phase_is("Cancelled"))
    assert cancelled["status"]["runs"][0]["reason"] == "Cancelled"
    job_path = f"/apis/batch/v1/namespaces/{ns}/jobs/{running['status']['jobName']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = control_plane.request("GET", job_path, missing_ok=True)
        if job is None or job["metadata"].get("deletionTimestamp"):
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the cancelled run's Job was not deleted")


def test_a_failed_run_keeps_its_message_on_the_succeeded_condition(ns, control_plane) -> None:
    """Passes after the one that saw the failure (here: a spec edit) keep the Succeeded condition's
    message: `kubectl wait --for=condition=Succeeded` and dashboards read the cause there."""
    failed = fake(2, message(phase="Failed", reason="DataNotStaged", message="gsm8k is not staged"))
    control_plane.request("POST", EVALJOBS.format(ns), harness_job("keeps", failed))
    path = f"{EVALJOBS.format(ns)}/keeps"
    wait(control_plane, path, phase_is("Failed"))
    edit = {"spec": {"description": "edited after the run ended"}}
    control_plane.request("PATCH", path, edit, content_type="application/merge-patch+json")
    later = wait(control_plane, path, lambda o: (o.get("status") or {}).get("observedGeneration") == 2)
    cond = conditions(later)["Succeeded"]
    assert (cond["status"], cond["reason"]) == ("False", "DataNotStaged")
    assert cond["message"] == "gsm8k is not staged", cond
    assert later["status"]["message"] == "gsm8k is not staged"


def test_an_evaljob_named_like_a_deleted_one_does_not_adopt_its_leftover_children(ns, control_plane) -> None:
    """Run names come from the job's name and run number, so a new EvalJob named like a deleted one finds
    the old run's Job and ConfigMap under its own run's names when they outlive their owner (`kubectl
    delete --cascade=orphan` leaves them with no owner at all; the ended run's token Secret is gone
    already). They are not this job's run: it fails `NameConflict` naming one of them instead of taking
    the old run's outcome as its own, and leaves them as they are."""
    old = fake(0, message(phase="Succeeded", results={"gsm8k/exact_match@strict-match": 0.25}))
    control_plane.request("POST", EVALJOBS.format(ns), harness_job("reborn", old))
    path = f"{EVALJOBS.format(ns)}/reborn"
    first = wait(control_plane, path, phase_is("Succeeded"))
    run_obj = first["status"]["jobName"]
    job_path = f"/apis/batch/v1/namespaces/{ns}/jobs/{run_obj}"
    control_plane.request("DELETE", path, {"propagationPolicy": "Orphan"})
    wait(control_plane, job_path, lambda j: not j["metadata"].get("ownerReferences"))
    deadline = time.monotonic() + 30
    while control_plane.request("GET", path, missing_ok=True) is not None:
        assert time.monotonic() < deadline, "the EvalJob was not deleted"
        time.sleep(0.3)
    leftovers = {
        f"/apis/batch/v1/namespaces/{ns}/jobs/{run_obj}": "Job",
        f"/api/v1/namespaces/{ns}/configmaps/{run_obj}-config": "ConfigMap",
    }
    uids = {p: control_plane.request("GET", p)["metadata"]["uid"] for p in leftovers}

    control_plane.request("POST", EVALJOBS.format(ns), harness_job("reborn", fake(0, None, "10m")))
    ended = wait(control_plane, path, phase_is("Succeeded", "Failed"))
    status = ended["status"]
    assert (status["phase"], status["runs"][0]["reason"]) == ("Failed", "NameConflict"), status
    assert "results" not in status, status
    assert any(f"{kind} {run_obj}" in status["message"] for kind in leftovers.values()), status["message"]
    for leftover, uid in uids.items():  # untouched: neither adopted nor deleted
        found = control_plane.request("GET", leftover)
        assert found["metadata"]["uid"] == uid and not found["metadata"].get("ownerReferences"), found


def evaluations_are(count: int) -> Any:
    return lambda m: len(m["status"]["versions"][0].get("evaluations") or []) == count


def test_a_job_made_again_under_its_name_records_its_runs_on_the_version(
    ns, control_plane, staged_model
) -> None:
    """Deleted and made again (a GitOps re-sync does it), an EvalJob numbers its runs from 1 again: the
    new `<name>-1` is another run than the recorded one, and its scores reach the version too."""
    path = f"{EVALJOBS.format(ns)}/regate"
    entries = []
    for score in (0.25, 0.5):
        done = fake(0, message(phase="Succeeded", results={"gsm8k/exact_match@strict-match": score}))
        job = harness_job("regate", done)
        job["spec"]["model"] = {"privateModel": {"name": staged_model, "version": "v1"}}
        control_plane.request("POST", EVALJOBS.format(ns), job)
        finished = wait(control_plane, path, phase_is("Succeeded", "Failed"))
        assert finished["status"]["phase"] == "Succeeded", finished["status"]
        model = wait(
            control_plane,
            f"{MODELS.format(ns)}/{staged_model}",
            evaluations_are(len(entries) + 1),
            timeout=20,
        )
        entries = model["status"]["versions"][0]["evaluations"]
        control_plane.request("DELETE", path, {"propagationPolicy": "Foreground"})
        deadline = time.monotonic() + 60
        while control_plane.request("GET", path, missing_ok=True) is not None:
            assert time.monotonic() < deadline, "the EvalJob was not deleted"
            time.sleep(0.3)
    assert [(e["runName"], e["results"]["gsm8k/exact_match@strict-match"]) for e in entries] == [
        ("regate-1", 0.25),
        ("regate-1", 0.5),
    ]
    assert entries[0]["evalJobUid"] != entries[1]["evalJobUid"]


def refuses_reports_json_cannot_hold(cluster: Any, ns: str, job: dict[str, Any]) -> None:
    """A hand-made report with NaN or Infinity (Python's json reads them) is refused naming the field,
    and changes nothing; a good one then lands."""
    run_obj = job["status"]["jobName"]
    config_map = cluster.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{run_obj}-config")
    url = json.loads(config_map["data"]["run.json"])["progress"]["url"]
    secret = cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets/{run_obj}-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    now = datetime.now(UTC).isoformat()
    progress = {"done": 1, "total": 4, "updatedTime": now}
    for report, field in (
        ({"evalProgress": progress, "metrics": {"trainTotalLoss": float("nan")}}, "metrics.trainTotalLoss"),
        ({"evalProgress": {**progress, "etaSeconds": float("inf")}}, "evalProgress.etaSeconds"),
    ):
        status, body = send_report(url, token, {"runName": job["status"]["runName"], **report})
        assert status == 400 and field in body["error"], body
    assert "progress" not in cluster.request("GET", f"{EVALJOBS.format(ns)}/long")["status"]
    assert send_report(url, token, {"runName": job["status"]["runName"], "evalProgress": progress})[0] == 200
    landed = cluster.request("GET", f"{EVALJOBS.format(ns)}/long")["status"]["progress"]
    assert landed["done"] == 1 and landed["total"] == 4
