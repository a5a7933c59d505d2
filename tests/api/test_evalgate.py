"""The pipeline's evaluation gate: which thresholds belong to a suite, and the promotion decision."""

from __future__ import annotations

import pytest
from kaizen_api.evalgate import EvaluationGate, Threshold, decide_promotion
from pydantic import ValidationError


def gate(**fields: object) -> EvaluationGate:
    return EvaluationGate.model_validate(fields)


def test_harness_thresholds_name_the_tasks_the_spec_tasks_run():
    ok = gate(
        suite="lm-eval-harness",
        tasks=["arc", "gsm8k"],
        thresholds=[
            {"metric": "arc_easy/acc", "value": 0.5},
            {"metric": "gsm8k/exact_match@strict-match", "value": 0.3},
        ],
    )
    assert [str(t) for t in ok.thresholds] == ["arc_easy/acc >= 0.5", "gsm8k/exact_match@strict-match >= 0.3"]
    with pytest.raises(ValidationError, match="must belong to the suite"):
        gate(suite="nejumi-leaderboard3", tasks=["jbbq"], thresholds=[{"metric": "rougeL", "value": 0.5}])


def test_one_run_is_promoted_and_one_is_not():
    thresholds = [Threshold(metric="rougeL", value=0.4), Threshold(metric="bleu", operator=">", value=0.2)]
    passed = decide_promotion({"rougeL": 0.41, "bleu": 0.25, "rouge1": 0.1}, thresholds)
    assert passed.promoted and passed.failing == () and passed.message == "every threshold holds"
    failed = decide_promotion({"rougeL": 0.39, "bleu": 0.2}, thresholds)
    assert not failed.promoted
    assert failed.failing == ("rougeL >= 0.4: got 0.39", "bleu > 0.2: got 0.2")


def test_a_missing_metric_fails_its_threshold_and_lower_is_better_works():
    perplexity = [Threshold(metric="lambada_openai/perplexity", operator="<=", value=20)]
    failed = decide_promotion({}, perplexity)
    assert not failed.promoted and "is not in the results" in failed.message
    assert decide_promotion({"lambada_openai/perplexity": 12.5}, perplexity).promoted
