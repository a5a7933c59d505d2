"""The pipeline's evaluation gate, its pure half: the EvalJob that evaluates a succeeded run's version,
and the promotion decision read from that EvalJob.

The pipeline controller creates `build_gate_evaljob(pipeline, run)` (create-if-absent: its name is
derived from the run) once a run has published its version, and reads `gate_promotion(evaljob)` on
later passes: None while the evaluation runs, then whether the version is promoted and, if not, the
failing thresholds for a `Promoted=False` condition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kaizen_api.base import API_VERSION
from kaizen_api.common import PrivateModelVersionRef
from kaizen_api.evalgate import EvaluationGate, Promotion, decide_promotion
from kaizen_api.evaljob import EvalJobSpec, EvalModel
from kaizen_api.finetune import FineTunePipelineSpec
from kaizen_api.finetune_status import RunStatus
from kaizen_api.kinds import EVAL_JOB

from kaizen_operator.workloads.meta import RUN_LABEL, owner_reference, pipeline_labels

GATE = "gate"
_DISPLAY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def gate_evaljob_name(run_object_name: str) -> str:
    return f"{run_object_name}-eval"


def build_gate_evaljob(pipeline: Mapping[str, Any], run: RunStatus) -> dict[str, Any]:
    """The EvalJob of a succeeded run's version, owned by the pipeline (deleted with it)."""
    spec = FineTunePipelineSpec.model_validate(pipeline["spec"])
    gate = spec.evaluation
    assert gate is not None and run.object_name and run.output_version
    display = _DISPLAY_UNSAFE.sub("_", f"eval_{run.name}")[:100]
    body = EvalJobSpec(
        display_name=display,
        description=f"evaluation gate of FineTunePipeline {pipeline['metadata']['name']}"[:200],
        model=EvalModel(
            private_model=PrivateModelVersionRef(name=spec.output.private_model, version=run.output_version)
        ),
        suite=gate.suite,
        tasks=gate.tasks,
        dataset=gate.dataset,
        metrics=gate.metrics,
        parameters=gate.parameters,
        resources=spec.resources.model_copy(update={"nodes": 1}),
    )
    labels = {**pipeline_labels(pipeline["metadata"]["name"], GATE), RUN_LABEL: run.object_name}
    return {
        "apiVersion": API_VERSION,
        "kind": EVAL_JOB.kind,
        "metadata": {
            "name": gate_evaljob_name(run.object_name),
            "namespace": pipeline["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(pipeline)],
        },
        "spec": body.to_manifest(),
    }


def gate_promotion(gate: EvaluationGate, evaljob: Mapping[str, Any] | None) -> Promotion | None:
    """None while the evaluation has not ended; else the decision (a failed evaluation promotes nothing)."""
    status = (evaljob or {}).get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return decide_promotion(status.get("results"), gate.thresholds)
    if phase in ("Failed", "Cancelled"):
        runs = status.get("runs") or [{}]
        reason = runs[0].get("reason") or phase
        return Promotion(False, (f"the evaluation ended {phase} ({reason})",))
    return None
