"""Operator scale benchmark: create -> workload latency against a bare create, peak RSS, idle CPU.

Against the local control plane (started here, or `--kubeconfig` / $KAIZEN_KUBECONFIG), in one
fresh namespace, with the operator as a subprocess watching only that namespace:

1. bare: N suspended batch/v1 Jobs created one after another; latency = POST start -> the Job's
   ADDED event on a watch. This is what any controller's child costs the API server and a watch.
   `--rate R` paces the creates at R per second (both phases); 0, the default, sends them back to back.
2. floor controllers: what a controller that starts this workload cannot go below. A watch of N
   more pipelines, in a namespace of its own, whose only work per pipeline is to POST the Job the
   operator creates first (its preflight Job, built by the operator's own builders, pods and all):
   the one-write controller. The required-writes controller (N more, another namespace) then also
   writes what the operator must when a run starts: the run's token Secret, its ConfigMap and the
   run's record in the pipeline's status. No kopf, no work queue, no reads. Latency as below.
3. operator: N FineTunePipelines created the same way; latency = POST start -> ADDED of the
   pipeline's first workload (its preflight Job), which the operator creates beside the run's
   record. Nothing moves after that: the pods that fit on the fake nodes (160 CPUs, one each) are kept
   Running (kwok, `kaizen.dev/fake-duration`), the rest stay Pending. Halfway between every 4th
   pipeline and the next, a bare create again ("under load"): what the API server answers while it
   also carries the pipelines' pods, Events and status writes.
4. idle: the operator's CPU over `--idle-seconds` once nothing changes, as % of one core; its peak
   RSS (VmHWM) over the whole run.

Ratios are operator / bare at p50, p90 and p99, operator / bare under load, and each floor / bare.
Targets: p99 <= 3x, RSS < 250 MB, idle CPU < 1 %. For each phase, what it cost the API server (its
/metrics): CPU milliseconds per create and garbage-collection cycles (and its GOGC). On a small
machine that shares its cores with the API server, such a cycle (about half a second of a core) is
when most of the slowest creates happen.

    python bench/operator_scale.py [--pipelines 1000] [--rate 0] [--idle-seconds 60]
                                   [--kubeconfig F] [--json F]
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cluster_bench import (
    MERGE_PATCH,
    ApiserverLoad,
    JobWatch,
    bare_job,
    bench_cluster,
    delete_namespace,
    new_namespace,
    pace,
    percentiles,
    proc_stat,
    report,
)
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import FineTunePipelineStatus, RunStatus
from kaizen_local.cluster import Cluster
from kaizen_operator import fakepods, pipeline_status
from kaizen_operator.catalog import load_catalog
from kaizen_operator.kube import path_for
from kaizen_operator.naming import run_display_name
from kaizen_operator.progress import run_token
from kaizen_operator.resolve import base_model_facts, resolve_train_run
from kaizen_operator.settings import load_settings
from kaizen_operator.workloads import build_config_map, build_preflight_job, build_token_secret
from kaizen_operator.workloads.meta import COMPONENT_LABEL, PIPELINE_LABEL, PREFLIGHT

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "cluster"), str(REPO / "tests")]  # ftp_support, and its support.specs

from ftp_support import (  # noqa: E402  (test helpers: manifests and fake pod outcomes)
    MODELS,
    PIPELINES,
    fake,
    free_port,
    message,
    pipeline,
    private_model,
    source_path,
)

HOLD = fake(0, message(phase="Succeeded"), duration="24h")
# A bare create under load after every 4th pipeline: one after each added a fifth to the API server's
# writes in that side (the suspended Job's status update and Event come with it), so the probe
# inflated the load it measures, for the operator's creates too.
PROBE_EVERY = 4
# The two floor controllers, by whether they make all the writes the operator makes when a run starts.
FLOORS = {False: "one_write_controller", True: "required_writes_controller"}


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


def run_start_status(
    pipeline_obj: dict[str, Any], name: str, object_name: str, now: datetime
) -> dict[str, Any]:
    """The status the operator writes when a pipeline's first run starts, derived by the operator's own
    functions (`pipeline_status`): its conditions, the run as current run and as the history's first."""
    spec = FineTunePipelineSpec.model_validate(pipeline_obj["spec"])
    generation = pipeline_obj["metadata"].get("generation", 1)  # 1: a manifest not created yet
    run = RunStatus(
        name=name,
        object_name=object_name,
        nodes=spec.resources.nodes,
        trigger="manual",
        token="",
        phase="Pending",
        reason="Preflight",
        start_time=now,
    )
    status = FineTunePipelineStatus(
        observed_generation=generation,
        phase=pipeline_status.phase(spec, [run], None),
        last_run_name=run.name,
        last_run_token="",
        current_run=run,
        runs=[run],
    ).to_manifest()
    status["conditions"] = pipeline_status.conditions(None, spec, [run], generation, None)
    return status


class RunStart:
    """What the operator writes when a pipeline's first run starts, from the operator's own resolution
    and builders (fake-pod annotations included): its preflight Job first, then the run's token Secret,
    its ConfigMap and the run's record in the pipeline's status (merge patch with the resourceVersion
    read, as the operator's). The floor controllers post the Job, or all four."""

    def __init__(self) -> None:
        os.environ[fakepods.ENV] = "1"  # kwok's pod outcomes from the pipeline, as the bench's operator has
        self._settings = load_settings({fakepods.ENV: "1"})
        self._catalog = load_catalog(self._settings.catalog_path)
        self._models = {"out": private_model()}
        self._key = os.urandom(24)

    def writes(self, pipeline_obj: dict[str, Any], required: bool) -> list[tuple[str, str, dict[str, Any]]]:
        """(method, path, body) of the Job and, when `required`, of the other three writes."""
        model = base_model_facts(pipeline_obj, self._catalog, self._models).name
        now = datetime.now(UTC)
        display = run_display_name(model, now)
        run = resolve_train_run(pipeline_obj, display, self._catalog, self._models, self._settings)
        job = build_preflight_job(run, pipeline_obj, run.names, self._settings)
        fakepods.apply(pipeline_obj, "preflight", [job])
        out = [("POST", path_for(job), job)]
        if not required:
            return out
        meta = pipeline_obj["metadata"]
        token = run_token(self._key, meta["namespace"], run.names.run, meta["uid"])
        secret = build_token_secret(run.names, pipeline_obj, token)
        config = build_config_map(run, pipeline_obj, run.names)
        out += [("POST", path_for(secret), secret), ("POST", path_for(config), config)]
        status = run_start_status(pipeline_obj, display, run.names.run, now)
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        return [*out, ("PATCH", path_for(pipeline_obj, named=True) + "/status", body)]


def first_workloads(watch: JobWatch) -> dict[str | None, float]:
    """When each pipeline's preflight Job was first seen, by pipeline name."""
    return {
        labels.get(PIPELINE_LABEL): at
        for _, (at, labels) in sorted(watch.seen.items(), key=lambda kv: kv[1][0], reverse=True)
        if labels.get(COMPONENT_LABEL) == PREFLIGHT
    }


def floor_controller(
    cluster: Cluster, pipelines: int, rate: float, load: ApiserverLoad, *, required: bool
) -> list[float]:
    """The floor for a controller that starts this workload: a watch of pipelines in a namespace of its
    own whose only work, per new pipeline, is to POST the operator's preflight Job and, with `required`,
    the run's Secret, ConfigMap and status record once it is answered, side by side as the operator
    sends them. No kopf, no work queue, no reads. The pods run or wait as the operator's do.
    Latency = pipeline POST start -> the Job's ADDED event, as for the operator."""
    namespace = new_namespace(cluster, "floor-all" if required else "floor")
    start = RunStart()
    alongside = ThreadPoolExecutor(3, thread_name_prefix="floor")
    sent: list[Future[Any]] = []

    def send(method: str, path: str, body: dict[str, Any]) -> None:
        content_type = MERGE_PATCH if method == "PATCH" else "application/json"
        cluster.request(method, path, body, content_type=content_type)

    def start_run(pipeline_obj: dict[str, Any]) -> None:
        job, *rest = start.writes(pipeline_obj, required)
        send(*job)
        sent.extend(alongside.submit(send, *write) for write in rest)

    watch = JobWatch(cluster, namespace)
    controller = JobWatch(cluster, namespace, "/apis/kaizen.dev/v1alpha1", "finetunepipelines", start_run)
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
        for future in sent:
            future.result()  # a refused write fails the bench
        load.mark(FLOORS[required], pipelines)
        first = first_workloads(watch)
        return [first[n] - t for n, t in started.items()]
    finally:
        watch.close()
        controller.close()
        alongside.shutdown()
        delete_namespace(cluster, namespace)


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
        "PYTHONPATH": source_path(),  # this checkout's operator, not an installed copy
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
        floors = {}
        for required in (False, True):
            floors[FLOORS[required]] = floor_controller(cluster, pipelines, rate, load, required=required)
            load.restart()  # the deletion of the floor's namespace counts for no phase
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
            **{f"{side}_create_to_workload_s": percentiles(floor) for side, floor in floors.items()},
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
            for side in floors:
                summary[f"{side}_ratio_{q}"] = summary[f"{side}_create_to_workload_s"][q] / bare_q
        return summary
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        watch.close()
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}", missing_ok=True)


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
