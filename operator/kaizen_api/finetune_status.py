"""FineTunePipeline status: its runs, each with the preflight plan, live progress, metrics and outcome.

Only the operator writes these (and the runner's reports reach them through it); the spec is in
`kaizen_api.finetune`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, Field

from kaizen_api.base import NAME_MAX, URI_MAX, StatusModel
from kaizen_api.common import Conditions, LabelName


class RunProgress(StatusModel):
    """Live progress of a run, reported by the runner."""

    step: int = Field(default=0, ge=0, description="Optimizer steps done.")
    total_steps: int = Field(default=0, ge=0, description="Optimizer steps planned.")
    epoch: float = Field(default=0.0, ge=0, description="Epochs done (fractional).")
    percentage: int = Field(default=0, ge=0, le=100, description="Progress in percent.")
    eta_seconds: int | None = Field(default=None, ge=0, description="Estimated seconds left.")
    updated_time: AwareDatetime | None = Field(default=None, description="When the runner last reported.")


class RunMetrics(StatusModel):
    """The latest training metrics of a run, with Vertex AI's names."""

    train_total_loss: float | None = Field(default=None, description="Mean training loss of the last window.")
    train_fraction_of_correct_next_step_preds: float | None = Field(
        default=None, description="Token accuracy on training labels."
    )
    train_num_predictions: int | None = Field(default=None, description="Label tokens predicted in training.")
    eval_total_loss: float | None = Field(default=None, description="Validation loss.")
    eval_fraction_of_correct_next_step_preds: float | None = Field(
        default=None, description="Token accuracy on validation labels."
    )
    eval_num_predictions: int | None = Field(
        default=None, description="Label tokens predicted in validation."
    )
    non_finite_loss_step: int | None = Field(
        default=None,
        ge=0,
        description="First logged step whose training or validation loss was NaN or infinite: the run "
        "diverged. Such a loss is never written to the fields above (JSON has no NaN); they keep the "
        "last finite value, if any.",
    )


class RecordProblem(StatusModel):
    """One skipped or invalid record: its index in the file and why."""

    index: int = Field(ge=0, description="Record index in the file (0-based).")
    reason: str = Field(max_length=1024, description="Why the record cannot be used.")
    source: str | None = Field(default=None, max_length=URI_MAX, description="File it came from.")


class PreflightPlan(StatusModel):
    """What the CPU preflight found and planned, before any GPU is requested."""

    records: int = Field(default=0, ge=0, description="Records read from the dataset.")
    usable_records: int = Field(default=0, ge=0, description="Records that will be trained on.")
    skipped_records: int = Field(default=0, ge=0, description="Records skipped, with the first reasons.")
    first_problems: list[RecordProblem] | None = Field(
        default=None, max_length=20, description="The first skipped or invalid records."
    )
    tokens: int = Field(default=0, ge=0, description="Tokens after templating and truncation.")
    truncated_records: int = Field(default=0, ge=0, description="Records cut at maxSequenceLength.")
    masked_records: int = Field(
        default=0,
        ge=0,
        description="Records whose prompt alone fills maxSequenceLength: no answer token is left to learn "
        "from, so the trainer drops them (not counted as usable).",
    )
    steps_per_epoch: int = Field(default=0, ge=0, description="Optimizer steps per epoch.")
    total_steps: int = Field(default=0, ge=0, description="Optimizer steps of the whole run.")
    world_size: int = Field(default=1, ge=1, description="Processes the plan assumed (nodes x GPUs).")
    estimated_gpu_memory_bytes: int | None = Field(
        default=None, ge=0, description="Estimated peak GPU memory per device."
    )
    parameters: int | None = Field(default=None, ge=0, description="Parameters of the base model.")


class LossPoint(StatusModel):
    """One point of the downsampled training-loss curve kept for display."""

    step: int = Field(ge=0, description="Optimizer step.")
    loss: float = Field(description="Training loss at that step.")


LOSS_HISTORY_MAX = 50

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled", "Skipped"]
FINISHED_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled", "Skipped"})


GateState = Literal["WaitingForVersion", "Evaluating", "Promoted", "ThresholdNotMet", "EvaluationFailed"]


class RunEvaluation(StatusModel):
    """A succeeded run's evaluation gate: its EvalJob, the scores, whether the version was promoted."""

    eval_job: str = Field(max_length=NAME_MAX, description="The gate's EvalJob (<run object name>-eval).")
    state: GateState = Field(
        description="WaitingForVersion (the registry has not made the version ready), Evaluating, Promoted, "
        "ThresholdNotMet or EvaluationFailed."
    )
    promoted: bool | None = Field(default=None, description="Every threshold held; unset while undecided.")
    results: dict[str, float] | None = Field(
        default=None, max_length=64, description="The EvalJob's headline scores."
    )
    message: str | None = Field(
        default=None, max_length=4096, description="The failing thresholds, with the scores seen."
    )


class RunStatus(StatusModel):
    """One run of the pipeline (or a scheduled firing that was skipped, with its reason)."""

    name: str = Field(max_length=NAME_MAX, description="Run name ft_<base model>_<timestamp>.")
    object_name: LabelName | None = Field(
        default=None, description="Name of the run's objects (ConfigMap, Secret, preflight Job, workload)."
    )
    job_name: LabelName | None = Field(default=None, description="The Job or PyTorchJob of this run.")
    job_kind: Literal["Job", "PyTorchJob"] | None = Field(
        default=None, description="Kind of the run's workload."
    )
    nodes: int | None = Field(default=None, ge=1, description="Nodes of the workload.")
    trigger: Literal["manual", "schedule"] | None = Field(default=None, description="What started the run.")
    token: str | None = Field(
        default=None,
        max_length=63,
        description="The spec.trigger.runToken a manual run was requested with.",
    )
    scheduled_time: datetime | None = Field(
        default=None, description="When the schedule fired for this run (scheduled runs)."
    )
    phase: RunPhase = Field(
        default="Pending", description="Pending, Running, Succeeded, Failed, Cancelled or Skipped."
    )
    start_time: datetime | None = Field(default=None, description="When the run started.")
    completion_time: datetime | None = Field(default=None, description="When the run ended.")
    preflight: PreflightPlan | None = Field(default=None, description="The CPU preflight's plan.")
    progress: RunProgress | None = Field(default=None, description="Live progress.")
    metrics: RunMetrics | None = Field(default=None, description="Latest metrics.")
    loss_history: list[LossPoint] | None = Field(
        default=None,
        max_length=LOSS_HISTORY_MAX,
        description="Training loss, downsampled; the full curve is in the run's output.",
    )
    output_version: str | None = Field(
        default=None, max_length=NAME_MAX, description="PrivateModel version produced by the run."
    )
    reason: str | None = Field(
        default=None, max_length=1024, description="Why the run is waiting, or why it ended as it did."
    )
    message: str | None = Field(
        default=None, max_length=32768, description="Details, e.g. the runner's error."
    )
    exit_code: int | None = Field(default=None, description="Exit code of the failed container.")
    evaluation: RunEvaluation | None = Field(
        default=None, description="The evaluation gate of a succeeded run (spec.evaluation)."
    )

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES


class FineTunePipelineStatus(StatusModel):
    """What the operator observed."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last reconciled.")
    conditions: Conditions | None = Field(
        default=None, description="Accepted, Ready, Running, Succeeded, Failed, Suspended, Promoted."
    )
    phase: str | None = Field(default=None, max_length=64, description="Summary for display only.")
    last_run_name: str | None = Field(default=None, max_length=NAME_MAX, description="Newest run's name.")
    last_run_token: str | None = Field(
        default=None,
        max_length=63,
        description=(
            "spec.trigger.runToken of the newest manual run ('' for the run a new pipeline starts); on a"
            " schedule pipeline its runToken, seen: switched to manual, it runs once the token changes."
        ),
    )
    last_schedule_time: datetime | None = Field(default=None, description="When the schedule last fired.")
    next_schedule_time: datetime | None = Field(default=None, description="When the schedule fires next.")
    current_run: RunStatus | None = Field(default=None, description="The newest active run, if any.")
    runs: list[RunStatus] | None = Field(
        default=None,
        max_length=100,
        description="Runs, newest first: the active ones and finished ones within the history limits.",
    )
