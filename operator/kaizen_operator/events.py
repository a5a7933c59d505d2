"""Kubernetes Events on a pipeline or an EvalJob, for what a user should see (a run started, ended,
was skipped)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kaizen_api.base import API_VERSION as API
from kaizen_api.kinds import FINETUNE_PIPELINE

from kaizen_operator.kube import ApiError, Kube, path_of

log = logging.getLogger(__name__)


def post_event(
    kube: Kube,
    obj: dict[str, Any],
    type_: str,
    reason: str,
    message: str,
    kind: str = FINETUNE_PIPELINE.kind,
) -> None:
    """Best effort: a refused Event is logged, never fails the reconcile."""
    meta = obj["metadata"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API,
            "kind": kind,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": "kaizen-operator"},
    }
    try:
        kube.request("POST", path_of("v1", "Event", meta["namespace"]), event)
    except ApiError as err:  # an Event is best effort
        log.warning("event %s on %s/%s not posted: %s", reason, meta["namespace"], meta["name"], err)
