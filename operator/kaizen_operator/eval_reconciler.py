"""One EvalJob reconcile: record a new run, create or follow its Job, derive status, notify, register.

Level-based, like the pipelines' reconciler (whose Context, status patching and Events it shares): a
new run is on record in status before any child exists, children have names derived from the run,
and everything else is derived from the Job and pod found. The latest run's results stay at the top
level of status; `status.runs` keeps the newest RUNS_MAX runs.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

from kaizen_api.base import API_VERSION as API
from kaizen_api.evaljob import RUNS_MAX, EvalJobSpec, EvalJobStatus, EvalRunRecord
from kaizen_api.kinds import EVAL_JOB
from pydantic import ValidationError

from kaizen_operator import fakepods, notify
from kaizen_operator.admission import admission_status
from kaizen_operator.adoption import NameConflict, controlled_by, create_owned, delete_owned, owned_by
from kaizen_operator.conditions import get_condition, set_condition
from kaizen_operator.context import Conflict, Context
from kaizen_operator.eval_registry import record_evaluation
from kaizen_operator.eval_resolve import resolve_eval_run
from kaizen_operator.eval_runs import (
    FINISHED,
    SENDING,
    EvalAdvance,
    EvalChildren,
    advance_eval,
    cancel_requested,
    new_run,
    notification_action,
    run_number,
    run_object_name,
)
from kaizen_operator.eval_workload import build_eval_config_map, build_eval_job, build_eval_token_secret
from kaizen_operator.events import post_event
from kaizen_operator.kube import ApiError, path_of
from kaizen_operator.naming import ChildNames
from kaizen_operator.progress import run_token
from kaizen_operator.resolve import ResolveError
from kaizen_operator.workloads.meta import RUN_LABEL

log = logging.getLogger(__name__)
KIND = EVAL_JOB.kind
NAME_WAIT_S = 10.0  # a child's name held by an object garbage collection is removing
STATUS_KEYS = (
    "observedGeneration", "phase", "conditions", "jobName", "runName", "startTime", "completionTime",
    "progress", "results", "resultsUri", "warnings", "message", "runs",
)  # fmt: skip


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def patch_eval_status(ctx: Context, job: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    meta = job["metadata"]
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
    try:
        return ctx.kube.merge_patch(path_of(API, KIND, meta["namespace"], meta["name"]) + "/status", body)
    except ApiError as err:
        if err.status == 409:
            raise Conflict() from None
        raise


def _objects(ctx: Context, namespace: str, spec: EvalJobSpec) -> dict[str, dict[str, Any]]:
    """The PrivateModel / FineTunePipeline the model reference names (and a pipeline's output model)."""
    found: dict[str, dict[str, Any]] = {}
    ref = spec.model
    if ref is not None and ref.pipeline_run is not None:
        pipeline = ctx.kube.get(path_of(API, "FineTunePipeline", namespace, ref.pipeline_run.pipeline))
        if pipeline is not None:
            found[f"FineTunePipeline/{ref.pipeline_run.pipeline}"] = pipeline
            output = ((pipeline.get("spec") or {}).get("output") or {}).get("privateModel")
            if output and (model := ctx.kube.get(path_of(API, "PrivateModel", namespace, output))):
                found[f"PrivateModel/{output}"] = model
    if ref is not None and ref.private_model is not None:
        model = ctx.kube.get(path_of(API, "PrivateModel", namespace, ref.private_model.name))
        if model is not None:
            found[f"PrivateModel/{ref.private_model.name}"] = model
    return found


def _children(ctx: Context, namespace: str, object_name: str, uid: str) -> EvalChildren:
    """The run's Job if the EvalJob `uid` owns it (creating a foreign one's name is a NameConflict), and
    that Job's pods: names come from the job's name and run number, so a Job left by a deleted EvalJob of
    the same name has this run's name, and so do its pods."""
    names = ChildNames.of(object_name)
    job = ctx.kube.get(path_of("batch/v1", "Job", namespace, names.job))
    if job is not None and not owned_by(job, uid):
        job = None
    pods = ctx.kube.list(path_of("v1", "Pod", namespace), f"{RUN_LABEL}={object_name}")
    if job is not None:
        pods = [p for p in pods if controlled_by(p, job["metadata"]["uid"])]
    return EvalChildren(job=job, pods=pods)


def _create_children(
    ctx: Context, job: dict[str, Any], spec: EvalJobSpec, run: EvalRunRecord, obj: str
) -> None:
    namespace = job["metadata"]["namespace"]
    resolved = resolve_eval_run(
        job, run.run_name, obj, ctx.catalog, _objects(ctx, namespace, spec), ctx.settings
    )
    token = run_token(ctx.key, namespace, obj, job["metadata"]["uid"])
    workload = build_eval_job(resolved, job, ctx.settings)
    fakepods.apply(job, "workload", [workload])
    for manifest in (
        build_eval_config_map(resolved, job),
        build_eval_token_secret(resolved, job, token),
        workload,
    ):
        create_owned(ctx.kube, manifest)


def _delete_children(ctx: Context, namespace: str, obj: str, uid: str) -> None:
    names = ChildNames.of(obj)
    delete_owned(ctx.kube, path_of("batch/v1", "Job", namespace, names.job), uid)
    delete_owned(ctx.kube, path_of("v1", "Secret", namespace, names.token_secret), uid)


def _delete_token_secret(ctx: Context, namespace: str, obj: str, uid: str) -> None:
    """An ended run's token Secret, if the EvalJob owns it: only a running pod reports progress, and one
    Secret per run would otherwise stay for the EvalJob's life. The ConfigMap stays for inspection."""
    delete_owned(ctx.kube, path_of("v1", "Secret", namespace, ChildNames.of(obj).token_secret), uid)


def _step(
    ctx: Context, job: dict[str, Any], spec: EvalJobSpec, run: EvalRunRecord, now: datetime
) -> tuple[EvalAdvance, float | None]:
    """The run's step, and when to look again: a name held by a going object frees by itself."""
    namespace, uid = job["metadata"]["namespace"], job["metadata"]["uid"]
    obj = run_object_name(job["metadata"]["name"], run_number(run))
    cancel, run = cancel_requested(job["metadata"].get("annotations") or {}, run, obj)
    step = advance_eval(run, _children(ctx, namespace, obj, uid), now=now, cancel=cancel)
    try:
        if "create_children" in step.actions:
            _create_children(ctx, job, spec, run, obj)
        if "delete_children" in step.actions:
            _delete_children(ctx, namespace, obj, uid)
    except (NameConflict, ResolveError) as err:
        if isinstance(err, NameConflict) and err.waits:  # an earlier EvalJob of this name left it
            return EvalAdvance(run, message=err.message), NAME_WAIT_S
        ended = run.model_copy(update={"phase": "Failed", "reason": err.reason, "completion_time": now})
        return EvalAdvance(ended, message=err.message, event=("Warning", err.reason, err.message)), None
    return step, None


def _notify(
    ctx: Context, job: dict[str, Any], spec: EvalJobSpec, run: EvalRunRecord, message: str | None
) -> tuple[str, str, str]:
    """(status, reason, message) of the Notified condition after sending, or trying to."""
    wanted = spec.notification
    assert wanted is not None
    secret_name = os.environ.get(notify.SECRET_ENV, notify.DEFAULT_SECRET)
    namespace = os.environ.get("KAIZEN_OPERATOR_NAMESPACE", job["metadata"]["namespace"])
    try:
        settings = notify.smtp_settings(ctx.kube.get(path_of("v1", "Secret", namespace, secret_name)))
        mail = notify.compose(
            settings.sender,
            list(wanted.emails),
            job=job["metadata"]["name"],
            namespace=job["metadata"]["namespace"],
            run_name=run.run_name,
            phase=run.phase,
            reason=run.reason,
            results=run.results,
            results_uri=run.results_uri,
            message=message,
        )
        notify.send(settings, mail)
    except (notify.NotifyError, ApiError) as err:
        return "False", "SendFailed", f"run {run.run_name}: {err}"
    return "True", "Sent", f"run {run.run_name}: mail sent to {', '.join(wanted.emails)}"


def _conditions(
    old: list[dict[str, Any]] | None, run: EvalRunRecord, generation: int, message: str
) -> list[dict[str, Any]]:
    finished = run.phase in ("Succeeded", "Failed", "Cancelled")
    running = "True" if run.phase == "Running" else "False"
    # The work queue admits the job too (a valid spec gets here): status has one writer, as for pipelines.
    conditions = set_condition(old, "Accepted", "True", "SpecValid", "the spec is valid", generation)
    conditions = set_condition(
        conditions, "Running", running, run.phase if not finished else "Finished", "", generation
    )
    succeeded = "Unknown" if not finished else ("True" if run.phase == "Succeeded" else "False")
    reason = run.reason or ("Running" if run.phase == "Running" else "Pending")
    return set_condition(conditions, "Succeeded", succeeded, reason, message[:32768], generation)


def reconcile_eval(ctx: Context, namespace: str, name: str) -> float | None:
    """One pass; returns seconds until the job wants another look (None: only on events)."""
    job = ctx.kube.get(path_of(API, KIND, namespace, name))
    if job is None or job["metadata"].get("deletionTimestamp"):
        return None
    generation = job["metadata"]["generation"]
    try:
        spec = EvalJobSpec.model_validate(job.get("spec") or {})
    except ValidationError:
        status = admission_status(EVAL_JOB, job.get("spec") or {}, job.get("status") or {}, generation)
        if any((job.get("status") or {}).get(k) != v for k, v in status.items()):
            patch_eval_status(ctx, job, status)
        return None
    now = utcnow()
    old = EvalJobStatus.model_validate(job.get("status") or {})
    runs = list(old.runs or [])
    if (started := new_run(spec, runs, now, job["metadata"].get("annotations") or {})) is not None:
        runs = [started, *runs][:RUNS_MAX]
        record: dict[str, Any] = dict.fromkeys(("progress", "results", "resultsUri", "warnings", "message"))
        record |= {"runs": [r.to_manifest() for r in runs], "runName": started.run_name, "phase": "Pending"}
        job = patch_eval_status(ctx, job, record)  # on record before any child exists
    current = runs[0]
    step, requeue = _step(ctx, job, spec, current, now)
    latest = runs[0] = step.run
    if latest.phase in FINISHED:  # before the end is on record, so no later run leaves it behind
        _delete_token_secret(
            ctx, namespace, run_object_name(name, run_number(latest)), job["metadata"]["uid"]
        )
    before = job.get("status") or {}
    # An active run's message is this pass's (a wait that is over clears it); an ended run's is the
    # one the pass that saw the end wrote, kept by the passes after it.
    active = step.message is not None or latest.phase not in FINISHED
    message = step.message if active else before.get("message")
    conditions = _conditions(before.get("conditions"), latest, generation, message or "")
    if latest.phase == "Succeeded" and current.phase != "Succeeded":
        _record_on_version(ctx, job, spec, latest)

    def derived(conditions: list[dict[str, Any]]) -> dict[str, Any]:
        """Status from this pass's run; progress, warnings and message carried when it has none."""
        dumped = latest.to_manifest()
        return {
            "observedGeneration": generation,
            "phase": latest.phase,
            "conditions": conditions,
            "jobName": ChildNames.of(run_object_name(name, run_number(latest))).job,
            "runName": latest.run_name,
            "startTime": dumped.get("startTime"),
            "completionTime": dumped.get("completionTime"),
            "progress": before.get("progress"),
            "results": latest.results,
            "resultsUri": latest.results_uri,
            "warnings": list(step.warnings) or before.get("warnings"),
            "message": message,
            "runs": [r.to_manifest() for r in runs],
        }

    action = notification_action(spec.notification, latest, get_condition(conditions, "Notified"))
    sent = None
    if action == "send":  # claimed (a conflict raises before any mail), sent, then settled below
        claim = f"run {latest.run_name}: sending mail (at most once)"
        conditions = set_condition(conditions, "Notified", "Unknown", SENDING, claim, generation)
        job = patch_eval_status(ctx, job, derived(conditions))
        sent = _notify(ctx, job, spec, latest, message)  # a late mail (notification added after) too
        conditions = set_condition(conditions, "Notified", *sent, generation)
    elif action is not None:
        conditions = set_condition(conditions, "Notified", *action, generation)
    status = derived(conditions)
    if any((job.get("status") or {}).get(k) != status.get(k) for k in STATUS_KEYS):
        try:
            patch_eval_status(ctx, job, status)
        except Conflict:
            if sent is not None:  # else the next pass would read the claim as unconfirmed
                _settle_notified(ctx, namespace, name, sent, generation)
            raise
    if step.event is not None:
        post_event(ctx.kube, job, *step.event, kind=KIND)
    return requeue


def _settle_notified(
    ctx: Context, namespace: str, name: str, outcome: tuple[str, str, str], generation: int
) -> None:
    """The mail's outcome onto the newest status, when the pass's own write lost a conflict."""
    for _ in range(3):
        job = ctx.kube.get(path_of(API, KIND, namespace, name))
        if job is None:
            return
        conditions = (job.get("status") or {}).get("conditions")
        try:
            patch_eval_status(
                ctx, job, {"conditions": set_condition(conditions, "Notified", *outcome, generation)}
            )
            return
        except Conflict:
            continue


def _record_on_version(ctx: Context, job: dict[str, Any], spec: EvalJobSpec, run: EvalRunRecord) -> None:
    """Best effort: the run's scores on the PrivateModel version its Job evaluated (registry_link writes
    versions); never resolved again, which would name whichever version is newest by now."""
    namespace = job["metadata"]["namespace"]
    if run.evaluated is None:  # a catalog model, a URI, an endpoint, or predictions
        return
    try:
        record_evaluation(
            ctx.kube, namespace, run.evaluated.private_model, run.evaluated.version, job, run, spec.suite
        )
    except ApiError as err:
        log.warning("results of %s/%s not recorded on the model version: %s", namespace, run.run_name, err)
