"""Payloads that cross the runner/operator boundary, defined once.

The runner writes them (progress reports to the operator's endpoint, the pod's termination message,
a version's manifest, a preflight plan); the operator and the registry read them back through the
same models. Everything is camelCase on the wire, like the CR status it ends up in.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from kaizen_api.base import NAME_MAX, URI_MAX, StatusModel
from kaizen_api.evaljob import RESULTS_MAX, EvalProgress

# Defined beside the status they end up in; re-exported here with the other payloads.
from kaizen_api.finetune_status import PreflightPlan as PreflightPlan
from kaizen_api.finetune_status import RecordProblem as RecordProblem
from kaizen_api.finetune_status import RunMetrics, RunProgress

# Exit codes of `kaizen-runner`: the operator's podFailurePolicy fails a Job at once on a user error
# and retries an infrastructure error (up to backoffLimit); they survive torchrun's own exit code.
EXIT_USER_ERROR = 2
EXIT_INFRA_ERROR = 3

# Why a run failed, as the runner classifies it; the operator turns it into a condition reason.
FailureReason = Literal[
    "DataInvalid",  # the dataset has no usable record, or strict validation failed
    "ConfigInvalid",  # the run configuration cannot be run as given (user error)
    "Diverged",  # the training loss ended NaN or infinite: the same settings and data diverge again
    "ModelInvalid",  # the base model cannot be loaded (missing files, unknown architecture)
    "DataNotStaged",  # evaluation data / caches are not where the configuration says
    "StorageError",  # S3 or volume I/O failed after retries (infrastructure)
    "OutOfMemory",  # CUDA or host OOM
    "DistributedError",  # NCCL / gloo / rendezvous failure
    "InfrastructureError",  # anything else that a retry may fix
    "RunnerError",  # an unexpected error in the runner itself
]
USER_ERROR_REASONS: frozenset[str] = frozenset(
    {"DataInvalid", "ConfigInvalid", "Diverged", "ModelInvalid", "DataNotStaged"}
)


class ProgressReport(StatusModel):
    """One live report from a runner to the operator's progress endpoint (training or evaluation)."""

    run_name: str = Field(max_length=NAME_MAX, description="The run (or eval run) this report belongs to.")
    phase: Literal["Running", "Succeeded", "Failed"] = Field(default="Running", description="Runner phase.")
    progress: RunProgress | None = Field(default=None, description="Training progress.")
    metrics: RunMetrics | None = Field(default=None, description="Latest training metrics.")
    eval_progress: EvalProgress | None = Field(default=None, description="Evaluation progress.")
    output_version: str | None = Field(
        default=None, max_length=NAME_MAX, description="Version published (with phase Succeeded)."
    )
    reason: FailureReason | None = Field(default=None, description="Why the run failed (phase Failed).")
    message: str | None = Field(default=None, max_length=4096, description="Error message (phase Failed).")


class TerminationMessage(StatusModel):
    """The runner's last word, written to /dev/termination-log (at most 4096 bytes): the operator reads it
    from the container status, so a run whose progress reports were lost still ends with its results."""

    run_name: str | None = Field(default=None, max_length=NAME_MAX, description="The run.")
    phase: Literal["Succeeded", "Failed"] = Field(description="How the runner ended.")
    reason: FailureReason | None = Field(default=None, description="Failure class (phase Failed).")
    message: str | None = Field(default=None, max_length=4096, description="Error for the user.")
    metrics: RunMetrics | None = Field(default=None, description="Final training metrics.")
    global_step: int | None = Field(default=None, ge=0, description="Optimizer steps done.")
    output_version: str | None = Field(default=None, max_length=NAME_MAX, description="Version published.")
    output_uri: str | None = Field(default=None, max_length=URI_MAX, description="Where the version is.")
    train_runtime_seconds: float | None = Field(default=None, ge=0, description="Training wall time.")
    plan: PreflightPlan | None = Field(default=None, description="The preflight's plan (preflight only).")
    results: dict[str, float] | None = Field(
        default=None, max_length=RESULTS_MAX, description="Headline evaluation scores (eval runs)."
    )
    results_uri: str | None = Field(default=None, max_length=URI_MAX, description="Full evaluation results.")
    warnings: list[str] | None = Field(
        default=None, max_length=16, description="Parameters a task ignored, and similar notes (eval runs)."
    )


class ManifestFile(StatusModel):
    """One file of a published version."""

    path: str = Field(max_length=1024, description="Path inside the version folder.")
    size: int = Field(ge=0, description="Size in bytes.")
    sha256: str | None = Field(default=None, max_length=64, description="Hex SHA-256 of the content.")


MANIFEST_SCHEMA = "kaizen.dev/model-version/v1"


class VersionManifest(StatusModel):
    """`manifest.json`, written last into a version folder: a reader that finds it knows every file it
    lists is in place."""

    schema_: str = Field(default=MANIFEST_SCHEMA, alias="schema", description="Manifest schema id.")
    version: str = Field(max_length=NAME_MAX, description="Version name.")
    base_model: str | None = Field(default=None, max_length=NAME_MAX, description="Base model's name.")
    base_model_uri: str | None = Field(default=None, max_length=URI_MAX, description="Base model location.")
    trainer: str | None = Field(default=None, max_length=32, description="pretraining, sft or dpo.")
    finetuning_type: str | None = Field(default=None, max_length=16, description="lora or full.")
    artifacts: dict[str, str] | None = Field(
        default=None, description="Kind of artifact (adapter, model) -> folder inside the version."
    )
    metrics: RunMetrics | None = Field(default=None, description="Final training metrics.")
    created_time: datetime | None = Field(default=None, description="When the manifest was written.")
    files: list[ManifestFile] = Field(default_factory=list, description="Every other file of the version.")


REPORT_SCHEMA = "kaizen.dev/training-report/v1"


class BaseModelInfo(StatusModel):
    """The base model a version was trained from."""

    name: str = Field(max_length=NAME_MAX, description="Display name, e.g. Llama-3.2-1B.")
    uri: str = Field(max_length=URI_MAX, description="Where the run read it from.")


class RunReport(StatusModel):
    """`training_report.json` in a version folder: how the version was made, for people and tools."""

    schema_: str = Field(default=REPORT_SCHEMA, alias="schema", description="Report schema id.")
    run_name: str = Field(max_length=NAME_MAX, description="The run, also the version's name.")
    trainer: str = Field(max_length=32, description="pretraining, sft or dpo.")
    base_model: BaseModelInfo = Field(description="The base model.")
    config: dict[str, Any] = Field(description="The run configuration as the runner read it (camelCase).")
    resumed_from: str | None = Field(default=None, max_length=NAME_MAX, description="Checkpoint resumed.")
    world_size: int = Field(default=1, ge=1, description="Training processes (nodes x GPUs).")
    global_step: int = Field(default=0, ge=0, description="Optimizer steps done.")
    epoch: float | None = Field(default=None, ge=0, description="Epochs done (fractional).")
    train_runtime_seconds: float = Field(default=0.0, ge=0, description="Wall time of the whole run.")
    train_output: dict[str, float] = Field(
        default_factory=dict, description="The trainer's own summary (train_runtime, train_loss, ...)."
    )
    metrics: RunMetrics = Field(default_factory=RunMetrics, description="Final training metrics.")
    artifacts: dict[str, str] = Field(
        default_factory=dict, description="Kind of artifact (adapter, model) -> folder inside the version."
    )
    data_reports: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Data validation report per split (train, validation)."
    )
    assistant_only_loss: bool = Field(default=False, description="Loss on assistant turns only (SFT).")
    library_versions: dict[str, str] = Field(
        default_factory=dict, description="python, torch, transformers, trl, peft, accelerate versions."
    )
    log_history: list[dict[str, Any]] = Field(
        default_factory=list, description="The trainer's log history (one entry per logged step)."
    )


class CheckpointMarker(StatusModel):
    """`kaizen-checkpoint.json`, written by node 0 after its part of a checkpoint is stored; with more
    nodes, each node n > 0 writes `kaizen-node-<n>.json` after its part. A checkpoint with every
    marker is complete; a restarted run resumes only from one of those."""

    step: int = Field(ge=0, description="Optimizer step of the checkpoint.")
    epoch: float | None = Field(default=None, ge=0, description="Epochs done (fractional).")
    world_size: int = Field(default=1, ge=1, description="Processes that wrote it.")
    nnodes: int = Field(default=1, ge=1, description="Nodes that wrote parts of it.")
    node: int = Field(default=0, ge=0, description="The node whose part this marker vouches for.")
    zero_stage: int | None = Field(default=None, ge=1, le=3, description="DeepSpeed ZeRO stage, if any.")


EVAL_RESULTS_SCHEMA = "kaizen.dev/eval-results/v1"


class EvalTaskResult(StatusModel):
    """One task's scores (the standard suite is one task, `standard`). Scores are 0-1, higher is better
    unless the metric says otherwise (lm-eval's perplexity)."""

    task: str = Field(max_length=128, description="SPEC task name, or standard.")
    source_tasks: list[str] | None = Field(
        default=None, description="The harness / adapter task names that were run for it."
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="Metric name -> score.")
    samples: int = Field(default=0, ge=0, description="Samples scored.")
    details: dict[str, float] | None = Field(
        default=None, description="Secondary numbers (per category, stderr, bias scores by context)."
    )


class EvalResults(StatusModel):
    """`results.json` in the output location: everything one evaluation run produced but the samples
    (those are `samples.jsonl` / `samples_<task>.jsonl` beside it)."""

    schema_: str = Field(default=EVAL_RESULTS_SCHEMA, alias="schema", description="Results schema id.")
    run_name: str = Field(max_length=NAME_MAX, description="The run.")
    suite: str = Field(description="The suite.")
    model: str | None = Field(default=None, max_length=NAME_MAX, description="The model's display name.")
    tasks: list[EvalTaskResult] = Field(default_factory=list, description="Per-task results.")
    parameters: dict[str, Any] | None = Field(default=None, description="Parameters as the run used them.")
    metric_settings: dict[str, str] | None = Field(
        default=None, description="BLEU signature, tokenizers, fuzzy-match definition."
    )
    warnings: list[str] = Field(default_factory=list, description="Ignored parameters and other notes.")
    skipped_records: int = Field(default=0, ge=0, description="Dataset records that could not be used.")
    started_time: datetime | None = Field(default=None, description="When the run started.")
    completed_time: datetime | None = Field(default=None, description="When it ended.")
    samples_files: list[str] | None = Field(default=None, description="Sample files beside results.json.")

    def compact(self, limit: int = RESULTS_MAX) -> dict[str, float]:
        """The headline scores for status: `metric` for the standard suite, `task/metric` otherwise,
        at most `limit` of them (in task order), rounded to 4 decimals. NaN and infinite scores (lm-eval's
        0/0) are left out: JSON writes them as null, and the operator could not read the message back."""
        out: dict[str, float] = {}
        for task in self.tasks:
            for metric, value in task.metrics.items():
                key = metric if task.task == "standard" else f"{task.task}/{metric}"
                if len(out) < limit and math.isfinite(value):
                    out[key] = round(float(value), 4)
        return out
