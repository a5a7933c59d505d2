"""Operator-wide kopf settings, in one startup handler."""

from __future__ import annotations

from typing import Any

import kopf
from kaizen_api.base import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Kaizen-named persistence, so kopf's bookkeeping is recognisable next to Argo CD's."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = 30  # warnings and errors become Kubernetes Events
