"""Objects as kopf's watches last delivered them, so a reconcile need not GET what a watch just sent.

Each GET the path to a run's first child saves is one API round trip less per pipeline (and one
request less on a loaded API server). A cached object is only ever a shortcut: when it may be older
than what the operator itself last wrote, `get` answers None and the caller reads the API server.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

Key = tuple[str, str]  # (namespace, name)


class WatchCache:
    """The newest body a watch delivered per object; read from worker threads, fed by the event loop.

    A watch stream is ordered, so once it has delivered the operator's own last write of an object,
    every later body is at least that new. Until then (`_behind`) the cache is not used for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._written: dict[Key, str] = {}  # resourceVersion of the operator's own last write
        self._behind: set[Key] = set()

    def observed(self, key: Key, body: dict[str, Any]) -> None:
        """A watch event's object (ADDED, MODIFIED or the initial listing), less its managedFields
        (often most of its size; nothing the operator does reads them)."""
        meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
        body = {**body, "metadata": meta}
        with self._lock:
            self._bodies[key] = body
            if body["metadata"].get("resourceVersion") == self._written.get(key):
                self._behind.discard(key)

    def deleted(self, key: Key) -> None:
        with self._lock:
            self._bodies.pop(key, None)
            self._written.pop(key, None)
            self._behind.discard(key)

    def invalidate(self, key: Key) -> None:
        """A write was refused as a Conflict: someone wrote a version the watch has not shown yet."""
        with self._lock:
            self._bodies.pop(key, None)

    def wrote(self, key: Key, resource_version: str) -> None:
        """The operator wrote the object; the cache is stale for it until the watch shows that write."""
        with self._lock:
            self._written[key] = resource_version
            cached = self._bodies.get(key)
            if cached is None or cached["metadata"].get("resourceVersion") != resource_version:
                self._behind.add(key)

    def is_own(self, key: Key, resource_version: str | None) -> bool:
        """Whether this version is the operator's own last write (its event needs no reconcile)."""
        with self._lock:
            return resource_version is not None and self._written.get(key) == resource_version

    def get(self, key: Key) -> dict[str, Any] | None:
        """A copy (passes change what they read), or None: not cached, or older than our own write."""
        with self._lock:
            body = None if key in self._behind else self._bodies.get(key)
        return copy.deepcopy(body) if body is not None else None
