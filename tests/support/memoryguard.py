"""End the test session with a diagnosis before the kernel's OOM killer ends it with none.

A CI run was once SIGKILLed (exit 137) mid-suite with nothing in its log to say which test or thread
was eating memory. This plugin samples the machine's available memory and this process's RSS; when
either crosses its limit it prints every thread's stack, the running test and the largest
processes, then exits. Limits: ``KAIZEN_TEST_RSS_LIMIT_GB`` (this process, default 10) and
``KAIZEN_TEST_MIN_AVAILABLE_GB`` (the machine, default 1.5).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

_GB = 1024**3
_current: dict[str, object] = {"test": "(between tests)", "config": None}


def _rss(pid: str = "self") -> int:
    """Resident bytes of a process, 0 if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return sys.maxsize


def _largest(count: int = 8) -> list[str]:
    sizes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            sizes.append((_rss(entry.name), entry.name, name))
    return [f"{rss / _GB:6.2f} GiB  pid {pid}  {name}" for rss, pid, name in sorted(sizes)[-count:][::-1]]


def _watch(stop: threading.Event, rss_limit: float, min_available: float) -> None:
    while not stop.wait(2):
        rss, available = _rss(), _available()
        if rss > rss_limit or available < min_available:
            capture = getattr(_current["config"], "pluginmanager", None)
            capman = capture.getplugin("capturemanager") if capture else None
            if capman is not None:
                capman.suspend_global_capture(in_=False)  # else the report goes to the capture file
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            print(  # last, so that a log's tail shows it
                f"\nmemoryguard: pytest RSS {rss / _GB:.2f} GiB, machine available {available / _GB:.2f} GiB"
                f" during {_current['test']}; largest processes:\n  " + "\n  ".join(_largest()),
                file=sys.stderr,
                flush=True,
            )
            os._exit(70)


@pytest.fixture(scope="session", autouse=True)
def memory_guard() -> Iterator[None]:
    if not Path("/proc/meminfo").exists():
        yield
        return
    stop = threading.Event()
    limits = (
        float(os.environ.get("KAIZEN_TEST_RSS_LIMIT_GB", "10")) * _GB,
        float(os.environ.get("KAIZEN_TEST_MIN_AVAILABLE_GB", "1.5")) * _GB,
    )
    thread = threading.Thread(target=_watch, args=(stop, *limits), name="memoryguard", daemon=True)
    thread.start()
    yield
    stop.set()


def pytest_configure(config: pytest.Config) -> None:
    _current["config"] = config


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _current["test"] = nodeid
