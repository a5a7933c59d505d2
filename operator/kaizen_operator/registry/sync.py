"""The registry's side effects outside storage scans: shares as Roles/RoleBindings, the IP allow-list as a
bucket policy, and the removal of stored files on a confirmed delete. Each returns what the status
should say; the pure halves live in rbac, policy and deletion."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kaizen_api.privatemodel import PrivateModelSpec
from kaizen_runner.storage import S3Connection

from kaizen_operator.registry import rbac
from kaizen_operator.registry.policy import (
    PolicyOutcome,
    allow_list_statement,
    apply_allow_list,
    statement_id,
)
from kaizen_operator.registry.storage import object_store, open_storage, read_secret

if TYPE_CHECKING:
    from kaizen_operator.kube import Kube

RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{plural}"
# How a share's e-mail and tenant become the Kubernetes user bound (see docs/registry.md).
USER_FORMAT_ENV = "KAIZEN_SHARE_USER_FORMAT"


def user_format() -> str:
    return os.environ.get(USER_FORMAT_ENV, rbac.DEFAULT_USER_FORMAT)


def _owners(obj: Mapping[str, Any]) -> list[str]:
    return sorted(ref.get("uid", "") for ref in obj["metadata"].get("ownerReferences") or [])


def _apply(kube: Kube, plural: str, manifest: dict[str, Any], existing: dict[str, Any] | None) -> None:
    """Create, or replace where it differs. The owner counts: a share of a model deleted and made again
    under its name before garbage collection ran still names the old model, and would go with it."""
    base = RBAC.format(namespace=manifest["metadata"]["namespace"], plural=plural)
    if existing is None:
        kube.request("POST", base, manifest)
        return
    keys = ("rules", "roleRef", "subjects")
    same = (
        all(existing.get(k) == manifest.get(k) for k in keys)
        and (existing["metadata"].get("annotations") or {}) == manifest["metadata"]["annotations"]
        and _owners(existing) == _owners(manifest)
    )
    if not same:
        manifest["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        kube.request("PUT", f"{base}/{manifest['metadata']['name']}", manifest)


def sync_shares(kube: Kube, body: Mapping[str, Any], spec: PrivateModelSpec) -> list[dict[str, Any]]:
    """Make the Roles and RoleBindings match spec.sharing, delete those of removed shares; status.shares."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    selector = f"{rbac.MANAGED_BY}=kaizen,{rbac.MODEL_LABEL}={rbac.model_label(name)}"
    current: dict[str, dict[str, dict[str, Any]]] = {}
    for plural in ("roles", "rolebindings"):
        listing = kube.list(RBAC.format(namespace=namespace, plural=plural), selector)
        current[plural] = {item["metadata"]["name"]: item for item in listing}
    shares = rbac.unique_shares(spec.sharing)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    invited: dict[str, str] = {}
    fmt = user_format()
    for share in shares:
        role_name = rbac.share_name(name, share)
        old = current["roles"].get(role_name)
        # A Role an earlier model of this name left (not collected yet) holds no invite of this one's.
        ours = old if old is not None and _owners(old) == [meta["uid"]] else None
        invited[role_name] = ((ours or {}).get("metadata", {}).get("annotations") or {}).get(
            rbac.INVITED_ANNOTATION, now
        )
        _apply(kube, "roles", rbac.share_role(dict(body), share, invited[role_name]), old)
        binding = rbac.share_binding(dict(body), share, invited[role_name], fmt)
        _apply(kube, "rolebindings", binding, current["rolebindings"].get(role_name))
    for plural in ("rolebindings", "roles"):
        for stale in set(current[plural]) - set(invited):
            path = f"{RBAC.format(namespace=namespace, plural=plural)}/{stale}"
            kube.delete(path)
    return rbac.shares_status(shares, invited, name, fmt)


def sync_allow_list(body: Mapping[str, Any], spec: PrivateModelSpec, kube: Kube) -> PolicyOutcome | None:
    """Apply (or remove) the model's statement in its bucket's policy; None for volume storage."""
    s3 = spec.storage.s3
    if s3 is None:
        return None
    meta = body["metadata"]
    connection = S3Connection.from_secret(read_secret(kube, meta["namespace"], s3.connection.name))
    sid = statement_id(meta["namespace"], meta["name"])
    allow = spec.ip_allow_list or []
    statement = allow_list_statement(sid, s3.bucket, s3.key, allow) if allow else None
    return apply_allow_list(object_store(connection).client, s3.bucket, sid, statement)


def delete_files(body: Mapping[str, Any], spec: PrivateModelSpec, kube: Kube) -> int:
    """Remove every stored file of the model and its bucket-policy statement; returns how many files."""
    namespace = body["metadata"]["namespace"]
    storage = open_storage(spec.storage, lambda name: read_secret(kube, namespace, name))
    removed = storage.delete_all()
    if spec.storage.s3 is not None:
        sync_allow_list(body, spec.model_copy(update={"ip_allow_list": None}), kube)
    return removed
