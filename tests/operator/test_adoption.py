"""Which object under a child's deterministic name is adopted: only one its owner owns."""

from __future__ import annotations

from typing import Any

from kaizen_operator.adoption import conflict


def child(*refs: dict[str, Any], deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p-20261201-abc123-token", "ownerReferences": list(refs)}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta}


def ref(uid: str, name: str = "p", kind: str = "FineTunePipeline") -> dict[str, Any]:
    return {"apiVersion": "kaizen.dev/v1alpha1", "kind": kind, "name": name, "uid": uid, "controller": True}


OURS = child(ref("uid-now"))


def test_a_child_its_owner_owns_is_adopted() -> None:
    assert conflict(child(ref("uid-now")), OURS) is None
    assert conflict(child(ref("other", "x", "ConfigMap"), ref("uid-now")), OURS) is None


def test_a_foreign_child_fails_the_run_naming_kind_name_and_owner() -> None:
    for found, owners in ((child(), "no owner"), (child(ref("uid-q", "q")), "FineTunePipeline q")):
        err = conflict(found, OURS)
        assert err is not None and not err.waits and err.reason == "NameConflict"
        assert err.message.startswith("Secret p-20261201-abc123-token exists and is not owned")
        assert owners in err.message


def test_a_child_on_its_way_out_is_waited_for() -> None:
    """Left by a deleted owner of this kind and name (garbage collection removes it), or being deleted."""
    earlier = conflict(child(ref("uid-before")), OURS)
    assert earlier is not None and earlier.waits and "uid-before" in earlier.message
    going = conflict(child(deleting=True), OURS)
    assert going is not None and going.waits
    gone = conflict(None, OURS)
    assert gone is not None and gone.waits
