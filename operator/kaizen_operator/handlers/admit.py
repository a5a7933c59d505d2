"""The admission handler every kind shares: the spec read through the API models, the outcome recorded
as conditions and observedGeneration."""

from __future__ import annotations

from typing import Any

import kopf
from kaizen_api.base import GROUP, VERSION
from kaizen_api.kinds import Kind

from kaizen_operator.admission import admission_status


def register_admission(kind: Kind) -> None:
    """Admit `kind` on create, on operator resume and on every spec change."""

    def admit(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(admission_status(kind, dict(spec), dict(status), meta["generation"]))

    kopf.on.create(GROUP, VERSION, kind.plural, id="admit")(admit)
    kopf.on.resume(GROUP, VERSION, kind.plural, id="admit")(admit)
    kopf.on.update(GROUP, VERSION, kind.plural, field="spec", id="admit")(admit)
