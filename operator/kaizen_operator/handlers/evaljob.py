"""kopf handlers for EvalJob: watch events only enqueue; a work queue admits and reconciles.

As for pipelines, the queue is the only writer of an EvalJob's status, each write carrying the
resourceVersion it was derived from: a kopf create/resume/update handler would patch status without
one, over what the queue wrote since (a finished run back to Pending, a Notified condition dropped).
The EvalJob queue shares the FineTunePipeline runtime's context (API client, settings, catalog,
progress key) and its progress endpoint, which serves evaluation runs under /evalruns/.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any

import kopf
from kaizen_api.base import GROUP, VERSION
from kaizen_api.kinds import EVAL_JOB

from kaizen_operator import eval_reconciler
from kaizen_operator.context import Conflict
from kaizen_operator.eval_workload import EVALJOB_LABEL
from kaizen_operator.handlers import finetune
from kaizen_operator.kube import ApiError
from kaizen_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)
QUEUE: WorkQueue | None = None


async def _work(key: Hashable) -> float | None:
    assert isinstance(key, tuple)
    namespace, name = key
    while finetune.RUNTIME is None:  # the shared runtime starts in its own startup handler
        await asyncio.sleep(0.1)
    try:
        return await asyncio.to_thread(eval_reconciler.reconcile_eval, finetune.RUNTIME.ctx, namespace, name)
    except Conflict:
        return 0.1
    except ApiError as err:
        log.warning("reconcile of EvalJob %s/%s: %s", namespace, name, err)
        return 10.0


@kopf.on.startup()
async def start_eval_queue(**_: Any) -> None:
    global QUEUE
    QUEUE = WorkQueue(_work, workers=2)
    QUEUE.start()


@kopf.on.cleanup()
async def stop_eval_queue(**_: Any) -> None:
    global QUEUE
    if QUEUE is not None:
        await QUEUE.stop()
        QUEUE = None


def _enqueue(namespace: str | None, name: str | None) -> None:
    if QUEUE is not None and namespace and name:
        QUEUE.add((namespace, name))


@kopf.on.event(GROUP, VERSION, EVAL_JOB.plural)
async def evaljob_event(namespace: str | None, name: str | None, **_: Any) -> None:
    _enqueue(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={EVALJOB_LABEL: kopf.PRESENT})
async def eval_child_event(namespace: str | None, meta: kopf.Meta, **_: Any) -> None:
    owners = [r["name"] for r in meta.get("ownerReferences") or [] if r.get("kind") == EVAL_JOB.kind]
    _enqueue(namespace, owners[0] if owners else None)
