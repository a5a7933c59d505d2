"""One FineTunePipeline reconcile: read what exists, derive status, create what is missing, patch.

Level-based: every pass starts from the pipeline object (as its watch last delivered it, else read),
its children and the runs its status records, never from memory of events. Every child name is
derived from the run, and a run's name is on record before its workload is created (its Secret and
ConfigMap are created meanwhile), so a pass cut short at any point (an operator killed with SIGKILL) is
completed by the next one without a second workload. One exception saves a round trip on the way to a
new pipeline's first workload: a pipeline never reconciled before asks for its first run at its own
creation time, a name every pass derives alike, so that run's preflight Job is created beside its record.
A cached pipeline may be gone (`context.confirm`): it is confirmed before any other child is created.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import FineTunePipelineStatus, RunStatus
from kaizen_api.kinds import FINETUNE_PIPELINE
from pydantic import ValidationError

from kaizen_operator import children, gate_runs, pipeline_status, schedule
from kaizen_operator.admission import admission_status
from kaizen_operator.adoption import REASON as NAME_CONFLICT
from kaizen_operator.context import API, KIND, Context, confirm, patch_status
from kaizen_operator.events import post_event
from kaizen_operator.kube import path_of
from kaizen_operator.naming import is_template, run_display_name, run_object_name
from kaizen_operator.pipeline_status import Blocker
from kaizen_operator.quotas import WAIT_FALLBACK_S, concurrent_runs_blocker, pipeline_blocker
from kaizen_operator.resolve import ResolveError, base_model_facts, resolve_train_run, spec_model_name
from kaizen_operator.run_actions import RETRY_S, RunActions
from kaizen_operator.triggers import (
    RunRequest,
    cancel_targets,
    concurrency_decision,
    holding_slots,
    manual_request,
    parse_time,
    recorded_run,
    replaced_runs,
    schedule_requests,
    seen_token,
)
from kaizen_operator.workloads import workload_kind

log = logging.getLogger(__name__)
STATUS_KEYS = (
    "observedGeneration",
    "phase",
    "conditions",
    "runs",
    "currentRun",
    "lastRunName",
    "lastRunToken",
    "lastScheduleTime",
    "nextScheduleTime",
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _private_models(ctx: Context, namespace: str, spec: FineTunePipelineSpec) -> dict[str, dict[str, Any]]:
    """From the PrivateModel watch; a model it has not delivered (yet) is read from the API server."""
    wanted = {spec.output.private_model}
    if spec.base_model.private_model is not None:
        wanted.add(spec.base_model.private_model.name)
    found = {}
    for name in wanted:
        obj = ctx.models.get((namespace, name)) or ctx.kube.get(path_of(API, "PrivateModel", namespace, name))
        if obj is not None:
            found[name] = obj
    return found


class Pass:
    """The state of one reconcile pass over one pipeline."""

    def __init__(self, ctx: Context, pipeline: dict[str, Any], spec: FineTunePipelineSpec) -> None:
        self.ctx = ctx
        self.pipeline = pipeline
        self.spec = spec
        self.meta = pipeline["metadata"]
        self.ns = self.meta["namespace"]
        self.status = FineTunePipelineStatus.model_validate(pipeline.get("status") or {})
        self.runs: list[RunStatus] = list(self.status.runs or [])
        self.now = utcnow()
        self.blocker: Blocker | None = None
        self.errors: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        self.requeue: float | None = None
        self.private_models: dict[str, dict[str, Any]] = {}
        self.fresh: set[str] = set()  # object names of runs recorded by this pass: nothing of theirs exists
        self.started: dict[str, children.StartedRun] = {}  # fresh runs' first children, under way
        self.early: set[str] = set()  # fresh runs whose preflight Job starts beside their record
        self.confirmed = False  # the pipeline and its models, perhaps read from the caches, still exist
        self.deciding: threading.Lock | None = None  # held from the first run count (`take_requests`)

    def confirm(self) -> None:
        """Once per pass, before it creates a child that outlives it (see `context.confirm`)."""
        if not self.confirmed:
            confirm(self.ctx, self.pipeline, self.private_models)
            self.confirmed = True

    # -- what blocks runs --------------------------------------------------------------------------

    def check_blockers(self) -> None:
        """What blocks runs (the resolver's reasons first), and whether a schedule pipeline keeps its
        CronJob: all but a pipeline over a namespace cap or whose schedule never fires do."""
        kube, settings = self.ctx.kube, self.ctx.settings
        self.private_models = _private_models(self.ctx, self.ns, self.spec)
        nodes = self.spec.resources.nodes
        standing = schedule.schedule_blocker(self.spec, self.now) or pipeline_blocker(
            self.ctx.pipelines, kube, self.pipeline, self.spec, settings.quotas
        )
        self.keeps_cronjob = standing is None
        self.model_name = spec_model_name(self.spec)  # names a skipped firing if resolving fails
        try:
            self.model_name = base_model_facts(self.pipeline, self.ctx.catalog, self.private_models).name
            probe = resolve_train_run(
                self.pipeline, "ft_probe_00000000000000", self.ctx.catalog, self.private_models, settings
            )
            if nodes > 1:  # CRDMissing when a PyTorchJob is asked for and its CRD is not installed
                workload_kind(
                    probe, settings, pytorchjob_available=kube.serves("kubeflow.org/v1", "pytorchjobs")
                )
        except ResolveError as err:
            self.blocker = Blocker(err.reason, err.message)
            return
        self.blocker = standing

    def runs_quota(self, runs: list[RunStatus] | None = None) -> Blocker | None:
        """The concurrent-runs cap, counting `runs` (default: those this pass has recorded so far)."""
        ctx = self.ctx
        counted = self.runs if runs is None else runs
        if ctx.settings.quotas.max_concurrent_runs is not None and self.deciding is None:
            self.deciding = ctx.pipelines.deciding(self.ns)
            self.deciding.acquire()
        return concurrent_runs_blocker(ctx.pipelines, ctx.kube, self.pipeline, counted, ctx.settings.quotas)

    # -- new runs ----------------------------------------------------------------------------------

    def _new_run(self, request: RunRequest, **fields: Any) -> RunStatus:
        template = is_template(self.pipeline)
        when = request.when
        taken = {r.object_name for r in self.runs}
        while True:
            display = run_display_name(self.model_name, when, template)
            obj = run_object_name(self.meta["name"], display)
            if obj not in taken or request.trigger == "schedule":
                break
            when += timedelta(seconds=1)  # two manual runs within one second
        return RunStatus(
            name=display,
            object_name=obj,
            trigger=request.trigger,
            token=request.token,
            scheduled_time=when if request.trigger == "schedule" else None,
            start_time=self.now,
            nodes=self.spec.resources.nodes,
            **({"phase": "Pending", "reason": "Preflight"} | fields),
        )

    def take_requests(self, trigger_jobs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """`_take_requests`, then the namespace's run count is free again: the runs recorded under a
        concurrent-runs cap count as active for the other passes until the status write is in the
        watch cache, or the pass ends (see quotas)."""
        try:
            return self._take_requests(trigger_jobs)
        finally:
            if self.deciding is not None:
                self.ctx.pipelines.reserve((self.ns, self.meta["name"]), self.fresh)
                self.deciding.release()
                self.deciding = None

    def _take_requests(self, trigger_jobs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """Record new runs and skipped firings; returns (trigger Job, note) to mark. The runs a firing
        replaces are cancelled by `replaced_runs`, from the record."""
        handled: list[tuple[str, str]] = []
        if self.blocker is None:
            created = parse_time(self.meta["creationTimestamp"]) or self.now
            manual = manual_request(self.spec, self.status, self.now, created)
            if manual is not None:
                quota = self.runs_quota()
                if quota is None:
                    self.runs.insert(0, self._new_run(manual))
                    self.fresh.add(self.runs[0].object_name or "")
                    if manual.early:
                        self.early.add(self.runs[0].object_name or "")
                    self.status.last_run_token = manual.token
                else:
                    self.blocker, self.requeue = quota, WAIT_FALLBACK_S
        for request in schedule_requests(trigger_jobs):
            recorded = recorded_run(request, self.runs)
            if recorded is not None:  # its trigger Job's handled mark was lost: mark it again
                handled.append((request.trigger_job or "", f"{recorded.phase} {recorded.name}"))
                continue
            active = [r for r in self.runs if not r.finished]
            decision, message = concurrency_decision(self.spec.trigger.concurrency_policy, active)
            skip: Blocker | None = None
            if self.blocker is not None:
                skip = self.blocker
            elif self.spec.trigger.suspend:
                skip = Blocker("Suspended", "the schedule fired while spec.trigger.suspend was true")
            elif decision == "skip":
                skip = Blocker("ConcurrencyForbidden", message)
            elif (quota := self.runs_quota(holding_slots(self.runs, decision))) is not None:
                skip = quota
            if skip is not None:
                run = self._new_run(
                    request,
                    phase="Skipped",
                    reason=skip.reason,
                    message=skip.message,
                    completion_time=self.now,
                )
                run.object_name = None
                self.events.append(
                    ("Warning", "RunSkipped", f"scheduled run {run.name} skipped: {skip.message}")
                )
            else:
                run = self._new_run(request)
                self.fresh.add(run.object_name or "")
            self.runs.insert(0, run)
            self.status.last_schedule_time = request.when
            handled.append((request.trigger_job or "", f"{run.phase} {run.name}"))
        return handled

    def start_fresh_runs(self) -> None:
        """New runs' Secrets and ConfigMaps (and early preflight Jobs), created while their record is
        written (a round trip less)."""
        for run in self.runs:
            if run.object_name in self.fresh:
                try:
                    resolved = resolve_train_run(
                        self.pipeline, run.name, self.ctx.catalog, self.private_models, self.ctx.settings
                    )
                except ResolveError:
                    continue  # advance_runs fails the run with the reason
                self.started[run.object_name] = children.start_run(
                    self.ctx.kube,
                    resolved,
                    self.pipeline,
                    self.ctx.key,
                    self.ctx.settings,
                    with_preflight=run.object_name in self.early,
                )

    # -- existing runs -----------------------------------------------------------------------------

    def advance_runs(self, cancel: set[str]) -> None:
        """Step each recorded run (`run_actions`), keeping what that reports."""
        actions = RunActions(
            self.ctx, self.pipeline, self.spec, self.private_models, self.started, self.confirm, self.now
        )
        self.runs = actions.advance(self.runs, cancel, self.fresh)
        self.events += actions.events
        self.errors += actions.errors
        if actions.requeue is not None:
            self.requeue = actions.requeue

    # -- status ------------------------------------------------------------------------------------

    def derived_status(self) -> dict[str, Any]:
        runs = pipeline_status.prune(self.runs, self.spec)
        generation = self.meta["generation"]
        blocker = self.blocker
        if blocker is None and self.errors:
            blocker = Blocker("ReconcileError", "; ".join(self.errors)[:4096])
        conditions = pipeline_status.conditions(
            (self.pipeline.get("status") or {}).get("conditions"), self.spec, runs, generation, blocker
        )
        current = next((r for r in runs if not r.finished), None)
        out = FineTunePipelineStatus(
            observed_generation=generation,
            phase=pipeline_status.phase(self.spec, runs, blocker),
            last_run_name=next((r.name for r in runs if r.phase != "Skipped"), self.status.last_run_name),
            last_run_token=seen_token(self.spec, self.status),
            last_schedule_time=self.status.last_schedule_time,
            next_schedule_time=schedule.next_time(self.spec, self.now) if self.keeps_cronjob else None,
            current_run=current,
            runs=runs,
        ).to_manifest()
        out["conditions"] = gate_runs.promoted_condition(conditions, self.spec, runs, generation)
        # Keys this pass no longer sets are removed (merge patch null), e.g. currentRun after a run ends.
        return {key: out.get(key) for key in STATUS_KEYS}

    def changed(self, status: dict[str, Any]) -> bool:
        old = self.pipeline.get("status") or {}
        return any(old.get(key) != status.get(key) for key in STATUS_KEYS)


def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """One pass; returns seconds until the pipeline wants another look (None: only on events)."""
    kube = ctx.kube
    key = (namespace, name)
    pipeline = ctx.pipelines.get(key) or kube.get(path_of(API, KIND, namespace, name))
    if pipeline is None or pipeline["metadata"].get("deletionTimestamp"):
        ctx.forget(key)
        return None
    generation = pipeline["metadata"]["generation"]
    try:
        spec = FineTunePipelineSpec.model_validate(pipeline.get("spec") or {})
    except ValidationError:  # CEL admits what the models refuse only when the CRDs are stale
        status = admission_status(
            FINETUNE_PIPELINE, pipeline.get("spec") or {}, pipeline.get("status") or {}, generation
        )
        if any((pipeline.get("status") or {}).get(k) != v for k, v in status.items()):
            patch_status(ctx, pipeline, status)
        return None
    work = Pass(ctx, pipeline, spec)
    work.check_blockers()
    cronjob = schedule.sync_cronjob(kube, pipeline, spec, ctx.settings, work.keeps_cronjob, work.confirm)
    refused = cronjob.blocker
    if refused is not None:  # no CronJob, so no nextScheduleTime; a resolver's reason comes first
        work.keeps_cronjob, work.blocker = False, work.blocker or refused
        if refused.reason == NAME_CONFLICT:  # one garbage collection is removing frees the name
            work.requeue = RETRY_S
    triggers = children.trigger_jobs(kube, namespace, name, cronjob.uid)
    try:
        handled = work.take_requests(triggers)
        if handled or len(work.runs) != len(work.status.runs or []):
            # New runs are on record before their workloads exist.
            work.start_fresh_runs()
            status = work.derived_status()
            pipeline = patch_status(ctx, pipeline, status)  # ends the new runs' reservation
            for job, note in handled:
                children.mark_handled(kube, job, namespace, note)
            work.pipeline = pipeline
            work.meta = pipeline["metadata"]
    finally:
        if work.fresh:  # a pass that ends before its write frees what it reserved
            ctx.pipelines.unreserve(key)
    cancel = cancel_targets(pipeline["metadata"].get("annotations") or {}, work.runs)
    cancel |= replaced_runs(spec.trigger.concurrency_policy, work.runs)
    work.advance_runs(cancel)
    gate = gate_runs.evaluate(kube, pipeline, spec, work.runs, work.confirm)
    work.runs, work.events, work.errors = gate.runs, work.events + gate.events, work.errors + gate.errors
    if gate.requeue is not None:
        work.requeue = min(work.requeue or gate.requeue, gate.requeue)
    status = work.derived_status()
    if work.changed(status):
        patch_status(ctx, pipeline, status)
    for type_, reason, message in work.events:
        post_event(kube, pipeline, type_, reason, message)
    ctx.remember(key, pipeline["metadata"]["uid"], status.get("runs") or [])
    return work.requeue
