"""The evaluation gate on a pipeline's succeeded runs: the I/O around `eval_gate`, and the `Promoted`
condition.

Level-based like the rest of the pass: each pass reads, for every succeeded run still undecided, the
gate EvalJob whose name derives from the run (`<run object name>-eval`) and creates it when absent,
once the registry has made the run's version ready (the EvalJob would fail ModelNotReady before).
The outcome is read from the EvalJob's status every pass until it is decided; a promoted version is
marked on the PrivateModel *before* the run records it, so a pass cut short there marks it on the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kaizen_api.base import API_VERSION as API
from kaizen_api.evalgate import EvaluationGate
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import GateState, RunEvaluation, RunStatus
from kaizen_api.kinds import EVAL_JOB

from kaizen_operator import fakepods
from kaizen_operator.adoption import NameConflict, conflict, create_owned
from kaizen_operator.conditions import Condition, set_condition
from kaizen_operator.eval_gate import build_gate_evaljob, gate_evaljob_name, gate_promotion
from kaizen_operator.kube import ApiError, Kube, path_of
from kaizen_operator.registry_link import mark_promoted
from kaizen_operator.workloads.meta import owner_reference

WAIT_FOR_VERSION_S = 5.0  # PrivateModel changes do not wake the pipeline: look again soon
RETRY_S = 30.0
DECIDED = frozenset({"Promoted", "ThresholdNotMet", "EvaluationFailed"})


@dataclass
class GateStep:
    """The runs as the gate leaves them, plus what the pass reports."""

    runs: list[RunStatus]
    requeue: float | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def look_again(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)


def undecided(run: RunStatus) -> bool:
    """A succeeded run with a version whose gate has not yet decided."""
    return (
        run.phase == "Succeeded"
        and bool(run.object_name and run.output_version)
        and (run.evaluation is None or run.evaluation.state not in DECIDED)
    )


def version_ready(model: Mapping[str, Any] | None, version: str) -> bool:
    versions = ((model or {}).get("status") or {}).get("versions") or []
    return any(v.get("name") == version and v.get("ready") for v in versions)


def read_gate(name: str, gate: EvaluationGate, evaljob: Mapping[str, Any]) -> RunEvaluation:
    """The run's evaluation as the gate EvalJob's status says: Evaluating, or the decision with scores."""
    promotion = gate_promotion(gate, evaljob)
    if promotion is None:
        return RunEvaluation(eval_job=name, state="Evaluating")
    status = evaljob.get("status") or {}
    state: GateState = "Promoted"
    if not promotion.promoted:
        state = "ThresholdNotMet" if status.get("phase") == "Succeeded" else "EvaluationFailed"
    return RunEvaluation(
        eval_job=name,
        state=state,
        promoted=promotion.promoted,
        results=status.get("results") or None,
        message=promotion.message[:4096],
    )


def evaluate(
    kube: Kube,
    pipeline: dict[str, Any],
    spec: FineTunePipelineSpec,
    runs: list[RunStatus],
    before_create: Callable[[], None],
) -> GateStep:
    """Advance the gate of every undecided succeeded run; API errors leave a run as recorded.
    `before_create` runs before an EvalJob is created (the pass confirms its pipeline exists)."""
    step = GateStep(list(runs))
    gate = spec.evaluation
    if gate is None:
        return step
    ns = pipeline["metadata"]["namespace"]
    model_name = spec.output.private_model
    for index, run in enumerate(step.runs):
        if not undecided(run):
            continue
        assert run.object_name and run.output_version
        name = gate_evaljob_name(run.object_name)
        try:
            evaljob = kube.get(path_of(API, EVAL_JOB.kind, ns, name))
            if evaljob is None:
                evaluation = _start(kube, pipeline, model_name, run, name, step, before_create)
            else:
                _check_owned(pipeline, name, evaljob)
                evaluation = read_gate(name, gate, evaljob)
                if evaluation.promoted:
                    mark_promoted(kube, ns, model_name, run.output_version)
        except NameConflict as err:  # never read as the gate's outcome
            if err.waits:
                step.errors.append(f"evaluation gate of run {run.name}: {err.message}")
                step.look_again(RETRY_S)
                continue
            evaluation = RunEvaluation(
                eval_job=name, state="EvaluationFailed", promoted=False, message=err.message
            )
        except ApiError as err:
            step.errors.append(f"evaluation gate of run {run.name}: {err}")
            step.look_again(RETRY_S)
            continue
        if evaluation.state in DECIDED:
            step.events.append(_decision_event(run, evaluation))
        step.runs[index] = run.model_copy(update={"evaluation": evaluation})
    return step


def _check_owned(pipeline: dict[str, Any], name: str, evaljob: Mapping[str, Any]) -> None:
    """An EvalJob of the gate's name that the pipeline object does not own is a `NameConflict`."""
    ours = {"kind": EVAL_JOB.kind, "metadata": {"name": name, "ownerReferences": [owner_reference(pipeline)]}}
    if (found := conflict(evaljob, ours)) is not None:
        raise found


def _start(
    kube: Kube,
    pipeline: dict[str, Any],
    model_name: str,
    run: RunStatus,
    name: str,
    step: GateStep,
    before_create: Callable[[], None],
) -> RunEvaluation:
    """Create the gate EvalJob once the version is ready; until then the run waits for it."""
    assert run.output_version
    model = kube.get(path_of(API, "PrivateModel", pipeline["metadata"]["namespace"], model_name))
    if not version_ready(model, run.output_version):
        step.look_again(WAIT_FOR_VERSION_S)
        return RunEvaluation(eval_job=name, state="WaitingForVersion")
    before_create()
    manifest = build_gate_evaljob(pipeline, run)
    if annotations := fakepods.gate_annotations(pipeline):
        manifest["metadata"]["annotations"] = annotations
    if create_owned(kube, manifest):
        step.events.append(
            ("Normal", "EvaluationStarted", f"run {run.name}: EvalJob {name} evaluates {run.output_version}")
        )
    return RunEvaluation(eval_job=name, state="Evaluating")


def _decision_event(run: RunStatus, evaluation: RunEvaluation) -> tuple[str, str, str]:
    if evaluation.promoted:
        return ("Normal", "Promoted", f"run {run.name}: version {run.output_version} promoted")
    message = f"run {run.name}: version {run.output_version} not promoted: {evaluation.message}"
    return ("Warning", evaluation.state, message)


def promoted_condition(
    conditions: list[Condition], spec: FineTunePipelineSpec, runs: list[RunStatus], generation: int
) -> list[Condition]:
    """`Promoted` from the newest succeeded run's gate; absent when the pipeline has no gate."""
    if spec.evaluation is None:
        return [c for c in conditions if c["type"] != "Promoted"]
    last = next((r for r in runs if r.phase == "Succeeded"), None)
    evaluation = last.evaluation if last else None
    if last is None or evaluation is None:
        message = "no succeeded run has been evaluated yet"
        return set_condition(conditions, "Promoted", "Unknown", "NoEvaluatedRun", message, generation)
    version = last.output_version
    if evaluation.state == "WaitingForVersion":
        status, message = "Unknown", f"run {last.name}: waiting for version {version} to be ready"
    elif evaluation.state == "Evaluating":
        status, message = "Unknown", f"run {last.name}: EvalJob {evaluation.eval_job} evaluates {version}"
    elif evaluation.promoted:
        status, message = "True", f"run {last.name}: version {version} promoted, every threshold holds"
    else:
        status, message = "False", f"run {last.name}: version {version} not promoted: {evaluation.message}"
    return set_condition(conditions, "Promoted", status, evaluation.state, message[:32768], generation)
