"""metav1.Condition bookkeeping, kept pure so it is unit-tested without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    *,
    at: str | None = None,
) -> list[Condition]:
    """Return `conditions` with `type_` set; lastTransitionTime changes only when the status flips."""
    existing = {c["type"]: c for c in conditions or []}
    old = existing.get(type_)
    transition = old["lastTransitionTime"] if old and old.get("status") == status else (at or now())
    existing[type_] = {
        "type": type_,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
    return list(existing.values())


def get_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
