"""A diverged run against the real control plane, its pod "run" by kwok: the runner's reports carry
`nonFiniteLossStep` (one Warning Event, also across an operator restart), then its termination
message fails the run with reason `Diverged`.

The operator runs in-process (kopf's KopfRunner), started twice in the test with the same key and
ports: the second one stands for a restarted operator, which must read "already flagged" from status.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ftp_support import (
    PIPELINES,
    conditions,
    fake,
    first_run_phase,
    in_process_operator,
    message,
    operator_env,
    pipeline,
    prepare_namespace,
    runs,
    wait_pipeline,
)
from kaizen_api.results import EXIT_USER_ERROR
from support.reports import send_report

pytestmark = pytest.mark.cluster
ADVICE = (
    "training diverged: the training loss is nan at step 4 (not finite since step 2), so no version was "
    "published; lower learningRate or maxGradNorm, use bf16 rather than fp16, or check the data and "
    "the base model's weights"
)


def loss_events(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    found = cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in found if e["reason"] == "LossNotFinite"]


def report_target(cluster: Any, namespace: str, run: dict[str, Any]) -> tuple[str, str]:
    """The run's progress URL and token, as its pod reads them (ConfigMap, token Secret)."""
    obj = run["objectName"]
    config_map = cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{obj}-config")
    url = json.loads(next(iter(config_map["data"].values())))["progress"]["url"]
    secret = cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{obj}-token")
    return str(url), base64.b64decode(secret["data"]["token"]).decode()


def test_a_diverged_run_is_flagged_once_and_fails_as_diverged(control_plane, namespace) -> None:
    env = operator_env(control_plane)
    started = datetime.now(UTC)

    def report(url: str, token: str, run: dict[str, Any], step: int, **metrics: object) -> None:
        when = (started + timedelta(seconds=step)).isoformat()
        body = {"runName": run["name"], "progress": {"step": step, "updatedTime": when}, "metrics": metrics}
        assert send_report(url, token, body) == (200, {"applied": True})

    term = message(phase="Failed", reason="Diverged", message=ADVICE)
    workload = fake(EXIT_USER_ERROR, term, duration="40s")
    with in_process_operator(control_plane, env) as runner:
        ns = prepare_namespace(runner, control_plane, namespace)
        control_plane.request("POST", PIPELINES.format(ns), pipeline("nan", workload=workload))
        (run,) = runs(wait_pipeline(control_plane, ns, "nan", first_run_phase("Running")))
        url, token = report_target(control_plane, ns, run)
        report(url, token, run, 1, trainTotalLoss=2.5)
        assert not loss_events(control_plane, ns), "a finite loss is no warning"
        report(url, token, run, 2, trainTotalLoss=2.5, nonFiniteLossStep=2)
        report(url, token, run, 3, nonFiniteLossStep=2)  # the runner repeats the step in each report
        (event,) = loss_events(control_plane, ns)  # posted before the report was answered
    assert (event["type"], event["involvedObject"]["name"]) == ("Warning", "nan")
    assert event["message"].startswith(f"run {run['name']}: the loss was NaN or infinite at step 2;")
    with in_process_operator(control_plane, env):
        time.sleep(1.0)  # within the run's rate limit whatever the new operator's buckets
        report(url, token, run, 4, nonFiniteLossStep=2)
        assert len(loss_events(control_plane, ns)) == 1, "a restarted operator reads it from status"
        obj = wait_pipeline(control_plane, ns, "nan", first_run_phase("Failed"), timeout=90)
    (ended,) = runs(obj)
    assert (ended["reason"], ended["message"], ended["exitCode"]) == ("Diverged", ADVICE, EXIT_USER_ERROR)
    assert ended["metrics"] == {"trainTotalLoss": 2.5, "nonFiniteLossStep": 2}
    failed = conditions(obj)["Failed"]
    assert (failed["status"], failed["reason"]) == ("True", "Diverged") and "at step 4" in failed["message"]
    assert len(loss_events(control_plane, ns)) == 1
