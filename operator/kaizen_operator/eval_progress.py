"""Evaluation runs on the operator's progress endpoint: `POST /evalruns/<namespace>/<run object name>`.

The same port, bearer-token scheme (HMAC of namespace, run object name and owner uid), rate limit and
report model (`ProgressReport.evalProgress`) as training runs; the report lands in the EvalJob's
`status.progress` while its latest run is the one reporting and is active.
"""

from __future__ import annotations

from kaizen_api.evaljob import EvalJobStatus
from kaizen_api.results import ProgressReport

from kaizen_operator.context import Conflict, Context
from kaizen_operator.endpoints import Refused, token_secret
from kaizen_operator.eval_reconciler import API, KIND, patch_eval_status
from kaizen_operator.eval_runs import FINISHED, run_number, run_object_name
from kaizen_operator.eval_workload import EVALJOB_LABEL
from kaizen_operator.kube import path_of
from kaizen_operator.progress import is_stale

ATTEMPTS = 4


def eval_owner(ctx: Context, namespace: str, run: str) -> tuple[str, str]:
    """(EvalJob name, uid) of a run object name, from its token Secret's labels and owner."""
    meta = token_secret(ctx, namespace, run)
    owner = next((r for r in meta.get("ownerReferences") or [] if r.get("kind") == KIND), None)
    if owner is None or EVALJOB_LABEL not in (meta.get("labels") or {}):
        raise Refused(404, "unknown_run", f"no active evaluation run {namespace}/{run}")
    return owner["name"], owner["uid"]


def apply_eval(
    ctx: Context, namespace: str, run: str, owner: tuple[str, str], report: ProgressReport
) -> bool:
    for attempt in range(ATTEMPTS):
        job = ctx.kube.get(path_of(API, KIND, namespace, owner[0]))
        if job is None or job["metadata"]["uid"] != owner[1]:
            raise Refused(404, "unknown_run", f"run {run} belongs to an EvalJob that is gone")
        status = EvalJobStatus.model_validate(job.get("status") or {})
        latest = status.runs[0] if status.runs else None
        if latest is None or run_object_name(owner[0], run_number(latest)) != run or latest.phase in FINISHED:
            raise Refused(404, "unknown_run", f"run {run} is not active")
        if report.run_name != latest.run_name:
            raise Refused(400, "invalid", f"runName {report.run_name!r} is not this run ({latest.run_name})")
        new, old = report.eval_progress, status.progress
        if new is None or is_stale(old.updated_time if old else None, new.updated_time):
            return False
        try:
            patch_eval_status(ctx, job, {"progress": new.to_manifest()})
            return True
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise
    return False
