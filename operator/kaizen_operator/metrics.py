"""Prometheus metrics of the operator, served on the ops port with /healthz and /readyz."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "kaizen_reconciles_total", "Reconciles by kind and outcome (ok, error, conflict).", ["kind", "outcome"]
)
RECONCILE_SECONDS = Histogram(
    "kaizen_reconcile_duration_seconds",
    "Time one reconcile took, API calls included.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RUNS = Gauge("kaizen_runs", "Runs recorded in FineTunePipeline status, by phase.", ["phase"])
PROGRESS_REPORTS = Counter(
    "kaizen_progress_reports_total",
    "Progress reports by outcome (accepted, stale, unknown_run, unauthorized, forbidden, rate_limited, "
    "invalid, error).",
    ["outcome"],
)
QUEUE_DEPTH = Gauge("kaizen_workqueue_depth", "Pipelines waiting to be reconciled.")
STATUS_PATCHES = Counter("kaizen_status_patches_total", "Status patches written (changes only).", ["kind"])


class RunPhases:
    """Runs by phase across pipelines, kept per pipeline so a reconcile replaces its own share."""

    def __init__(self) -> None:
        self._by_pipeline: dict[tuple[str, str], Tally[str]] = {}

    def set(self, key: tuple[str, str], phases: Iterable[str]) -> None:
        old = self._by_pipeline.pop(key, Tally())
        new = Tally(phases)
        if new:
            self._by_pipeline[key] = new
        for phase in set(old) | set(new):
            RUNS.labels(phase).inc(new[phase] - old[phase])

    def forget(self, key: tuple[str, str]) -> None:
        self.set(key, ())
