"""The work queue: events for one key collapse, a key is never worked on twice at once."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


def test_bursts_collapse_and_keys_never_overlap() -> None:
    calls: list[Hashable] = []
    running: set[Hashable] = set()
    overlap = []

    async def work(key: Hashable) -> float | None:
        if key in running:
            overlap.append(key)
        running.add(key)
        calls.append(key)
        await asyncio.sleep(0.05)
        running.discard(key)
        return None

    async def scenario() -> None:
        from kaizen_operator.workqueue import WorkQueue

        queue = WorkQueue(work, workers=3, settle_s=0.01)
        queue.start()
        for _ in range(50):
            queue.add("a")
        queue.add("b")
        await asyncio.sleep(0.02)
        for _ in range(20):  # while "a" is being worked on: one more pass afterwards
            queue.add("a")
        await asyncio.sleep(0.3)
        await queue.stop()

    asyncio.run(scenario())
    assert not overlap
    assert calls.count("a") == 2 and calls.count("b") == 1


def test_add_after_keeps_the_earliest() -> None:
    calls: list[Hashable] = []

    async def work(key: Hashable) -> float | None:
        calls.append(key)
        return None

    async def scenario() -> None:
        from kaizen_operator.workqueue import WorkQueue

        queue = WorkQueue(work, workers=1)
        queue.start()
        queue.add_after("a", 0.05)
        queue.add_after("a", 10)
        await asyncio.sleep(0.2)
        await queue.stop()

    asyncio.run(scenario())
    assert calls == ["a"]


def test_a_change_seen_during_a_pass_is_dropped_when_it_was_the_pass_s_own_write() -> None:
    calls: list[Hashable] = []
    written: set[str] = set()

    async def work(key: Hashable) -> float | None:
        calls.append(key)
        await asyncio.sleep(0.05)
        written.add("v2")  # the pass records its write only after the watch has shown it
        return None

    async def scenario() -> None:
        from kaizen_operator.workqueue import WorkQueue

        queue = WorkQueue(work, workers=2, settle_s=0.01)
        queue.start()
        queue.add("own")
        queue.add("other")
        await asyncio.sleep(0.02)
        queue.add("own", lambda: "v2" in written)  # the pass's own write: no second pass
        queue.add("other", lambda: "v3" in written)  # someone else's change: one more pass
        await asyncio.sleep(0.3)
        await queue.stop()

    asyncio.run(scenario())
    assert calls.count("own") == 1 and calls.count("other") == 2
