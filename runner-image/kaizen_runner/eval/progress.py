"""Live evaluation progress (samples done / total, ETA) through the training runs' progress channel.

The same endpoint, bearer token and background sender as training (`kaizen_runner.train.progress`);
only the payload differs: `ProgressReport.evalProgress` instead of step and loss.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from kaizen_api.evaljob import EvalProgress
from kaizen_api.results import ProgressReport
from kaizen_api.runconfig import ProgressTarget


class EvalProgressReporter:
    """Counts finished samples against the total and reports at most every `interval_s` seconds."""

    def __init__(self, run_name: str, target: ProgressTarget | None, *, interval_s: float = 10.0) -> None:
        from kaizen_runner.train.progress import Sender

        self.run_name = run_name
        self.interval_s = interval_s
        self.done = 0
        self.total = 0
        self.task: str | None = None
        self._started = time.monotonic()
        self._last_sent = float("-inf")
        self._sender = Sender(target.url, os.environ.get(target.token_env)) if target else None

    def add_total(self, count: int, task: str | None = None) -> None:
        self.total += count
        self.task = task or self.task
        self.report(force=True)

    def advance(self, count: int) -> None:
        self.done += count
        self.report()

    def eta_seconds(self) -> int | None:
        if self.done <= 0 or self.total <= 0:
            return None
        pace = (time.monotonic() - self._started) / self.done
        return max(0, int(pace * (self.total - self.done)))

    def payload(self, phase: str = "Running", **extra: Any) -> ProgressReport:
        progress = EvalProgress(
            done=self.done,
            total=self.total,
            percentage=min(100, int(100 * self.done / self.total)) if self.total else 0,
            eta_seconds=0 if phase == "Succeeded" else self.eta_seconds(),
            task=self.task,
            updated_time=datetime.now(UTC),
        )
        report = ProgressReport(run_name=self.run_name, phase=phase, eval_progress=progress, **extra)  # type: ignore[arg-type]
        return report

    def report(self, *, force: bool = False, phase: str = "Running", **extra: Any) -> None:
        if self._sender is None:
            return
        now = time.monotonic()
        if not force and now - self._last_sent < self.interval_s:
            return
        self._last_sent = now
        self._sender.submit(self.payload(phase, **extra))
        if force and phase != "Running":
            self._sender.flush(timeout_s=30.0)
