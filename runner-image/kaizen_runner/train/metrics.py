"""Vertex AI's metric names, logged by the trainer itself so status, report and logs agree.

| Vertex name                           | source                                                   |
|---------------------------------------|----------------------------------------------------------|
| train_total_loss / eval_total_loss    | the trainer's `loss` / `eval_loss`                       |
| *_fraction_of_correct_next_step_preds | TRL's token accuracy over label positions                |
| train_num_predictions                 | label tokens the loss covered since the last log, all ranks |
| eval_num_predictions                  | label tokens of the whole validation pass, each record once |

TRL's `num_tokens` is not a prediction count (it counts attention-mask tokens, prompts included,
and its eval value repeats the train counter), so label tokens are counted here, per micro-batch.

A NaN or infinite loss (a diverged run) cannot cross JSON: `non_finite_loss_step` records the first
step it was seen at, and a run whose last training loss is not finite fails instead of publishing.
"""

from __future__ import annotations

import math
from typing import Any

from kaizen_runner.train.errors import RunnerError

VERTEX_KEYS = (
    "train_total_loss",
    "train_fraction_of_correct_next_step_preds",
    "train_num_predictions",
    "eval_total_loss",
    "eval_fraction_of_correct_next_step_preds",
    "eval_num_predictions",
)
NON_FINITE_STEP = "non_finite_loss_step"
METRIC_KEYS = (*VERTEX_KEYS, NON_FINITE_STEP)
IGNORE_INDEX = -100


def count_predictions(inputs: dict[str, Any], rows_per_record: int = 1) -> Any:
    """Per record (a [batch] tensor), the positions the loss is computed on: next-token labels that
    are not ignored, or (preference trainers, which carry no labels) the completion tokens of chosen
    and rejected answers. DPO stacks the chosen rows above the rejected ones: `rows_per_record` 2."""
    labels = inputs.get("labels")
    if labels is not None:
        return (labels[..., 1:] != IGNORE_INDEX).sum(-1)
    mask = inputs.get("completion_mask")
    if mask is not None:
        return mask[..., 1:].sum(-1).view(rows_per_record, -1).sum(0)
    label_keys = [k for k in inputs if k.endswith("_labels") and hasattr(inputs[k], "shape")]
    if label_keys:
        return sum((inputs[k][..., 1:] != IGNORE_INDEX).sum(-1) for k in label_keys)
    return None


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


class VertexMetricsMixin:
    """Mixed in before a TRL trainer: counts label tokens in `compute_loss`, adds Vertex names in `log`."""

    _kaizen_counts: dict[str, Any]
    _kaizen_rows_per_record = 1

    def _counts(self) -> dict[str, Any]:
        """Label tokens since the last log. Train's stay a tensor on the device, summed across ranks only
        when logged: no collective and no host sync per micro-batch. Eval's are an int (see compute_loss)."""
        if not hasattr(self, "_kaizen_counts"):
            self._kaizen_counts = {"train": 0, "eval": 0}
        return self._kaizen_counts

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
    ):  # type: ignore[no-untyped-def]
        count = count_predictions(inputs, self._kaizen_rows_per_record)
        result = super().compute_loss(  # type: ignore[misc]
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if count is not None:
            counts = self._counts()
            if self.model.training:  # type: ignore[attr-defined]
                counts["train"] = counts["train"] + count.sum()
            else:
                # The sampler evens out the last eval batch by repeating records on some ranks; gathered
                # per record, gather_for_metrics drops those repeats (a plain sum would count them).
                total = self.accelerator.gather_for_metrics(count).sum()  # type: ignore[attr-defined]
                counts["eval"] += int(total.item())
        return result

    def _take_count(self, mode: str) -> int:
        """The count since the last log, reset; train's summed over ranks (every rank logs, so all join)."""
        counts = self._counts()
        value, counts[mode] = counts[mode], 0
        if mode == "eval":
            return int(value)
        import torch

        accelerator = self.accelerator  # type: ignore[attr-defined]
        local = torch.as_tensor(value, device=accelerator.device).reshape(1)
        return int(accelerator.reduce(local, reduction="sum").item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        trl_metrics = getattr(self, "_metrics", {})
        for mode, loss_key in (("train", "loss"), ("eval", "eval_loss")):
            if loss_key not in logs:
                continue
            logs[f"{mode}_total_loss"] = logs[loss_key]
            accuracy = _mean(trl_metrics.get(mode, {}).get("mean_token_accuracy"))
            if accuracy is not None:
                logs[f"{mode}_fraction_of_correct_next_step_preds"] = accuracy
            logs[f"{mode}_num_predictions"] = self._take_count(mode)
        super().log(logs, start_time)  # type: ignore[misc]


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def first_non_finite_loss(log_history: list[dict[str, Any]]) -> int | None:
    """The first step whose logged training or validation loss is NaN or infinite, else None."""
    steps = [
        int(entry.get("step", 0))
        for entry in log_history
        if _not_finite(entry.get("loss")) or _not_finite(entry.get("eval_loss"))
    ]
    return min(steps) if steps else None


def vertex_metrics(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest value of each Vertex metric in a trainer's log history, and the first non-finite
    loss's step when there is one."""
    latest: dict[str, Any] = {}
    for entry in log_history:
        latest.update({k: entry[k] for k in VERTEX_KEYS if k in entry})
    step = first_non_finite_loss(log_history)
    if step is not None:
        latest[NON_FINITE_STEP] = step
    return latest


def finite_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics that JSON can carry: a NaN or infinite value would read back as null (no value)."""
    return {k: v for k, v in metrics.items() if k in METRIC_KEYS and not _not_finite(v)}


def check_not_diverged(log_history: list[dict[str, Any]]) -> None:
    """Fail a run whose last logged training loss is NaN or infinite: its weights are most likely NaN
    too, so publishing them would give a version that only looks ready. Its own reason, Diverged, so
    the operator can say so; a user error, as the same settings, data and seed diverge again on a retry."""
    last = next((entry["loss"] for entry in reversed(log_history) if "loss" in entry), None)
    if _not_finite(last):
        step = next((e.get("step") for e in reversed(log_history) if "loss" in e), None)
        raise RunnerError(
            f"training diverged: the training loss is {last} at step {step} (not finite since step "
            f"{first_non_finite_loss(log_history)}), so no version was published; lower learningRate "
            "or maxGradNorm, use bf16 rather than fp16, or check the data and the base model's weights",
            reason="Diverged",
        )


def with_vertex_metrics(trainer_cls: type, rows_per_record: int = 1) -> type:
    """`trainer_cls` with VertexMetricsMixin in front of it; `rows_per_record` as in count_predictions."""
    attrs = {"_kaizen_rows_per_record": rows_per_record}
    return type(f"Kaizen{trainer_cls.__name__}", (VertexMetricsMixin, trainer_cls), attrs)
