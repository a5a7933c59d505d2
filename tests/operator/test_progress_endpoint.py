"""The progress endpoint's pure half: tokens, rate limits, stale reports, the loss history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kaizen_api.finetune_status import LossPoint, RunStatus
from kaizen_api.results import ProgressReport
from kaizen_operator.progress import RateLimiter, apply_report, downsample, is_stale, run_token, token_matches

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_tokens_authorise_one_run_of_one_pipeline_object() -> None:
    key = b"k" * 32
    token = run_token(key, "ns", "run-a", "uid-1")
    assert token_matches(key, token, "ns", "run-a", "uid-1")
    assert not token_matches(key, token, "ns", "run-b", "uid-1")
    assert not token_matches(key, token, "ns", "run-a", "uid-2")  # a re-created pipeline
    assert not token_matches(b"x" * 32, token, "ns", "run-a", "uid-1")


def test_rate_limit_and_stale_reports() -> None:
    limiter = RateLimiter(interval_s=1.0, burst=2)
    assert [limiter.allow("r", now=0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("r", now=1.5)
    first = ProgressReport.model_validate(
        {
            "runName": "r",
            "progress": {"step": 2, "updatedTime": "2026-12-01T12:00:10Z"},
            "metrics": {"trainTotalLoss": 2.0},
        }
    )
    run = apply_report(RunStatus(name="r", phase="Running"), first)
    assert run.loss_history == [LossPoint(step=2, loss=2.0)]
    assert is_stale(run, first)
    older = first.model_copy(update={"progress": first.progress.model_copy(update={"updated_time": NOW})})  # type: ignore[union-attr]
    assert is_stale(run, older)


def test_loss_history_is_bounded_and_keeps_the_ends() -> None:
    points = [LossPoint(step=i, loss=float(i)) for i in range(200)]
    kept = downsample(points, 50)
    assert len(kept) <= 50 and kept[0].step == 0 and kept[-1].step == 199


@pytest.mark.parametrize("steps", [range(1, 10_001), range(1, 20_001, 2), range(37, 370_000, 37)])
def test_loss_history_keeps_the_whole_curve_when_points_arrive_one_at_a_time(steps: range) -> None:
    history: list[LossPoint] = []
    for step in steps:
        history = downsample([*history, LossPoint(step=step, loss=1.0)], 50)
    kept = [p.step for p in history]
    assert len(kept) == 50 and kept[0] == steps[0] and kept[-1] == steps[-1]
    even = (steps[-1] - steps[0]) / 49
    assert max(b - a for a, b in zip(kept, kept[1:], strict=False)) < 2 * even
