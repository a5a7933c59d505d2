"""One preflight: validate the real dataset, count its tokens, plan steps and GPU memory.

Raises `PlanFailed` (with the partial plan: counts and the first record problems) when the data
cannot be trained on; other errors propagate as the runner's usual exceptions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizen_api.results import FailureReason, PreflightPlan, RecordProblem
from kaizen_api.runconfig import RunDataset, TrainRunConfig

from kaizen_runner.data import DataError, load_records, to_trl
from kaizen_runner.plan.memory import TrainingShape, estimate_gpu_memory
from kaizen_runner.plan.steps import steps_per_epoch, total_steps
from kaizen_runner.plan.tokenizer import load_tokenizer, model_shape, stage_tokenizer
from kaizen_runner.plan.tokens import Counter, TokenStats, count_tokens
from kaizen_runner.train.config import preference_family
from kaizen_runner.train.connections import s3_connection
from kaizen_runner.train.data import TASKS, DataPlan, record_format, shaped_rows
from kaizen_runner.train.failures import classify
from kaizen_runner.train.templates import supports_assistant_only_loss

MAX_PROBLEMS = 20


class PlanFailed(Exception):
    """The dataset cannot be used; `reason` is a FailureReason, `plan` what was found before failing."""

    def __init__(self, reason: FailureReason, message: str, plan: PreflightPlan) -> None:
        super().__init__(message)
        self.reason, self.message, self.plan = reason, message, plan


def _problems(report: Any) -> list[RecordProblem]:
    return [
        RecordProblem(
            index=issue.index, reason=f"{issue.reason.value}: {issue.message}"[:1024], source=report.source
        )
        for issue in report.examples[:MAX_PROBLEMS]
    ]


def _counts(report: Any) -> dict[str, Any]:
    if report is None:
        return {}
    return {
        "records": report.total,
        "usable_records": report.usable,
        "skipped_records": report.skipped,
        "first_problems": _problems(report) or None,
    }


def _load(dataset: RunDataset, trainer: str) -> Any:
    connection = s3_connection(dataset.connection) if dataset.uri.startswith("s3://") else None
    try:
        fmt = record_format(trainer, dataset.format)
        return load_records(dataset.uri, fmt, connection=connection, task=TASKS[trainer])
    except DataError as err:
        reason, _ = classify(err)  # an unreachable source is retried, bad records are the user's
        plan = PreflightPlan(**_counts(err.report))
        raise PlanFailed(reason, f"dataset {dataset.uri}: {err.message}", plan) from err


def training_shape(cfg: TrainRunConfig, stats: TokenStats, world_size: int) -> TrainingShape:
    """What the memory estimate needs of the run. Pre-training packs its text into blocks of
    maxSequenceLength whatever the documents' lengths (shorter only when the whole dataset is)."""
    hp, ext = cfg.hyperparameters, cfg.extended_hyperparameters
    longest = stats.tokens if cfg.trainer == "pretraining" else stats.longest
    return TrainingShape(
        world_size=world_size,
        batch_size=hp.batch_size,
        sequence_length=max(1, min(hp.max_sequence_length, longest)),
        finetuning_type=hp.finetuning_type,
        mixed_precision=ext.runtime.mixed_precision,
        zero_stage=hp.zero_stage,
        optimizer=ext.runtime.optimizer,
        quantization_bit=ext.runtime.quantization_bit,
        lora_rank=ext.lora.lora_rank,
        gradient_checkpointing=not ext.runtime.disable_gradient_checkpointing,
        preference_loss=ext.dpo.pref_loss if cfg.trainer == "dpo" else None,
    )


def plan_run(
    cfg: TrainRunConfig, *, nodes: int, gpus_per_node: int, parameters: int | None, work_dir: Path
) -> PreflightPlan:
    hp, ext = cfg.hyperparameters, cfg.extended_hyperparameters
    world_size = nodes * max(1, gpus_per_node)
    family = preference_family(ext.dpo) if cfg.trainer == "dpo" else None
    fmt = record_format(cfg.trainer, cfg.dataset.format)
    folder = stage_tokenizer(cfg.base_model, work_dir / cfg.run_name / "cache")
    tokenizer = load_tokenizer(folder)
    counter = Counter(tokenizer)
    # As training shapes them: conversations whose template cannot mark assistant turns become
    # prompt/completion rows (kto_pair's rows are counted per record, each answer an example).
    shaping = DataPlan(
        trainer=cfg.trainer,
        conversation_rows=cfg.trainer != "sft" or supports_assistant_only_loss(tokenizer),
    )
    with _load(cfg.dataset, cfg.trainer) as loaded:
        report = loaded.report
        rows = shaped_rows(to_trl(loaded.records, fmt, TASKS[cfg.trainer]), shaping)
        stats = count_tokens(
            rows, counter, trainer=cfg.trainer, max_length=hp.max_sequence_length, family=family
        )
    if cfg.validation_dataset is not None:
        _load(cfg.validation_dataset, cfg.trainer).close()
    per_epoch = steps_per_epoch(
        stats.examples,
        world_size=world_size,
        batch_size=hp.batch_size,
        gradient_accumulation=hp.gradient_accumulation_steps,
    )
    model, _vision = model_shape(folder, parameters)
    memory = estimate_gpu_memory(model, training_shape(cfg, stats, world_size)) if model else None
    counts = _counts(report)
    if "usable_records" in counts:
        counts["usable_records"] = max(0, counts["usable_records"] - stats.masked)
    return PreflightPlan(
        **counts,
        tokens=stats.tokens,
        truncated_records=stats.truncated,
        masked_records=stats.masked,
        steps_per_epoch=per_epoch,
        total_steps=total_steps(per_epoch, epochs=hp.epochs, max_steps=cfg.max_steps),
        world_size=world_size,
        estimated_gpu_memory_bytes=memory,
        parameters=model.parameters if model else None,
    )
