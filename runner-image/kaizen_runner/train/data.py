"""From a run's dataset locations to the `datasets.Dataset`s a TRL trainer takes, via the data layer.

The data layer validates and converts records; this module picks the format and task for the
trainer and adapts two shapes the data layer leaves to training:
- ShareGPT conversations become prompt/completion rows when the model's chat template cannot mark
  assistant turns (loss then covers the last answer only, instead of failing the run);
- preference pairs become two KTO rows (chosen desirable, rejected undesirable) for pref_loss kto_pair,
  all chosen rows first, then all rejected ones (see `chosen_then_rejected`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kaizen_api.runconfig import RunDataset

from kaizen_runner.data import DataError, Task, load_records, to_hf_dataset, to_trl
from kaizen_runner.data.limits import dataset_limits
from kaizen_runner.train.connections import s3_connection
from kaizen_runner.train.errors import RunnerError
from kaizen_runner.train.failures import classify

TASKS: dict[str, Task] = {"pretraining": "pretrain", "sft": "sft", "dpo": "dpo"}


@dataclass(frozen=True)
class DataPlan:
    """How to shape rows for the trainer."""

    trainer: str
    conversation_rows: bool = True  # False: ShareGPT as prompt/completion (last answer only)
    kto_rows: bool = False


def record_format(trainer: str, fmt: str) -> str:
    """The data layer's format: DPO on ShareGPT is validated as preference pairs."""
    return "preference" if trainer == "dpo" and fmt == "sharegpt" else fmt


def _as_prompt_completion(row: dict[str, Any]) -> dict[str, Any]:
    messages = row.pop("messages")
    return {**row, "prompt": messages[:-1], "completion": messages[-1:]}


def _as_kto(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    extra = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
    yield {**extra, "prompt": row["prompt"], "completion": row["chosen"], "label": True}
    yield {**extra, "prompt": row["prompt"], "completion": row["rejected"], "label": False}


def chosen_then_rejected(dataset: Any) -> Any:
    """KTO rows (chosen, rejected per pair, adjacent) reordered as every chosen row, then every rejected one.

    TRL's KTO estimates its KL term from mismatched pairs that it builds by rotating completions within
    each group of per_device_train_batch_size rows in dataset order; adjacent, a prompt's chosen row would
    get its own rejected answer as the "mismatched" completion. Reordered, neighbours hold different
    prompts (in every group once there are at least batchSize pairs). `select` only maps indices: the rows
    stay on disk."""
    count = len(dataset)
    return dataset.select([*range(0, count, 2), *range(1, count, 2)])


def shaped_rows(rows: Iterator[dict[str, Any]], plan: DataPlan) -> Iterator[dict[str, Any]]:
    for row in rows:
        if plan.kto_rows:
            yield from _as_kto(row)
        elif not plan.conversation_rows and "messages" in row:
            yield _as_prompt_completion(row)
        else:
            yield row


def load_dataset(location: RunDataset, plan: DataPlan) -> tuple[Any, dict[str, Any]]:
    """A `datasets.Dataset` of the usable records and the validation report (skipped records, reasons)."""
    fmt = record_format(plan.trainer, location.format)
    connection = s3_connection(location.connection) if location.uri.startswith("s3://") else None
    task = TASKS[plan.trainer]
    try:
        with load_records(
            location.uri, fmt, connection=connection, limits=dataset_limits(), task=task
        ) as loaded:
            rows = to_trl(loaded.records, fmt, task)
            dataset = to_hf_dataset(shaped_rows(rows, plan))
            if plan.kto_rows:
                dataset = chosen_then_rejected(dataset)
            return dataset, loaded.report.as_dict()
    except DataError as err:
        reason, _ = classify(err)
        raise RunnerError(f"dataset {location.uri}: {err.message}", reason=reason) from err
