"""Operator-wide kopf settings, in one startup handler."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf
from kaizen_api.base import GROUP
from kaizen_api.kinds import EVAL_JOB, FINETUNE_PIPELINE

from kaizen_operator.workloads.meta import MANAGED_BY, MANAGER

# Kinds this operator only watches (event handlers and indexes, no on.create/update/delete): kopf needs
# no essence of them. A test checks the registry keeps it so: the pipelines' and EvalJobs' status has
# one writer, their work queue, whose writes carry a resourceVersion (kopf's patches carry none).
WATCH_ONLY_KINDS = frozenset({FINETUNE_PIPELINE.kind, EVAL_JOB.kind, "Job", "PyTorchJob"})
# Kinds the operator only watches for its own children; every child carries this label.
CHILD_KINDS = (("batch", "jobs"), ("kubeflow.org", "pytorchjobs"))
CHILD_SELECTOR = f"{MANAGED_BY}={MANAGER}"


class DiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation storage, minus the essence of kinds that are only watched.

    kopf builds an essence for every event of every watched object (a deep copy of the whole body,
    status and managedFields included) before it knows whether any change-detecting handler wants it;
    for watch-only kinds nothing reads it. On the busy path (a pipeline's and its Jobs' events) that copy
    was a fifth of the operator's CPU."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        if body.get("kind") in WATCH_ONLY_KINDS:
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Kaizen-named persistence, so kopf's bookkeeping is recognisable next to Argo CD's; the API server
    sends only Kaizen's own Jobs and PyTorchJobs.

    kopf's handler filters (`labels=`) are applied in the operator: without a server-side selector,
    every Job of the watched namespaces (every team's CronJobs) went through kopf's processing,
    about a millisecond of the event loop per event."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = DiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = 30  # warnings and errors become Kubernetes Events
    for group, plural in CHILD_KINDS:
        settings.watching.label_selectors[group, plural] = CHILD_SELECTOR
