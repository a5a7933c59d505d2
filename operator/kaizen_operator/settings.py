"""Operator configuration: `KAIZEN_*` environment variables over an optional YAML file.

Precedence (lowest first): the defaults below, the YAML file named by `KAIZEN_OPERATOR_CONFIG`
(the Helm chart mounts its values there), then one environment variable per top-level field
(`KAIZEN_RUNNER_IMAGE`, `KAIZEN_PROGRESS_URL`, …) and per quota (`KAIZEN_QUOTA_MAX_PIPELINES`, …).
The settings are values only; the handlers enforce them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_ENV = "KAIZEN_OPERATOR_CONFIG"
ENV_PREFIX = "KAIZEN_"
QUOTA_ENV_PREFIX = "KAIZEN_QUOTA_"

# The hosted product's per-namespace caps (SPEC §3); off unless an administrator sets them.
HOSTED_QUOTAS = {"max_pipelines": 20, "max_concurrent_runs": 2, "max_nodes_per_run": 2}


class SettingsError(ValueError):
    """The operator's configuration is invalid; the message names the setting."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quotas(_Settings):
    """Per-namespace caps; None means no cap. The hosted defaults are 20 / 2 / 2 (`HOSTED_QUOTAS`)."""

    max_pipelines: int | None = Field(default=None, ge=0, description="FineTunePipelines per namespace.")
    max_concurrent_runs: int | None = Field(default=None, ge=0, description="Runs active at once.")
    max_nodes_per_run: int | None = Field(default=None, ge=1, description="Nodes one run may use.")


class PodDefaults(_Settings):
    """Resources of the pods that hold no GPU (preflight, schedule trigger) and of run scratch space."""

    preflight_cpu: str = "1"
    preflight_memory: str = "4Gi"
    preflight_memory_limit: str = "8Gi"
    preflight_active_deadline_seconds: int = Field(default=1800, ge=60)
    preflight_queue_name: str | None = Field(
        default=None,
        description="Kueue LocalQueue of preflight Jobs, for clusters whose Kueue manages every Job "
        "(manageJobsWithoutQueueName); preflights carry no queue label otherwise.",
    )
    trigger_cpu: str = "10m"
    trigger_memory: str = "16Mi"
    scratch_size_limit: str | None = Field(
        default=None, description="sizeLimit of each run pod's emptyDir scratch (/work); none when unset."
    )
    shm_size_limit: str = Field(default="16Gi", description="sizeLimit of /dev/shm on GPU pods.")
    run_as_user: int = Field(default=1000, ge=1, description="UID of run pods (the runner image's user).")


class OperatorSettings(_Settings):
    """Everything the operator needs to know about its cluster."""

    runner_image: str = "ghcr.io/kaizen-dev/kaizen-runner:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    progress_url: str = Field(
        default="http://kaizen-operator.kaizen-system.svc:8081",
        description="Base URL run pods use to reach the operator's progress endpoint.",
    )
    progress_port: int = Field(default=8081, ge=1, le=65535)
    progress_interval_seconds: float = Field(
        default=15, ge=1, le=3600, description="Least seconds between a runner's progress reports."
    )
    metrics_port: int = Field(default=8080, ge=1, le=65535)
    catalog_path: Path | None = Field(
        default=None, description="YAML file of extra catalog entries, merged over the shipped catalog."
    )
    quotas: Quotas = Field(default_factory=Quotas)
    multinode_backend: Literal["auto", "pytorchjob", "indexedjob"] = Field(
        default="auto",
        description="auto: a PyTorchJob when its CRD is installed, else an Indexed Job + headless Service.",
    )
    backoff_limit: int = Field(default=2, ge=0, description="Retries of a run after infrastructure errors.")
    ttl_seconds_after_finished: int | None = Field(
        default=86400, ge=0, description="Finished workloads are deleted after this; the run's history stays."
    )
    run_service_account: str | None = Field(
        default=None, description="ServiceAccount of run pods; its API token is never mounted."
    )
    hf_hub_offline: bool = Field(
        default=False, description="Set HF_HUB_OFFLINE=1 in run pods (air-gapped clusters use mirrors)."
    )
    master_port: int = Field(default=29500, ge=1, le=65535, description="torch.distributed rendezvous port.")
    pods: PodDefaults = Field(default_factory=PodDefaults)

    def run_progress_url(self, namespace: str, run_object_name: str) -> str:
        """The endpoint one run reports to (the token Secret authorises exactly this path)."""
        return f"{self.progress_url.rstrip('/')}/runs/{namespace}/{run_object_name}"


_LISTS = frozenset({"image_pull_secrets"})


def _env_value(raw: str) -> Any:
    """Environment values are YAML scalars or lists, so `KAIZEN_BACKOFF_LIMIT=3` is an int."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    quotas: dict[str, Any] = {}
    for name in OperatorSettings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in environ and name not in ("quotas", "pods"):
            raw = environ[key]
            # A list setting is comma-separated in the environment: KAIZEN_IMAGE_PULL_SECRETS=a,b
            values[name] = (
                [v.strip() for v in raw.split(",") if v.strip()] if name in _LISTS else _env_value(raw)
            )
    for name in Quotas.model_fields:
        key = QUOTA_ENV_PREFIX + name.upper()
        if key in environ:
            raw = environ[key].strip()
            quotas[name] = None if raw.lower() in ("", "none", "off") else _env_value(raw)
    if quotas:
        values["quotas"] = quotas
    return values


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` laid on top, mappings merged key by key (a layer of configuration names
    only what it changes)."""
    out = dict(base)
    for key, value in over.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if nested else value
    return out


def load_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Defaults, then the YAML file of `KAIZEN_OPERATOR_CONFIG`, then `KAIZEN_*` variables."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if path := env.get(CONFIG_ENV):
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise SettingsError(f"{CONFIG_ENV}={path}: cannot read: {err}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{CONFIG_ENV}={path}: expected a mapping of settings")
        values = loaded
    values = merge(values, _from_environ(env))
    try:
        return OperatorSettings.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise SettingsError(f"invalid operator settings: {problems}") from None
