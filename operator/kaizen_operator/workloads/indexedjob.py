"""Multi-node backend for any cluster: an Indexed Job and a headless Service.

`completionMode: Indexed` with `completions = parallelism = nodes` gives each pod a stable index
and, with `subdomain` set to the headless Service, the DNS name `<job>-<index>.<service>`. Rank 0
is the rendezvous: every pod gets the PET_* environment torchrun reads (node rank from the
completion index through the downward API), the same the training operator would inject, so the
runner starts the same way as in a PyTorchJob. `publishNotReadyAddresses` lets the records exist
before the pods are ready, as rendezvous happens before readiness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaizen_operator.naming import ChildNames
from kaizen_operator.resolve import ResolvedRun
from kaizen_operator.settings import OperatorSettings
from kaizen_operator.workloads.job import job_spec, train_shape, workload_labels
from kaizen_operator.workloads.meta import (
    COMPONENT_LABEL,
    DISPLAY_NAME_ANNOTATION,
    RUN_LABEL,
    TRAIN,
    object_meta,
    run_labels,
)
from kaizen_operator.workloads.pod import env_var, field_env, pod_template

KIND = "Job"
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def rendezvous_env(run: ResolvedRun, names: ChildNames, port: int) -> list[dict[str, Any]]:
    master = f"{names.job}-0.{names.service}"
    return [
        env_var("PET_NNODES", run.nodes),
        field_env("PET_NODE_RANK", INDEX_FIELD),
        env_var("PET_NPROC_PER_NODE", max(1, run.gpus_per_node)),
        env_var("PET_MASTER_ADDR", master),
        env_var("PET_MASTER_PORT", port),
        env_var("MASTER_ADDR", master),
        env_var("MASTER_PORT", port),
    ]


def build_service(
    run: ResolvedRun, pipeline: Mapping[str, Any], names: ChildNames, port: int
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(names.service, pipeline, run_labels(run.pipeline_name, names.run, TRAIN)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {RUN_LABEL: names.run, COMPONENT_LABEL: TRAIN},
            "ports": [{"name": "rendezvous", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def build_indexed_job(
    run: ResolvedRun, pipeline: Mapping[str, Any], names: ChildNames, settings: OperatorSettings
) -> list[dict[str, Any]]:
    port = settings.master_port
    shape = train_shape(
        run,
        env=rendezvous_env(run, names, port),
        ports=({"name": "rendezvous", "containerPort": port},),
        subdomain=names.service,
    )
    spec = job_spec(
        pod_template(run, settings, shape),
        backoff_limit=settings.backoff_limit,
        active_deadline_seconds=run.spec.active_deadline_seconds,
        settings=settings,
        suspend=bool(run.spec.resources.queue_name),
    )
    spec.update(completionMode="Indexed", completions=run.nodes, parallelism=run.nodes)
    job = {
        "apiVersion": "batch/v1",
        "kind": KIND,
        "metadata": object_meta(
            names.job, pipeline, workload_labels(run), {DISPLAY_NAME_ANNOTATION: run.config.run_name}
        ),
        "spec": spec,
    }
    return [build_service(run, pipeline, names, port), job]
