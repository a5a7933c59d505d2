"""A watched resource that stops being served must not end the operator.

When a watched CRD is deleted (the PyTorchJob CRD is optional), kopf's watch stream ends and kopf
reconnects at once. If that reconnect reaches the API server before kopf's CRD observer has stopped
the watcher, the listing is answered 404; kopf (1.45) lets the error escape the watcher, and its
orchestrator re-raises it, which stops every watcher and the operator. There is no kopf setting for
this, so the stream is wrapped: a 404 ends this attempt, kopf's own loop reconnects after a pause,
and the observer stops the watcher (the CRD is gone) or the listing succeeds again (it is back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from kopf._cogs.clients import errors, watching

log = logging.getLogger(__name__)
MISSING_BACKOFF_S = 1.0  # a resource that went away comes back slower than a dropped connection

Stream = Callable[..., AsyncIterator[Any]]


def tolerate_missing(original: Stream) -> Stream:
    """`original` (kopf's `continuous_watch`), ending quietly when its resource is not served."""
    missing: set[Any] = set()  # logged once per outage, not once per retry

    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        resource = kwargs["resource"]
        try:
            async for event in original(**kwargs):
                missing.discard(resource)
                yield event
        except errors.APINotFoundError:
            if resource not in missing:
                missing.add(resource)
                log.warning("%s is not served (its CRD was removed?); watching again when it is", resource)
            await asyncio.sleep(MISSING_BACKOFF_S)

    continuous_watch.tolerates_missing = True  # type: ignore[attr-defined]
    return continuous_watch


def install() -> None:
    """Wrap kopf's stream once (`infinite_watch` looks the name up on every reconnect)."""
    if not getattr(watching.continuous_watch, "tolerates_missing", False):
        watching.continuous_watch = tolerate_missing(watching.continuous_watch)  # type: ignore[assignment]
