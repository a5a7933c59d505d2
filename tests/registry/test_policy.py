"""The IP allow-list's bucket policy: the exact document, merged with the bucket's other statements and
read back through boto3 from an S3 server that stores policies (moto's server; it does not enforce
`aws:SourceIp`, so enforcement itself is not tested here). The rclone server of the other S3 tests keeps
no policies at all, which the registry must report rather than claim an allow-list it cannot apply."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from kaizen_operator.registry.policy import (
    allow_list_statement,
    apply_allow_list,
    merged_policy,
    statement_id,
)
from kaizen_runner.storage import S3Connection

from registry.helpers import model

OTHER = {
    "Sid": "PublicDocs",
    "Effect": "Allow",
    "Principal": "*",
    "Action": "s3:GetObject",
    "Resource": "arn:aws:s3:::models/docs/*",
}
SID = statement_id("team-a", "support-assistant")


def test_the_statement_denies_downloads_from_outside_the_list() -> None:
    assert allow_list_statement(SID, "models", "support-assistant/", ["10.0.0.0/8", "192.168.0.7"]) == {
        "Sid": "KaizenPrivateModelteamasupportassistant" + SID[-12:],
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
        "Resource": ["arn:aws:s3:::models/support-assistant/*"],
        "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.7/32"]}},
    }


def test_merge_keeps_other_statements_and_removes_only_its_own() -> None:
    ours = allow_list_statement(SID, "models", "m", ["10.0.0.0/8"])
    current = {"Version": "2012-10-17", "Id": "corp", "Statement": [OTHER]}
    merged = merged_policy(current, SID, ours)
    assert merged == {"Version": "2012-10-17", "Id": "corp", "Statement": [OTHER, ours]}
    replaced = allow_list_statement(SID, "models", "m", ["172.16.0.0/12"])
    assert merged_policy(merged, SID, replaced)["Statement"] == [OTHER, replaced]
    assert merged_policy(merged, SID, None) == current
    assert merged_policy({"Statement": [ours]}, SID, None) is None, "an empty policy is deleted"


@pytest.fixture
def policy_client(policy_s3: str):
    client = S3Connection(
        endpoint_url=policy_s3, access_key_id="KAIZENTESTACCESSKEY1", secret_access_key="x" * 40
    ).client()
    client.create_bucket(Bucket="models")
    yield client
    client.delete_bucket_policy(Bucket="models")


def read_back(client) -> dict | None:
    try:
        return json.loads(client.get_bucket_policy(Bucket="models")["Policy"])
    except client.exceptions.ClientError:
        return None


def test_apply_and_remove_through_boto3(policy_client) -> None:
    policy_client.put_bucket_policy(
        Bucket="models", Policy=json.dumps({"Version": "2012-10-17", "Statement": [OTHER]})
    )
    ours = allow_list_statement(SID, "models", "m", ["10.0.0.0/8"])
    outcome = apply_allow_list(policy_client, "models", SID, ours)
    assert (outcome.enforced, outcome.changed) == (True, True)
    assert read_back(policy_client) == {"Version": "2012-10-17", "Statement": [OTHER, ours]}
    assert apply_allow_list(policy_client, "models", SID, ours).changed is False
    apply_allow_list(policy_client, "models", SID, None)
    assert read_back(policy_client) == {"Version": "2012-10-17", "Statement": [OTHER]}


def test_an_emptied_list_deletes_a_policy_that_held_only_it(policy_client) -> None:
    apply_allow_list(policy_client, "models", SID, allow_list_statement(SID, "models", "m", ["10.0.0.1"]))
    assert read_back(policy_client) is not None
    apply_allow_list(policy_client, "models", SID, None)
    assert read_back(policy_client) is None


class ReadTogether:
    """A boto3 client whose first read of the bucket policy waits (a second at most) until another edit
    has read it too: two models of one bucket reconciled at once by kopf's handler threads."""

    def __init__(self, client: Any, barrier: threading.Barrier) -> None:
        self.client, self.barrier, self.first = client, barrier, True

    def get_bucket_policy(self, **kwargs: Any) -> Any:
        try:
            return self.client.get_bucket_policy(**kwargs)
        finally:
            if self.first:
                self.first = False
                with contextlib.suppress(threading.BrokenBarrierError):
                    self.barrier.wait(timeout=1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_two_models_of_one_bucket_applied_at_once_both_keep_their_statement(policy_client) -> None:
    barrier = threading.Barrier(2)
    wanted = {
        sid: allow_list_statement(sid, "models", name, [address])
        for name, address in (("model-a", "10.0.0.1"), ("model-b", "10.0.0.2"))
        if (sid := statement_id("team-a", name))
    }
    outcomes = {}

    def apply(sid: str) -> None:
        outcomes[sid] = apply_allow_list(ReadTogether(policy_client, barrier), "models", sid, wanted[sid])

    threads = [threading.Thread(target=apply, args=(sid,)) for sid in wanted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(o.enforced for o in outcomes.values()), outcomes
    assert {s["Sid"]: s for s in read_back(policy_client)["Statement"]} == wanted


def test_a_resync_puts_back_a_statement_another_writer_dropped(policy_client, monkeypatch) -> None:
    import kopf
    from kaizen_operator.handlers import privatemodel as handlers

    body = model("support-assistant", "models", ipAllowList=["10.0.0.1"])
    body["metadata"].update(namespace="team-a", generation=1)
    body["status"] = {"lastScanTime": datetime.now(UTC).isoformat(), "phase": "Ready", "conditions": []}
    sid = statement_id("team-a", "support-assistant")
    ours = allow_list_statement(sid, "models", "models/support-assistant/", ["10.0.0.1"])
    policy_client.put_bucket_policy(
        Bucket="models", Policy=json.dumps({"Version": "2012-10-17", "Statement": [OTHER]})
    )  # another writer replaced the policy after the model's reconcile applied its statement
    # sync_allow_list with the test server's client in place of the one from the connection Secret
    monkeypatch.setattr(
        handlers, "sync_allow_list", lambda _b, _s, _k: apply_allow_list(policy_client, "models", sid, ours)
    )
    monkeypatch.setattr(handlers, "default_kube", lambda: None)
    patch = kopf.Patch()
    handlers.resync(body=kopf.Body(body), patch=patch)
    assert read_back(policy_client) == {"Version": "2012-10-17", "Statement": [OTHER, ours]}
    (condition,) = patch["status"]["conditions"]
    assert (condition["type"], condition["reason"]) == ("IPAllowList", "PolicyApplied")


@pytest.mark.s3
def test_a_server_without_policies_is_reported_as_not_enforcing(s3_server, s3_bucket) -> None:
    outcome = apply_allow_list(
        s3_server.client(), s3_bucket, SID, allow_list_statement(SID, s3_bucket, "m", ["10.0.0.1"])
    )
    assert outcome.enforced is False and "does not keep bucket policies" in outcome.message
