"""The run configuration the operator hands to the runner (and a user hands to `kaizen-runner train`).

It is the pipeline's spec with every reference resolved to a location the runner can open, so the
runner reads the same hyperparameter models the CRD is generated from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from kaizen_api.base import NAME_MAX, URI_MAX, KaizenModel
from kaizen_api.common import DataFormat
from kaizen_api.finetune import (
    TRAINER_FORMATS,
    TRAINING_RULES,
    ExtendedHyperparameters,
    Hyperparameters,
    Trainer,
)

# Bumped whenever a run configuration gains something an older runner would misread or refuse; the
# operator writes the version its models have, and a runner refuses a config newer than it knows.
RUN_CONFIG_SCHEMA_VERSION = 1


class UnsupportedSchemaVersion(ValueError):
    """The run configuration was written for a newer runner image than this one."""


def check_schema_version(data: Mapping[str, Any]) -> None:
    """Refuse a configuration from a newer operator before pydantic reports its new fields as errors."""
    raw = data.get("schemaVersion", data.get("schema_version", 1))
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise UnsupportedSchemaVersion(f"schemaVersion {raw!r} is not a positive integer")
    if raw > RUN_CONFIG_SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(
            f"the run configuration has schemaVersion {raw}, but this runner image understands at most "
            f"{RUN_CONFIG_SCHEMA_VERSION}; use a runner image as new as the operator"
        )


class RunLocation(KaizenModel):
    """A resolved location: a local path, s3://bucket/key, hf://org/name or an http(s) URL."""

    uri: str = Field(min_length=1, max_length=URI_MAX, description="Path or URI.")
    connection: str | None = Field(
        default=None,
        max_length=NAME_MAX,
        description="Name of the S3 connection (a Secret mounted under $KAIZEN_CONNECTIONS_DIR/<name>); "
        "the AWS_* environment when omitted.",
    )


class RunDataset(RunLocation):
    """A dataset location and its format."""

    format: DataFormat = Field(description="Data format of the file.")


class ProgressTarget(KaizenModel):
    """Where the runner reports live progress: an HTTP endpoint of the operator, authorised by a per-run
    token, so the runner's pod needs no Kubernetes API permissions at all."""

    url: str = Field(max_length=URI_MAX, description="Endpoint that accepts progress reports (POST, JSON).")
    token_env: str = Field(
        default="KAIZEN_PROGRESS_TOKEN",
        max_length=128,
        description="Environment variable holding the bearer token.",
    )
    interval_seconds: float = Field(
        default=15,
        ge=0,
        le=3600,
        description="Least seconds between two reports (start, evaluations and the end are always sent); "
        "the operator's endpoint takes about one report a second per run.",
    )


class TrainRunConfig(KaizenModel):
    """Everything one training run needs."""

    schema_version: int = Field(
        default=RUN_CONFIG_SCHEMA_VERSION,
        ge=1,
        le=RUN_CONFIG_SCHEMA_VERSION,
        description="Version of this configuration's layout; a runner refuses one newer than it knows.",
    )
    run_name: str = Field(
        max_length=NAME_MAX, description="Run and version name, ft_<base model>_<timestamp>."
    )
    trainer: Trainer = Field(description="pretraining, sft or dpo.")
    base_model: RunLocation = Field(description="The base model's weights and tokenizer.")
    base_model_name: str = Field(
        max_length=NAME_MAX, description="Display name of the base model, e.g. Llama-3.2-1B."
    )
    dataset: RunDataset = Field(description="Training data.")
    validation_dataset: RunDataset | None = Field(default=None, description="Validation data.")
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Core hyperparameters."
    )
    extended_hyperparameters: ExtendedHyperparameters = Field(
        default_factory=ExtendedHyperparameters, description="Extended hyperparameters."
    )
    output: RunLocation = Field(
        description="Folder of the target PrivateModel's storage; "
        "the run writes .checkpoints/<run>/ and <run>/ in it."
    )
    progress: ProgressTarget | None = Field(default=None, description="Live progress endpoint.")
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many optimizer steps (smoke tests); epochs otherwise.",
    )

    rules = TRAINING_RULES

    @model_validator(mode="before")
    @classmethod
    def _known_schema(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            check_schema_version(data)
        return data

    @model_validator(mode="after")
    def _format_fits_trainer(self) -> TrainRunConfig:
        if self.dataset.format not in TRAINER_FORMATS[self.trainer]:
            allowed = ", ".join(TRAINER_FORMATS[self.trainer])
            raise ValueError(
                f"dataset.format {self.dataset.format} does not fit trainer {self.trainer} ({allowed})"
            )
        return self
