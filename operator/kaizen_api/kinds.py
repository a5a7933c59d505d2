"""The three custom resources: names, scope, printer columns and their spec/status models."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaizen_api.base import GROUP, KaizenModel
from kaizen_api.evaljob import EvalJobSpec, EvalJobStatus
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import FineTunePipelineStatus
from kaizen_api.privatemodel import PrivateModelSpec, PrivateModelStatus

CATEGORY = "kaizen"


def column(
    name: str, json_path: str, type_: str = "string", *, priority: int = 0, description: str = ""
) -> dict:
    out: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path}
    if priority:
        out["priority"] = priority
    if description:
        out["description"] = description
    return out


def ready_column(type_: str) -> dict:
    return column(type_, f'.status.conditions[?(@.type=="{type_}")].status', description=f"{type_} condition")


AGE = column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    """One custom resource of the kaizen.dev group."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[KaizenModel]
    status: type[KaizenModel]
    description: str
    columns: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


FINETUNE_PIPELINE = Kind(
    kind="FineTunePipeline",
    plural="finetunepipelines",
    short_names=("ftp", "ftpipeline"),
    spec=FineTunePipelineSpec,
    status=FineTunePipelineStatus,
    description="A fine-tuning pipeline (pre-training, SFT or DPO) run manually or on a schedule; "
    "each run's output becomes a PrivateModel version.",
    columns=(
        column("Trainer", ".spec.trainer"),
        column("Trigger", ".spec.trigger.type"),
        column("Phase", ".status.phase"),
        column("Progress", ".status.currentRun.progress.percentage", "integer", description="Percent done"),
        column("Last Run", ".status.lastRunName"),
        ready_column("Ready"),
        column("Display Name", ".spec.displayName", priority=1),
        AGE,
    ),
)

EVAL_JOB = Kind(
    kind="EvalJob",
    plural="evaljobs",
    short_names=("ej", "evj"),
    spec=EvalJobSpec,
    status=EvalJobStatus,
    description="An evaluation of a model with a test suite (standard, lm-eval-harness, "
    "nejumi-leaderboard3, vlmevalkit) and its tasks.",
    columns=(
        column("Job Name", ".spec.displayName"),
        column("Suite", ".spec.suite"),
        column("Phase", ".status.phase"),
        column("Progress", ".status.progress.percentage", "integer", description="Percent done"),
        ready_column("Succeeded"),
        column("Tasks", ".spec.tasks", priority=1),
        AGE,
    ),
)

PRIVATE_MODEL = Kind(
    kind="PrivateModel",
    plural="privatemodels",
    short_names=("pm", "pmodel"),
    spec=PrivateModelSpec,
    status=PrivateModelStatus,
    description="A user-owned model in the private registry: versions, files, tags, readiness, "
    "IP allow-list and sharing.",
    columns=(
        column("Title", ".spec.title"),
        column("Base Model", ".spec.baseModel"),
        column("Size", ".spec.modelSize"),
        column("Versions", ".status.versionCount", "integer"),
        column("Storage", ".status.storageSize", description="Total size of the stored versions"),
        column("Latest", ".status.latestVersion"),
        ready_column("Ready"),
        AGE,
    ),
)

KINDS: tuple[Kind, ...] = (FINETUNE_PIPELINE, EVAL_JOB, PRIVATE_MODEL)
