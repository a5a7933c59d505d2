"""Shares against the real API server, without the operator: `sync_shares` itself, on the state a model
deleted and made again under its name leaves before garbage collection runs."""

from __future__ import annotations

import pytest
from kaizen_api.privatemodel import PrivateModelSpec
from kaizen_operator.kube import Kube
from kaizen_operator.registry import rbac
from kaizen_operator.registry.sync import RBAC, sync_shares, user_format

from registry.helpers import PM, model

pytestmark = pytest.mark.cluster
INVITED = "2020-01-01T00:00:00Z"
SHARE = {"email": "ana@example.com", "tenant": "team-a", "role": "viewer"}


def test_a_share_left_by_an_earlier_model_of_the_name_passes_to_the_new_one(
    kube: Kube, namespace: str
) -> None:
    """The earlier model's Role and RoleBinding (owned by it; here by a ConfigMap that stays, so the
    garbage collector does not race the test) would be kept as they are, still owned by it, and go with
    it: the new model's status would list a share that no longer exists."""
    body = kube.request("POST", PM.format(ns=namespace), model("reborn", "bucket", sharing=[SHARE]))
    spec = PrivateModelSpec.model_validate(body["spec"])
    earlier = kube.request(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "earlier"}}
    )
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "earlier", "uid": earlier["metadata"]["uid"]}
    share = spec.sharing[0]
    left = (  # the earlier model's shares, as its last sync left them
        ("roles", rbac.share_role(body, share, INVITED)),
        ("rolebindings", rbac.share_binding(body, share, INVITED, user_format())),
    )
    for plural, manifest in left:
        manifest["metadata"]["ownerReferences"] = [owner]
        kube.request("POST", RBAC.format(namespace=namespace, plural=plural), manifest)

    shares = sync_shares(kube, body, spec)
    assert shares[0]["invitedTime"] != INVITED, "the new model's invite is its own"
    for plural in ("roles", "rolebindings"):
        obj = kube.request(
            "GET", f"{RBAC.format(namespace=namespace, plural=plural)}/{shares[0]['roleName']}"
        )
        assert [ref["uid"] for ref in obj["metadata"]["ownerReferences"]] == [body["metadata"]["uid"]]
