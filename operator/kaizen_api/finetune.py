"""FineTunePipeline: pre-training, SFT or DPO of a base model, run manually or on a schedule.

Defaults are SPEC's (not TRL's): they are meant to work for a first run without tuning. This is the
spec; what the operator records is in `kaizen_api.finetune_status`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints

from kaizen_api.base import LIST_MAX, KaizenModel, Rule, immutable
from kaizen_api.common import DISPLAY_NAME, Dataset, ModelRef, ObjectName, Resources
from kaizen_api.evalgate import EvaluationGate
from kaizen_api.schedule import (
    CRON_PATTERN,
    RANGES_ASCEND_CEL,
    TIME_ZONES,
    TZ_VERSION,
    known_time_zone,
    ranges_ascend,
)

Trainer = Literal["pretraining", "sft", "dpo"]
ModuleName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TimeZone = Annotated[str, AfterValidator(known_time_zone)]

# Which data formats each trainer accepts (SPEC §3).
TRAINER_FORMATS: dict[str, tuple[str, ...]] = {
    "pretraining": ("corpus",),
    "sft": ("alpaca", "sharegpt", "sharegpt_image"),
    "dpo": ("sharegpt", "sharegpt_image"),
}
LEARNING_RATE_MIN = 1e-5  # a Rule, not a schema minimum (see Hyperparameters)


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


class Hyperparameters(KaizenModel):
    """The core hyperparameters of SPEC §3."""

    learning_rate: float = Field(
        default=LEARNING_RATE_MIN, le=1e-3, description="Learning rate, 1e-5 to 1e-3."
    )
    batch_size: int = Field(default=1, ge=1, le=1024, description="Batch size per device.")
    epochs: int = Field(default=1, ge=1, le=1000, description="Training epochs.")
    gradient_accumulation_steps: int = Field(
        default=4, ge=1, le=1024, description="Steps accumulated before each optimizer update."
    )
    checkpoint_steps: int = Field(default=1000, ge=1, description="Optimizer steps between two checkpoints.")
    max_sequence_length: int = Field(
        default=2048, ge=1, le=1048576, description="Sequences longer than this (in tokens) are cut."
    )
    finetuning_type: Literal["lora", "full"] = Field(
        default="lora", description="lora trains a LoRA adapter; full trains every weight."
    )
    distributed_backend: Literal["ddp", "deepspeed"] = Field(
        default="ddp", description="Distributed training backend: ddp (torchrun) or deepspeed."
    )
    deepspeed_zero_stage: Literal[1, 2, 3] | None = Field(
        default=None,
        description="DeepSpeed ZeRO stage (1, 2 or 3); only with deepspeed, where it defaults to 1.",
    )

    rules = (
        Rule(
            # Not a schema minimum: the API server checks an integral value (0) against int(1e-5) == 0.
            cel=f"!has(self.learningRate) || self.learningRate >= {LEARNING_RATE_MIN:f}",
            message="learningRate must be at least 1e-5",
            field_path=".learningRate",
            check=lambda m: m.learning_rate >= LEARNING_RATE_MIN,
        ),
        Rule(
            cel="!has(self.deepspeedZeroStage) || self.distributedBackend == 'deepspeed'",
            message="deepspeedZeroStage is only allowed when distributedBackend is deepspeed",
            field_path=".deepspeedZeroStage",
            check=lambda m: m.deepspeed_zero_stage is None or m.distributed_backend == "deepspeed",
        ),
    )

    @property
    def zero_stage(self) -> int | None:
        """The effective ZeRO stage: the given one, 1 under DeepSpeed, None under DDP."""
        if self.distributed_backend != "deepspeed":
            return None
        return self.deepspeed_zero_stage or 1


class RuntimeParameters(KaizenModel):
    """Training runtime options."""

    resume_from_checkpoint: str = Field(
        default="auto",
        max_length=2048,
        description="auto: resume from the newest checkpoint of the run (after a restart or preemption); "
        "false: always start fresh; otherwise a checkpoint path or s3:// URI.",
    )
    mixed_precision: Literal["bf16", "fp16", "none"] = Field(
        default="bf16", description="Mixed precision: bf16, fp16 or none."
    )
    quantization_bit: Literal[4, 8] | None = Field(
        default=None, description="Quantize the base model to 4 or 8 bits (QLoRA); only with LoRA."
    )
    optimizer: Literal["adamw", "sgd"] = Field(default="adamw", description="Optimizer: adamw or sgd.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="Weight decay.")
    max_grad_norm: float = Field(
        default=1.0, ge=0, description="Gradient clipping norm; 0 disables clipping."
    )
    disable_gradient_checkpointing: bool = Field(
        default=False, description="Turn off gradient checkpointing (faster, more memory)."
    )
    flash_attention_v2: bool = Field(default=False, description="Use FlashAttention-2 kernels.")
    lr_warmup_steps: int = Field(
        default=0, ge=0, description="Linear warm-up steps; overrides lrWarmupRatio."
    )
    lr_warmup_ratio: float = Field(
        default=0.0, ge=0, lt=1, description="Fraction of steps for warm-up, [0, 1)."
    )
    lr_scheduler_type: Literal["linear", "cosine", "constant"] = Field(
        default="cosine", description="Learning-rate schedule: linear, cosine or constant."
    )
    full_determinism: bool = Field(default=False, description="Deterministic kernels (slower).")
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="Random seed.")
    liger_kernel: bool = Field(default=False, description="Use Liger kernels where supported.")


# Preference losses that read dpoLabelSmoothing (TRL's robust DPO loss and CPO's SimPO); the others ignore it.
SMOOTHED_LOSSES = ("sigmoid", "simpo")
# Preference losses that read prefFtx (an added "sft" loss for DPO's, cpo_alpha for SimPO); ORPO has its
# own NLL term and KTO none.
FTX_LOSSES = ("sigmoid", "hinge", "ipo", "simpo")
# TRL's KTO compares each completion with others of its micro-batch (its KL term): it needs two or more.
KTO_MIN_BATCH_SIZE = 2


class DpoParameters(KaizenModel):
    """Preference-optimisation options (trainer dpo)."""

    dpo_label_smoothing: float = Field(
        default=0.0,
        ge=0,
        le=0.5,  # below 0.5: a rule, since the apiserver checks an integral value (0) against int(maximum)
        description="Label smoothing (noisy-label DPO), [0, 0.5); only prefLoss sigmoid and simpo use it.",
    )
    pref_beta: float = Field(default=0.1, ge=0, le=1, description="Beta of the preference loss, [0, 1].")
    pref_ftx: float = Field(default=0.0, ge=0, le=10, description="Weight of the added SFT loss, [0, 10].")
    pref_loss: Literal["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"] = Field(
        default="sigmoid", description="Preference loss: sigmoid (DPO), hinge, ipo, kto_pair, orpo or simpo."
    )
    simpo_gamma: float = Field(default=0.5, gt=0, le=100, description="Target reward margin of SimPO, > 0.")

    rules = (
        Rule(
            cel="!has(self.dpoLabelSmoothing) || self.dpoLabelSmoothing < 0.5",
            message="dpoLabelSmoothing must be below 0.5",
            field_path=".dpoLabelSmoothing",
            check=lambda m: m.dpo_label_smoothing < 0.5,
        ),
        Rule(
            cel="!has(self.dpoLabelSmoothing) || self.dpoLabelSmoothing == 0.0 || "
            f"!has(self.prefLoss) || self.prefLoss in {_cel_list(SMOOTHED_LOSSES)}",
            message="dpoLabelSmoothing is only used by prefLoss sigmoid and simpo; set it to 0 for "
            "hinge, ipo, kto_pair and orpo",
            field_path=".dpoLabelSmoothing",
            check=lambda m: m.dpo_label_smoothing == 0 or m.pref_loss in SMOOTHED_LOSSES,
        ),
        Rule(
            cel="!has(self.prefFtx) || self.prefFtx == 0.0 || "
            f"!has(self.prefLoss) || self.prefLoss in {_cel_list(FTX_LOSSES)}",
            message="prefFtx is only used by prefLoss sigmoid, hinge, ipo and simpo; set it to 0 for "
            "kto_pair and orpo (ORPO has its own SFT term)",
            field_path=".prefFtx",
            check=lambda m: m.pref_ftx == 0 or m.pref_loss in FTX_LOSSES,
        ),
    )


class LoraParameters(KaizenModel):
    """LoRA adapter options (finetuningType lora)."""

    lora_rank: int = Field(default=8, ge=1, le=1024, description="Rank of the LoRA matrices.")
    lora_alpha: int = Field(default=16, ge=1, le=4096, description="LoRA scaling alpha.")
    lora_dropout: float = Field(default=0.05, ge=0, le=1, description="Dropout of the LoRA layers, [0, 1].")
    target_modules: list[ModuleName] | None = Field(
        default=None,
        max_length=LIST_MAX,
        description="Module names to adapt; all linear layers of the language model when omitted.",
    )
    merge_adapter: bool = Field(
        default=False, description="Also save a model with the adapter merged into the base weights."
    )


class OtherParameters(KaizenModel):
    """Checkpointing, evaluation and logging cadence."""

    checkpoint_strategy: Literal["no", "epoch", "steps"] = Field(
        default="steps", description="When to checkpoint: no, epoch, or every checkpointSteps steps."
    )
    eval_strategy: Literal["no", "epoch", "steps"] = Field(
        default="steps", description="When to evaluate on the validation dataset: no, epoch or steps."
    )
    eval_steps: int = Field(default=100, ge=1, description="Steps between evaluations (evalStrategy steps).")
    number_of_checkpoints: int = Field(default=3, ge=1, le=100, description="Checkpoints to keep.")
    keep_checkpoints: bool = Field(
        default=False,
        description="Keep the run's checkpoints (and the last step's) in the output storage after it "
        "succeeds; by default they are deleted once the version is published.",
    )
    logging_steps: int = Field(default=10, ge=1, description="Steps between two logged metric points.")


class ExtendedHyperparameters(KaizenModel):
    """Extended hyperparameters, grouped as in the hosted console."""

    runtime: RuntimeParameters = Field(
        default_factory=RuntimeParameters, description="Training runtime options."
    )
    dpo: DpoParameters = Field(default_factory=DpoParameters, description="DPO options.")
    lora: LoraParameters = Field(default_factory=LoraParameters, description="LoRA options.")
    others: OtherParameters = Field(
        default_factory=OtherParameters, description="Checkpoint, evaluation and logging cadence."
    )


class Trigger(KaizenModel):
    """How runs start: manually, or on a cron schedule (a CronJob)."""

    type: Literal["manual", "schedule"] = Field(
        default="manual",
        description="manual: runs start on creation and on runToken changes; schedule: cron.",
    )
    schedule: str | None = Field(
        default=None,
        max_length=128,
        pattern=CRON_PATTERN,
        description="Cron schedule: 5 fields (minute 0-59, hour 0-23, day 1-31, month 1-12 or JAN-DEC, "
        "weekday 0-6 or SUN-SAT; lists, ranges, */steps) or @daily etc.; required for type schedule.",
    )
    time_zone: TimeZone | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"enum": list(TIME_ZONES)},
        description=f"IANA time zone of the schedule (tz database {TZ_VERSION}), e.g. Asia/Tokyo; "
        "the controller's when omitted.",
    )
    suspend: bool = Field(default=False, description="Suspend the schedule; running runs are not affected.")
    concurrency_policy: Literal["Forbid", "Allow", "Replace"] = Field(
        default="Forbid", description="What a scheduled run does while the previous one still runs."
    )
    run_token: str | None = Field(
        default=None,
        max_length=63,
        description="Change this value (e.g. to a timestamp) to start a new manual run.",
    )

    rules = (
        Rule(
            cel="self.type != 'schedule' || has(self.schedule)",
            message="schedule is required when trigger type is schedule",
            field_path=".schedule",
            reason="FieldValueRequired",
            check=lambda m: m.type != "schedule" or m.schedule is not None,
        ),
        Rule(
            cel="self.type == 'schedule' || !has(self.schedule)",
            message="schedule is only allowed when trigger type is schedule",
            field_path=".schedule",
            check=lambda m: m.type == "schedule" or m.schedule is None,
        ),
        Rule(
            cel=f"!has(self.schedule) || {RANGES_ASCEND_CEL}",
            message="schedule: a range must not end before it starts (e.g. 5-2 or FRI-MON)",
            field_path=".schedule",
            check=lambda m: m.schedule is None or ranges_ascend(m.schedule),
        ),
    )


class ModelOutput(KaizenModel):
    """Where the fine-tuned model goes."""

    private_model: ObjectName = Field(
        description="PrivateModel that receives each run's output as a new version ft_<base>_<timestamp>; "
        "checkpoints and versions are written to its storage."
    )


def _formats_ok(m: FineTunePipelineSpec) -> bool:
    return m.dataset.format in TRAINER_FORMATS[m.trainer]


_FORMAT_CEL = " && ".join(
    f"(self.trainer != '{t}' || self.dataset.format in {_cel_list(f)})" for t, f in TRAINER_FORMATS.items()
)


def _kto_batch_ok(m: Any) -> bool:
    """On FineTunePipelineSpec and TrainRunConfig alike."""
    return (
        m.trainer != "dpo"
        or m.extended_hyperparameters.dpo.pref_loss != "kto_pair"
        or m.hyperparameters.batch_size >= KTO_MIN_BATCH_SIZE
    )


# Rules of a training configuration as a whole: the pipeline spec and the runner's TrainRunConfig (same
# field names) both carry them, so the runner refuses exactly what admission refuses.
TRAINING_RULES = (
    Rule(
        cel="self.trainer != 'dpo' || !has(self.extendedHyperparameters) || "
        "!has(self.extendedHyperparameters.dpo) || !has(self.extendedHyperparameters.dpo.prefLoss) || "
        "self.extendedHyperparameters.dpo.prefLoss != 'kto_pair' || (has(self.hyperparameters) && "
        f"has(self.hyperparameters.batchSize) && self.hyperparameters.batchSize >= {KTO_MIN_BATCH_SIZE})",
        message=f"hyperparameters.batchSize must be at least {KTO_MIN_BATCH_SIZE} with prefLoss kto_pair "
        "(KTO's KL term compares the completions of one batch)",
        field_path=".hyperparameters.batchSize",
        check=_kto_batch_ok,
    ),
)


class FineTunePipelineSpec(KaizenModel):
    """A fine-tuning pipeline: data, base model, trainer, hyperparameters, trigger, resources, output."""

    display_name: str | None = Field(
        default=None,
        pattern=DISPLAY_NAME,
        max_length=100,
        description="Display name (letters, digits, _ and -).",
    )
    description: str | None = Field(
        default=None, max_length=200, description="Description, at most 200 characters."
    )
    trainer: Trainer = Field(
        description="pretraining (Corpus), sft (Alpaca, ShareGPT, ShareGPT_Image) or dpo."
    )
    base_model: ModelRef = Field(description="The model to fine-tune: catalog entry, private model or URI.")
    dataset: Dataset = Field(description="Training dataset and its format.")
    validation_dataset: Dataset | None = Field(
        default=None,
        description="Optional validation dataset (same format) for eval_* metrics during training.",
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Core hyperparameters."
    )
    extended_hyperparameters: ExtendedHyperparameters = Field(
        default_factory=ExtendedHyperparameters, description="Extended hyperparameters by group."
    )
    trigger: Trigger = Field(default_factory=Trigger, description="Manual or scheduled runs.")
    resources: Resources = Field(default_factory=Resources, description="GPUs, nodes, placement and queue.")
    output: ModelOutput = Field(description="Target PrivateModel of the fine-tuned versions.")
    evaluation: EvaluationGate | None = Field(
        default=None,
        description="Evaluate each new version; it is promoted only when every threshold holds.",
    )
    successful_runs_history_limit: int = Field(default=5, ge=0, le=50, description="Finished runs kept.")
    failed_runs_history_limit: int = Field(default=5, ge=0, le=50, description="Failed runs kept.")
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Fail a run that has been active longer than this."
    )

    rules = (
        Rule(
            cel=_FORMAT_CEL,
            message="dataset.format does not fit the trainer: pretraining takes corpus; sft takes alpaca, "
            "sharegpt or sharegpt_image; dpo takes sharegpt or sharegpt_image preference data",
            field_path=".dataset.format",
            check=_formats_ok,
        ),
        Rule(
            cel="!has(self.validationDataset) || self.validationDataset.format == self.dataset.format",
            message="validationDataset.format must equal dataset.format",
            field_path=".validationDataset.format",
            check=lambda m: m.validation_dataset is None or m.validation_dataset.format == m.dataset.format,
        ),
        Rule(
            cel="!has(self.extendedHyperparameters) || !has(self.extendedHyperparameters.runtime) || "
            "!has(self.extendedHyperparameters.runtime.quantizationBit) || "
            "!has(self.hyperparameters) || self.hyperparameters.finetuningType == 'lora'",
            message="quantizationBit (QLoRA) requires finetuningType lora",
            field_path=".extendedHyperparameters.runtime.quantizationBit",
            check=lambda m: (
                m.extended_hyperparameters.runtime.quantization_bit is None
                or m.hyperparameters.finetuning_type == "lora"
            ),
        ),
        *TRAINING_RULES,
        immutable("trainer"),
        immutable("baseModel"),
        immutable("output"),
    )
