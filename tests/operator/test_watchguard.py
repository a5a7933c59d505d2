"""kopf's watch loop survives a 404 (a watched CRD removed) and still ends on other errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kaizen_operator.handlers import watchguard
from kopf._cogs.clients import errors, watching
from kopf._cogs.structs import references

RESOURCE = references.Resource(group="kubeflow.org", version="v1", plural="pytorchjobs", namespaced=True)


def not_found() -> errors.APINotFoundError:
    return errors.APINotFoundError("404 page not found", status=404, headers={})


def watch(monkeypatch: pytest.MonkeyPatch, attempts: list[Exception | None], iterations: int) -> list[Any]:
    """kopf's own `infinite_watch` over a stream that fails (or yields one event) per attempt."""
    calls = iter(attempts)

    async def stream(**_: Any) -> AsyncIterator[Any]:
        error = next(calls)
        if error is not None:
            raise error
        yield {"type": "ADDED", "object": {"metadata": {"name": "job"}}}

    monkeypatch.setattr(watchguard, "MISSING_BACKOFF_S", 0.0)
    monkeypatch.setattr(watching, "continuous_watch", watchguard.tolerate_missing(stream))
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.0

    async def collect() -> list[Any]:
        return [
            event
            async for event in watching.infinite_watch(
                settings=settings, resource=RESOURCE, namespace=None, _iterations=iterations
            )
        ]

    return asyncio.run(collect())


def test_a_404_ends_one_attempt_and_the_watch_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    events = watch(monkeypatch, [not_found(), not_found(), None], iterations=3)
    assert [e["object"]["metadata"]["name"] for e in events] == ["job"]


def test_other_errors_still_end_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    forbidden = errors.APIForbiddenError("forbidden", status=403, headers={})
    with pytest.raises(errors.APIForbiddenError):
        watch(monkeypatch, [forbidden, None], iterations=2)


def test_importing_the_handlers_wraps_kopfs_stream() -> None:
    """A kopf upgrade that renames the wrapped function fails here, not in a cluster."""
    import kaizen_operator.handlers  # noqa: F401

    assert getattr(watching.continuous_watch, "tolerates_missing", False)
    watchguard.install()  # idempotent: never a wrapper around a wrapper
    assert getattr(watching.continuous_watch, "tolerates_missing", False)
