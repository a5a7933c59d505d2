"""Operator scale benchmark: create -> workload latency against a bare create, peak RSS, idle CPU.

Against the local control plane (started here, or `--kubeconfig` / $KAIZEN_KUBECONFIG), in one
fresh namespace, with the operator as a subprocess watching only that namespace:

1. bare: N suspended batch/v1 Jobs created one after another; latency = POST start -> the Job's
   ADDED event on a watch. This is what any controller's child costs the API server and a watch.
   `--rate R` paces the creates at R per second (both phases); 0, the default, sends them back to back.
2. one-write controller: the floor for a controller that creates this workload. A watch of N more
   pipelines, in a namespace of its own, whose only work is one POST per pipeline of the Job the
   operator would create first (its preflight Job, built by the operator's own builders, pods and
   all): no kopf, no work queue, no reads, no other writes, no status. Latency as below.
3. operator: N FineTunePipelines created the same way; latency = POST start -> ADDED of the
   pipeline's first workload (its preflight Job), which the operator creates beside the run's
   record. Nothing moves after that: the pods that fit on the fake nodes (160 CPUs, one each) are kept
   Running (kwok, `kaizen.dev/fake-duration`), the rest stay Pending. Halfway between every 4th
   pipeline and the next, a bare create again ("under load"): what the API server answers while it
   also carries the pipelines' pods, Events and status writes.
4. idle: the operator's CPU over `--idle-seconds` once nothing changes, as % of one core; its peak
   RSS (VmHWM) over the whole run.

Ratios are operator / bare at p50, p90 and p99, and operator / bare under load. Targets: p99 <= 3x,
RSS < 250 MB, idle CPU < 1 %. For each phase, what it cost the API server (its /metrics): CPU
milliseconds per create and garbage-collection cycles (and its GOGC). On a small machine that shares
its cores with the API server, such a cycle (about half a second of a core) is when most of the
slowest creates happen.

    python bench/operator_scale.py [--pipelines 1000] [--rate 0] [--idle-seconds 60]
                                   [--kubeconfig F] [--json F]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaizen_local.cluster import Cluster
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.paths import default_bin_dir
from kaizen_operator import fakepods
from kaizen_operator.catalog import load_catalog
from kaizen_operator.naming import run_display_name
from kaizen_operator.resolve import base_model_facts, resolve_train_run
from kaizen_operator.settings import load_settings
from kaizen_operator.workloads import build_preflight_job
from kaizen_operator.workloads.meta import COMPONENT_LABEL, PIPELINE_LABEL, PREFLIGHT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "cluster"))

from ftp_support import (  # noqa: E402  (test helpers: manifests and fake pod outcomes)
    MODELS,
    PIPELINES,
    fake,
    free_port,
    message,
    pipeline,
    private_model,
)

HOLD = fake(0, message(phase="Succeeded"), duration="24h")
# A bare create under load after every 4th pipeline: one after each added a fifth to the API server's
# writes in that side (the suspended Job's status update and Event come with it), so the probe
# inflated the load it measures, for the operator's creates too.
PROBE_EVERY = 4
MERGE_PATCH = "application/merge-patch+json"


class JobWatch:
    """First-seen (ADDED) times of the namespace's Jobs (or of another collection, `plural` under
    `api`), from one watch stream; `on_added` is called with each new object."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        api: str = "/apis/batch/v1",
        plural: str = "jobs",
        on_added: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.seen: dict[str, tuple[float, dict[str, str]]] = {}
        self._api = cluster.api_client()
        self._path = f"{api}/namespaces/{namespace}/{plural}"
        self._on_added = on_added
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._watch()
        except Exception:
            if not self._stop:  # closing the client ends the stream under the watch: not an error
                raise

    def _watch(self) -> None:
        """Resumes from the last resourceVersion seen, as an informer does: a watch reopened without
        one starts with every existing object again, and the events behind that replay arrive late."""
        version = ""
        while not self._stop:
            query = [("watch", "1"), ("timeoutSeconds", "30"), ("allowWatchBookmarks", "true")]
            response = self._api.call_api(
                *self._api.param_serialize(
                    "GET",
                    self._path,
                    query_params=query + ([("resourceVersion", version)] if version else []),
                    auth_settings=["BearerToken"],
                )[:3],
            )  # the body is not read yet: stream it
            buffer = b""
            for chunk in response.response.stream(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                now = time.monotonic()
                for line in lines:
                    event = json.loads(line)
                    if event["type"] == "ERROR":  # 410 Gone: the version is too old, list afresh
                        version = ""
                        continue
                    meta = event["object"]["metadata"]
                    version = meta.get("resourceVersion") or version
                    if event["type"] == "ADDED" and meta["name"] not in self.seen:
                        self.seen[meta["name"]] = (now, meta.get("labels") or {})
                        if self._on_added is not None:
                            self._on_added(event["object"])

    def wait(self, count: int, timeout: float, prefix: str = "") -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for n in self.seen if n.startswith(prefix)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.seen)} Jobs seen, {count} expected")
            time.sleep(0.2)

    def close(self) -> None:
        self._stop = True
        self._api.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": statistics.median(ordered), "p90": q[89], "p99": q[98], "max": ordered[-1]}


def proc_stat(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and peak RSS in bytes of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return cpu, hwm * 1024


def reconcile_metrics(port: int) -> dict[str, float]:
    """Passes and time spent in them, from the operator's own Prometheus endpoint."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for name in (
            "kaizen_reconciles_total",
            "kaizen_reconcile_duration_seconds_sum",
            "kaizen_status_patches_total",
        ):
            if line.startswith(name + "{"):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def apiserver_counters(cluster: Cluster) -> tuple[float, float, float, float]:
    """The API server's CPU seconds, bytes allocated and garbage-collection cycles so far, and its GOGC
    (/metrics)."""
    with cluster.api_client() as api:
        response = api.call_api(*api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])[:3])
        text = response.read().decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    names = (
        "process_cpu_seconds_total",
        "go_memstats_alloc_bytes_total",
        "go_gc_duration_seconds_count",
        "go_gc_gogc_percent",
    )
    cpu, allocated, cycles, gogc = (float(values[name]) for name in names)
    return cpu, allocated, cycles, gogc


class ApiserverLoad:
    """What each phase cost the API server: CPU ms and MB allocated per create, and GC cycles (the
    allocation is what paces them)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.phases: dict[str, dict[str, float]] = {}
        self.restart()
        self.gogc = self._start[3]

    def restart(self) -> None:
        """Begin a phase now (what happened since the last mark counts for none)."""
        self._start = apiserver_counters(self._cluster)

    def mark(self, phase: str, creates: int) -> None:
        """End `phase` (begun at the previous mark) after `creates` creates."""
        now = apiserver_counters(self._cluster)
        cpu, allocated, cycles = (now[i] - self._start[i] for i in range(3))
        self.phases[phase] = {
            "cpu_ms_per_create": 1000 * cpu / creates,
            "alloc_mb_per_create": allocated / 1e6 / creates,
            "gc_cycles": cycles,
        }
        self._start = now


def bare_job(name: str) -> dict[str, Any]:
    container = {"name": "c", "image": "busybox", "command": ["true"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "suspend": True,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def new_namespace(cluster: Cluster, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    cluster.request("POST", "/api/v1/namespaces", body)
    return namespace


class PreflightJobs:
    """The Job the operator creates first for a pipeline (its preflight Job), from the operator's own
    resolution and builders, fake-pod annotations included: what the one-write controller posts."""

    def __init__(self) -> None:
        os.environ[fakepods.ENV] = "1"  # kwok's pod outcomes from the pipeline, as the bench's operator has
        self._settings = load_settings({fakepods.ENV: "1"})
        self._catalog = load_catalog(self._settings.catalog_path)
        self._models = {"out": private_model()}

    def __call__(self, pipeline_obj: dict[str, Any]) -> dict[str, Any]:
        model = base_model_facts(pipeline_obj, self._catalog, self._models).name
        display = run_display_name(model, datetime.now(UTC))
        run = resolve_train_run(pipeline_obj, display, self._catalog, self._models, self._settings)
        job = build_preflight_job(run, pipeline_obj, run.names, self._settings)
        fakepods.apply(pipeline_obj, "preflight", [job])
        return job


def first_workloads(watch: JobWatch) -> dict[str | None, float]:
    """When each pipeline's preflight Job was first seen, by pipeline name."""
    return {
        labels.get(PIPELINE_LABEL): at
        for _, (at, labels) in sorted(watch.seen.items(), key=lambda kv: kv[1][0], reverse=True)
        if labels.get(COMPONENT_LABEL) == PREFLIGHT
    }


def one_write_controller(cluster: Cluster, pipelines: int, rate: float, load: ApiserverLoad) -> list[float]:
    """The floor for a controller that creates the operator's first workload: a watch of pipelines in
    a namespace of its own whose only work is one POST of that Job per new pipeline (no kopf, no work
    queue, no reads, no other writes, no status), in this process. The pods run or wait as the
    operator's do. Latency = pipeline POST start -> the Job's ADDED event, as for the operator."""
    namespace = new_namespace(cluster, "floor")
    jobs_path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    preflight_job = PreflightJobs()

    def create_job(pipeline_obj: dict[str, Any]) -> None:
        cluster.request("POST", jobs_path, preflight_job(pipeline_obj))

    watch = JobWatch(cluster, namespace)
    controller = JobWatch(cluster, namespace, "/apis/kaizen.dev/v1alpha1", "finetunepipelines", create_job)
    try:
        time.sleep(1)  # both watches open
        started = {}
        t0 = time.monotonic()
        for i in range(pipelines):
            pace(rate, t0, i)
            name = f"floor-{i}"
            started[name] = time.monotonic()
            body = pipeline(name, preflight=HOLD, workload=HOLD)
            cluster.request("POST", PIPELINES.format(namespace), body)
        watch.wait(pipelines, timeout=60 + pipelines * 0.2)
        load.mark("one_write_controller", pipelines)
        first = first_workloads(watch)
        return [first[n] - t for n, t in started.items()]
    finally:
        watch.close()
        controller.close()
        delete_namespace(cluster, namespace)


def delete_namespace(cluster: Cluster, namespace: str, timeout: float = 300) -> None:
    """Delete a namespace and wait until it is gone: the namespace controller's deletion of its objects
    (a thousand pipelines, Jobs and pods) must not overlap the phase measured next.

    A running pod of a Job with a pod failure policy keeps the Job controller's tracking finalizer until
    a kubelet reports it stopped; kwok's nodes have no kubelet, so that finalizer is dropped here, as
    the Job controller would once the pod had stopped."""
    path = f"/api/v1/namespaces/{namespace}"
    cluster.request("DELETE", path, missing_ok=True)
    deadline = time.monotonic() + timeout
    while cluster.request("GET", path, missing_ok=True) is not None and time.monotonic() < deadline:
        for pod in cluster.request("GET", f"{path}/pods")["items"]:
            if pod["metadata"].get("deletionTimestamp") and pod["metadata"].get("finalizers"):
                pod_path = f"{path}/pods/{pod['metadata']['name']}"
                unfinalized = {"metadata": {"finalizers": None}}
                cluster.request("PATCH", pod_path, unfinalized, content_type=MERGE_PATCH, missing_ok=True)
        time.sleep(1)


def pace(rate: float, start: float, index: float) -> None:
    """Sleep until the `index`-th create is due at `rate` per second (no pause when rate is 0)."""
    if rate > 0:
        time.sleep(max(0.0, start + index / rate - time.monotonic()))


def run(
    cluster: Cluster, pipelines: int, idle_seconds: float, log_path: Path, rate: float = 0.0
) -> dict[str, Any]:
    namespace = new_namespace(cluster, "bench")
    cluster.request("POST", MODELS.format(namespace), private_model())
    watch = JobWatch(cluster, namespace)
    progress = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "KAIZEN_FAKE_PODS": "1",
        "KAIZEN_PROGRESS_PORT": str(progress),
        "KAIZEN_PROGRESS_URL": f"http://127.0.0.1:{progress}",
        "KAIZEN_METRICS_PORT": str(free_port()),
        "KAIZEN_PROGRESS_KEY": base64.b64encode(os.urandom(24)).decode(),
    }
    with log_path.open("ab") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "kaizen_operator.main", "--namespace", namespace],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(8)  # started and watching
        load = ApiserverLoad(cluster)
        bare_started = {}
        t_bare = time.monotonic()
        for i in range(pipelines):
            pace(rate, t_bare, i)
            name = f"bare-{i}"
            bare_started[name] = time.monotonic()
            cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", bare_job(name))
        watch.wait(pipelines, timeout=60 + pipelines * 0.2, prefix="bare-")
        bare = [watch.seen[n][0] - t for n, t in bare_started.items()]
        load.mark("bare", pipelines)
        floor = one_write_controller(cluster, pipelines, rate, load)
        load.restart()  # the deletion of the one-write controller's namespace counts for no phase
        started, loaded_started = {}, {}
        busy0, _ = proc_stat(operator.pid)
        t0 = time.monotonic()
        for i in range(pipelines):
            pace(rate, t0, i)
            name = f"scale-{i}"
            started[name] = time.monotonic()
            cluster.request(
                "POST", PIPELINES.format(namespace), pipeline(name, preflight=HOLD, workload=HOLD)
            )
            if i % PROBE_EVERY:
                continue
            pace(rate, t0, i + 0.5)  # halfway to the next pipeline: a bare create under the same load
            loaded_started[f"loaded-{i}"] = time.monotonic()
            cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", bare_job(f"loaded-{i}"))
        create_seconds = time.monotonic() - t0
        watch.wait(pipelines, timeout=120 + pipelines * 0.5, prefix="scale-")
        watch.wait(len(loaded_started), timeout=60, prefix="loaded-")
        loaded = [watch.seen[n][0] - t for n, t in loaded_started.items()]
        load.mark("operator", pipelines)  # the bare creates under load included
        first = first_workloads(watch)
        latency = [first[n] - t for n, t in started.items()]
        settle = time.monotonic()
        time.sleep(10)  # the last status patches land
        cpu0, _ = proc_stat(operator.pid)
        busy = cpu0 - busy0  # CPU seconds the operator spent on the pipelines, their runs' passes included
        time.sleep(idle_seconds)
        cpu1, peak = proc_stat(operator.pid)
        summary: dict[str, Any] = {
            "pipelines": pipelines,
            "rate_per_s": rate or "back to back",
            "operator_metrics": reconcile_metrics(int(env["KAIZEN_METRICS_PORT"])),
            "bare_create_to_watch_s": percentiles(bare),
            "bare_create_under_load_to_watch_s": percentiles(loaded),
            "one_write_controller_create_to_workload_s": percentiles(floor),
            "operator_create_to_workload_s": percentiles(latency),
            "apiserver_load": load.phases,
            "apiserver_gogc": load.gogc,
            "pipelines_create_wall_s": create_seconds,
            "all_workloads_after_s": settle - t0,
            "operator_cpu_ms_per_pipeline": 1000 * busy / pipelines,
            "operator_peak_rss_mb": peak / 1e6,
            "operator_idle_cpu_percent": 100 * (cpu1 - cpu0) / idle_seconds,
            "idle_seconds": idle_seconds,
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(),
        }
        for q in ("p50", "p90", "p99"):
            bare_q = summary["bare_create_to_watch_s"][q]
            summary[f"ratio_{q}"] = summary["operator_create_to_workload_s"][q] / bare_q
            summary[f"ratio_under_load_{q}"] = (
                summary["operator_create_to_workload_s"][q] / summary["bare_create_under_load_to_watch_s"][q]
            )
            summary[f"one_write_controller_ratio_{q}"] = (
                summary["one_write_controller_create_to_workload_s"][q] / bare_q
            )
        return summary
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        watch.close()
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}", missing_ok=True)


def bench_cluster(stack: ExitStack, kubeconfig: str | None, workdir: Path) -> Cluster:
    """The cluster of `kubeconfig`, or else a local control plane under `workdir`, stopped with `stack`."""
    if kubeconfig:
        return Cluster(Path(kubeconfig))
    return stack.enter_context(LocalControlPlane(workdir / "cp", default_bin_dir()))


def report(summary: dict[str, Any], json_path: Path | None) -> None:
    """Print the summary, and write it to `json_path` too when given."""
    text = json.dumps(summary, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.0, help="creates per second (0: back to back)")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--kubeconfig", default=os.environ.get("KAIZEN_KUBECONFIG"))
    parser.add_argument("--json", type=Path, help="write the summary here too")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kaizen-scale-")))
        cluster = bench_cluster(stack, args.kubeconfig, workdir)
        summary = run(cluster, args.pipelines, args.idle_seconds, workdir / "operator.log", args.rate)
    report(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
