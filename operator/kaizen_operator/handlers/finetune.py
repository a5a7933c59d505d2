"""kopf handlers for FineTunePipeline: watch events only enqueue; a work queue reconciles.

kopf watches the pipelines and the children that carry the `kaizen.dev/pipeline` label (Jobs,
PyTorchJobs, the evaluation gate's EvalJobs); any event maps to its pipeline's key. No per-object
daemon or timer: an idle pipeline costs a key in kopf's watch and nothing else. The startup handler
also serves the progress endpoint and the ops endpoint (metrics, health) from the operator's event loop.
With quotas, a change of a namespace's pipelines also enqueues the blocked pipelines it lets pass, and
a watch listing (which may hide deletions) has a `Relisted` key re-check its namespace's.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf
from aiohttp import web
from kaizen_api.base import API_VERSION as API
from kaizen_api.base import GROUP, VERSION
from kaizen_api.kinds import EVAL_JOB, FINETUNE_PIPELINE, PRIVATE_MODEL

from kaizen_operator import children, endpoints, pipeline_status, reconciler
from kaizen_operator.catalog import load_catalog
from kaizen_operator.context import Conflict, Context, patch_status
from kaizen_operator.kube import ApiError, Kube, load_api_client, path_of
from kaizen_operator.metrics import QUEUE_DEPTH, RECONCILE_SECONDS, RECONCILES
from kaizen_operator.progress import RateLimiter, new_key
from kaizen_operator.quotas import relisted_wake, to_wake, waiting
from kaizen_operator.runs import workload_outcome
from kaizen_operator.settings import load_settings
from kaizen_operator.watchcache import WatchCache
from kaizen_operator.workloads.meta import COMPONENT_LABEL, PREFLIGHT, pipeline_of
from kaizen_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)
KEY_ENV = "KAIZEN_PROGRESS_KEY"
KEY_SECRET = "kaizen-progress-key"
NAMESPACE_ENV = "KAIZEN_OPERATOR_NAMESPACE"
WORKERS = 16  # passes wait on the API server, not on the CPU
RELIST_SETTLE_S = 1.0  # a namespace's listing events within this long share one `Relisted` check
WATCH_PER_NAMESPACE = "watch_per_namespace"  # the memo key: kopf runs one watch per namespace


@dataclass(frozen=True)
class Relisted:
    """A work-queue key: a watch listing delivered a quota-blocked pipeline of this namespace."""

    namespace: str


@dataclass
class Runtime:
    ctx: Context
    queue: WorkQueue
    servers: list[web.AppRunner]
    executor: ThreadPoolExecutor


RUNTIME: Runtime | None = None  # one operator per process (kopf runs one at a time)


def progress_key(kube: Kube) -> bytes:
    """The HMAC key of run tokens: $KAIZEN_PROGRESS_KEY, else a Secret in the operator's namespace
    (created once, so tokens survive restarts), else a fresh one (tokens of older runs stop working)."""
    if raw := os.environ.get(KEY_ENV):
        return raw.encode()
    namespace = os.environ.get(NAMESPACE_ENV)
    if not namespace:
        log.warning("no %s or %s: progress tokens last only as long as this process", KEY_ENV, NAMESPACE_ENV)
        return new_key()
    path = path_of("v1", "Secret", namespace, KEY_SECRET)
    for _ in range(2):
        secret = kube.get(path)
        if secret is not None:
            return base64.b64decode(secret["data"]["key"])
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": KEY_SECRET, "namespace": namespace},
            "data": {"key": base64.b64encode(new_key()).decode()},
        }
        if kube.create(body):
            return base64.b64decode(body["data"]["key"])
    raise RuntimeError(f"cannot read or create Secret {namespace}/{KEY_SECRET}")


def report_failure(ctx: Context, namespace: str, name: str, err: Exception) -> None:
    """A pass that raised leaves Ready=False/ReconcileError on the pipeline (the next pass that
    completes derives Ready anew); written only when the condition changes."""
    pipeline = ctx.kube.get(path_of(API, FINETUNE_PIPELINE.kind, namespace, name))
    if pipeline is None:
        return
    old = (pipeline.get("status") or {}).get("conditions")
    conditions = pipeline_status.failed_pass(old, err, pipeline["metadata"]["generation"])
    if conditions != old:
        patch_status(ctx, pipeline, {"conditions": conditions})


async def _relisted(namespace: str) -> float | None:
    """Enqueue the namespace's blocked pipelines that a deletion hidden by a watch restart lets pass."""
    assert RUNTIME is not None
    ctx, loop = RUNTIME.ctx, asyncio.get_running_loop()
    args = (ctx.pipelines, ctx.kube, namespace, ctx.settings.quotas)
    try:
        names = await loop.run_in_executor(RUNTIME.executor, relisted_wake, *args)
    except Exception as err:  # the API server unreachable, say: look again later
        log.warning("quota check of namespace %s after a listing: %s", namespace, err)
        return 10.0
    for name in names:
        _enqueue(namespace, name)
    return None


async def _work(key: Hashable) -> float | None:
    assert RUNTIME is not None
    if isinstance(key, Relisted):
        return await _relisted(key.namespace)
    assert isinstance(key, tuple)
    namespace, name = key
    started = time.monotonic()
    outcome = "ok"
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            RUNTIME.executor, reconciler.reconcile, RUNTIME.ctx, namespace, name
        )
    except Conflict:
        outcome = "conflict"
        return 0.1
    except Exception as err:  # an API error, or a bug: either is retried and shown on the pipeline
        outcome = "error"
        log.warning("reconcile of %s/%s: %s", namespace, name, err, exc_info=not isinstance(err, ApiError))
        try:
            await loop.run_in_executor(RUNTIME.executor, report_failure, RUNTIME.ctx, namespace, name, err)
        except Exception as failure:  # the API server unreachable, say: the next pass tries again
            log.warning("status of %s/%s not written: %s", namespace, name, failure)
        return 10.0
    finally:
        RECONCILES.labels(FINETUNE_PIPELINE.kind, outcome).inc()
        RECONCILE_SECONDS.labels(FINETUNE_PIPELINE.kind).observe(time.monotonic() - started)
        QUEUE_DEPTH.set(RUNTIME.queue.depth)


@kopf.on.startup()
async def start_runtime(memo: kopf.Memo, **_: Any) -> None:
    """`memo`: main's, which says whether kopf watches each namespace apart (see watchcache)."""
    global RUNTIME
    settings = load_settings()
    # A kept-alive connection for every thread that may be in a request at once: a pool smaller than
    # that opens (and shakes hands on) a new TLS connection for each request above it, and drops it after.
    kube = Kube(load_api_client(WORKERS + children.ALONGSIDE_THREADS + 4))
    key = await asyncio.to_thread(progress_key, kube)
    pipelines = WatchCache(watch_per_namespace=bool(memo.get(WATCH_PER_NAMESPACE)))
    catalog = load_catalog(settings.catalog_path)
    ctx = Context(kube=kube, settings=settings, catalog=catalog, key=key, pipelines=pipelines)
    queue = WorkQueue(_work, workers=WORKERS)
    RUNTIME = Runtime(ctx, queue, [], ThreadPoolExecutor(WORKERS, thread_name_prefix="reconcile"))
    queue.start()
    RUNTIME.servers = [
        await endpoints.serve(endpoints.progress_app(ctx, RateLimiter()), settings.progress_port),
        await endpoints.serve(endpoints.ops_app(lambda: RUNTIME is not None), settings.metrics_port),
    ]
    log.info("progress endpoint on :%d, metrics on :%d", settings.progress_port, settings.metrics_port)


@kopf.on.cleanup()
async def stop_runtime(**_: Any) -> None:
    global RUNTIME
    if RUNTIME is None:
        return
    await RUNTIME.queue.stop()
    RUNTIME.executor.shutdown(wait=True)
    for server in RUNTIME.servers:
        await server.cleanup()
    RUNTIME.ctx.kube.api.close()
    RUNTIME = None


def _enqueue(namespace: str | None, name: str | None) -> None:
    if RUNTIME is not None and namespace and name:
        RUNTIME.queue.add((namespace, name))


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _cache(cache: WatchCache, event: kopf.RawEvent) -> None:
    if event["type"] == "DELETED":
        cache.deleted(_key(event["object"]))
    else:
        cache.observed(_key(event["object"]), dict(event["object"]))


def _capped(ctx: Context) -> bool:
    quotas = ctx.settings.quotas
    return quotas.max_pipelines is not None or quotas.max_concurrent_runs is not None


def _wake_blocked(ctx: Context, namespace: str) -> None:
    """Enqueue the namespace's pipelines that a quota blocked and that may pass now (a pipeline was
    deleted, a run ended): no blocked pipeline needs a timer to notice."""
    if not _capped(ctx):
        return
    for name in to_wake(ctx.pipelines.in_namespace(namespace) or [], ctx.settings.quotas):
        _enqueue(namespace, name)


@kopf.index(GROUP, VERSION, FINETUNE_PIPELINE.plural)
async def pipeline_cache(body: kopf.Body, **_: Any) -> None:
    """Keeps the pipeline cache, as an indexer (that indexes nothing): kopf starts no other handler,
    of any kind, before every indexer has seen its watch's initial listing. So from the first event
    handler on, the cache holds every pipeline and can answer the quotas' namespace-wide counts."""
    if RUNTIME is not None:
        RUNTIME.ctx.pipelines.observed(_key(body), dict(body))


@kopf.on.event(GROUP, VERSION, FINETUNE_PIPELINE.plural)
async def pipeline_event(event: kopf.RawEvent, meta: kopf.Meta, **_: Any) -> None:
    """Every change but the operator's own status writes (those it has already accounted for); with
    quotas, every change (own writes too: a run that ended) may let blocked pipelines pass."""
    if RUNTIME is None:
        return
    cache, key = RUNTIME.ctx.pipelines, _key(event["object"])
    cache.listed()  # see pipeline_cache
    if event["type"] is None:  # a listing: after a restart, deletions in its gap went unreported
        cache.relisted(key[0])
        if _capped(RUNTIME.ctx) and waiting(dict(event["object"]), RUNTIME.ctx.settings.quotas):
            RUNTIME.queue.add_after(Relisted(key[0]), RELIST_SETTLE_S)
    if event["type"] == "DELETED":
        cache.deleted(key)
    version = meta.get("resourceVersion")
    if not cache.is_own(key, version):
        RUNTIME.queue.add(key, lambda: cache.is_own(key, version))
    if event["type"] is not None:  # a listing's blocked pipelines wake through `Relisted`
        _wake_blocked(RUNTIME.ctx, key[0])


@kopf.on.event(GROUP, VERSION, PRIVATE_MODEL.plural)
async def private_model_event(event: kopf.RawEvent, **_: Any) -> None:
    """Kept for the reconciles, which read a pipeline's models on every pass."""
    if RUNTIME is not None:
        _cache(RUNTIME.ctx.models, event)


@kopf.on.event("batch", "v1", "jobs", labels={"kaizen.dev/pipeline": kopf.PRESENT})
@kopf.on.event("kubeflow.org", "v1", "pytorchjobs", labels={"kaizen.dev/pipeline": kopf.PRESENT})
@kopf.on.event(GROUP, VERSION, EVAL_JOB.plural, labels={"kaizen.dev/pipeline": kopf.PRESENT})
async def child_event(
    type: str | None,
    namespace: str | None,
    labels: kopf.Labels,
    meta: kopf.Meta,
    event: kopf.RawEvent,
    **_: Any,
) -> None:
    """Enqueues the pipeline the child belongs to (`pipeline_of`: labels hold at most 63 characters,
    and a trigger Job's owner is the CronJob).

    A child's creation tells nothing new (the operator made it, or the pipeline's own listing at
    start-up covers it), except for a schedule's trigger Job, which is a run request. Nor does a
    preflight Job's progress before it ends (its run says Preflight until the plan is in): each such
    pass cost two LISTs of the namespace's Jobs and pods."""
    if RUNTIME is not None:
        RUNTIME.ctx.pipelines.listed()  # see pipeline_cache
    if type == "ADDED" and labels.get("kaizen.dev/trigger") != "schedule":
        return
    if (
        type == "MODIFIED"
        and labels.get(COMPONENT_LABEL) == PREFLIGHT
        and workload_outcome(dict(event["object"]))[0] not in ("Succeeded", "Failed")
    ):
        return
    _enqueue(namespace, pipeline_of(meta))
