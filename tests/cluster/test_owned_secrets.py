"""The operator's ServiceAccount writes only the Secrets it owns (charts/kaizen/files/owned-secrets.yaml,
installed by the local cluster as it is, for the account of `helm install kaizen -n kaizen-system`).

Its RBAC cannot say so: a ClusterRole's `create` and `delete` on Secrets hold for any name in every
namespace. Here the account is given more than the chart grants (update too) in a test namespace, and
the admin client impersonates it: run and evaluation token Secrets, as the operator builds them, are
created and deleted; a user's Secret cannot be created, changed, relabelled or deleted, nor a token-like
Secret of a type the token controller fills. Other users are not matched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chart_support import RBAC, as_user, token_secrets, user_secret
from kaizen_local.cluster import wait_for
from kaizen_operator.kube import ApiError, Kube

pytestmark = pytest.mark.cluster
OPERATOR = "system:serviceaccount:kaizen-system:kaizen-operator"
REFUSED = "may write only the Secrets it owns"
MERGE = "application/merge-patch+json"


def secrets(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/secrets"


def refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(ApiError) as refused:
        call()
    assert refused.value.status == 403, refused.value
    return refused.value.message


@pytest.fixture
def grant(control_plane: Any, namespace: str) -> Callable[[str], None]:
    """`grant(user)`: a Role in the namespace with every write on Secrets, bound to `user`."""
    rule = {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "create", "update", "patch", "delete"],
    }
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "secrets"}}
    control_plane.request("POST", RBAC.format(namespace, "roles"), {**role, "rules": [rule]})

    def bind(user: str) -> None:
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": user.replace(":", ".")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secrets"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        control_plane.request("POST", RBAC.format(namespace, "rolebindings"), binding)

    return bind


def allowed_by_rbac(kube: Kube, ns: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "update", "resource": "secrets", "namespace": ns}},
    }
    answer = kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


def in_force(kube: Kube, ns: str) -> bool:
    """Whether the policy refuses the account a user's Secret yet (the API server loads policies
    asynchronously); a dry run leaves nothing behind."""
    try:
        kube.request("POST", secrets(ns), user_secret("probe"), query={"dryRun": "All"})
    except ApiError as err:
        return REFUSED in err.message
    return False


def test_the_operator_account_writes_only_the_secrets_it_owns(
    control_plane: Any, namespace: str, grant: Callable[[str], None]
) -> None:
    cp, ns = control_plane, namespace
    grant(OPERATOR)
    cp.request("POST", secrets(ns), user_secret("s3-credentials"))
    credentials = f"{secrets(ns)}/s3-credentials"
    with as_user(cp, OPERATOR) as operator:
        wait_for(lambda: allowed_by_rbac(operator, ns), 30, what="the Role bound")
        wait_for(lambda: in_force(operator, ns), 30, what="the policy refusing a user's Secret")
        # What the operator does: its token Secrets are created, and deleted when the run ends.
        for body in token_secrets(ns):
            operator.request("POST", secrets(ns), body)
            operator.request("DELETE", f"{secrets(ns)}/{body['metadata']['name']}")

        message = refusal(lambda: operator.request("DELETE", credentials))
        assert (
            REFUSED in message
            and "kaizen-owned-secrets" in message
            and f"DELETE of Secret {ns}/s3-credentials" in message
        )
        assert cp.exists(credentials)
        relabel = {"metadata": {"labels": token_secrets(ns)[0]["metadata"]["labels"]}}
        assert REFUSED in refusal(lambda: operator.request("PATCH", credentials, relabel, content_type=MERGE))
        assert REFUSED in refusal(
            lambda: operator.request("PATCH", credentials, {"stringData": {"k": "x"}}, content_type=MERGE)
        )
        assert cp.request("GET", credentials)["data"] == {"k": "dg=="}, "unchanged"
        assert REFUSED in refusal(lambda: operator.request("POST", secrets(ns), user_secret("planted")))
        # A token controller fills a service-account-token Secret with the named account's token.
        stolen = {**token_secrets(ns)[0], "type": "kubernetes.io/service-account-token"}
        stolen["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "default"}
        assert REFUSED in refusal(lambda: operator.request("POST", secrets(ns), stolen))
        # Its progress key only in its own namespace (kaizen-system).
        key = user_secret("kaizen-progress-key")
        assert REFUSED in refusal(lambda: operator.request("POST", secrets(ns), key))

    # Anyone else is not matched: another account with the same Role, and the admin.
    other = f"system:serviceaccount:{ns}:someone"
    grant(other)
    with as_user(cp, other) as someone:
        wait_for(lambda: allowed_by_rbac(someone, ns), 30, what="the Role bound")
        someone.request("POST", secrets(ns), user_secret("theirs"))
        someone.request("DELETE", f"{secrets(ns)}/theirs")
    cp.request("DELETE", credentials)
