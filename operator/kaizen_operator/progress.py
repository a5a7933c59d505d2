"""The pure half of the live progress endpoint: what a request must be before the run is looked up,
per-run tokens, rate limits, stale and future reports, applying a report, the Event a report earns.

A run's token is an HMAC of (namespace, run object name, pipeline uid) under the operator's key, so
it authorises exactly one run of one pipeline object: another run's token, or the same run name in a
re-created pipeline, does not verify. The token reaches the run's pods only through its Secret.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kaizen_api.common import DNS1123_LABEL
from kaizen_api.finetune_status import LOSS_HISTORY_MAX, LossPoint, RunStatus
from kaizen_api.results import ProgressReport

from kaizen_operator.naming import LABEL_MAX, RUN_NAME_MAX

BODY_MAX_BYTES = 64 * 1024
CLOCK_SKEW_MAX = timedelta(minutes=5)
_LABEL = re.compile(DNS1123_LABEL)
_TOKEN = re.compile(r"[0-9a-f]{64}")  # what run_token returns: a SHA-256 HMAC in hex
LOSS_NOT_FINITE = "LossNotFinite"  # the Warning Event's reason: a run's loss went NaN or infinite


def path_problem(namespace: str, run: str) -> str | None:
    """Why a report's `<namespace>/<run>` names no run (None when it may): both go into API paths
    (the run's token Secret), so they are checked before anything is looked up."""
    if len(namespace) > LABEL_MAX or not _LABEL.fullmatch(namespace):
        return f"namespace {namespace!r} is not a DNS-1123 label"
    if len(run) > RUN_NAME_MAX or not _LABEL.fullmatch(run):
        return f"run {run!r} is not a run object name (a DNS-1123 label of at most {RUN_NAME_MAX} characters)"
    return None


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    scheme, _, token = header.partition(" ")
    if scheme != "Bearer":
        return None
    return token.strip() or None


def token_well_formed(presented: str) -> bool:
    """Whether `presented` could be a run's token at all; anything else is refused without looking the
    run up, whatever the header held (one that is not UTF-8 arrives as surrogates, which do not encode)."""
    return _TOKEN.fullmatch(presented) is not None


def new_key() -> bytes:
    return secrets.token_bytes(32)


def run_token(key: bytes, namespace: str, run_object_name: str, pipeline_uid: str) -> str:
    message = "\x00".join((namespace, run_object_name, pipeline_uid)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def token_matches(key: bytes, presented: str, namespace: str, run_object_name: str, uid: str) -> bool:
    expected = run_token(key, namespace, run_object_name, uid)
    return token_well_formed(presented) and hmac.compare_digest(presented, expected)


@dataclass
class RateLimiter:
    """A token bucket per run: `burst` reports at once, then one per `interval_s`; bounded in size."""

    interval_s: float = 1.0
    burst: int = 3
    max_keys: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) / self.interval_s)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()  # a flood of distinct runs: forget everyone rather than grow
        self._buckets[key] = (tokens - 1, now)
        return True


def downsample(points: list[LossPoint], limit: int = LOSS_HISTORY_MAX) -> list[LossPoint]:
    """At most `limit` (>= 2) points spread over the whole curve; the first and the newest always stay.

    Points arrive one report at a time, so this drops one inner point per point over: the one whose
    neighbours are closest in steps (the oldest of equals), which keeps the gaps within about 2x of
    each other wherever the reported steps fall. Halving the list on every overflow thinned the oldest
    points again each time, down to the first point and the last few steps."""
    points = list(points)
    while len(points) > limit:
        drop = min(range(1, len(points) - 1), key=lambda i: (points[i + 1].step - points[i - 1].step, i))
        del points[drop]
    return points


def is_stale(old: datetime | None, new: datetime | None) -> bool:
    """Whether a report's `updatedTime` (`new`) is no newer than the one applied last (`old`): reports
    can arrive out of order or be replayed, and one without a time is never newer than one with."""
    if old is None:
        return False
    return new is None or new <= old


def time_problem(report: ProgressReport, now: datetime) -> str | None:
    """Why the report's time cannot be applied (None when it can): a time ahead of the operator's clock
    (beyond `CLOCK_SKEW_MAX`) would make every later, true report of the run look stale."""
    for where, progress in (("progress", report.progress), ("evalProgress", report.eval_progress)):
        when = progress.updated_time if progress else None
        if when is not None and when > now + CLOCK_SKEW_MAX:
            ahead = f"is ahead of the operator's clock ({now.isoformat()})"
            return f"{where}.updatedTime {when.isoformat()} {ahead}"
    return None


INT64_MAX = 2**63 - 1


def number_problem(report: ProgressReport) -> str | None:
    """Why one of the report's numbers cannot be applied (None when all can): the JSON parser reads
    `NaN`, `Infinity` and integers of any size, which no status can hold (the API server refused the
    status patch, after the report had been taken, and the runner was told to try again)."""

    def first(value: object, where: str) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where} is {value}; a report's numbers must be finite"
        if isinstance(value, int) and abs(value) > INT64_MAX:
            return f"{where} is {value}; a report's integers must fit in 64 bits"
        if isinstance(value, dict):
            return next(
                (p for k, v in value.items() if (p := first(v, f"{where}.{k}" if where else k))), None
            )
        return None

    return first(report.model_dump(by_alias=True, exclude_none=True), "")


def apply_report(run: RunStatus, report: ProgressReport) -> RunStatus:
    """The run with the report's progress, metrics and loss point; phase stays what its pods say."""
    changes: dict[str, object] = {}
    if report.progress is not None:
        changes["progress"] = report.progress
    if report.metrics is not None:
        metrics = (run.metrics or report.metrics).model_copy(
            update=report.metrics.model_dump(exclude_none=True)
        )
        changes["metrics"] = metrics
        step = report.progress.step if report.progress else None
        loss = report.metrics.train_total_loss
        history = list(run.loss_history or [])
        if loss is not None and step is not None and (not history or step > history[-1].step):
            changes["loss_history"] = downsample([*history, LossPoint(step=step, loss=loss)])
    if report.output_version:
        changes["output_version"] = report.output_version
    return run.model_copy(update=changes)


def loss_not_finite_event(before: RunStatus, after: RunStatus) -> tuple[str, str, str] | None:
    """The Warning Event for a run whose recorded metrics now carry a non-finite loss step and did not
    before (None otherwise). Decided from the status a report was applied to, not from memory, so each
    run gets it once, also across operator restarts: the step stays recorded once it is."""
    step = after.metrics.non_finite_loss_step if after.metrics else None
    if step is None or (before.metrics is not None and before.metrics.non_finite_loss_step is not None):
        return None
    message = (
        f"run {after.name}: the loss was NaN or infinite at step {step}; a run whose last loss is not "
        "finite fails as Diverged: lower learningRate or maxGradNorm, or use bf16 rather than fp16"
    )
    return ("Warning", LOSS_NOT_FINITE, message)
