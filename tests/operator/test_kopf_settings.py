"""The operator's kopf settings: essences only for the kinds that have change-detecting handlers, and
only Kaizen's own children sent by the API server."""

from __future__ import annotations

import kaizen_operator.handlers  # noqa: F401  (registers every handler)
import kopf
from kaizen_api.kinds import EVAL_JOB, FINETUNE_PIPELINE, PRIVATE_MODEL
from kaizen_operator.handlers.startup import CHILD_KINDS, WATCH_ONLY_KINDS, DiffBaseStorage, configure

PLURALS = {
    FINETUNE_PIPELINE.kind: FINETUNE_PIPELINE.plural,
    EVAL_JOB.kind: EVAL_JOB.plural,
    "Job": "jobs",
    "PyTorchJob": "pytorchjobs",
}


def _body(kind: str) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "x/v1",
            "kind": kind,
            "metadata": {"name": "a", "labels": {"l": "1"}, "managedFields": [{"manager": "m"}]},
            "spec": {"size": 3},
            "status": {"phase": "Running"},
        }
    )


def test_watch_only_kinds_get_an_empty_essence_and_the_rest_kopfs() -> None:
    storage = DiffBaseStorage(prefix="kaizen.dev", key="last-handled-configuration")
    for kind in WATCH_ONLY_KINDS:
        assert storage.build(body=_body(kind)) == {}
    essence = storage.build(body=_body(PRIVATE_MODEL.kind))
    assert essence == {"metadata": {"labels": {"l": "1"}}, "spec": {"size": 3}}


def test_no_change_detecting_handler_watches_a_watch_only_kind() -> None:
    """An on.create/update/delete (or daemon/timer) on one of these kinds would never see a change; on
    a pipeline or an EvalJob, an admission handler's status patch (no resourceVersion) would also put
    back what it was given over the work queue's newer writes (a finished run Pending again)."""
    registry = kopf.get_default_registry()
    handlers = [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]
    plurals = {h.selector.plural or h.selector.any_name for h in handlers if h.selector is not None}
    assert plurals, "the handlers were not registered"
    assert PRIVATE_MODEL.plural in plurals
    assert not plurals & {PLURALS[kind] for kind in WATCH_ONLY_KINDS}


def test_the_api_server_sends_only_kaizens_own_children() -> None:
    """Children are selected server-side by the label every child carries; the custom resources are not
    (users create them, with whatever labels they like)."""
    settings = kopf.OperatorSettings()
    configure(settings=settings)
    selectors = settings.watching.label_selectors
    for group, version, plural in (("batch", "v1", "jobs"), ("kubeflow.org", "v1", "pytorchjobs")):
        resource = kopf.Resource(group, version, plural)
        assert list(selectors.collect(resource)) == ["app.kubernetes.io/managed-by=kaizen"]
    for kind in (FINETUNE_PIPELINE, PRIVATE_MODEL):
        assert not list(selectors.collect(kopf.Resource("kaizen.dev", "v1alpha1", kind.plural)))


def test_every_child_kind_a_handler_watches_is_selected() -> None:
    """A handler on a kind without the selector would see every team's objects of that kind."""
    registry = kopf.get_default_registry()
    watched = {
        (h.selector.group, h.selector.plural or h.selector.any_name)
        for h in registry._watching.get_all_handlers()
        if h.selector is not None and h.selector.group not in ("kaizen.dev",)
    }
    assert watched, "the handlers were not registered"
    assert watched <= set(CHILD_KINDS)
