"""The operator's HTTP endpoints, served from its own event loop (aiohttp, which kopf already uses).

- progress port: `POST /runs/<namespace>/<run object name>`, the runner's live reports
  (`kaizen_api.results.ProgressReport`) with the run's bearer token; applied to the run in status.
  The report that first records a non-finite loss step posts a Warning Event `LossNotFinite`.
- ops port: `/metrics` (Prometheus), `/healthz` (the loop answers), `/readyz` (workers started).

Responses: 200 applied or ignored as stale, 400 a path that names no run or a bad body (naming the
part; a NaN or infinite number too), 401 no token, 403 wrong token, 404 no such active run, 413 body
over 64 KiB, 429 over the run's rate or over all runs' lookups of token Secrets. A refused report
changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from kaizen_api.finetune_status import RunStatus
from kaizen_api.results import ProgressReport
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from kaizen_operator.admission import validation_message
from kaizen_operator.context import API, KIND, Conflict, Context, patch_status
from kaizen_operator.events import post_event
from kaizen_operator.kube import ApiError, path_of
from kaizen_operator.metrics import PROGRESS_REPORTS
from kaizen_operator.naming import ChildNames
from kaizen_operator.progress import (
    BODY_MAX_BYTES,
    RateLimiter,
    apply_report,
    bearer_token,
    is_stale,
    loss_not_finite_event,
    number_problem,
    path_problem,
    time_problem,
    token_matches,
    token_well_formed,
)

log = logging.getLogger(__name__)
ATTEMPTS = 4
Handler = Callable[[web.Request], Awaitable[web.Response]]


class Refused(Exception):
    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status, self.outcome, self.message = status, outcome, message


def token_secret(ctx: Context, namespace: str, run: str) -> dict[str, Any]:
    """The metadata of the run's token Secret ({} when there is none), within `ctx.secret_reads`."""
    if not ctx.secret_reads.allow("secrets"):
        raise Refused(429, "rate_limited", "too many reports for runs not known yet, try again")
    secret = ctx.kube.get(path_of("v1", "Secret", namespace, ChildNames.of(run).token_secret))
    return dict((secret or {}).get("metadata") or {})


def owner_of(ctx: Context, namespace: str, run: str) -> tuple[str, str]:
    """(pipeline name, uid) of the run: from the index of active runs, else from its token Secret."""
    if (owner := ctx.run_index.get((namespace, run))) is not None:
        return owner
    meta = token_secret(ctx, namespace, run)
    name = (meta.get("labels") or {}).get("kaizen.dev/pipeline")
    uid = next((r["uid"] for r in meta.get("ownerReferences") or [] if r.get("kind") == KIND), None)
    if not name or not uid:
        raise Refused(404, "unknown_run", f"no active run {namespace}/{run}")
    return name, uid


def apply(
    ctx: Context, namespace: str, run_name: str, owner: tuple[str, str], report: ProgressReport
) -> bool:
    """Patch the report into the run's status (retried on conflicts); False when it was stale."""
    for attempt in range(ATTEMPTS):
        pipeline = ctx.kube.get(path_of(API, KIND, namespace, owner[0]))
        if pipeline is None or pipeline["metadata"]["uid"] != owner[1]:
            raise Refused(404, "unknown_run", f"run {run_name} belongs to a pipeline that is gone")
        status = pipeline.get("status") or {}
        runs = list(status.get("runs") or [])
        index = next((i for i, r in enumerate(runs) if r.get("objectName") == run_name), None)
        if index is None or runs[index].get("phase") not in ("Pending", "Running"):
            raise Refused(404, "unknown_run", f"run {run_name} is not active")
        run = RunStatus.model_validate(runs[index])
        if report.run_name != run.name:
            raise Refused(400, "invalid", f"runName {report.run_name!r} is not this run ({run.name})")
        old, new = run.progress, report.progress
        if is_stale(old.updated_time if old else None, new.updated_time if new else None):
            return False
        applied = apply_report(run, report)
        updated = applied.to_manifest()
        runs[index] = updated
        patch: dict[str, Any] = {"runs": runs}
        if (status.get("currentRun") or {}).get("objectName") == run_name:
            patch["currentRun"] = updated
        try:
            patch_status(ctx, pipeline, patch)
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        # After the write: only the report whose write recorded the step first posts the Event.
        if (event := loss_not_finite_event(run, applied)) is not None:
            post_event(ctx.kube, pipeline, *event)
        return True
    return False


Owner = Callable[[Context, str, str], tuple[str, str]]
Apply = Callable[[Context, str, str, tuple[str, str], ProgressReport], bool]


def report_handler(ctx: Context, limiter: RateLimiter, owner: Owner, apply: Apply, kind: str) -> Handler:
    """One POST route of the channel: bearer token of the run's owner, rate limit per run, then
    ``apply`` (off the event loop); ``kind`` keeps the rate buckets of training and eval runs apart."""

    async def post(request: web.Request) -> web.Response:
        namespace, run = request.match_info["namespace"], request.match_info["run"]
        token = bearer_token(request.headers.get("Authorization", ""))
        try:
            if (problem := path_problem(namespace, run)) is not None:
                raise Refused(400, "invalid", problem)
            if token is None:
                raise Refused(401, "unauthorized", "a bearer token is required")
            if not token_well_formed(token):  # refused before the run is looked up, at no cost
                raise Refused(403, "forbidden", "the token does not authorise this run")
            owned_by = await asyncio.to_thread(owner, ctx, namespace, run)
            if not token_matches(ctx.key, token, namespace, run, owned_by[1]):
                raise Refused(403, "forbidden", "the token does not authorise this run")
            if not limiter.allow(f"{kind}/{namespace}/{run}"):
                raise Refused(429, "rate_limited", "too many reports for this run")
            try:
                report = ProgressReport.model_validate_json(await request.read())
            except ValidationError as err:
                message = validation_message(err, prefix="")
                raise Refused(400, "invalid", f"not a progress report: {message}") from None
            if (problem := time_problem(report, datetime.now(UTC)) or number_problem(report)) is not None:
                raise Refused(400, "invalid", problem)
            applied = await asyncio.to_thread(apply, ctx, namespace, run, owned_by, report)
        except Refused as refused:
            PROGRESS_REPORTS.labels(refused.outcome).inc()
            return web.json_response({"error": refused.message}, status=refused.status)
        except (ApiError, Conflict) as err:
            PROGRESS_REPORTS.labels("error").inc()
            log.warning("progress report for %s/%s not applied: %s", namespace, run, err)
            return web.json_response({"error": "not applied, try again"}, status=503)
        PROGRESS_REPORTS.labels("accepted" if applied else "stale").inc()
        return web.json_response({"applied": applied})

    return post


def progress_app(ctx: Context, limiter: RateLimiter) -> web.Application:
    from kaizen_operator.eval_progress import apply_eval, eval_owner  # evaluation runs, same channel

    app = web.Application(client_max_size=BODY_MAX_BYTES)
    app.router.add_post("/runs/{namespace}/{run}", report_handler(ctx, limiter, owner_of, apply, "train"))
    app.router.add_post(
        "/evalruns/{namespace}/{run}", report_handler(ctx, limiter, eval_owner, apply_eval, "eval")
    )
    return app


def ops_app(ready: Callable[[], bool]) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok") if ready() else web.Response(text="starting", status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(app: web.Application, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
