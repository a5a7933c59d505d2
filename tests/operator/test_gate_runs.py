"""The evaluation gate's pure pieces in the pipeline controller: decision read back, the Promoted
condition, the promotion mark on the registry's version entry."""

from __future__ import annotations

import json

from api.manifests import load_example
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import RunEvaluation, RunStatus
from kaizen_operator import fakepods
from kaizen_operator.gate_runs import promoted_condition, read_gate, undecided, version_ready
from kaizen_operator.registry_link import promote_version

SPEC = FineTunePipelineSpec.model_validate(load_example("finetune-sft-gated.yaml")["spec"])
GATE = SPEC.evaluation
VERSION = "ft_Qwen2.5-0.5B-Instruct_20261201220000"
RUN = RunStatus(name=VERSION, object_name="sft-gated-ab12cd", phase="Succeeded", output_version=VERSION)


def _done(results: dict[str, float]) -> dict[str, object]:
    return {"status": {"phase": "Succeeded", "results": results}}


def test_the_decision_records_scores_and_names_the_failing_metric():
    assert GATE is not None
    passed = read_gate("e", GATE, _done({"rougeL": 0.5, "bleu": 0.25}))
    assert (passed.state, passed.promoted, passed.results) == (
        "Promoted",
        True,
        {"rougeL": 0.5, "bleu": 0.25},
    )
    failed = read_gate("e", GATE, _done({"rougeL": 0.31, "bleu": 0.25}))
    assert (failed.state, failed.promoted) == ("ThresholdNotMet", False)
    assert failed.message == "rougeL >= 0.4: got 0.31" and failed.results == {"rougeL": 0.31, "bleu": 0.25}
    broken = read_gate("e", GATE, {"status": {"phase": "Failed", "runs": [{"reason": "ModelNotReady"}]}})
    assert (broken.state, broken.promoted, broken.results) == ("EvaluationFailed", False, None)
    running = read_gate("e", GATE, {"status": {"phase": "Running"}})
    assert (running.state, running.promoted) == ("Evaluating", None)


def test_only_succeeded_runs_with_a_version_and_no_decision_are_gated():
    assert undecided(RUN)
    assert undecided(RUN.model_copy(update={"evaluation": RunEvaluation(eval_job="e", state="Evaluating")}))
    decided = RunEvaluation(eval_job="e", state="ThresholdNotMet", promoted=False)
    assert not undecided(RUN.model_copy(update={"evaluation": decided}))
    assert not undecided(RUN.model_copy(update={"phase": "Failed"}))
    assert not undecided(RUN.model_copy(update={"output_version": None}))


def test_the_eval_job_waits_for_a_ready_version():
    model = {"status": {"versions": [{"name": VERSION, "status": "ready"}, {"name": "v0", "ready": True}]}}
    assert not version_ready(model, VERSION) and not version_ready(None, VERSION)
    model["status"]["versions"][0]["ready"] = True
    assert version_ready(model, VERSION)


def _promoted(runs: list[RunStatus], spec: FineTunePipelineSpec = SPEC) -> dict[str, object] | None:
    conditions = promoted_condition([{"type": "Ready", "status": "True"}], spec, runs, 3)
    return next((c for c in conditions if c["type"] == "Promoted"), None)


def test_the_promoted_condition_follows_the_newest_succeeded_run():
    assert _promoted([])["status"] == "Unknown"  # type: ignore[index]
    failed = RunEvaluation(
        eval_job="e", state="ThresholdNotMet", promoted=False, message="rougeL >= 0.4: got 0.3"
    )
    older = RUN.model_copy(
        update={"name": "older", "evaluation": RunEvaluation(eval_job="o", state="Promoted", promoted=True)}
    )
    newest = RUN.model_copy(update={"evaluation": failed})
    cond = _promoted([RUN.model_copy(update={"phase": "Running"}), newest, older])
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "ThresholdNotMet")
    assert "rougeL >= 0.4: got 0.3" in str(cond["message"]) and cond["observedGeneration"] == 3
    cond = _promoted([older])
    assert cond is not None and (cond["status"], cond["reason"]) == ("True", "Promoted")
    waiting = RUN.model_copy(update={"evaluation": RunEvaluation(eval_job="e", state="WaitingForVersion")})
    assert _promoted([waiting])["status"] == "Unknown"  # type: ignore[index]
    ungated = SPEC.model_copy(update={"evaluation": None})
    assert _promoted([older], ungated) is None


def test_promotion_marks_the_version_once_and_keeps_the_registry_fields():
    versions = [{"name": "v0", "index": 0}, {"name": VERSION, "index": 1, "ready": True, "sizeBytes": 7}]
    marked = promote_version(versions, VERSION)
    assert marked == [versions[0], {**versions[1], "promoted": True}]
    assert promote_version(marked, VERSION) is None
    assert promote_version(versions, "absent") is None


def test_the_gate_eval_job_gets_its_fake_pod_only_in_the_test_suite(monkeypatch):
    gate = {"annotations": {"kaizen.dev/fake-termination-message": "{}"}}
    pipeline = {"metadata": {"annotations": {fakepods.ANNOTATION: json.dumps({"gate": gate})}}}
    monkeypatch.delenv(fakepods.ENV, raising=False)
    assert fakepods.gate_annotations(pipeline) == {}
    monkeypatch.setenv(fakepods.ENV, "1")
    assert json.loads(fakepods.gate_annotations(pipeline)[fakepods.ANNOTATION]) == {"workload": gate}
    assert fakepods.gate_annotations({"metadata": {}}) == {}
