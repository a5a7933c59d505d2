"""kopf handlers for PrivateModel: admission, storage scans, shares, the IP allow-list and a guarded delete.

Scans are driven by events: creation, operator resume, a spec change, the annotation `kaizen.dev/rescan`
(any new value), and a version recorded in the status by a run (an entry without `scannedTime`). A
timer resyncs each model every RESYNC_SECONDS (30 minutes) once the object has been idle a minute: a
sleeping asyncio task per object costs no CPU between runs, and a model scanned recently by an event
is not scanned again. Every resync re-applies the IP allow-list (one read of the bucket policy when it
holds the statement): another writer of the policy may have dropped it. A failed scan retries after
30 s, doubling up to the resync interval.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kaizen_api.base import GROUP, VERSION
from kaizen_api.kinds import EVAL_JOB, FINETUNE_PIPELINE, PRIVATE_MODEL
from kaizen_api.privatemodel import PrivateModelSpec
from kaizen_runner.storage import StorageError
from pydantic import ValidationError

from kaizen_operator.admission import admission_status
from kaizen_operator.children import trigger_jobs_by_owner
from kaizen_operator.conditions import Condition, set_condition
from kaizen_operator.kube import ApiError, Kube, kubeconfig_client
from kaizen_operator.registry.deletion import deletion_decision, model_users
from kaizen_operator.registry.scan import scan
from kaizen_operator.registry.storage import read_secret
from kaizen_operator.registry.summary import RESYNC_SECONDS, model_labels, retry_delay
from kaizen_operator.registry.sync import delete_files, sync_allow_list, sync_shares

PLURAL = PRIVATE_MODEL.plural
RESCAN_ANNOTATION = f"{GROUP}/rescan"
RESCAN_MAX = 253  # status.observedRescan's bound
IDLE_SECONDS = 60.0
DELETE_RECHECK_SECONDS = 10.0
_kube_lock = threading.Lock()
_kube: Kube | None = None


def default_kube() -> Kube:
    """The process's client, made on first use (the handlers share it across threads)."""
    global _kube
    with _kube_lock:
        if _kube is None:
            _kube = Kube(kubeconfig_client())
        return _kube


def _custom_objects(kube: Kube, namespace: str, plural: str) -> list[dict[str, Any]]:
    """The namespace's objects of a Kaizen kind; none when its CRD is not installed."""
    try:
        return kube.list(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}")
    except ApiError as err:
        if err.status == 404:
            return []
        raise


def _scan_into(body: Mapping[str, Any], patch: kopf.Patch, status: Mapping[str, Any] | None = None) -> dict:
    """Scan the storage and put the result (status and labels) into `patch`; raises TemporaryError with
    the backoff delay when the storage cannot be read."""
    current = {**body, "status": dict(status if status is not None else body.get("status") or {})}
    namespace = body["metadata"]["namespace"]
    result, versions = scan(current, lambda name: read_secret(default_kube(), namespace, name))
    patch.status.update(result)
    requested = (body["metadata"].get("annotations") or {}).get(RESCAN_ANNOTATION)
    patch.status["observedRescan"] = requested[:RESCAN_MAX] if requested is not None else None
    spec = PrivateModelSpec.model_validate(dict(body["spec"]))
    labels = model_labels(spec, versions, body["metadata"].get("labels") or {})
    if labels:
        patch.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    if result.get("phase") == "StorageUnavailable":
        message = next(c["message"] for c in result["conditions"] if c["type"] == "StorageReachable")
        raise kopf.TemporaryError(message, delay=retry_delay(result["scanFailures"]))
    return result


def _sync_side_effects(
    body: Mapping[str, Any], spec: PrivateModelSpec, conditions: list[Condition], generation: int
) -> tuple[list[Condition], list[dict[str, Any]] | None]:
    """Shares and the allow-list; their failures become conditions, never a failed reconcile."""
    kube = default_kube()
    shares = None
    try:
        shares = sync_shares(kube, body, spec)
        conditions = set_condition(
            conditions, "Shared", "True", "RolesBound", f"{len(shares)} share(s) granted", generation
        )
    except ApiError as err:
        conditions = set_condition(conditions, "Shared", "False", "RBACError", str(err), generation)
    return _allow_list(body, spec, conditions, generation), shares


def _allow_list(
    body: Mapping[str, Any], spec: PrivateModelSpec, conditions: list[Condition], generation: int
) -> list[Condition]:
    """Apply the allow-list (a no-op when the bucket policy holds it); the IPAllowList condition."""
    try:
        outcome = sync_allow_list(body, spec, default_kube())
    except (StorageError, ApiError) as err:
        return set_condition(conditions, "IPAllowList", "False", "StorageError", str(err), generation)
    if outcome is None:
        state = ("False", "NotSupported", "volume storage has no bucket policy: downloads are not restricted")
    elif not spec.ip_allow_list:
        state = ("False", "Empty", "no allow-list: every address may download")
    elif outcome.enforced:
        state = ("True", "PolicyApplied", outcome.message)
    else:
        state = ("False", "NotEnforced", outcome.message)
    return set_condition(conditions, "IPAllowList", *state, generation)


@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile")
@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile")
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="reconcile")
def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Admission, then shares, allow-list and a scan, all written in one status patch."""
    if body["metadata"].get("deletionTimestamp"):
        return
    generation = int(body["metadata"]["generation"])
    status = dict(body.get("status") or {})
    admitted = admission_status(PRIVATE_MODEL, dict(body["spec"]), status, generation)
    patch.status.update(admitted)
    if admitted["phase"] == "Failed":
        return
    spec = PrivateModelSpec.model_validate(dict(body["spec"]))
    conditions, shares = _sync_side_effects(body, spec, admitted["conditions"], generation)
    if shares is not None:
        patch.status["shares"] = shares or None
    _scan_into(body, patch, {**status, **admitted, "conditions": conditions})


def _wants_scan(status: Mapping[str, Any], meta: Mapping[str, Any], **_: Any) -> bool:
    """A new value of the rescan annotation, or a version a run recorded that no scan has looked at.

    Checked on every watch event (cheap); kopf's change detection ignores kaizen.dev/ annotations (its
    own prefix), so the annotation is compared with the value the last scan acted upon."""
    if meta.get("deletionTimestamp") or status.get("phase") == "Failed":
        return False
    requested = (meta.get("annotations") or {}).get(RESCAN_ANNOTATION)
    if requested is not None and requested[:RESCAN_MAX] != status.get("observedRescan"):
        return True
    versions = status.get("versions") or []
    unscanned = any(isinstance(v, Mapping) and not v.get("scannedTime") for v in versions)
    return unscanned and not _backing_off(status)


def _backing_off(status: Mapping[str, Any]) -> bool:
    """Within a failed scan's retry delay. Its own status patch is an event too: without this, a
    model whose storage is unreachable was scanned, patched and logged again several times a second."""
    failures = int(status.get("scanFailures") or 0)
    last = status.get("lastScanTime")
    if not failures or not last:
        return False
    return (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds() < retry_delay(failures)


@kopf.on.event(GROUP, VERSION, PLURAL, when=_wants_scan, id="rescan")
def rescan(body: kopf.Body, patch: kopf.Patch, type: str | None, **_: Any) -> None:
    """`kubectl annotate pm NAME kaizen.dev/rescan=$(date +%s) --overwrite`, or a run recorded a version
    in the status: scan now rather than at the next resync."""
    if type != "DELETED":
        _scan_into(body, patch)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, idle=IDLE_SECONDS, id="resync")
def resync(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """The allow-list re-applied, then the slow periodic scan, skipped when an event-driven scan
    succeeded within half an interval."""
    status = body.get("status") or {}
    if body["metadata"].get("deletionTimestamp") or status.get("phase") == "Failed":
        return
    spec = PrivateModelSpec.model_validate(dict(body["spec"]))
    conditions = _allow_list(
        body, spec, list(status.get("conditions") or []), int(body["metadata"]["generation"])
    )
    if conditions != status.get("conditions"):
        patch.status["conditions"] = conditions
    last = status.get("lastScanTime")
    recent = last and (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds() < RESYNC_SECONDS / 2
    if recent and not status.get("scanFailures"):
        return
    _scan_into(body, patch, {**status, "conditions": conditions})


def model_users_in(kube: Kube, namespace: str, name: str) -> list[str]:
    """`model_users` of the namespace's objects as the API server holds them now, schedules' trigger
    Jobs included (a firing not taken yet asks for a run)."""
    pipelines = _custom_objects(kube, namespace, FINETUNE_PIPELINE.plural)
    eval_jobs = _custom_objects(kube, namespace, EVAL_JOB.plural)
    return model_users(name, pipelines, eval_jobs, trigger_jobs_by_owner(kube, namespace))


@kopf.on.delete(GROUP, VERSION, PLURAL, id="delete")
def delete(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Hold the finalizer while the model is in use or a Delete is unconfirmed; remove files only then."""
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    try:
        spec: PrivateModelSpec | None = PrivateModelSpec.model_validate(dict(body["spec"]))
    except ValidationError:
        spec = None  # an invalid spec names no storage to remove: the object goes, as with Retain
    try:
        users = model_users_in(default_kube(), meta["namespace"], meta["name"])
    except ApiError as err:
        raise kopf.TemporaryError(
            f"cannot list the model's users: {err}", delay=DELETE_RECHECK_SECONDS
        ) from None
    policy = spec.deletion_policy if spec is not None else "Retain"
    decision = deletion_decision(meta["name"], policy, meta.get("annotations"), users)
    conditions = (body.get("status") or {}).get("conditions")
    in_use = (
        ("True", "InUse", decision.message)
        if users
        else ("False", "NotInUse", "no run or evaluation uses it")
    )
    conditions = set_condition(conditions, "InUse", *in_use, generation)
    if decision.proceed and decision.delete_files and spec is not None:
        try:
            removed = delete_files(body, spec, default_kube())
            decision_message = f"{decision.message} ({removed} file(s))"
        except (StorageError, ApiError) as err:
            conditions = set_condition(conditions, "Deleting", "False", "StorageError", str(err), generation)
            patch.status["conditions"] = conditions
            raise kopf.TemporaryError(str(err), delay=DELETE_RECHECK_SECONDS) from None
    else:
        decision_message = decision.message
    state = "True" if decision.proceed else "False"
    patch.status["conditions"] = set_condition(
        conditions, "Deleting", state, decision.reason, decision_message, generation
    )
    if not decision.proceed:
        raise kopf.TemporaryError(decision.message, delay=DELETE_RECHECK_SECONDS)
