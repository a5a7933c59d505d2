"""What one write costs the API server, by kind: a FineTunePipeline's create and status patch against
a ConfigMap's and a suspended Job's create, measured in the same run.

A custom resource is handled as nested JSON maps: each write decodes it (with pruning, defaulting and
the schema's coercion), deep-copies it, validates it against the OpenAPI schema and the CEL rules,
and computes its managedFields; the watch decodes it once more. Built-in kinds skip most of that. On
the operator's scale bench the pipelines' two writes (the user's create, the operator's first status
patch) were over half of what the API server allocated per pipeline, and allocation is what paces
its garbage-collection cycles (see docs/operator.md, "Scale"). This keeps that cost in view when the
schema or its rules change.

For each kind, N writes one after another (no operator running), then the API server's CPU seconds
and bytes allocated (its /metrics) divided by N, and the ratios to the ConfigMap create. A Job's
figures include what the Job controller does with a suspended Job (a status update and an Event).

    python bench/crd_write_cost.py [--writes 200] [--kubeconfig F] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cluster_bench import (
    MERGE_PATCH,
    ApiserverLoad,
    bare_job,
    bench_cluster,
    delete_namespace,
    new_namespace,
    report,
)
from kaizen_local.cluster import Cluster
from kaizen_operator.naming import run_display_name, run_object_name
from operator_scale import (  # the scale bench's held pipelines and a run's first status
    HOLD,
    PIPELINES,
    pipeline,
    run_start_status,
)

SETTLE_S = 1.5  # the controllers' and the watch's share of the last writes lands


def measure(load: ApiserverLoad, kind: str, writes: int, write: Callable[[int], None]) -> None:
    """Record on `load` what `writes` calls of `write` cost the API server, as phase `kind`."""
    time.sleep(SETTLE_S)  # the previous kind's tail counts for none
    load.restart()
    for i in range(writes):
        write(i)
    time.sleep(SETTLE_S)
    load.mark(kind, writes)


def run(cluster: Cluster, writes: int) -> dict[str, Any]:
    namespace = new_namespace(cluster, "writes")
    pipelines = PIPELINES.format(namespace)
    data = {"run.json": json.dumps({"pipeline": "p", "dataset": {"uri": "s3://data/a.json"}})}

    def configmap(i: int) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c-{i}"}, "data": data}
        cluster.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body)

    def job(i: int) -> None:
        cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", bare_job(f"j-{i}"))

    def create(i: int) -> None:
        cluster.request("POST", pipelines, pipeline(f"p-{i}", preflight=HOLD, workload=HOLD))

    def status(i: int) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        name = run_display_name("Qwen2.5-0.5B-Instruct", now)
        body = {"status": run_start_status(pipeline(f"p-{i}"), name, run_object_name(f"p-{i}", name), now)}
        cluster.request("PATCH", f"{pipelines}/p-{i}/status", body, content_type=MERGE_PATCH)

    load = ApiserverLoad(cluster)
    try:
        measure(load, "configmap_create", writes, configmap)
        measure(load, "job_create", writes, job)
        measure(load, "pipeline_create", writes, create)
        measure(load, "pipeline_status_patch", writes, status)
    finally:
        delete_namespace(cluster, namespace)
    base = load.phases["configmap_create"]
    kinds: dict[str, dict[str, float | None]] = {}
    for kind, figures in load.phases.items():
        cpu, alloc = figures["cpu_ms_per_create"], figures["alloc_mb_per_create"]
        kinds[kind] = {
            "cpu_ms": cpu,
            "alloc_mb": alloc,
            "alloc_ratio_to_configmap": alloc / base["alloc_mb_per_create"],
            # the CPU counter ticks in 10 ms: a few cheap writes may read as none
            "cpu_ratio_to_configmap": cpu / base["cpu_ms_per_create"] if base["cpu_ms_per_create"] else None,
        }
    return {"writes_per_kind": writes, "kinds": kinds, "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--kubeconfig", default=os.environ.get("KAIZEN_KUBECONFIG"))
    parser.add_argument("--json", type=Path, help="write the summary here too")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kaizen-writes-")))
        summary = run(bench_cluster(stack, args.kubeconfig, workdir), args.writes)
    report(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
