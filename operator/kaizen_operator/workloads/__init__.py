"""Pure builders: a resolved run (or a pipeline) → the manifests of its children, as plain dicts.

Each module builds one kind of child; `backends` picks the workload of a run.
"""

from kaizen_operator.workloads.backends import (
    BACKENDS,
    asks_for_pytorchjobs,
    build_workload,
    choose_backend,
    workload_kind,
)
from kaizen_operator.workloads.configmap import build_config_map, build_token_secret
from kaizen_operator.workloads.cronjob import build_cronjob
from kaizen_operator.workloads.preflight import build_preflight_job

__all__ = [
    "BACKENDS",
    "asks_for_pytorchjobs",
    "build_config_map",
    "build_cronjob",
    "build_preflight_job",
    "build_token_secret",
    "build_workload",
    "choose_backend",
    "workload_kind",
]
