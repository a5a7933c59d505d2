"""The evaluation gate of a FineTunePipeline: evaluate each new version, promote it only when every
threshold holds.

Threshold metrics are the keys of an EvalJob's `status.results`: a metric name for the standard
suite (`rougeL`), `<task>/<metric>` otherwise, where the task is the harness or adapter task the
chosen SPEC task runs (`gsm8k/exact_match@strict-match`, `arc_easy/acc`, `jbbq/score`). Admission
refuses a threshold whose metric does not belong to the block's suite and tasks.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from kaizen_api.base import KaizenModel, Rule
from kaizen_api.common import Dataset
from kaizen_api.evaljob import (
    STANDARD_DATASET_RULE,
    SUITE_TASKS,
    EvalParameters,
    Metric,
    Suite,
    TaskName,
    tasks_rule,
)

STANDARD_METRICS = ("bleu", "fuzzy_match", "rouge1", "rouge2", "rougeL", "rougeLsum")
Comparison = Literal[">=", ">", "<=", "<"]
_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_STANDARD_LIST = "[" + ", ".join(f"'{m}'" for m in STANDARD_METRICS) + "]"


class Threshold(KaizenModel):
    """One condition on one score, e.g. rougeL >= 0.4."""

    metric: str = Field(
        min_length=1,
        max_length=160,
        pattern=r"^[A-Za-z0-9_.@/-]+$",
        description="rougeL, gsm8k/exact_match, ...",
    )
    operator: Comparison = Field(default=">=", description=">=, >, <= or <.")
    value: float = Field(ge=-1e6, le=1e6, description="The bound (scores are 0-1; perplexity is not).")

    def holds(self, score: float) -> bool:
        return bool(_COMPARE[self.operator](score, self.value))

    def __str__(self) -> str:
        return f"{self.metric} {self.operator} {self.value:g}"


def _belongs(gate: EvaluationGate, metric: str) -> bool:
    if gate.suite == "standard":
        return metric in STANDARD_METRICS and (gate.metrics is None or metric in gate.metrics)
    return any(metric.startswith(f"{t}/") or metric.startswith(f"{t}_") for t in gate.tasks or [])


class EvaluationGate(KaizenModel):
    """Evaluate each version a run publishes; promote it only when every threshold holds."""

    suite: Suite = Field(description="standard, lm-eval-harness, nejumi-leaderboard3 or vlmevalkit.")
    tasks: list[TaskName] | None = Field(default=None, max_length=32, description="Tasks (not for standard).")
    dataset: Dataset | None = Field(default=None, description="Test data (standard suite only).")
    metrics: list[Metric] | None = Field(default=None, max_length=6, description="Standard suite metrics.")
    parameters: EvalParameters = Field(default_factory=EvalParameters, description="Generation parameters.")
    thresholds: list[Threshold] = Field(min_length=1, max_length=16, description="All must hold to promote.")

    rules = (
        Rule(
            cel="self.suite == 'standard' ? has(self.dataset) && !has(self.tasks) "
            ": !has(self.dataset) && !has(self.metrics) && has(self.tasks) && size(self.tasks) > 0",
            message="the standard suite takes a dataset (and metrics), the other suites take tasks",
            field_path=".suite",
            check=lambda m: (
                (m.dataset is not None and m.tasks is None)
                if m.suite == "standard"
                else (m.dataset is None and m.metrics is None and bool(m.tasks))
            ),
        ),
        *(tasks_rule(suite, tasks) for suite, tasks in SUITE_TASKS.items()),
        STANDARD_DATASET_RULE,
        Rule(
            cel="self.thresholds.all(t, self.suite == 'standard' ? "
            f"(t.metric in {_STANDARD_LIST} && (!has(self.metrics) || t.metric in self.metrics)) : "
            "(has(self.tasks) && self.tasks.exists(k, t.metric.startsWith(k + '/') "
            "|| t.metric.startsWith(k + '_'))))",
            message="every threshold's metric must belong to the suite: a chosen standard metric, or "
            "<task>/<metric> of a chosen task",
            field_path=".thresholds",
            check=lambda m: all(_belongs(m, t.metric) for t in m.thresholds),
        ),
    )


@dataclass(frozen=True)
class Promotion:
    """Whether a version is promoted, and the thresholds that failed (with the score seen)."""

    promoted: bool
    failing: tuple[str, ...]

    @property
    def message(self) -> str:
        return "every threshold holds" if self.promoted else "; ".join(self.failing)


def decide_promotion(results: Mapping[str, float] | None, thresholds: list[Threshold]) -> Promotion:
    """Promote only when every threshold holds; a metric missing from the results fails its threshold."""
    failing = []
    for threshold in thresholds:
        score = (results or {}).get(threshold.metric)
        if score is None:
            failing.append(f"{threshold}: {threshold.metric} is not in the results")
        elif not threshold.holds(score):
            failing.append(f"{threshold}: got {score:g}")
    return Promotion(not failing, tuple(failing))
