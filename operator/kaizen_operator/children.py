"""A run's child objects: found by label, created if absent, deleted on cancel (and, when the run
ends, those only a running run needs).

Names are deterministic (`naming.ChildNames`), so creating is "create, and on AlreadyExists adopt":
a restarted operator, or one that died between creating a child and recording it, never makes a
second workload for a run. Only what the pipeline object owns is adopted or deleted (`adoption`).
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from kaizen_api.finetune_status import RunStatus

from kaizen_operator import fakepods
from kaizen_operator.adoption import (
    controlled_by,
    controller_ref,
    create_owned,
    delete_owned,
    owned_by,
)
from kaizen_operator.kube import Kube, path_for, path_of
from kaizen_operator.naming import ChildNames, label_value
from kaizen_operator.progress import run_token
from kaizen_operator.resolve import ResolvedRun
from kaizen_operator.runs import RunChildren
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads import (
    build_config_map,
    build_preflight_job,
    build_token_secret,
    build_workload,
)
from kaizen_operator.workloads.meta import PIPELINE_LABEL, RUN_LABEL, TRIGGER_LABEL

# A run's config requests, beside the reconcile workers' own (handlers/finetune.WORKERS of them).
ALONGSIDE_THREADS = 32
_ALONGSIDE = ThreadPoolExecutor(ALONGSIDE_THREADS, thread_name_prefix="children")


@dataclass
class Observed:
    """Everything the pipeline's runs own, by run object name."""

    jobs: dict[str, list[dict[str, Any]]]
    pytorchjobs: dict[str, list[dict[str, Any]]]
    pods: dict[str, list[dict[str, Any]]]

    def of(self, run: RunStatus) -> RunChildren:
        assert run.object_name
        names = ChildNames.of(run.object_name)
        jobs = {j["metadata"]["name"]: j for j in self.jobs.get(run.object_name, [])}
        workloads = [jobs.get(names.job), *self.pytorchjobs.get(run.object_name, [])]
        pods = self.pods.get(run.object_name, [])
        preflight_job = jobs.get(names.preflight_job)
        workload = next((w for w in workloads if w is not None), None)
        return RunChildren(
            preflight_job=preflight_job,
            workload=workload,
            preflight_pods=_pods_of(preflight_job, pods),
            workload_pods=_pods_of(workload, pods),
        )


def _pods_of(owner: dict[str, Any] | None, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods `owner` (the run's preflight Job, Job or PyTorchJob) controls. Any other pod with the
    run's labels (a user's, or one of a Job left by a deleted pipeline of the same name) would lend the
    run its failure reason, results or Running state."""
    if owner is None:
        return []
    uid = owner["metadata"]["uid"]
    return [p for p in pods if controlled_by(p, uid)]


def observe(
    kube: Kube, namespace: str, pipeline: str, uid: str, *, pytorchjobs: bool, pods: bool
) -> Observed:
    """One LIST per kind, by the pipeline label; only objects this pipeline object owns count (pods:
    those its runs' Jobs and PyTorchJobs control, see `Observed.of`)."""
    selector = f"{PIPELINE_LABEL}={label_value(pipeline)},{RUN_LABEL}"
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {
        "jobs": defaultdict(list),
        "pytorchjobs": defaultdict(list),
    }
    for kind, api_version, plural in (
        ("Job", "batch/v1", "jobs"),
        ("PyTorchJob", "kubeflow.org/v1", "pytorchjobs"),
    ):
        if plural == "pytorchjobs" and not pytorchjobs:
            continue
        for obj in kube.list(path_of(api_version, kind, namespace), selector):
            if owned_by(obj, uid):
                obj.setdefault("kind", kind)
                grouped[plural][obj["metadata"]["labels"][RUN_LABEL]].append(obj)
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if pods:
        for pod in kube.list(path_of("v1", "Pod", namespace), selector):
            by_run[pod["metadata"]["labels"][RUN_LABEL]].append(pod)
    return Observed(grouped["jobs"], grouped["pytorchjobs"], by_run)


def trigger_jobs(kube: Kube, namespace: str, pipeline: str, cronjob_uid: str | None) -> list[dict[str, Any]]:
    """A schedule pipeline's trigger Jobs: listed by its label, those its own CronJob (`cronjob_uid`,
    see `schedule.CronJobSync`; None: no CronJob, no firings) made."""
    if cronjob_uid is None:
        return []
    selector = f"{PIPELINE_LABEL}={label_value(pipeline)},{TRIGGER_LABEL}=schedule"
    return [
        j for j in kube.list(path_of("batch/v1", "Job", namespace), selector) if controlled_by(j, cronjob_uid)
    ]


def trigger_jobs_by_owner(kube: Kube, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """The namespace's trigger Jobs by the uid of the pipeline owning the CronJob that made them: the
    reconciler's own selection (`trigger_jobs`), for every pipeline at once. Each CronJob that made one
    is read by name (the operator may not list CronJobs); one gone, or replaced since, owns none."""
    owners: dict[str, list[str]] = {}  # CronJob uid -> its owners' uids
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in kube.list(path_of("batch/v1", "Job", namespace), f"{TRIGGER_LABEL}=schedule"):
        refs = job["metadata"].get("ownerReferences") or []
        maker = next((ref for ref in refs if ref.get("controller") and ref.get("kind") == "CronJob"), None)
        if maker is None:
            continue
        if maker["uid"] not in owners:
            found_cronjob = kube.get(path_of("batch/v1", "CronJob", namespace, maker["name"]))
            cronjob = (found_cronjob or {}).get("metadata")
            if cronjob is None or cronjob.get("uid") != maker["uid"]:
                owners[maker["uid"]] = []
            else:
                owners[maker["uid"]] = [ref["uid"] for ref in cronjob.get("ownerReferences") or []]
        for uid in owners[maker["uid"]]:
            found[uid].append(job)
    return dict(found)


def same_config(found: dict[str, Any] | None, config_map: dict[str, Any]) -> bool:
    """Whether the run's ConfigMap as found (None: gone) holds the config `config_map` carries."""
    return found is not None and found.get("data") == config_map["data"]


@dataclass
class StartedRun:
    """A run's first children, being created (for a fresh run, while the caller writes its record):
    its token Secret and ConfigMap, and, for a run whose name every pass derives alike, its preflight
    Job too."""

    names: ChildNames
    config_map: dict[str, Any]
    config: list[Future[bool]]  # creating the Secret, then the ConfigMap: False when it existed
    preflight_job: dict[str, Any] | None = None
    preflight: Future[bool] | None = None

    @property
    def found_preflight(self) -> bool:
        """Its early preflight Job existed already: a pass cut short before the record made it."""
        preflight = self.preflight
        return preflight is not None and preflight.exception() is None and preflight.result() is False

    def finish(self, kube: Kube) -> bool:
        """Wait for them. A preflight Job created beside a config that failed is deleted again: its pod
        could never start, and the next pass creates all three anew, the config first. A ConfigMap
        that existed holds the config of the spec when it was made: `_renew` it when that differs
        (returns True: the preflight Job, if any, was made again and has yet to run)."""
        failed = next((f.exception() for f in self.config if f.exception() is not None), None)
        if failed is not None:
            if self.preflight is not None and self.preflight_job and self.preflight.exception() is None:
                kube.delete(path_for(self.preflight_job, named=True))
            raise failed
        if not self.config[1].result() and not same_config(
            kube.get(path_for(self.config_map, named=True)), self.config_map
        ):
            self._renew(kube)
            return True
        if self.preflight is not None:
            self.preflight.result()
        return False

    def _renew(self, kube: Kube) -> None:
        """A run's config is settled only once its preflight Job exists; an earlier pass may have made
        its ConfigMap (and an early preflight Job) and lost the run's record to a Conflict with a spec
        edit, or stopped before the preflight. The ConfigMap (immutable) is replaced, and a preflight
        Job that would read the old one goes with it (created again when this pass started one)."""
        namespace = self.config_map["metadata"]["namespace"]
        uid = controller_ref(self.config_map)["uid"]
        delete_owned(kube, path_of("batch/v1", "Job", namespace, self.names.preflight_job), uid)
        kube.delete(path_for(self.config_map, named=True))  # owned: `create_owned` found it so
        create_owned(kube, self.config_map)
        if self.preflight_job is not None:
            create_owned(kube, self.preflight_job)


def _preflight_job(
    resolved: ResolvedRun, pipeline: dict[str, Any], settings: OperatorSettings
) -> dict[str, Any]:
    job = build_preflight_job(resolved, pipeline, resolved.names, settings)
    fakepods.apply(pipeline, "preflight", [job])
    return job


def start_run(
    kube: Kube,
    resolved: ResolvedRun,
    pipeline: dict[str, Any],
    key: bytes,
    settings: OperatorSettings,
    *,
    with_preflight: bool = False,
) -> StartedRun:
    """Start creating the run's token Secret and ConfigMap (and, `with_preflight`, its preflight Job,
    before them: sent beside three other writes, a busy API server answered it about twice as slowly,
    and its pod needs the other two only when it starts). None of them is recorded yet: a Secret and
    ConfigMap left by a pass cut short before the record landed are garbage-collected with the
    pipeline (owner reference) and the token opens nothing (the progress endpoint serves recorded,
    active runs only); a preflight Job is started early only when the next pass would derive the same
    run and adopt it."""
    names = resolved.names
    meta = pipeline["metadata"]
    started = StartedRun(names, build_config_map(resolved, pipeline, names), [])
    if with_preflight:  # the workload is what the user waits for
        started.preflight_job = _preflight_job(resolved, pipeline, settings)
        started.preflight = _ALONGSIDE.submit(create_owned, kube, started.preflight_job)
        wait([started.preflight])  # its error, if any, stays in the future for `finish`
    token = run_token(key, meta["namespace"], names.run, meta["uid"])
    started.config = [
        _ALONGSIDE.submit(create_owned, kube, build_token_secret(names, pipeline, token)),
        _ALONGSIDE.submit(create_owned, kube, started.config_map),
    ]
    return started


def ensure_config(
    kube: Kube, resolved: ResolvedRun, pipeline: dict[str, Any], key: bytes, settings: OperatorSettings
) -> None:
    """A recorded run's token Secret and ConfigMap, created where absent and never replaced (its config
    was settled when its preflight Job was made). A pass cut short after a fresh run's record (and its
    early preflight Job) landed may have lost their creates, and no other step makes them again: its
    pods would wait for them for ever."""
    for future in start_run(kube, resolved, pipeline, key, settings).config:
        future.result()


def create_preflight(
    kube: Kube,
    resolved: ResolvedRun,
    pipeline: dict[str, Any],
    settings: OperatorSettings,
    key: bytes,
    started: StartedRun | None = None,
) -> None:
    """The run's Secret and ConfigMap, then its CPU preflight Job, which mounts both (`started`: some
    or all of them already under way)."""
    started = started or start_run(kube, resolved, pipeline, key, settings)
    started.finish(kube)
    if started.preflight is None:
        create_owned(kube, _preflight_job(resolved, pipeline, settings))


def create_workload(
    kube: Kube,
    resolved: ResolvedRun,
    pipeline: dict[str, Any],
    settings: OperatorSettings,
    *,
    pytorchjob: bool,
) -> dict[str, Any]:
    """The GPU workload (and the headless Service of an Indexed Job); returns the Job or PyTorchJob."""
    manifests = build_workload(resolved, pipeline, resolved.names, settings, pytorchjob_available=pytorchjob)
    fakepods.apply(pipeline, "workload", manifests)
    for manifest in manifests:  # the Service first: pods resolve their peers' names at start
        create_owned(kube, manifest)
    return next(m for m in manifests if m["kind"] in ("Job", "PyTorchJob"))


def cleanup_targets(run_object_name: str, *, pytorchjobs: bool) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of what a cancelled run's cleanup deletes: every workload kind the run
    could have, whatever its record says (the pass that created a PyTorchJob may have lost its record
    to a Conflict), PyTorchJobs where the cluster serves them; the ConfigMap stays for inspection."""
    names = ChildNames.of(run_object_name)
    targets = [
        ("batch/v1", "Job", names.job),
        ("batch/v1", "Job", names.preflight_job),
        ("v1", "Service", names.service),
        ("v1", "Secret", names.token_secret),
    ]
    return [("kubeflow.org/v1", "PyTorchJob", names.job), *targets] if pytorchjobs else targets


def leftover_targets(run_object_name: str) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of what an ended run leaves that only a running run needs: the headless
    Service of an Indexed Job and the token Secret. Owned by the pipeline, they would stay as long as
    it does, one of each per run (a ResourceQuota on Services then stalls the runs to come); the
    workload goes by its TTL, the ConfigMap stays for inspection."""
    return [t for t in cleanup_targets(run_object_name, pytorchjobs=False) if t[1] in ("Service", "Secret")]


def delete_children(
    kube: Kube, namespace: str, run: RunStatus, owner_uid: str, *, leftovers: bool = False
) -> None:
    """A cancelled run's children, or (`leftovers`) an ended run's leftovers, those the pipeline object
    `owner_uid` owns: an object of the name it does not own (a `NameConflict`) is left as it is."""
    assert run.object_name
    if leftovers:
        targets = leftover_targets(run.object_name)
    else:
        targets = cleanup_targets(run.object_name, pytorchjobs=kube.serves("kubeflow.org/v1", "pytorchjobs"))
    for api_version, kind, name in targets:
        delete_owned(kube, path_of(api_version, kind, namespace, name), owner_uid)


def mark_handled(kube: Kube, job: str, namespace: str, note: str) -> None:
    """Record on a schedule's trigger Job that its request became a run (or was skipped)."""
    body = {"metadata": {"annotations": {"kaizen.dev/handled": note}}}
    kube.merge_patch(
        path_for(
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job, "namespace": namespace}},
            named=True,
        ),
        body,
    )
