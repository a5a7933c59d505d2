"""A work queue of object keys, as controller-runtime has: each key queued once, never processed by
two workers at once, re-run after a change seen while it was being processed (unless that change
turns out to be the pass's own write).

Watch events only enqueue; bursts of events for one pipeline (its Jobs, its pods, its own status)
collapse into one reconcile. Memory is bounded by the number of distinct keys, not of events; the
only timers are for keys that asked to be looked at again (waiting on a quota), never one per object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

OwnWrite = Callable[[], bool]

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(
        self,
        work: Callable[[Hashable], Awaitable[float | None]],
        *,
        workers: int = 4,
        settle_s: float = 0.2,
    ) -> None:
        self._work = work
        self._workers = workers
        self._settle_s = settle_s  # a key just processed waits this long before it runs again
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: dict[Hashable, list[OwnWrite | None]] = {}
        self._later: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Hashable, own_write: OwnWrite | None = None) -> None:
        """Queue `key`. Seen while its pass is under way, the change re-runs it afterwards, unless
        `own_write`, asked then, answers True: the watch can show a pass's write before the pass has
        read the answer and recorded it as its own, and a second pass would find nothing to do."""
        if key in self._processing:
            self._dirty.setdefault(key, []).append(own_write)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay_s: float) -> None:
        """Enqueue `key` in `delay_s`; an earlier pending request for it wins."""
        loop = asyncio.get_running_loop()
        pending = self._later.get(key)
        if pending is not None and pending.when() <= loop.time() + delay_s:
            return
        if pending is not None:
            pending.cancel()

        def fire() -> None:
            self._later.pop(key, None)
            self.add(key)

        self._later[key] = loop.call_later(delay_s, fire)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for handle in self._later.values():
            handle.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            again: float | None = None
            try:
                again = await self._work(key)
            except Exception:  # the reconciler reports its own errors; a bug must not stop the worker
                log.exception("reconcile of %s failed", key)
                again = 10.0
            finally:
                self._processing.discard(key)
            changes = self._dirty.pop(key, [])
            if any(own_write is None or not own_write() for own_write in changes):
                self.add_after(key, self._settle_s)
            elif again is not None:
                self.add_after(key, again)
