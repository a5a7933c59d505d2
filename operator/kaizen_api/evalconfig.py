"""The run configuration of one evaluation (`kaizen-runner eval --config eval.json`).

It is the EvalJob's spec with every reference resolved: the model's files (or endpoint) and the facts
the catalog or registry knows about it, the dataset's location, where staged benchmark data are, and
where results go. A user can write one by hand to evaluate outside Kubernetes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kaizen_api.base import NAME_MAX, URI_MAX, KaizenModel
from kaizen_api.common import HTTP_URL
from kaizen_api.evaljob import SUITE_TASKS, EvalParameters, Metric, Suite
from kaizen_api.runconfig import ProgressTarget, RunDataset, RunLocation

Modality = Literal["text", "vision-language"]


class EvalEndpoint(KaizenModel):
    """An OpenAI-compatible server (chat completions); the key is read from the environment."""

    base_url: str = Field(max_length=URI_MAX, pattern=HTTP_URL, description="e.g. http://h:8000/v1")
    model: str = Field(min_length=1, max_length=256, description="Model name sent in requests.")
    api_key_env: str = Field(
        default="OPENAI_API_KEY", max_length=128, description="Environment variable with the API key."
    )
    concurrency: int = Field(default=8, ge=1, le=256, description="Requests in flight at once.")
    timeout_seconds: float = Field(default=120.0, gt=0, le=3600, description="Per-request timeout.")


class EvalRunModel(KaizenModel):
    """The model under evaluation and what the catalog or registry says about it."""

    name: str = Field(max_length=NAME_MAX, description="Display name, e.g. Qwen2.5-0.5B-Instruct.")
    location: RunLocation | None = Field(
        default=None, description="Model folder (full weights), or the base model of `adapter`."
    )
    adapter: RunLocation | None = Field(default=None, description="A LoRA adapter applied on `location`.")
    endpoint: EvalEndpoint | None = Field(default=None, description="An OpenAI-compatible endpoint instead.")
    modality: Modality | None = Field(default=None, description="text or vision-language; None = unknown.")
    parameters: int | None = Field(default=None, ge=1, description="Parameter count; None = unknown size.")
    instruction_tuned: bool | None = Field(default=None, description="Instruction-tuned (has a chat form).")

    @model_validator(mode="after")
    def _one_source(self) -> EvalRunModel:
        if (self.location is None) == (self.endpoint is None):
            raise ValueError("model: set exactly one of location and endpoint")
        if self.adapter is not None and self.location is None:
            raise ValueError("model.adapter needs model.location (its base model)")
        return self


class EvalRunConfig(KaizenModel):
    """Everything one evaluation run needs."""

    run_name: str = Field(max_length=NAME_MAX, description="Run name; results are written under it.")
    job_name: str | None = Field(default=None, max_length=100, description="The job's display name.")
    suite: Suite = Field(description="standard, lm-eval-harness, nejumi-leaderboard3 or vlmevalkit.")
    tasks: list[str] | None = Field(default=None, max_length=32, description="Tasks (not for standard).")
    model: EvalRunModel | None = Field(default=None, description="Omitted when scoring predictions.")
    dataset: RunDataset | None = Field(default=None, description="Standard suite: the user's test data.")
    predictions: RunLocation | None = Field(
        default=None, description="Standard suite: {prediction, reference} records; no model is loaded."
    )
    metrics: list[Metric] | None = Field(
        default=None, description="Standard suite metrics; all when omitted."
    )
    parameters: EvalParameters = Field(default_factory=EvalParameters, description="Generation parameters.")
    staged_data: RunLocation | None = Field(
        default=None,
        description="Staged benchmark data: lm-eval's Hugging Face datasets cache (and optional tasks/ "
        "overrides), nejumi/ or vlmevalkit/ files; see docs/evaluation.md.",
    )
    allow_code_execution: bool = Field(default=False, description="HumanEval may run generated code.")
    output: RunLocation | None = Field(default=None, description="Results are written to <output>/<run>/.")
    progress: ProgressTarget | None = Field(default=None, description="Live progress endpoint.")
    batch_size: int = Field(default=8, ge=1, le=1024, description="Prompts generated together.")
    limit: int | None = Field(default=None, ge=1, description="At most this many samples per task.")
    bleu_tokenize: str = Field(
        default="unicode",
        max_length=32,
        description="BLEU tokenizer: unicode (CJK characters, words elsewhere) or a sacrebleu tokenizer.",
    )
    device: str | None = Field(default=None, max_length=32, description="cuda, cpu; auto when omitted.")

    @model_validator(mode="after")
    def _fits_suite(self) -> EvalRunConfig:
        if self.suite == "standard":
            if (self.dataset is None) == (self.predictions is None):
                raise ValueError("standard suite: set exactly one of dataset and predictions")
            if self.dataset is not None and self.model is None:
                raise ValueError("model is required to generate outputs for the dataset")
            if self.tasks:
                raise ValueError("tasks: not used by the standard suite")
            return self
        if self.model is None:
            raise ValueError(f"model is required for suite {self.suite}")
        if not self.tasks:
            raise ValueError(f"tasks: suite {self.suite} needs at least one task")
        unknown = [t for t in self.tasks if t not in SUITE_TASKS[self.suite]]
        if unknown:
            allowed = ", ".join(SUITE_TASKS[self.suite])
            raise ValueError(f"tasks: {', '.join(unknown)} not in suite {self.suite} ({allowed})")
        return self
