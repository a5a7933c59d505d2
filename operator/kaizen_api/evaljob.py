"""EvalJob: evaluate a model with a test suite and its tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from kaizen_api.base import NAME_MAX, URI_MAX, KaizenModel, Rule, StatusModel, immutable
from kaizen_api.common import (
    DISPLAY_NAME,
    EMAIL,
    HTTP_URL,
    MODEL_URI_RULE,
    Conditions,
    Dataset,
    Location,
    ModelRef,
    ObjectName,
    OutputStorage,
    Resources,
    SecretRef,
    no_userinfo,
)

Suite = Literal["standard", "lm-eval-harness", "nejumi-leaderboard3", "vlmevalkit"]

# The tasks each suite offers (SPEC §4); the standard suite evaluates the user's own dataset instead.
SUITE_TASKS: dict[str, tuple[str, ...]] = {
    "lm-eval-harness": (
        "arc",
        "gsm8k",
        "hellaswag",
        "humaneval",
        "ifeval",
        "lambada",
        "mmlu",
        "openbookqa",
        "piqa",
        "sciq",
        "truthfulqa",
        "winogrande",
    ),
    "nejumi-leaderboard3": ("jaster", "jbbq", "jtruthfulqa"),
    "vlmevalkit": ("chartqa", "docvqa", "infovqa", "mtvqa", "ocrbench"),
}
ALL_TASKS = tuple(t for tasks in SUITE_TASKS.values() for t in tasks)
TaskName = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Email = Annotated[str, StringConstraints(max_length=254, pattern=EMAIL)]
Metric = Literal["bleu", "fuzzy_match", "rouge1", "rouge2", "rougeL", "rougeLsum"]
STANDARD_FORMATS = ("alpaca", "sharegpt", "sharegpt_image")


class PipelineRunRef(KaizenModel):
    """The output of one run of a FineTunePipeline in the same namespace."""

    pipeline: ObjectName = Field(description="Name of the FineTunePipeline.")
    run: str | None = Field(
        default=None, max_length=NAME_MAX, description="Run name; the newest successful run when omitted."
    )


class OpenAIEndpoint(KaizenModel):
    """A model served behind an OpenAI-compatible API (generation tasks only)."""

    base_url: str = Field(max_length=URI_MAX, pattern=HTTP_URL, description="Base URL, e.g. .../v1.")
    model: str = Field(min_length=1, max_length=256, description="Model name sent in requests.")
    api_key_secret: SecretRef | None = Field(
        default=None, description="Secret whose key OPENAI_API_KEY holds the API key."
    )

    rules = (no_userinfo("base_url", "put the API key in a Secret and name it in apiKeySecret"),)


class EvalModel(ModelRef):
    """The model under evaluation: a catalog entry, a private model version, a pipeline run's output,
    a URI, or an OpenAI-compatible endpoint."""

    pipeline_run: PipelineRunRef | None = Field(default=None, description="A FineTunePipeline run's output.")
    endpoint: OpenAIEndpoint | None = Field(default=None, description="An OpenAI-compatible endpoint.")

    rules = (
        Rule(
            cel="[has(self.catalog), has(self.privateModel), has(self.uri), has(self.pipelineRun), "
            "has(self.endpoint)].filter(x, x).size() == 1",
            message="exactly one of catalog, privateModel, uri, pipelineRun, endpoint must be set",
            check=lambda m: (
                sum(
                    getattr(m, f) is not None
                    for f in ("catalog", "private_model", "uri", "pipeline_run", "endpoint")
                )
                == 1
            ),
        ),
        MODEL_URI_RULE,
    )


class EvalParameters(KaizenModel):
    """Generation and few-shot parameters (SPEC §4)."""

    log_samples: bool = Field(default=False, description="Keep the model's inputs and outputs.")
    max_tokens: int = Field(default=256, gt=0, le=1048576, description="Maximum tokens generated, > 0.")
    num_fewshot: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Few-shot examples in the context; the task's default when omitted.",
    )
    temperature: float = Field(default=0.0, ge=0, le=100, description="Sampling temperature; 0 is greedy.")
    repetition_penalty: float = Field(
        default=1.0, gt=0, lt=5, description="> 1 discourages repetition, < 1 encourages it; (0, 5)."
    )
    seed: int = Field(default=1234, ge=0, le=2**32 - 1, description="Random seed.")
    top_k: int = Field(default=-1, ge=-1, le=100000, description="Top tokens considered; -1 for all.")
    top_p: float = Field(
        default=1.0, gt=0, le=1, description="Cumulative probability kept, (0, 1]; 1 for all."
    )

    rules = (
        Rule(
            cel="self.topK == -1 || self.topK > 0",
            message="topK must be -1 (all tokens) or greater than 0",
            field_path=".topK",
            check=lambda m: m.top_k == -1 or m.top_k > 0,
        ),
    )


class Notification(KaizenModel):
    """E-mail notification when the job ends."""

    emails: list[Email] = Field(min_length=1, max_length=10, description="Recipients.")
    on: list[Literal["Succeeded", "Failed"]] = Field(
        default=["Succeeded", "Failed"], max_length=2, description="Outcomes that send mail."
    )


def tasks_rule(suite: str, tasks: tuple[str, ...]) -> Rule:
    """Tasks chosen for `suite` must be among its own. Omitted tasks are another rule's finding: without
    the `has` guard CEL would fail with "no such key: tasks" beside it."""
    listed = "[" + ", ".join(f"'{t}'" for t in tasks) + "]"

    def check(m: EvalJobSpec) -> bool:
        return m.suite != suite or all(t in tasks for t in m.tasks or [])

    return Rule(
        cel=f"self.suite != '{suite}' || !has(self.tasks) || self.tasks.all(t, t in {listed})",
        message=f"tasks of suite {suite} must be among: {', '.join(tasks)}",
        field_path=".tasks",
        check=check,
    )


# On the EvalJob and on a pipeline's evaluation gate, whose EvalJobs are built from it.
STANDARD_DATASET_RULE = Rule(
    cel="!has(self.dataset) || self.dataset.format in ["
    + ", ".join(f"'{f}'" for f in STANDARD_FORMATS)
    + "]",
    message="dataset.format of the standard suite must be alpaca, sharegpt or sharegpt_image",
    field_path=".dataset.format",
    check=lambda m: m.dataset is None or m.dataset.format in STANDARD_FORMATS,
)


class EvalJobSpec(KaizenModel):
    """What to evaluate, with which suite, tasks and parameters."""

    display_name: str = Field(
        pattern=DISPLAY_NAME,
        max_length=100,
        description="Job name (letters, digits, _ and -), e.g. testj_20250919.",
    )
    description: str | None = Field(
        default=None, max_length=200, description="Description, at most 200 characters."
    )
    model: EvalModel | None = Field(
        default=None, description="The model to evaluate; omitted when predictions are given."
    )
    suite: Suite = Field(description="standard, lm-eval-harness, nejumi-leaderboard3 or vlmevalkit.")
    tasks: list[TaskName] | None = Field(
        default=None,
        max_length=32,
        description="Tasks of the chosen suite (not for standard): " + ", ".join(ALL_TASKS) + ".",
    )
    dataset: Dataset | None = Field(
        default=None,
        description="The user's test data (standard suite only): alpaca, sharegpt or sharegpt_image.",
    )
    predictions: Location | None = Field(
        default=None,
        description="Outputs a model already produced (standard suite, no model is loaded): JSON or JSONL "
        "records of {prediction, reference} (optionally input).",
    )
    metrics: list[Metric] | None = Field(
        default=None,
        max_length=6,
        description="Text-similarity metrics (standard suite only); all when omitted.",
    )
    parameters: EvalParameters = Field(default_factory=EvalParameters, description="Generation parameters.")
    allow_code_execution: bool = Field(
        default=False,
        description="Let HumanEval run the model's generated code in the evaluation pod (off by default).",
    )
    staged_data: OutputStorage | None = Field(
        default=None,
        description="Where the suite's benchmark data are staged (lm-eval's dataset cache, Nejumi or "
        "VLMEvalKit files); the operator's default when omitted.",
    )
    run_token: str | None = Field(
        default=None,
        max_length=63,
        description="Change it to run the evaluation again (each run is kept in status.runs).",
    )
    notification: Notification | None = Field(default=None, description="E-mail when the job ends.")
    resources: Resources = Field(default_factory=Resources, description="GPUs and placement.")
    active_deadline_seconds: int | None = Field(
        default=None, ge=60, le=30 * 86400, description="A run still going after this many seconds fails."
    )
    output: OutputStorage | None = Field(
        default=None, description="Where results and logged samples are written; status only when omitted."
    )

    rules = (
        Rule(
            cel="self.suite == 'standard' ? has(self.dataset) != has(self.predictions) "
            ": !has(self.dataset) && !has(self.predictions)",
            message="dataset (or predictions) is required for the standard suite and only allowed there; "
            "set one of dataset and predictions",
            field_path=".dataset",
            check=lambda m: (
                (m.dataset is None) != (m.predictions is None)
                if m.suite == "standard"
                else m.dataset is None and m.predictions is None
            ),
        ),
        Rule(
            cel="has(self.model) != has(self.predictions)",
            message="model is required, except with predictions (which need no model)",
            field_path=".model",
            check=lambda m: (m.model is None) != (m.predictions is None),
        ),
        Rule(
            cel="!self.allowCodeExecution || (self.suite == 'lm-eval-harness' && has(self.tasks) "
            "&& 'humaneval' in self.tasks)",
            message="allowCodeExecution is only for the lm-eval-harness task humaneval",
            field_path=".allowCodeExecution",
            check=lambda m: (
                not m.allow_code_execution
                or (m.suite == "lm-eval-harness" and "humaneval" in (m.tasks or []))
            ),
        ),
        Rule(
            cel="self.suite == 'standard' || !has(self.metrics)",
            message="metrics are only allowed for the standard suite",
            field_path=".metrics",
            check=lambda m: m.suite == "standard" or m.metrics is None,
        ),
        Rule(
            cel="self.suite == 'standard' ? !has(self.tasks) : (has(self.tasks) && size(self.tasks) > 0)",
            message="tasks are required for lm-eval-harness, nejumi-leaderboard3 and vlmevalkit, "
            "and not allowed for standard",
            field_path=".tasks",
            check=lambda m: (m.tasks is None) if m.suite == "standard" else bool(m.tasks),
        ),
        *(tasks_rule(suite, tasks) for suite, tasks in SUITE_TASKS.items()),
        STANDARD_DATASET_RULE,
        *(
            immutable(name)
            for name in (
                "displayName",
                "model",
                "suite",
                "tasks",
                "dataset",
                "predictions",
                "metrics",
                "parameters",
            )
        ),
    )


EvalPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]


class EvalProgress(StatusModel):
    """Progress of the evaluation."""

    done: int = Field(default=0, ge=0, description="Items (samples or requests) evaluated.")
    total: int = Field(default=0, ge=0, description="Items to evaluate.")
    percentage: int = Field(default=0, ge=0, le=100, description="Progress in percent.")
    eta_seconds: int | None = Field(default=None, ge=0, description="Estimated seconds left.")
    task: str | None = Field(default=None, max_length=128, description="The task being evaluated.")
    updated_time: AwareDatetime | None = Field(default=None, description="When the runner last reported.")


RESULTS_MAX = 64  # headline scores kept in status (the full results live in the output location)
RUNS_MAX = 10  # runs kept in status.runs, newest first


class EvaluatedVersion(StatusModel):
    """The PrivateModel version a run evaluates, as resolved when its Job was made."""

    private_model: str = Field(max_length=NAME_MAX, description="Name of the PrivateModel.")
    version: str = Field(max_length=NAME_MAX, description="The version's name.")


class EvalRunRecord(StatusModel):
    """One run of the job, kept in the bounded history."""

    run_name: str = Field(max_length=NAME_MAX, description="Run name, <job>-<n>.")
    run_token: str | None = Field(default=None, max_length=63, description="spec.runToken of the run.")
    phase: EvalPhase = Field(description="How the run ended (or Running).")
    reason: str | None = Field(default=None, max_length=128, description="Why it failed or was cancelled.")
    start_time: datetime | None = Field(default=None, description="When the run started.")
    completion_time: datetime | None = Field(default=None, description="When it ended.")
    results: dict[str, float] | None = Field(
        default=None, max_length=RESULTS_MAX, description="Headline scores of the run."
    )
    results_uri: str | None = Field(default=None, max_length=URI_MAX, description="Full results.")
    job_name: str | None = Field(
        default=None, max_length=63, description="The run's Job, once seen (gone later: the run failed)."
    )
    evaluated: EvaluatedVersion | None = Field(
        default=None, description="The PrivateModel version evaluated; its scores are recorded there."
    )
    cancel_seen: str | None = Field(
        default=None,
        max_length=8,
        description="kaizen.dev/cancel's true as last seen during the run (or at its start): a true "
        "cancels the current run only when it was not seen yet.",
    )


class EvalJobStatus(StatusModel):
    """What the operator observed."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last reconciled.")
    conditions: Conditions | None = Field(default=None, description="Accepted, Running, Succeeded.")
    phase: EvalPhase | None = Field(default=None, description="Summary for display only.")
    job_name: str | None = Field(default=None, max_length=63, description="The Job that runs the evaluation.")
    start_time: datetime | None = Field(default=None, description="When the evaluation started.")
    completion_time: datetime | None = Field(default=None, description="When it ended.")
    progress: EvalProgress | None = Field(default=None, description="Live progress.")
    run_name: str | None = Field(default=None, max_length=NAME_MAX, description="The latest run.")
    results: dict[str, float] | None = Field(
        default=None,
        max_length=RESULTS_MAX,
        description="Headline scores (0-1) of the latest run: metric for the standard suite (rougeL: 0.41), "
        "task/metric otherwise (gsm8k/exact_match).",
    )
    warnings: list[Annotated[str, StringConstraints(max_length=512)]] | None = Field(
        default=None, max_length=16, description="Parameters a task ignores, and similar notes."
    )
    runs: list[EvalRunRecord] | None = Field(
        default=None, max_length=RUNS_MAX, description="The latest runs, newest first."
    )
    results_uri: str | None = Field(default=None, max_length=URI_MAX, description="Full results and samples.")
    message: str | None = Field(
        default=None, max_length=32768, description="Details, e.g. the runner's error."
    )
