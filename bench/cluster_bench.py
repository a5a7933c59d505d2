"""What the benches that run against a cluster share: first-seen times from a watch, what a phase cost
the API server (its /metrics), a process's CPU and peak RSS, namespaces made and removed, pacing,
percentiles and the report. The cluster is the one of a kubeconfig, or else a local control plane."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kaizen_local.cluster import Cluster
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.paths import default_bin_dir

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
