"""Helpers of the Helm chart's cluster tests: the operator run under the chart's ServiceAccount, the
paths it is driven through, what the account may do, and the Secrets it may write and not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from ftp_support import (
    GATE,
    MODELS,
    PIPELINES,
    conditions,
    fake,
    fire_cronjob,
    first_run_phase,
    message,
    operator_env,
    pipeline,
    private_model,
    runs,
    wait_pipeline,
)
from kaizen_api.base import GROUP, VERSION
from kaizen_local.cluster import wait_for
from kaizen_operator.eval_workload import build_eval_token_secret
from kaizen_operator.kube import ApiError, Kube
from kaizen_operator.naming import ChildNames
from kaizen_operator.workloads import build_token_secret

EVALJOBS = f"/apis/{GROUP}/{VERSION}/namespaces/{{}}/evaljobs"
RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/{}"
# A 403 of any kind; a namespace being deleted (other tests' leftovers, seen by a cluster-wide operator)
# also answers 403, for want of a namespace rather than of a permission.
FORBIDDEN = re.compile(r"\b403\b|forbidden|not enough permissions", re.IGNORECASE)
TERMINATING = "because it is being terminated"


def can(
    cluster: Any, release: dict[str, str], verb: str, resource: str, namespace: str = "", **more: str
) -> bool:
    """A SubjectAccessReview for the chart's ServiceAccount."""
    user = f"system:serviceaccount:{release['namespace']}:{release['account']}"
    groups = [
        "system:serviceaccounts",
        f"system:serviceaccounts:{release['namespace']}",
        "system:authenticated",
    ]
    attributes = {"verb": verb, "resource": resource, "namespace": namespace, **more}
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }
    answer = cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


@contextmanager
def as_user(cluster: Any, user: str) -> Iterator[Kube]:
    """The cluster's admin credentials impersonating `user` (Impersonate-User): what a person bound
    to some role may do, through the API server's own authorization and admission."""
    api = cluster.api_client()
    api.set_default_header("Impersonate-User", user)
    try:
        yield Kube(api)
    finally:
        api.close()


def may(kube: Kube, verb: str, resource: str, namespace: str) -> bool:
    """A SelfSubjectAccessReview on a Kaizen kind, as `kube`'s user."""
    attributes = {"verb": verb, "group": GROUP, "resource": resource, "namespace": namespace}
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    answer = kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


def user_secret(name: str) -> dict[str, Any]:
    """A Secret as a user makes it: no Kaizen labels."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}}


def token_secrets(ns: str) -> list[dict[str, Any]]:
    """A run's and an evaluation's token Secrets from the operator's own builders, without their owner
    references (the policy does not read them; an owner that does not exist would have the garbage
    collector delete the Secret during the test)."""
    owner = {"metadata": {"name": "pipe", "namespace": ns, "uid": "0"}}
    run = ChildNames.of("pipe-run-1")
    evaluation = SimpleNamespace(
        names=ChildNames.of("ev-run-1"), job_name="ev", config=SimpleNamespace(run_name="r")
    )
    evaljob = {"metadata": {"name": "ev", "namespace": ns, "uid": "0"}}
    built = [
        build_token_secret(run, owner, "t"),
        build_eval_token_secret(cast(Any, evaluation), evaljob, "t"),
    ]
    for body in built:
        del body["metadata"]["ownerReferences"]
    return built


def gated(name: str) -> dict[str, Any]:
    body = pipeline(name, evaluation=GATE)
    fakes = json.loads(body["metadata"]["annotations"]["kaizen.dev/fake-pods"])
    fakes["gate"] = fake(0, message(phase="Succeeded", results={"rougeL": 0.55}, resultsUri="s3://data/r"))
    body["metadata"]["annotations"]["kaizen.dev/fake-pods"] = json.dumps(fakes)
    return body


def make_ready(cluster: Any, ns: str, model: str, version: str) -> None:
    """What the registry's scan does once the version's files are in storage."""
    path = f"{MODELS.format(ns)}/{model}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = cluster.request("GET", path)
        versions = [
            {**v, "ready": True} if v["name"] == version else v for v in current["status"]["versions"]
        ]
        body = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "status": {"versions": versions},
        }
        try:
            cluster.request("PATCH", f"{path}/status", body, content_type="application/merge-patch+json")
            return
        except ApiError as err:
            if err.status != 409:
                raise
    raise AssertionError(f"{model}: version {version} never made ready")


def patch(cluster: Any, path: str, body: dict[str, Any]) -> None:
    cluster.request("PATCH", path, body, content_type="application/merge-patch+json")


@contextmanager
def operator_as(cp: Any, release: dict[str, str], tmp_path: Path, *args: str) -> Iterator[None]:
    """`kaizen-operator *args` with the release's settings file and its ServiceAccount's token alone;
    on leaving, its log must hold no refusal."""
    ns, account = release["namespace"], release["account"]
    kubeconfig = cp.kubeconfig_for_service_account(ns, account, tmp_path / "kubeconfig")
    config = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{account}")
    (tmp_path / "config.yaml").write_text(config["data"]["config.yaml"])
    env = {**os.environ, **operator_env(cp), "PYTHONUNBUFFERED": "1", "KAIZEN_OPERATOR_NAMESPACE": ns}
    env |= {"KUBECONFIG": str(kubeconfig), "KAIZEN_OPERATOR_CONFIG": str(tmp_path / "config.yaml")}
    del env["KAIZEN_PROGRESS_KEY"]  # the operator keeps its key in a Secret of its namespace, as deployed
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        command = [sys.executable, "-m", "kaizen_operator.main", *args]
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
        assert proc.poll() is None, log_path.read_text()[-4000:]
        assert cp.exists(f"/api/v1/namespaces/{ns}/secrets/kaizen-progress-key"), "the key Secret is made"
    finally:  # a missing permission also fails a wait: the log names it
        proc.terminate()
        proc.wait(timeout=30)
        lines = log_path.read_text().splitlines()
        denied = [line for line in lines if FORBIDDEN.search(line) and TERMINATING not in line]
        assert not denied, "\n".join(denied[:20])


def forbidden_shown(cp: Any, ns: str) -> list[str]:
    """Condition and Event messages of the namespace that tell of a 403."""
    shown = []
    for plural in ("finetunepipelines", "evaljobs", "privatemodels"):
        for obj in cp.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}")["items"]:
            for cond in conditions(obj).values():
                shown.append(f"{plural}/{obj['metadata']['name']} {cond['type']}: {cond.get('message')}")
    shown += [
        f"Event {e['reason']}: {e.get('message')}"
        for e in cp.request("GET", f"/api/v1/namespaces/{ns}/events")["items"]
    ]
    return [text for text in shown if FORBIDDEN.search(text)]


def drive(cp: Any, ns: str) -> None:
    """Every path of the operator that calls the API server, each to its end state."""
    # A gated pipeline: preflight and training Jobs, its version recorded, the gate EvalJob and its Job.
    cp.request("POST", PIPELINES.format(ns), gated("gate"))
    obj = wait_pipeline(
        cp,
        ns,
        "gate",
        lambda o: (runs(o) and runs(o)[0].get("evaluation") or {}).get("state") == "WaitingForVersion",
        120,
    )
    make_ready(cp, ns, "out", runs(obj)[0]["outputVersion"])
    obj = wait_pipeline(cp, ns, "gate", lambda o: runs(o)[0]["evaluation"].get("promoted") is not None, 120)
    assert runs(obj)[0]["evaluation"]["state"] == "Promoted"
    evaljob = cp.request("GET", f"{EVALJOBS.format(ns)}/{runs(obj)[0]['objectName']}-eval")
    assert evaljob["status"]["phase"] == "Succeeded"

    # Two nodes on PyTorchJob, cancelled while it runs: its children are deleted.
    long = fake(0, message(phase="Succeeded"), duration="10m")
    cp.request(
        "POST",
        PIPELINES.format(ns),
        pipeline("multi", workload=long, resources={"gpusPerNode": 1, "nodes": 2}),
    )
    obj = wait_pipeline(cp, ns, "multi", lambda o: runs(o) and runs(o)[0].get("jobKind") == "PyTorchJob", 120)
    patch(
        cp,
        f"{PIPELINES.format(ns)}/multi",
        {"metadata": {"annotations": {"kaizen.dev/cancel": runs(obj)[0]["name"]}}},
    )
    wait_pipeline(cp, ns, "multi", first_run_phase("Cancelled"), 60)

    # An Indexed Job run: its headless Service.
    cp.request(
        "POST",
        PIPELINES.format(ns),
        pipeline("idx", resources={"gpusPerNode": 1, "nodes": 2, "multiNodeBackend": "indexedjob"}),
    )
    wait_pipeline(cp, ns, "idx", first_run_phase("Succeeded"), 120)

    # A schedule: its CronJob, and a firing becomes a run.
    trigger = {"type": "schedule", "schedule": "0 3 * * *"}
    cp.request("POST", PIPELINES.format(ns), pipeline("cron", trigger=trigger))
    cronjobs = wait_for(
        lambda: cp.request("GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs")["items"], 60, what="CronJob"
    )
    fire_cronjob(cp, cronjobs[0], datetime(2026, 12, 1, 18, 0, tzinfo=UTC))
    wait_pipeline(cp, ns, "cron", lambda o: bool(runs(o)), 60)

    # Shares as Roles and RoleBindings: created, replaced on a change, deleted when gone; then the model goes.
    shares = [{"email": f"{u}@example.com", "tenant": "t", "role": "owner"} for u in ("ana", "bo")]
    model = private_model("shared")
    model["spec"]["sharing"] = shares
    cp.request("POST", MODELS.format(ns), model)

    def roles() -> list[dict[str, Any]]:
        query = {"labelSelector": "kaizen.dev/privatemodel=shared"}
        return list(cp.request("GET", RBAC.format(ns, "roles"), query=query)["items"])

    wait_for(lambda: len(roles()) == 2, 60, what="two share Roles")
    patch(cp, f"{MODELS.format(ns)}/shared", {"spec": {"sharing": [{**shares[0], "role": "viewer"}]}})
    wait_for(
        lambda: [r["rules"][0]["verbs"] for r in roles()] == [["get", "list", "watch"]],
        60,
        what="one viewer Role",
    )
    shared = cp.request("GET", f"{MODELS.format(ns)}/shared")
    assert conditions(shared)["Shared"]["status"] == "True"
    cp.request("DELETE", f"{MODELS.format(ns)}/shared")
    wait_for(lambda: not cp.exists(f"{MODELS.format(ns)}/shared"), 60, what="the model's delete handler")
