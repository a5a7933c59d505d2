"""Objects as kopf's watches last delivered them, so a reconcile need not GET what a watch just sent.

Each GET the path to a run's first child saves is one API round trip less per pipeline (and one
request less on a loaded API server). A cached object is only ever a shortcut: when it may be older
than what the operator itself last wrote, `get` answers None and the caller reads the API server.

Namespace-wide questions (the quotas count a namespace's pipelines and their active runs on every
pass) are answered from here too, once the watch's initial listing is in (`listed`): before that the
cache may lack objects, and `in_namespace` answers None so the caller LISTs instead.

A watch that restarts after "410 Gone" lists every object again, and kopf (1.45) hands the listing
to the handlers as events of type None, one object at a time and with no mark where it ends; a
deletion made during the gap is never reported. So the cache may hold objects that are gone. It is
not the cache that finds them: a pass about to create a child confirms what it read, and a quota
about to block confirms its count with a LIST, whose missing objects `absent` drops (see reconciler,
quotas). Such a LIST `confirm`s the namespace: until the next listing event (`relisted`, a restart
whose gap may have hidden deletions) its other passes may trust the cache's count without a LIST.
Watching named namespaces, kopf runs one watch per namespace, so a listing event voids its own
namespace's confirmation only; watching the whole cluster, one watch lists every namespace, and a
namespace whose pipelines were all deleted in the gap gets no listing event: any event voids all.

Bodies are kept as JSON text: a thousand pipelines held as nested dicts were most of the objects the
garbage collector walks in a full collection (the operator's longest pauses), and parsing the text
again is faster than the deep copy a pass needs anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def _text(body: dict[str, Any]) -> str:
    """The body as JSON, without managedFields (often most of its size; nothing the operator reads)."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return json.dumps({**body, "metadata": meta}, separators=(",", ":"))


def _version(body: dict[str, Any]) -> str | None:
    return body["metadata"].get("resourceVersion")  # type: ignore[no-any-return]


def _at_least(version: str | None, written: str | None) -> bool:
    """Whether `version` is `written` or newer. etcd's resourceVersions are integers that only grow;
    any other is opaque, and only equality says anything about it."""
    if version is None or written is None:
        return False
    if version.isdigit() and written.isdigit():
        return int(version) >= int(written)
    return version == written


class WatchCache:
    """The newest body a watch delivered per object; read from worker threads, fed by the event loop.

    A watch stream is ordered, so once it has delivered the operator's own last write of an object,
    every later body is at least that new. Until then (`_behind`) the cache is not used for it by
    `get`, while `in_namespace` counts with the body that write returned (`_own`)."""

    def __init__(self, *, watch_per_namespace: bool = False) -> None:
        self._lock = threading.Lock()
        self._per_namespace = watch_per_namespace  # kopf watches each namespace apart (see above)
        self._bodies: dict[Key, tuple[str | None, str]] = {}  # (resourceVersion, JSON text)
        self._names: dict[str, set[str]] = {}  # namespace -> names, for namespace-wide questions
        self._written: dict[Key, str] = {}  # resourceVersion of the operator's own last write
        self._own: dict[Key, str] = {}  # that write's body, while the watch has not shown it
        self._parsed: dict[Key, dict[str, Any]] = {}  # what `in_namespace` parsed, for its next call
        self._behind: set[Key] = set()
        self._stale: set[Key] = set()  # a write was refused as a Conflict: a newer version exists
        self._listed = False
        # Listing events delivered (each may follow a watch restart's gap), by watch: its namespace,
        # or None for the one cluster-wide watch.
        self._relists: dict[str | None, int] = {}
        self._confirmed: dict[str, tuple[int, float]] = {}  # namespace -> `mark` of its last LIST
        self._confirming: dict[str, threading.Lock] = {}  # namespace -> held while it is LISTed
        self._deciding: dict[str, threading.Lock] = {}  # namespace -> held from a run count to `reserve`
        self._reserved: dict[Key, frozenset[str]] = {}  # runs (object names) a pass recorded, not yet written

    def observed(self, key: Key, body: dict[str, Any]) -> None:
        """A watch event's object (ADDED, MODIFIED or the initial listing)."""
        version, text = _version(body), _text(body)
        with self._lock:
            self._bodies[key] = (version, text)
            self._parsed.pop(key, None)
            self._names.setdefault(key[0], set()).add(key[1])
            self._stale.discard(key)
            if _at_least(version, self._written.get(key)):  # our write, or one made after it
                self._behind.discard(key)
                self._own.pop(key, None)

    def deleted(self, key: Key) -> None:
        """A DELETED event, or a read that found the object gone."""
        with self._lock:
            self._drop(key)

    def _drop(self, key: Key) -> None:
        self._bodies.pop(key, None)
        self._parsed.pop(key, None)
        self._written.pop(key, None)
        self._own.pop(key, None)
        self._behind.discard(key)
        self._stale.discard(key)
        names = self._names.get(key[0])
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._names[key[0]]

    def invalidate(self, key: Key) -> None:
        """A write was refused as a Conflict: someone wrote a version the watch has not shown yet.
        `get` reads the API server until the watch shows it; counting keeps the older body."""
        with self._lock:
            self._stale.add(key)

    def wrote(self, key: Key, body: dict[str, Any]) -> None:
        """The operator wrote the object (`body` is what the API server answered); the cache is stale
        for it until the watch shows that write."""
        resource_version = body["metadata"]["resourceVersion"]
        text = _text(body)
        with self._lock:
            self._reserved.pop(key, None)  # the runs it reserved count in the body from now on
            self._written[key] = resource_version
            cached = self._bodies.get(key)
            if cached is None or not _at_least(cached[0], resource_version):
                self._behind.add(key)
                self._own[key] = text
                self._parsed.pop(key, None)
            else:  # the watch showed this write (and maybe later ones) before its answer was handled
                self._behind.discard(key)
                self._own.pop(key, None)

    def is_own(self, key: Key, resource_version: str | None) -> bool:
        """Whether this version is the operator's own last write (its event needs no reconcile)."""
        with self._lock:
            return resource_version is not None and self._written.get(key) == resource_version

    def get(self, key: Key) -> dict[str, Any] | None:
        """A copy (passes change what they read), or None: not cached, or older than our own write."""
        with self._lock:
            usable = key not in self._behind and key not in self._stale
            cached = self._bodies.get(key) if usable else None
        return json.loads(cached[1]) if cached is not None else None  # type: ignore[no-any-return]

    def versions(self, namespace: str) -> dict[str, str | None]:
        """The resourceVersion of each object of the namespace, as delivered: taken before a LIST,
        for `absent`."""
        with self._lock:
            return {name: self._bodies[(namespace, name)][0] for name in self._names.get(namespace, ())}

    def absent(self, namespace: str, before: dict[str, str | None], listed: set[str]) -> None:
        """Drop the objects the cache held (`before`, taken by `versions` before a LIST) that the LIST,
        `listed`, lacks: they were deleted before it, whatever the watch said. One the watch has
        delivered again since (recreated under its name) stays."""
        with self._lock:
            for name, version in before.items():
                cached = self._bodies.get((namespace, name))
                if name not in listed and cached is not None and cached[0] == version:
                    self._drop((namespace, name))

    def _watch(self, namespace: str) -> str | None:
        return namespace if self._per_namespace else None

    def relisted(self, namespace: str) -> None:
        """A watch listing delivered an object of `namespace`: a restart's listing, perhaps, after a gap
        whose deletions were never reported, so no earlier LIST of a namespace that watch lists vouches
        for the cache any more."""
        with self._lock:
            watch = self._watch(namespace)
            self._relists[watch] = self._relists.get(watch, 0) + 1

    def mark(self, namespace: str) -> tuple[int, float]:
        """Taken as a LIST of `namespace` starts, for `confirm`: what it can vouch for is the cache as
        of then."""
        with self._lock:
            return self._relists.get(self._watch(namespace), 0), time.monotonic()

    def confirm(self, namespace: str, mark: tuple[int, float]) -> None:
        """A LIST that started at `mark` found the namespace's ghosts, and `absent` dropped them."""
        with self._lock:
            self._confirmed[namespace] = mark

    def confirmed(self, namespace: str, max_age_s: float) -> bool:
        """Whether a LIST confirmed the namespace within `max_age_s` and no listing event came since
        it started (the age bounds a restart that delivered no object at all, so went unseen)."""
        with self._lock:
            relists, at = self._confirmed.get(namespace, (-1, 0.0))
            current = self._relists.get(self._watch(namespace), 0)
            return relists == current and time.monotonic() - at < max_age_s

    def confirming(self, namespace: str) -> threading.Lock:
        """The namespace's lock for confirming: the passes that wait on it share one LIST."""
        with self._lock:
            return self._confirming.setdefault(namespace, threading.Lock())

    def deciding(self, namespace: str) -> threading.Lock:
        """The namespace's lock for a pass about to start runs under a concurrent-runs cap, held from
        its count to its `reserve`: two passes counting at once would both see the same free slot."""
        with self._lock:
            return self._deciding.setdefault(namespace, threading.Lock())

    def reserve(self, key: Key, runs: Iterable[str]) -> None:
        """The pass of `key` recorded new runs (their object names): they count for the namespace
        (`counted`) until its status write enters the cache (`wrote`) or the pass ends without one
        (`unreserve`). Named, not counted: the body a count reads may already hold them (the watch
        can deliver the write before its pass handles the answer), and a run must count once."""
        names = frozenset(runs)
        with self._lock:
            if names:
                self._reserved[key] = names

    def unreserve(self, key: Key) -> None:
        with self._lock:
            self._reserved.pop(key, None)

    def listed(self) -> None:
        """The watch's initial listing is in: every object that exists has been delivered."""
        with self._lock:
            self._listed = True

    def in_namespace(self, namespace: str) -> list[dict[str, Any]] | None:
        """The newest known body of every object of the namespace (the operator's own write where the
        watch has not shown it yet), or None before the initial listing is in. The bodies are shared
        between calls (each is parsed once per version): callers must not change them."""
        with self._lock:
            return self._in_namespace(namespace)

    def counted(
        self, namespace: str, name: str
    ) -> tuple[list[dict[str, Any]] | None, dict[str, frozenset[str]]]:
        """`in_namespace`, and the runs reserved by passes of its objects other than `name` (by object
        name), read at one instant: a reservation ends as its pass's write enters the cache, so read
        apart, a run could be missed."""
        with self._lock:
            reserved = {
                other: runs
                for (ns, other), runs in self._reserved.items()
                if ns == namespace and other != name
            }
            return self._in_namespace(namespace), reserved

    def _in_namespace(self, namespace: str) -> list[dict[str, Any]] | None:
        if not self._listed:
            return None
        bodies = []
        for k in [(namespace, name) for name in self._names.get(namespace, ())]:
            body = self._parsed.get(k)
            if body is None:
                text = self._own[k] if k in self._own else self._bodies[k][1]
                body = self._parsed[k] = json.loads(text)
            bodies.append(body)
        return bodies
