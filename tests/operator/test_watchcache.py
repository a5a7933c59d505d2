"""The watch cache answers only with bodies at least as new as the operator's own last write, and
namespace-wide questions only once the initial listing is in."""

from __future__ import annotations

from typing import Any

from kaizen_operator.context import same_object
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


def test_a_write_the_watch_showed_before_a_newer_one_is_not_waited_for() -> None:
    """The watch showed the operator's write and then someone else's before the writer recorded its
    own: the cache is newer than that write, not behind it for ever."""
    cache = WatchCache()
    cache.observed(KEY, body("1"))
    cache.observed(KEY, body("2", "Running"))  # the operator's write
    cache.observed(KEY, body("3", "Succeeded"))  # a later one
    cache.wrote(KEY, body("2", "Running"))  # recorded late by the worker thread
    assert cache.get(KEY) == body("3", "Succeeded")
    cache.listed()
    assert cache.in_namespace("ns") == [body("3", "Succeeded")]
    cache.wrote(KEY, body("5", "Failed"))
    assert cache.get(KEY) is None
    cache.observed(KEY, body("6", "Failed"))  # a newer version than the write, the write not shown
    assert cache.get(KEY) == body("6", "Failed")
    opaque = WatchCache()  # not etcd's: only equality says anything
    opaque.observed(KEY, body("b"))
    opaque.wrote(KEY, body("a"))
    assert opaque.get(KEY) is None


def test_a_listing_drops_what_a_watch_restart_never_reported_deleted() -> None:
    """After "410 Gone" kopf lists everything again as events of type None and never sends DELETED
    for what was deleted during the gap: a LIST made after `versions` shows what is gone."""

    def named(namespace: str, name: str, rv: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": rv}}

    cache = WatchCache()
    for namespace, name in (("ns", "ghost"), ("ns", "kept"), ("ns", "recreated"), ("other", "ghost")):
        cache.observed((namespace, name), named(namespace, name, "1"))
    cache.listed()
    before = cache.versions("ns")
    assert before == {"ghost": "1", "kept": "1", "recreated": "1"}
    cache.observed(("ns", "recreated"), named("ns", "recreated", "9"))  # created again after the LIST
    cache.absent("ns", before, {"kept"})
    assert cache.get(("ns", "ghost")) is None, "gone: the next read asks the API server"
    assert cache.get(("ns", "recreated")) == named("ns", "recreated", "9")
    assert sorted(b["metadata"]["name"] for b in cache.in_namespace("ns") or []) == ["kept", "recreated"]
    assert cache.in_namespace("other") == [named("other", "ghost", "1")]


def test_an_object_read_again_is_the_one_cached_only_with_its_uid() -> None:
    """What a pass confirms before it creates a child: not gone, nor deleted and created again."""
    cached = {"metadata": {"name": "p", "uid": "u1", "resourceVersion": "1"}}
    assert same_object(cached, {"metadata": {"name": "p", "uid": "u1", "resourceVersion": "7"}})
    assert not same_object(cached, None)
    assert not same_object(cached, {"metadata": {"name": "p", "uid": "u2", "resourceVersion": "8"}})


def test_reserved_runs_count_for_the_other_passes_until_the_write_is_in() -> None:
    cache = WatchCache()
    cache.observed(KEY, body("1"))
    cache.listed()
    cache.reserve(KEY, {"o1", "o2"})
    assert cache.counted("ns", "other") == ([body("1")], {"p": frozenset({"o1", "o2"})})
    assert cache.counted("ns", "p")[1] == {}, "a pass does not count its own reservation"
    assert cache.counted("elsewhere", "other") == ([], {})
    cache.wrote(KEY, body("2", "Running"))  # the body with the runs and the reservation's end, at once
    assert cache.counted("ns", "other") == ([body("2", "Running")], {})
    cache.reserve(KEY, {"o3"})
    cache.unreserve(KEY)  # the pass ended without writing
    assert cache.counted("ns", "other")[1] == {}
    cache.reserve(KEY, set())
    assert cache.counted("ns", "other")[1] == {}
