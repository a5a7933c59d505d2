"""Admission of each kind, as a pure function of the object (unit-tested without a cluster).

Every kind is admitted the same way: the spec is read through the API models (the same
ones the CRDs are generated from) and the outcome is recorded as an `Accepted` condition together
with the kind's summary condition and `observedGeneration`. The operator never writes `spec`.
"""

from __future__ import annotations

from typing import Any

from kaizen_api.kinds import EVAL_JOB, FINETUNE_PIPELINE, PRIVATE_MODEL, Kind
from pydantic import ValidationError

from kaizen_operator.conditions import set_condition

# The condition that summarises each kind (Ready for long-lived objects, Succeeded for bounded ones).
SUMMARY_CONDITION = {FINETUNE_PIPELINE.kind: "Ready", EVAL_JOB.kind: "Succeeded", PRIVATE_MODEL.kind: "Ready"}


def validation_message(error: ValidationError, prefix: str = "spec.") -> str:
    """One line per problem, each naming the field in manifest (camelCase) form after `prefix`."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        lines.append(f"{prefix}{where}: {problem['msg']}" if where else problem["msg"])
    return "; ".join(lines)


def admission_status(
    kind: Kind, spec: dict[str, Any], status: dict[str, Any], generation: int
) -> dict[str, Any]:
    """The status patch for a new or changed object: Accepted, the summary condition, observedGeneration."""
    conditions = status.get("conditions")
    summary = SUMMARY_CONDITION[kind.kind]
    try:
        kind.spec.model_validate(spec)
    except ValidationError as error:
        conditions = set_condition(
            conditions, "Accepted", "False", "InvalidSpec", validation_message(error), generation
        )
        conditions = set_condition(
            conditions, summary, "False", "InvalidSpec", "the spec is not valid", generation
        )
        return {"observedGeneration": generation, "phase": "Failed", "conditions": conditions}
    conditions = set_condition(conditions, "Accepted", "True", "SpecValid", "the spec is valid", generation)
    conditions = set_condition(
        conditions, summary, "Unknown", "Pending", "waiting to be reconciled", generation
    )
    return {"observedGeneration": generation, "phase": "Pending", "conditions": conditions}
