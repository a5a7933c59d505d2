"""What an EvalJob's run leaves when it ends, through the controller on the real control plane: the
token Secret goes (the ConfigMap stays for inspection), and a mail asked for after the end still
carries the failure's message. kwok ends the pods; mail goes to an SMTP server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email import message_from_string, policy
from email.message import EmailMessage
from typing import Any

import pytest
from ftp_support import conditions, fake, in_process_operator, message
from kaizen_api.base import GROUP, VERSION
from kaizen_operator.eval_runs import run_object_name
from kaizen_operator.naming import ChildNames
from support.smtp import smtp_secret

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
EVALJOBS = f"/apis/{GROUP}/{VERSION}/namespaces/{{}}/evaljobs"
MERGE = "application/merge-patch+json"
FAILED = fake(2, message(phase="Failed", reason="DataNotStaged", message="gsm8k is not staged"))


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[Any]:
    with in_process_operator(control_plane):
        yield


@pytest.fixture
def ns(operator, control_plane, namespace, smtp) -> str:
    control_plane.request("POST", f"/api/v1/namespaces/{namespace}/secrets", smtp_secret(smtp[1]))
    return namespace


def parse(text: str) -> EmailMessage:
    return message_from_string(text, policy=policy.default)  # type: ignore[return-value]


def harness_job(name: str) -> dict[str, Any]:
    """An lm-eval EvalJob whose pod kwok fails with the runner's message (no runner runs)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalJob",
        "metadata": {"name": name, "annotations": {"kaizen.dev/fake-pods": json.dumps({"workload": FAILED})}},
        "spec": {
            "displayName": name,
            "model": {"catalog": "Qwen2.5-0.5B-Instruct"},
            "suite": "lm-eval-harness",
            "tasks": ["gsm8k"],
            "resources": {"gpusPerNode": 1},
        },
    }


def wait(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {what}")
        time.sleep(0.3)
    return found


def failed(cluster: Any, path: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        obj = cluster.request("GET", path)
        return obj if (obj.get("status") or {}).get("phase") == "Failed" else None

    return wait(ended, f"{path} Failed")  # type: ignore[no-any-return]


def test_an_ended_run_s_token_secret_goes_and_its_config_map_stays(ns, control_plane) -> None:
    control_plane.request("POST", EVALJOBS.format(ns), harness_job("ends"))
    path = f"{EVALJOBS.format(ns)}/ends"
    job = failed(control_plane, path)
    names = ChildNames.of(run_object_name("ends", 1))
    secret = f"/api/v1/namespaces/{ns}/secrets/{names.token_secret}"

    def secret_gone() -> bool:
        found = control_plane.request("GET", secret, missing_ok=True)
        return found is None or bool(found["metadata"].get("deletionTimestamp"))

    wait(secret_gone, f"the ended run's Secret {names.token_secret} deleted", timeout=30)
    assert control_plane.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{names.config_map}")

    # Level-based: a later pass (here: a spec edit) that finds the ended run's Secret deletes it too,
    # as it would one an earlier operator left.
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalJob",
        "name": "ends",
        "uid": job["metadata"]["uid"],
    }
    left = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": names.token_secret, "ownerReferences": [owner]},
    }
    wait(lambda: control_plane.request("GET", secret, missing_ok=True) is None, "the Secret gone", timeout=30)
    control_plane.request("POST", f"/api/v1/namespaces/{ns}/secrets", left)
    control_plane.request("PATCH", path, {"spec": {"description": "edited"}}, content_type=MERGE)
    wait(secret_gone, "the leftover Secret deleted by a later pass", timeout=30)


def test_a_mail_asked_for_after_the_run_ended_carries_its_message(ns, control_plane, smtp) -> None:
    control_plane.request("POST", EVALJOBS.format(ns), harness_job("late"))
    path = f"{EVALJOBS.format(ns)}/late"
    assert failed(control_plane, path)["status"]["message"] == "gsm8k is not staged"
    notification = {"spec": {"notification": {"emails": ["ml-team@example.com"]}}}
    control_plane.request("PATCH", path, notification, content_type=MERGE)

    def notified() -> dict[str, Any] | None:
        cond = conditions(control_plane.request("GET", path)).get("Notified")
        return cond if cond is not None and cond["reason"] != "Sending" else None

    cond = wait(notified, "Notified settled")
    assert (cond["status"], cond["reason"]) == ("True", "Sent"), cond
    mails = [m for m in map(parse, smtp[0].messages) if "late-1" in m["Subject"]]
    assert len(mails) == 1, smtp[0].messages
    body = mails[0].get_content()
    assert "(DataNotStaged)" in body and "gsm8k is not staged" in body, body
