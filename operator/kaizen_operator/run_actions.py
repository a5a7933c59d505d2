"""A pass's I/O on the runs it has on record: observe their children, step each with `runs.advance`
(pure), and carry out what that decides (create the preflight Job or the workload, delete children,
register a succeeded run's version).

An API error worth retrying leaves a run as recorded, for the next pass; one the API server will never
get past (a manifest it refuses, an output model deleted under a pending run) fails the run instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import RunStatus

from kaizen_operator import children
from kaizen_operator.adoption import NameConflict
from kaizen_operator.context import Context
from kaizen_operator.kube import ApiError
from kaizen_operator.registry_link import record_version
from kaizen_operator.resolve import ResolveError, resolve_train_run
from kaizen_operator.runs import advance
from kaizen_operator.workloads import asks_for_pytorchjobs

RETRY_S = 30.0
# A 4xx other than these means the API server will never accept the manifest as built.
RETRYABLE_STATUSES = frozenset({401, 403, 404, 408, 409, 429})


@dataclass
class RunActions:
    """What one pass needs to act on its runs, and what it reports back (events, errors, requeue)."""

    ctx: Context
    pipeline: dict[str, Any]
    spec: FineTunePipelineSpec
    private_models: dict[str, dict[str, Any]]
    started: dict[str, children.StartedRun]  # fresh runs' first children, under way
    before_create: Callable[[], None]  # the pass confirms its pipeline exists (`context.confirm`)
    now: datetime
    events: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requeue: float | None = None

    def advance(self, runs: list[RunStatus], cancel: set[str], fresh: set[str]) -> list[RunStatus]:
        """`runs` after one step each; `fresh` names the runs recorded by this pass (nothing of theirs
        exists yet, so their children need not be listed, unless a pass cut short made the early
        preflight Job this pass found)."""
        runs = list(runs)
        active = [r for r in runs if not r.finished and r.object_name]
        if not active:
            return runs
        kube, meta = self.ctx.kube, self.pipeline["metadata"]
        asks = asks_for_pytorchjobs(active, self.spec.resources.multi_node_backend, self.ctx.settings)
        pytorchjob = asks and kube.serves("kubeflow.org/v1", "pytorchjobs")
        # A fresh run whose early preflight Job already existed (made by a pass cut short before the
        # record) has children to see: that Job may have ended, and its last event gone, long ago.
        found = {name for name, started in self.started.items() if started.found_preflight}
        if all(r.object_name in fresh - found for r in active):
            observed = children.Observed({}, {}, {})  # saves two LISTs on a new run's way to its preflight
        else:
            observed = children.observe(
                kube, meta["namespace"], meta["name"], meta["uid"], pytorchjobs=pytorchjob, pods=True
            )
        for index, run in enumerate(runs):
            if run.finished or not run.object_name:
                continue
            step = advance(run, observed.of(run), now=self.now, cancel=run.name in cancel)
            started = self.started.pop(run.object_name, None)
            try:
                if run.object_name not in fresh and not step.run.finished:
                    self._restore_config(run, step.actions)
                if started is not None and "create_preflight" not in step.actions and started.finish(kube):
                    continue  # its preflight Job was made again, for the config of the spec now
                updated = self._act(step.run, step.actions, pytorchjob, started)
                if updated.phase == "Succeeded":
                    self._register(updated)
            except (ResolveError, NameConflict) as err:  # e.g. the output model was deleted
                if isinstance(err, NameConflict) and err.waits:  # garbage collection frees the name
                    self.errors.append(f"run {run.name}: {err.message}")
                    self.requeue = RETRY_S
                    continue
                updated = self._failed(run, err.reason, err.message, f"run {run.name}: {err.message}")
            except ApiError as err:
                if err.status in RETRYABLE_STATUSES or err.status >= 500:
                    self.errors.append(f"run {run.name}: {err}")
                    self.requeue = RETRY_S
                    continue  # keep the run as recorded; the next pass tries again
                message = f"the API server refused a child of the run: {err.message}"
                updated = self._failed(run, "WorkloadRejected", message, message)
            else:
                if step.event:
                    self.events.append(step.event)
            runs[index] = updated
        return runs

    def _restore_config(self, run: RunStatus, actions: tuple[str, ...]) -> None:
        """A recorded run this process has not seen yet (`Context.run_index`: filled at the end of each
        pass, empty at start-up) gets its Secret and ConfigMap where absent, unless this step creates
        them with its preflight Job. Once per run and process: two creates, mostly AlreadyExists. An API
        error ends the pass before the run is remembered, so the next pass tries again."""
        if (self.pipeline["metadata"]["namespace"], run.object_name) in self.ctx.run_index:
            return
        if "create_preflight" in actions:
            return
        ctx = self.ctx
        try:
            resolved = resolve_train_run(
                self.pipeline, run.name, ctx.catalog, self.private_models, ctx.settings
            )
        except ResolveError:
            return  # nothing can be built; a step that needs to create a child fails the run
        children.ensure_config(ctx.kube, resolved, self.pipeline, ctx.key, ctx.settings)

    def _failed(self, run: RunStatus, reason: str, message: str, event: str) -> RunStatus:
        """A run the pass itself fails; what it leaves goes, as for any run that ends."""
        meta = self.pipeline["metadata"]
        children.delete_children(self.ctx.kube, meta["namespace"], run, meta["uid"], leftovers=True)
        self.events.append(("Warning", reason, event))
        return run.model_copy(
            update={"phase": "Failed", "reason": reason, "message": message, "completion_time": self.now}
        )

    def _act(
        self,
        run: RunStatus,
        actions: tuple[str, ...],
        pytorchjob: bool,
        started: children.StartedRun | None,
    ) -> RunStatus:
        """Carry out the step's actions; `started`: a fresh run's first children, created or under way."""
        ctx = self.ctx
        if "delete_children" in actions or "delete_leftovers" in actions:
            meta = self.pipeline["metadata"]
            leftovers = "delete_children" not in actions
            children.delete_children(ctx.kube, meta["namespace"], run, meta["uid"], leftovers=leftovers)
        if "create_preflight" in actions or "create_workload" in actions:
            resolved = resolve_train_run(
                self.pipeline, run.name, ctx.catalog, self.private_models, ctx.settings
            )
            if "create_workload" in actions or started is None or started.preflight is None:
                self.before_create()  # (an early preflight Job, made already, needed no confirmation)
            if "create_preflight" in actions:
                children.create_preflight(ctx.kube, resolved, self.pipeline, ctx.settings, ctx.key, started)
            else:
                workload = children.create_workload(
                    ctx.kube, resolved, self.pipeline, ctx.settings, pytorchjob=pytorchjob
                )
                run = run.model_copy(
                    update={"job_name": workload["metadata"]["name"], "job_kind": workload["kind"]}
                )
                self.events.append(
                    ("Normal", "WorkloadCreated", f"run {run.name}: {workload['kind']} {run.job_name}")
                )
        return run

    def _register(self, run: RunStatus) -> None:
        """Before the status says Succeeded, so a pass cut short here registers on the next one."""
        assert run.output_version
        record_version(
            self.ctx.kube,
            self.pipeline["metadata"]["namespace"],
            self.spec.output.private_model,
            run.output_version,
            run.completion_time,
        )
