"""The pure half of the operator's admission handler: conditions and observedGeneration."""

from __future__ import annotations

from api.manifests import load_example
from kaizen_api.kinds import EVAL_JOB, FINETUNE_PIPELINE
from kaizen_operator.admission import admission_status
from kaizen_operator.conditions import get_condition, set_condition


def test_transition_time_changes_only_when_status_flips() -> None:
    first = set_condition(None, "Ready", "Unknown", "Pending", "", 1, at="2026-01-01T00:00:00Z")
    same = set_condition(first, "Ready", "Unknown", "StillPending", "x", 2, at="2026-01-02T00:00:00Z")
    flipped = set_condition(same, "Ready", "True", "Reconciled", "", 2, at="2026-01-03T00:00:00Z")
    assert get_condition(same, "Ready")["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert get_condition(same, "Ready")["reason"] == "StillPending"
    assert get_condition(same, "Ready")["observedGeneration"] == 2
    assert get_condition(flipped, "Ready")["lastTransitionTime"] == "2026-01-03T00:00:00Z"
    assert len(flipped) == 1


def test_valid_spec_is_accepted_and_pending() -> None:
    spec = load_example("finetune-sft-alpaca.yaml")["spec"]
    status = admission_status(FINETUNE_PIPELINE, spec, {}, 3)
    assert status["observedGeneration"] == 3
    assert get_condition(status["conditions"], "Accepted")["status"] == "True"
    assert get_condition(status["conditions"], "Ready")["status"] == "Unknown"


def test_invalid_spec_is_reported_with_the_field() -> None:
    # CEL rejects this at admission; a cluster whose CRDs are older than the operator would not.
    spec = load_example("evaljob-lm-eval.yaml")["spec"] | {"tasks": ["jaster"]}
    status = admission_status(EVAL_JOB, spec, {}, 1)
    accepted = get_condition(status["conditions"], "Accepted")
    assert accepted["status"] == "False" and accepted["reason"] == "InvalidSpec"
    assert "tasks" in accepted["message"] and "must be among" in accepted["message"]
    assert get_condition(status["conditions"], "Succeeded")["status"] == "False"
    assert status["phase"] == "Failed"
