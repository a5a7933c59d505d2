"""The watch cache answers only with bodies at least as new as the operator's own last write, and
namespace-wide questions only once the initial listing is in."""

from __future__ import annotations

from typing import Any

from kaizen_operator.watchcache import WatchCache

KEY = ("ns", "p")


def body(rv: str, phase: str = "Pending") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "resourceVersion": rv}, "status": {"phase": phase}}


def test_a_write_hides_the_cache_until_the_watch_shows_it() -> None:
    cache = WatchCache()
    assert cache.get(KEY) is None, "never delivered: read the API server"
    cache.observed(KEY, body("1"))
    assert cache.get(KEY) == body("1")
    cache.wrote(KEY, body("2", "Running"))
    assert cache.is_own(KEY, "2") and not cache.is_own(KEY, "1")
    assert cache.get(KEY) is None, "the cache is older than our own write"
    cache.observed(KEY, body("2", "Running"))
    assert cache.get(KEY) == body("2", "Running")
    cache.observed(KEY, body("3", "Succeeded"))  # someone else's later write: newer still
    assert cache.get(KEY) == body("3", "Succeeded")


def test_a_write_the_watch_showed_first_is_not_waited_for() -> None:
    cache = WatchCache()
    cache.observed(KEY, body("5"))
    cache.wrote(KEY, body("5"))  # the event came before the PATCH answer was handled
    assert cache.get(KEY) == body("5")


def test_copies_conflicts_and_deletions() -> None:
    cache = WatchCache()
    cache.observed(KEY, body("1") | {"metadata": body("1")["metadata"] | {"managedFields": [{}]}})
    copy = cache.get(KEY)
    assert copy is not None
    copy["status"]["phase"] = "changed by a pass"
    assert cache.get(KEY) == body("1"), "a pass changes its copy, not the cache"
    cache.invalidate(KEY)
    assert cache.get(KEY) is None, "after a Conflict the next pass reads the API server"
    cache.observed(KEY, body("2"))
    cache.wrote(KEY, body("3"))
    cache.deleted(KEY)
    assert cache.get(KEY) is None and not cache.is_own(KEY, "3")


def test_a_namespace_is_answered_once_the_listing_is_in() -> None:
    cache = WatchCache()
    other = ("other", "p")
    cache.observed(KEY, body("1"))
    cache.observed(other, body("1"))
    assert cache.in_namespace("ns") is None, "the listing may still be delivering objects"
    cache.listed()
    assert cache.in_namespace("ns") == [body("1")] and cache.in_namespace("empty") == []
    cache.wrote(KEY, body("2", "Running"))
    assert cache.in_namespace("ns") == [body("2", "Running")], "the own write counts at once"
    cache.observed(KEY, body("2", "Running"))
    cache.observed(KEY, body("3", "Succeeded"))
    assert cache.in_namespace("ns") == [body("3", "Succeeded")]
    cache.invalidate(KEY)
    assert cache.get(KEY) is None and cache.in_namespace("ns") == [body("3", "Succeeded")], (
        "after a Conflict a pass reads the API server, but the pipeline still counts"
    )
    cache.deleted(KEY)
    assert cache.in_namespace("ns") == [] and cache.in_namespace("other") == [body("1")]
