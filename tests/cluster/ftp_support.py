"""Helpers of the FineTunePipeline controller's cluster tests: manifests, fake pod outcomes, waits."""

from __future__ import annotations

import base64
import copy
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaizen_api.base import GROUP, VERSION
from kaizen_api.results import PreflightPlan, RecordProblem, TerminationMessage
from kaizen_operator.kube import ApiError
from kubernetes.config import kube_config
from support.specs import S3_SFT_SPEC

REPO = Path(__file__).resolve().parents[2]
PIPELINES = f"/apis/{GROUP}/{VERSION}/namespaces/{{}}/finetunepipelines"
MODELS = f"/apis/{GROUP}/{VERSION}/namespaces/{{}}/privatemodels"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
PLAN = PreflightPlan(records=10, usable_records=10, tokens=2000, steps_per_epoch=3, total_steps=6)
# A pipeline's evaluation gate: the standard suite on a dataset in S3, passed at rougeL >= 0.4.
GATE = {
    "suite": "standard",
    "dataset": {
        "format": "alpaca",
        "s3": {"connection": {"name": "datahub"}, "bucket": "data", "key": "t.json"},
    },
    "metrics": ["rougeL"],
    "thresholds": [{"metric": "rougeL", "operator": ">=", "value": 0.4}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def source_path() -> str:
    """PYTHONPATH for an operator subprocess: this checkout's packages ahead of any installed copy, so
    the subprocess runs the code under test (an editable install may point at another checkout)."""
    inherited = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    return os.pathsep.join([str(REPO / "operator"), str(REPO / "runner-image"), *inherited])


def operator_env(control_plane: Any) -> dict[str, str]:
    """What the in-process or subprocess operator reads: fake pods on, local ports, a fixed key, and
    this checkout's code."""
    progress = free_port()
    return {
        "PYTHONPATH": source_path(),
        "KUBECONFIG": str(control_plane.kubeconfig),
        "KAIZEN_FAKE_PODS": "1",
        "KAIZEN_PROGRESS_PORT": str(progress),
        "KAIZEN_PROGRESS_URL": f"http://127.0.0.1:{progress}",
        "KAIZEN_METRICS_PORT": str(free_port()),
        "KAIZEN_PROGRESS_KEY": base64.b64encode(os.urandom(24)).decode(),
        "KAIZEN_BACKOFF_LIMIT": "1",
        "KAIZEN_TTL_SECONDS_AFTER_FINISHED": "3600",
    }


@contextmanager
def kopf_operator(
    control_plane: Any, env: dict[str, str], monkeypatch: Any, settings: Any = None
) -> Iterator[Any]:
    """The operator in a thread of this process; `settings`: kopf's, before its startup handlers."""
    from kopf.testing import KopfRunner

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(control_plane.kubeconfig))
    args = ["run", "--all-namespaces", "--standalone", "-m", "kaizen_operator.handlers"]
    with KopfRunner(args, settings=settings) as runner:
        yield runner
    assert runner.exception is None, runner.output


@contextmanager
def in_process_operator(control_plane: Any, env: dict[str, str] | None = None) -> Iterator[Any]:
    """`kopf_operator` with a monkeypatch of its own, undone when it stops (a test module's operator);
    `env`: `operator_env`'s unless given (a restart that must keep its ports and key passes the same)."""
    import pytest

    with (
        pytest.MonkeyPatch.context() as patch,
        kopf_operator(control_plane, env or operator_env(control_plane), patch) as runner,
    ):
        yield runner


def assert_alive(runner: Any) -> None:
    """The in-process operator still runs: a test after one that stopped it fails at once, with the
    operator's error, instead of waiting out its timeouts against an operator that is gone."""
    if not runner.future.done():
        return
    if (error := runner.future.exception()) is not None:
        raise AssertionError(f"the operator's thread failed: {error!r}")
    result = runner.future.result()
    raise AssertionError(f"the operator stopped: {result.exception!r}\n{result.output[-4000:]}")


def prepare_namespace(runner: Any, control_plane: Any, namespace: str) -> str:
    """A test namespace for pipelines: the operator still alive, the restricted Pod Security profile,
    and the PrivateModel `out` the pipelines write to."""
    assert_alive(runner)
    restrict(control_plane, namespace)
    control_plane.request("POST", MODELS.format(namespace), private_model())
    return namespace


def fire_cronjob(cluster: Any, cronjob: dict[str, Any], when: datetime) -> None:
    """What the CronJob controller does at a firing: a Job from the template, owned by the CronJob."""
    template = cronjob["spec"]["jobTemplate"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{cronjob['metadata']['name']}-{int(when.timestamp()) // 60}",
            "labels": template["metadata"]["labels"],
            "annotations": {
                "batch.kubernetes.io/cronjob-scheduled-timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ")
            },
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": cronjob["metadata"]["name"],
                    "uid": cronjob["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": template["spec"],
    }
    cluster.request("POST", f"/apis/batch/v1/namespaces/{cronjob['metadata']['namespace']}/jobs", job)


def set_pytorchjob_condition(cluster: Any, path: str, type_: str, reason: str) -> None:
    """What the training operator does: a condition on the PyTorchJob at `path`'s status."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": reason,
        "lastTransitionTime": now,
        "lastUpdateTime": now,
    }
    cluster.request(
        "PATCH",
        f"{path}/status",
        {"status": {"conditions": [condition]}},
        content_type="application/merge-patch+json",
    )


def restrict(control_plane: Any, namespace: str) -> None:
    """Enforce the restricted Pod Security profile: every run pod must still be admitted."""
    control_plane.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}",
        {"metadata": {"labels": RESTRICTED}},
        content_type="application/merge-patch+json",
    )


def private_model(name: str = "out") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PrivateModel",
        "metadata": {"name": name},
        "spec": {
            "title": "Output",
            "storage": {"s3": {"connection": {"name": "datahub"}, "bucket": "models", "key": f"{name}/"}},
        },
    }


def message(**fields: Any) -> str:
    return TerminationMessage(**fields).model_dump_json(by_alias=True, exclude_none=True)


def fake(exit_code: int = 0, term: str | None = None, duration: str | None = None) -> dict[str, Any]:
    """Labels and annotations that make kwok end a pod (tests/support/kwok/pod-fail.yaml)."""
    annotations = {}
    if term is not None:
        annotations["kaizen.dev/fake-termination-message"] = term
    if duration is not None:
        annotations["kaizen.dev/fake-duration"] = duration
    return {"labels": {"kaizen.dev/fake-exit-code": str(exit_code)}, "annotations": annotations}


PREFLIGHT_OK = fake(0, message(phase="Succeeded", plan=PLAN))
TRAIN_OK = fake(0, message(phase="Succeeded", metrics={"trainTotalLoss": 0.42}, globalStep=6))
BAD_RECORDS = fake(
    2,
    message(
        phase="Failed",
        reason="DataInvalid",
        message="2 of 5 records are invalid",
        plan=PreflightPlan(
            records=5,
            usable_records=3,
            skipped_records=2,
            first_problems=[
                RecordProblem(index=1, reason="missing field 'instruction'"),
                RecordProblem(index=4, reason="output is empty"),
            ],
        ),
    ),
)


def pipeline(
    name: str,
    *,
    preflight: dict[str, Any] | None = None,
    workload: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(S3_SFT_SPEC) | spec
    fakes = {"preflight": preflight or PREFLIGHT_OK, "workload": workload or TRAIN_OK}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTunePipeline",
        "metadata": {"name": name, "annotations": {"kaizen.dev/fake-pods": json.dumps(fakes)}},
        "spec": body,
    }


def get_pipeline(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    return cluster.request("GET", f"{PIPELINES.format(namespace)}/{name}")  # type: ignore[no-any-return]


def wait_pipeline(
    cluster: Any, namespace: str, name: str, check: Callable[[dict[str, Any]], Any], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj = get_pipeline(cluster, namespace, name)
        if check(obj):
            return obj
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: condition not met in {timeout}s; status: {obj.get('status')}")
        time.sleep(0.25)


def runs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("runs") or [])


def first_run_phase(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: bool(runs(obj)) and runs(obj)[-1].get("phase") == phase


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def jobs(cluster: Any, namespace: str, selector: str) -> list[dict[str, Any]]:
    answer = cluster.request(
        "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs", query={"labelSelector": selector}
    )
    return list(answer["items"])


def pods(cluster: Any, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    answer = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": selector})
    return list(answer["items"])


def requests_gpu(pod_or_template_spec: dict[str, Any]) -> bool:
    for container in pod_or_template_spec.get("containers") or []:
        resources = container.get("resources") or {}
        if any("nvidia.com/gpu" in (resources.get(k) or {}) for k in ("requests", "limits")):
            return True
    return False


def make_version_ready(cluster: Any, ns: str, model: str, version: str) -> None:
    """What the registry's scan does once the version's files are in storage (its retries write too)."""
    path = f"{MODELS.format(ns)}/{model}"
    deadline = time.monotonic() + 30
    while True:
        current = cluster.request("GET", path)
        versions = (current.get("status") or {}).get("versions") or []
        ready = [{**v, "ready": True} if v["name"] == version else v for v in versions]
        body = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "status": {"versions": ready},
        }
        try:
            if ready != versions:
                cluster.request("PATCH", f"{path}/status", body, content_type="application/merge-patch+json")
                return
        except ApiError as err:
            if err.status != 409:
                raise
        assert time.monotonic() < deadline, f"{model}: version {version} never made ready"
        time.sleep(0.25)
