"""Which object under a child's deterministic name may be adopted, and which may be deleted.

Children are created create-if-absent (`kube.create` answers False on AlreadyExists), so an object
of that name that its owner did not make (left by a deleted pipeline or EvalJob of the same name not
yet garbage-collected, or made by a user) would become the run's credential, config or workload.
Only on an AlreadyExists is the object read (no extra request on the way to a workload): adopted when
its owner references name the owner's uid; otherwise a `NameConflict`. The operator deletes by name
only what it owns (`delete_owned`), and a foreign object is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaizen_operator.kube import Kube, path_for

REASON = "NameConflict"


class NameConflict(Exception):
    """A child's name is taken by an object the owner does not own. `waits`: it is going (being
    deleted, or owned by a deleted owner of the same kind and name that garbage collection removes
    it with), so a later pass may create the child; else the run fails."""

    def __init__(self, kind: str, name: str, detail: str, *, waits: bool) -> None:
        self.reason = REASON
        self.waits = waits
        self.message = f"{kind} {name} exists and is not owned by this run's owner: {detail}"
        super().__init__(self.message)


def controller_ref(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The owner reference a built child carries (the pipeline or EvalJob)."""
    refs = manifest["metadata"]["ownerReferences"]
    return dict(next((r for r in refs if r.get("controller")), refs[0]))


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether `uid` is `obj`'s controller: the Job (or PyTorchJob) that made a pod, the CronJob that
    made a trigger Job. Labels say which run or pipeline an object is for, and anyone can copy them."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") and ref.get("uid") == uid for ref in refs)


def conflict(found: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> NameConflict | None:
    """None when `found` (the object under `manifest`'s name) may be adopted: its owner references
    name the uid of `manifest`'s owner. A name freed since the AlreadyExists waits for the next pass."""
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    ours = controller_ref(manifest)
    if found is None:
        return NameConflict(kind, name, "it was deleted meanwhile; the next pass creates it", waits=True)
    if owned_by(found, ours["uid"]):
        return None
    meta = found.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    if meta.get("deletionTimestamp"):
        return NameConflict(kind, name, "it is being deleted; the run waits for it to go", waits=True)
    for ref in refs:
        if (ref.get("kind"), ref.get("name")) == (ours["kind"], ours["name"]):
            detail = (
                f"it belongs to an earlier {ref['kind']} {ref['name']} (uid {ref.get('uid')}), which garbage"
                " collection removes it with; the run waits for it to go"
            )
            return NameConflict(kind, name, detail, waits=True)
    owners = ", ".join(f"{r.get('kind')} {r.get('name')}" for r in refs) or "no owner"
    return NameConflict(kind, name, f"owned by {owners}; it is left as it is", waits=False)


def create_owned(kube: Kube, manifest: dict[str, Any]) -> bool:
    """`kube.create`, adopting an existing object only when its owner is this manifest's owner;
    raises `NameConflict` otherwise. True when created."""
    if kube.create(manifest):
        return True
    found = conflict(kube.get(path_for(manifest, named=True)), manifest)
    if found is not None:
        raise found
    return False


def delete_owned(kube: Kube, path: str, uid: str) -> bool:
    """Delete the object at `path` if `uid` owns it (the uid precondition: not a replacement made
    since it was read); an absent or foreign object is left. True when deleted."""
    found = kube.get(path)
    if found is None or not owned_by(found, uid):
        return False
    return kube.delete(path, uid=found["metadata"]["uid"])
