"""Deleting a PrivateModel against the real API server and S3, with the operator in-process: files are
kept or removed as deletionPolicy says, only with the confirmation annotation, and never while an
EvalJob uses the model."""

from __future__ import annotations

import time

import pytest
from kaizen_api.base import GROUP, VERSION
from kaizen_operator.kube import Kube

from registry.helpers import PM, condition, evaljob, getter, keys, model, upload, versions_of, wait

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


def delete(kube: Kube, namespace: str, name: str) -> None:
    kube.request("DELETE", f"{PM.format(ns=namespace)}/{name}")


def stored(s3_server, bucket: str, name: str) -> list[str]:
    return keys(s3_server.client(), bucket, f"models/{name}/")


def test_delete_with_retain_keeps_the_files(
    operator, kube, namespace, secret, s3_server, s3_bucket, tiny_models
) -> None:
    upload(s3_server.client(), tiny_models["llama"], s3_bucket, "models/kept/v1")
    kube.request("POST", PM.format(ns=namespace), model("kept", s3_bucket))
    get = getter(kube, namespace, "kept")
    wait(get, lambda o: versions_of(o).get("v1", {}).get("ready"), "scanned")
    delete(kube, namespace, "kept")
    wait(get, lambda o: o is None, "object deleted")
    assert len(stored(s3_server, s3_bucket, "kept")) == len(list(tiny_models["llama"].iterdir()))


def test_delete_needs_the_confirmation_then_removes_the_files(
    operator, kube, namespace, secret, s3_server, s3_bucket, tiny_models
) -> None:
    upload(s3_server.client(), tiny_models["llama"], s3_bucket, "models/gone/v1")
    upload(s3_server.client(), tiny_models["llama"], s3_bucket, "models/gone-sibling/v1")
    kube.request("POST", PM.format(ns=namespace), model("gone", s3_bucket, deletionPolicy="Delete"))
    get = getter(kube, namespace, "gone")
    wait(get, lambda o: versions_of(o).get("v1", {}).get("ready"), "scanned")
    delete(kube, namespace, "gone")
    obj = wait(
        get, lambda o: any(c["type"] == "Deleting" for c in o["status"]["conditions"]), "Deleting condition"
    )
    deleting = condition(obj, "Deleting")
    assert (deleting["status"], deleting["reason"]) == ("False", "ConfirmationMissing")
    assert "kaizen.dev/confirm-delete: gone" in deleting["message"]
    assert stored(s3_server, s3_bucket, "gone"), "no file removed without the confirmation"
    patch = {"metadata": {"annotations": {"kaizen.dev/confirm-delete": "gone"}}}
    kube.request(
        "PATCH", f"{PM.format(ns=namespace)}/gone", patch, content_type="application/merge-patch+json"
    )
    wait(get, lambda o: o is None, "object deleted", timeout=40)
    assert stored(s3_server, s3_bucket, "gone") == []
    assert stored(s3_server, s3_bucket, "gone-sibling"), "a sibling prefix is untouched"


def test_a_model_in_use_is_not_deleted(
    operator, kube, namespace, secret, s3_server, s3_bucket, tiny_models
) -> None:
    upload(s3_server.client(), tiny_models["llama"], s3_bucket, "models/busy/v1")
    busy = model("busy", s3_bucket, deletionPolicy="Delete")
    busy["metadata"]["annotations"] = {"kaizen.dev/confirm-delete": "busy"}
    kube.request("POST", PM.format(ns=namespace), busy)
    get = getter(kube, namespace, "busy")
    wait(get, lambda o: versions_of(o).get("v1", {}).get("ready"), "scanned")
    jobs = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/evaljobs"
    kube.request("POST", jobs, evaljob("uses-busy", s3_bucket, "busy"))
    wait(
        lambda: kube.request("GET", f"{jobs}/uses-busy"),
        lambda o: (o.get("status") or {}).get("phase") == "Running",
        "the EvalJob running",
        timeout=60,
    )
    delete(kube, namespace, "busy")
    obj = wait(get, lambda o: any(c["type"] == "InUse" for c in o["status"]["conditions"]), "InUse condition")
    in_use = condition(obj, "InUse")
    assert in_use["status"] == "True" and "EvalJob uses-busy" in in_use["message"]
    time.sleep(12)  # past a recheck of the pending deletion
    assert get() is not None and stored(s3_server, s3_bucket, "busy")
    kube.request("DELETE", f"{jobs}/uses-busy")
    wait(get, lambda o: o is None, "deleted once nothing uses it", timeout=60)
    assert stored(s3_server, s3_bucket, "busy") == []
