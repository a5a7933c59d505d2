"""A succeeded evaluation's scores on the evaluated PrivateModel version (`status.versions[].evaluations`).

The EvalJob controller's one write to a PrivateModel: it merges by run name into the version's
entry and touches nothing else, so the registry controller's fields (files, tags, readiness) stay.
"""

from __future__ import annotations

from typing import Any

from kaizen_api.evaljob import EvalRunRecord
from kaizen_api.privatemodel import EVALUATIONS_MAX, VersionEvaluation

from kaizen_operator.kube import Kube
from kaizen_operator.registry_link import update_versions


def merge_evaluation(
    versions: list[dict[str, Any]], version: str, entry: VersionEvaluation
) -> list[dict[str, Any]] | None:
    """`versions` with the evaluation appended to the version's list (newest last, the oldest dropped
    beyond the CRD's EVALUATIONS_MAX), or None when nothing changes (the run is already recorded, or the
    version is not in the registry)."""
    out = []
    changed = False
    for item in versions:
        if item.get("name") == version:
            evaluations = list(item.get("evaluations") or [])
            if any(_same_run(e, entry) for e in evaluations):
                return None
            item = {**item, "evaluations": [*evaluations, entry.to_manifest()][-EVALUATIONS_MAX:]}
            changed = True
        out.append(item)
    return out if changed else None


def _same_run(recorded: dict[str, Any], entry: VersionEvaluation) -> bool:
    """The same run of the same EvalJob object: run names repeat in a job deleted and made again."""
    return (
        recorded.get("runName") == entry.run_name
        and recorded.get("evalJob") == entry.eval_job
        and recorded.get("evalJobUid") == entry.eval_job_uid
    )


def record_evaluation(
    kube: Kube, namespace: str, model: str, version: str, job: dict[str, Any], run: EvalRunRecord, suite: str
) -> None:
    entry = VersionEvaluation(
        eval_job=job["metadata"]["name"],
        eval_job_uid=job["metadata"]["uid"],
        run_name=run.run_name,
        suite=suite,
        completed_time=run.completion_time,
        results=run.results,
        results_uri=run.results_uri,
    )
    update_versions(
        kube, namespace, model, lambda versions: merge_evaluation(versions, version, entry), missing_ok=True
    )
