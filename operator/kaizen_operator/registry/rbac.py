"""Sharing as RBAC: each share of a PrivateModel is a Role naming only that object (`resourceNames`) and a
RoleBinding of the Role to the user. Pure builders; the handler applies and prunes them by label."""

from __future__ import annotations

import hashlib
from typing import Any

from kaizen_api.base import API_VERSION, GROUP
from kaizen_api.privatemodel import Share

MANAGED_BY = "app.kubernetes.io/managed-by"
MODEL_LABEL = f"{GROUP}/privatemodel"
INVITED_ANNOTATION = f"{GROUP}/invited-time"
# The custom verb that changing spec.sharing needs (charts/kaizen/files/privatemodel-sharing.yaml, an
# admission policy): an editor may update the model but not who it is shared with.
SHARE_VERB = "share"
VERBS: dict[str, list[str]] = {
    "viewer": ["get", "list", "watch"],
    "editor": ["get", "list", "watch", "update", "patch"],
    "owner": ["get", "list", "watch", "update", "patch", "delete", SHARE_VERB],
}
# The Kubernetes user a share binds: the e-mail as the cluster's authenticator (OIDC) reports it.
DEFAULT_USER_FORMAT = "{email}"


def share_user(share: Share, user_format: str = DEFAULT_USER_FORMAT) -> str:
    return user_format.format(email=share.email, tenant=share.tenant)


def model_label(name: str) -> str:
    """A label value for the model (names may be longer than a label value's 63 characters)."""
    return name if len(name) <= 63 else f"{name[:50]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


NAME_KEPT = 200  # of the model name in a share's Role name (of at most 253)


def share_name(model: str, share: Share) -> str:
    """The Role and RoleBinding name of one share: stable for the same user, whatever the role."""
    digest = hashlib.sha256(f"{share.tenant}/{share.email.lower()}".encode()).hexdigest()[:10]
    if len(model) <= NAME_KEPT:
        return f"kaizen-pm-{model}-{digest}"
    # Cut, the name alone would be another long-named model's too: its digest tells them apart. A label
    # of a DNS name must not end in '.' or '-', so neither may the cut.
    whole = hashlib.sha256(model.encode()).hexdigest()[:10]
    return f"kaizen-pm-{model[: NAME_KEPT - 11].rstrip('.-')}-{whole}-{digest}"


def _metadata(name: str, namespace: str, model: dict[str, Any], share: Share, invited: str) -> dict[str, Any]:
    meta = model["metadata"]
    return {
        "name": name,
        "namespace": namespace,
        "labels": {MANAGED_BY: "kaizen", MODEL_LABEL: model_label(meta["name"])},
        "annotations": {
            f"{GROUP}/share-email": share.email,
            f"{GROUP}/share-tenant": share.tenant,
            f"{GROUP}/share-role": share.role,
            INVITED_ANNOTATION: invited,
        },
        # Garbage-collected with the model; never blocks its deletion.
        "ownerReferences": [
            {"apiVersion": API_VERSION, "kind": "PrivateModel", "name": meta["name"], "uid": meta["uid"]}
        ],
    }


def share_role(model: dict[str, Any], share: Share, invited: str) -> dict[str, Any]:
    namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(share_name(name, share), namespace, model, share, invited),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": ["privatemodels"],
                "resourceNames": [name],
                "verbs": VERBS[share.role],
            }
        ],
    }


def share_binding(model: dict[str, Any], share: Share, invited: str, user_format: str) -> dict[str, Any]:
    namespace, name = model["metadata"]["namespace"], model["metadata"]["name"]
    role_name = share_name(name, share)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(role_name, namespace, model, share, invited),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": share_user(share, user_format)}
        ],
    }


def unique_shares(shares: list[Share] | None) -> list[Share]:
    """One share per user (tenant + e-mail): a later entry overrides an earlier one."""
    by_user = {(s.tenant, s.email.lower()): s for s in shares or []}
    return list(by_user.values())


def shares_status(shares: list[Share], invited: dict[str, str], model: str, user_format: str) -> list[dict]:
    """status.shares: each granted share with its Role and the time it was first granted."""
    return [
        {
            "email": s.email,
            "tenant": s.tenant,
            "role": s.role,
            "user": share_user(s, user_format),
            "roleName": share_name(model, s),
            "invitedTime": invited[share_name(model, s)],
        }
        for s in shares
    ]
