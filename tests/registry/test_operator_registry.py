"""The registry against the real API server and the real S3 server, with the operator in-process:
versions uploaded to S3 appear in the status; runs' outputs become ready; shares are RBAC that the API
server enforces (impersonated SelfSubjectAccessReviews); the allow-list becomes a bucket policy.
Deletion is in test_registry_delete.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kaizen_api.base import GROUP
from kaizen_operator.kube import ApiError, Kube

from registry.helpers import PM, condition, getter, model, publish_like_the_runner, upload, versions_of, wait

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


def test_versions_in_storage_appear_with_sizes_files_readiness_and_tags(
    operator, kube, namespace, secret, s3_server, s3_bucket, tiny_models, tmp_path
) -> None:
    client = s3_server.client()
    root = "models/registry"
    upload(client, tiny_models["llama"], s3_bucket, f"{root}/v1")
    upload(
        client, tiny_models["llava"], s3_bucket, f"{root}/v2-incomplete", skip=frozenset({"tokenizer.json"})
    )
    run = publish_like_the_runner(tiny_models["qwen2"], tmp_path / "ft_Qwen2_20250508124054")
    upload(client, run, s3_bucket, f"{root}/{run.name}")
    upload(client, run, s3_bucket, f"{root}/mid-upload", skip=frozenset({"manifest.json"}))
    upload(client, tiny_models["llama"], s3_bucket, f"{root}/checkpoints/ft_x/checkpoint-2")
    upload(client, tiny_models["llama"], s3_bucket, f"{root}/.checkpoints/ft_x/checkpoint-2")
    kube.request(
        "POST",
        PM.format(ns=namespace),
        model("registry", s3_bucket, baseModel="Llama-3.2-1B", ipAllowList=["10.0.0.0/8"]),
    )
    get = getter(kube, namespace, "registry")
    obj = wait(get, lambda o: len(versions_of(o)) == 4, "four versions")
    versions = versions_of(obj)
    assert set(versions) == {"v1", "v2-incomplete", "ft_Qwen2_20250508124054", "mid-upload"}

    v1 = versions["v1"]
    local = {p.name: p.stat().st_size for p in tiny_models["llama"].iterdir()}
    assert (v1["status"], v1["ready"], v1["fileCount"]) == ("ready", True, len(local))
    assert {f["name"]: f["sizeBytes"] for f in v1["files"]} == local
    assert v1["sizeBytes"] == sum(local.values()) and all(f["modified"] for f in v1["files"])
    assert v1["tags"]["family"] == "Llama" and v1["tags"]["instructionTuned"] is True

    incomplete = versions["v2-incomplete"]
    assert (incomplete["status"], incomplete["ready"]) == ("created", False)
    assert incomplete["missing"] == ["tokenizer.json (or tokenizer.model, vocab.json + merges.txt)"]
    assert incomplete["tags"]["type"] == "VLM"

    assert versions["ft_Qwen2_20250508124054"]["ready"] is True
    assert versions["ft_Qwen2_20250508124054"]["tags"]["family"] == "Qwen2"
    assert versions["mid-upload"]["status"] == "uploading"

    status = obj["status"]
    assert status["versionCount"] == 4 and status["readyVersionCount"] == 2
    assert (
        status["latestVersion"]
        == max((v for v in versions.values() if v["ready"]), key=lambda v: v["index"])["name"]
    )
    assert status["storageBytes"] == sum(v["sizeBytes"] for v in versions.values())
    assert condition(obj, "Ready")["status"] == "True"
    allow = condition(obj, "IPAllowList")
    assert (allow["status"], allow["reason"]) == ("False", "NotEnforced"), "rclone keeps no bucket policy"

    family = obj["metadata"]["labels"]["kaizen.dev/family"]
    found = kube.request(
        "GET", PM.format(ns=namespace), query={"labelSelector": f"kaizen.dev/family={family}"}
    )
    assert [o["metadata"]["name"] for o in found["items"]] == ["registry"]
    assert obj["metadata"]["labels"]["kaizen.dev/base-model"] == "llama-3.2-1b"

    # The upload finishes; a rescan (the annotation) sees it at once.
    client.upload_file(str(run / "manifest.json"), s3_bucket, f"{root}/mid-upload/manifest.json")
    patch = {"metadata": {"annotations": {"kaizen.dev/rescan": "1"}}}
    kube.request(
        "PATCH", f"{PM.format(ns=namespace)}/registry", patch, content_type="application/merge-patch+json"
    )
    wait(get, lambda o: versions_of(o)["mid-upload"]["ready"], "mid-upload ready")


def test_a_version_recorded_by_a_run_becomes_ready_when_its_output_lands(
    operator, kube, namespace, secret, s3_server, s3_bucket, tiny_models, tmp_path
) -> None:
    kube.request("POST", PM.format(ns=namespace), model("tuned", s3_bucket))
    get = getter(kube, namespace, "tuned")
    wait(get, lambda o: (o.get("status") or {}).get("lastScanTime"), "first scan")
    # What the FineTunePipeline controller does when a run starts: merge an entry by version name.
    entry = {
        "index": 0,
        "name": "ft_Llama_20260101000000",
        "status": "training",
        "pipeline": "p",
        "run": "ft_Llama_20260101000000",
    }
    kube.request(
        "PATCH",
        f"{PM.format(ns=namespace)}/tuned/status",
        {"status": {"versions": [entry]}},
        content_type="application/merge-patch+json",
    )
    obj = wait(
        get, lambda o: versions_of(o).get(entry["name"], {}).get("scannedTime"), "recorded version scanned"
    )
    assert versions_of(obj)[entry["name"]]["status"] == "training"
    run = publish_like_the_runner(tiny_models["llama"], tmp_path / entry["name"])
    upload(
        s3_server.client(), run, s3_bucket, f"models/tuned/{entry['name']}", skip=frozenset({"manifest.json"})
    )
    kube.request(
        "PATCH",
        f"{PM.format(ns=namespace)}/tuned",
        {"metadata": {"annotations": {"kaizen.dev/rescan": "a"}}},
        content_type="application/merge-patch+json",
    )
    obj = wait(get, lambda o: versions_of(o)[entry["name"]].get("fileCount"), "files seen")
    assert versions_of(obj)[entry["name"]]["status"] == "uploading", "files without the manifest"
    s3_server.client().upload_file(
        str(run / "manifest.json"), s3_bucket, f"models/tuned/{entry['name']}/manifest.json"
    )
    kube.request(
        "PATCH",
        f"{PM.format(ns=namespace)}/tuned",
        {"metadata": {"annotations": {"kaizen.dev/rescan": "b"}}},
        content_type="application/merge-patch+json",
    )
    obj = wait(get, lambda o: versions_of(o)[entry["name"]]["ready"], "run output ready")
    version = versions_of(obj)[entry["name"]]
    assert (version["status"], version["pipeline"], obj["status"]["latestVersion"]) == (
        "ready",
        "p",
        entry["name"],
    )


@contextmanager
def as_user(kube: Kube, user: str) -> Iterator[Kube]:
    """The same API server and credentials, impersonating `user`."""
    from kubernetes import client

    api = client.ApiClient(kube.api.configuration, header_name="Impersonate-User", header_value=user)
    try:
        yield Kube(api)
    finally:
        api.close()


def can(kube: Kube, user: str, namespace: str, verb: str, name: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": GROUP,
                "resource": "privatemodels",
                "name": name,
            }
        },
    }
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    with as_user(kube, user) as impersonated:
        result = impersonated.request("POST", path, review)
    return bool(result["status"]["allowed"])


def test_a_share_lets_that_user_get_this_model_only_until_it_is_removed(
    operator, kube, namespace, secret, s3_bucket
) -> None:
    share = {"email": "ana@example.com", "tenant": "team-a", "role": "viewer"}
    kube.request("POST", PM.format(ns=namespace), model("shared", s3_bucket, sharing=[share]))
    kube.request("POST", PM.format(ns=namespace), model("other", s3_bucket))
    get = getter(kube, namespace, "shared")
    obj = wait(get, lambda o: (o.get("status") or {}).get("shares"), "shares in status")
    granted = obj["status"]["shares"][0]
    assert (granted["email"], granted["role"], granted["user"]) == (
        "ana@example.com",
        "viewer",
        "ana@example.com",
    )
    assert granted["invitedTime"]
    user = "ana@example.com"
    assert can(kube, user, namespace, "get", "shared")
    assert not can(kube, user, namespace, "get", "other")
    assert not can(kube, user, namespace, "update", "shared"), "a viewer cannot edit"
    with as_user(kube, user) as impersonated:
        with pytest.raises(ApiError, match="403"):
            impersonated.request("GET", f"{PM.format(ns=namespace)}/other")
        assert impersonated.request("GET", f"{PM.format(ns=namespace)}/shared")

    editor = {**share, "role": "editor"}
    kube.request(
        "PATCH",
        f"{PM.format(ns=namespace)}/shared",
        {"spec": {"sharing": [editor]}},
        content_type="application/merge-patch+json",
    )
    obj = wait(get, lambda o: o["status"]["shares"][0]["role"] == "editor", "role updated")
    assert obj["status"]["shares"][0]["invitedTime"] == granted["invitedTime"], "still the first invite"
    wait(lambda: can(kube, user, namespace, "patch", "shared"), bool, "editor may patch")

    kube.request(
        "PATCH",
        f"{PM.format(ns=namespace)}/shared",
        {"spec": {"sharing": None}},
        content_type="application/merge-patch+json",
    )
    wait(get, lambda o: not o["status"].get("shares"), "share removed from status")
    assert not can(kube, user, namespace, "get", "shared")
    roles = kube.request("GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles")
    assert roles["items"] == []


def patch_as(kube: Kube, user: str, path: str, body: dict, dry_run: bool = False) -> dict:
    with as_user(kube, user) as impersonated:
        query = {"dryRun": "All"} if dry_run else None
        return impersonated.request("PATCH", path, body, query, "application/merge-patch+json")


def test_an_editor_share_may_edit_the_model_but_only_an_owner_may_change_its_sharing(
    operator, kube, namespace, secret, s3_bucket
) -> None:
    editor = {"email": "ed@example.com", "tenant": "t", "role": "editor"}
    owner = {"email": "olga@example.com", "tenant": "t", "role": "owner"}
    kube.request("POST", PM.format(ns=namespace), model("guarded", s3_bucket, sharing=[editor, owner]))
    get, path = getter(kube, namespace, "guarded"), f"{PM.format(ns=namespace)}/guarded"
    wait(get, lambda o: len((o.get("status") or {}).get("shares") or []) == 2, "both shares granted")
    wait(lambda: can(kube, owner["email"], namespace, "share", "guarded"), bool, "the owner may share")
    assert can(kube, editor["email"], namespace, "patch", "guarded")
    assert not can(kube, editor["email"], namespace, "share", "guarded")

    patch_as(kube, editor["email"], path, {"spec": {"title": "Renamed by the editor"}})
    assert get()["spec"]["title"] == "Renamed by the editor"

    def refusal(sharing: list | None, dry_run: bool = False) -> ApiError | None:
        try:
            patch_as(kube, editor["email"], path, {"spec": {"sharing": sharing}}, dry_run)
        except ApiError as err:
            return err
        return None

    # The API server loads admission policies asynchronously (a dry run changes nothing meanwhile).
    wait(lambda: refusal([editor], dry_run=True), bool, "the editor refused by the sharing policy", 15)
    for sharing in ([{**editor, "role": "owner"}, owner], [editor], None):
        refused = refusal(sharing)
        assert refused is not None and refused.status == 403, f"{sharing}: {refused}"
        assert "spec.sharing of PrivateModel guarded" in refused.message
        assert "needs verb share" in refused.message
    assert get()["spec"]["sharing"] == [editor, owner], "the editor's changes of sharing were refused"

    patch_as(kube, owner["email"], path, {"spec": {"sharing": [{**editor, "role": "viewer"}, owner]}})
    wait(
        lambda: not can(kube, editor["email"], namespace, "patch", "guarded"),
        bool,
        "the owner made the editor a viewer",
    )


def test_upload_to_a_private_model_through_the_kubeconfig_then_download_it(
    operator, control_plane, kube, namespace, secret, s3_server, s3_bucket, model_copy, tmp_path
) -> None:
    from kaizen_runner.cli import main

    kube.request("POST", PM.format(ns=namespace), model("workstation", s3_bucket))
    get = getter(kube, namespace, "workstation")
    wait(get, lambda o: (o.get("status") or {}).get("lastScanTime"), "first scan")
    folder = model_copy("qwen2")
    common = ["-n", namespace, "--kubeconfig", str(control_plane.kubeconfig), "--no-progress"]
    assert main(["model", "upload", str(folder), "--to", "pm/workstation", "--version", "v1", *common]) == 0
    assert main(["model", "download", "pm/workstation", str(tmp_path / "early"), *common]) == 2, (
        "not scanned yet"
    )
    patch = {"metadata": {"annotations": {"kaizen.dev/rescan": "uploaded"}}}
    kube.request(
        "PATCH", f"{PM.format(ns=namespace)}/workstation", patch, content_type="application/merge-patch+json"
    )
    obj = wait(get, lambda o: versions_of(o).get("v1", {}).get("ready"), "uploaded version ready")
    assert versions_of(obj)["v1"]["tags"]["family"] == "Qwen2"
    dest = tmp_path / "dl"
    assert main(["model", "download", "pm/workstation", str(dest), *common]) == 0
    assert (dest / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


def test_the_allow_list_is_applied_as_a_bucket_policy_and_removed_when_emptied(
    operator, kube, namespace, policy_s3
) -> None:

    from kaizen_operator.registry.policy import statement_id
    from kaizen_runner.storage import S3Connection

    connection = {
        "AWS_ENDPOINT_URL": policy_s3,
        "AWS_ACCESS_KEY_ID": "KAIZENTESTACCESSKEY1",
        "AWS_SECRET_ACCESS_KEY": "x" * 40,
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "datahub"}, "stringData": connection}
    kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)
    client = S3Connection.from_secret(secret).client()
    bucket = f"policy-{namespace[-6:]}"
    client.create_bucket(Bucket=bucket)
    other = {
        "Sid": "Unrelated",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    client.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [other]})
    )
    kube.request(
        "POST", PM.format(ns=namespace), model("guarded", bucket, ipAllowList=["10.0.0.0/8", "192.168.0.1"])
    )
    get = getter(kube, namespace, "guarded")
    obj = wait(
        get,
        lambda o: any(c["type"] == "IPAllowList" for c in (o.get("status") or {}).get("conditions") or []),
        "IPAllowList",
    )
    assert (condition(obj, "IPAllowList")["status"], condition(obj, "IPAllowList")["reason"]) == (
        "True",
        "PolicyApplied",
    )
    policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            other,
            {
                "Sid": statement_id(namespace, "guarded"),
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": [f"arn:aws:s3:::{bucket}/models/guarded/*"],
                "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.1/32"]}},
            },
        ],
    }
    kube.request(
        "PATCH",
        f"{PM.format(ns=namespace)}/guarded",
        {"spec": {"ipAllowList": None}},
        content_type="application/merge-patch+json",
    )
    wait(get, lambda o: condition(o, "IPAllowList")["reason"] == "Empty", "allow-list emptied")
    assert json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"] == [other]


def test_five_thousand_files_in_one_version_on_the_api_server(
    operator, kube, namespace, secret, s3_server, s3_bucket, tiny_models
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = s3_server.client()
    upload(client, tiny_models["llama"], s3_bucket, "models/many/v1")
    names = [
        f"models/many/v1/extra/part-{i:05d}.bin"
        for i in range(5000 - len(list(tiny_models["llama"].iterdir())))
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=s3_bucket, Key=key, Body=b"x"), names))
    kube.request("POST", PM.format(ns=namespace), model("many", s3_bucket))
    get = getter(kube, namespace, "many")
    obj = wait(get, lambda o: versions_of(o).get("v1", {}).get("fileCount"), "scanned", timeout=120)
    version = versions_of(obj)["v1"]
    assert version["fileCount"] == 5000 and len(version["files"]) == 50 and version["ready"]
    assert len(json.dumps(obj).encode()) < 256 * 1024
    listing = json.loads(
        client.get_object(Bucket=s3_bucket, Key="models/many/.kaizen/listings/v1.json")["Body"].read()
    )
    assert (
        len(listing) == 5000
        and version["filesListing"] == f"s3://{s3_bucket}/models/many/.kaizen/listings/v1.json"
    )
