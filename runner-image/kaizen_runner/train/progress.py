"""Live progress to the pipeline's status, and the final metrics in the pod's termination message.

The runner POSTs JSON to an operator endpoint with a per-run bearer token, so its pod needs no
Kubernetes API permissions. Reports are throttled and sent from a background thread: a slow or
unreachable endpoint never stalls training, and a failed report is logged, not raised.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kaizen_api.finetune_status import RunMetrics, RunProgress
from kaizen_api.results import FailureReason, ProgressReport, TerminationMessage
from kaizen_api.runconfig import ProgressTarget
from transformers import TrainerCallback

from kaizen_runner.cli import TERMINATION_LOG_DEFAULT
from kaizen_runner.train.metrics import METRIC_KEYS, NON_FINITE_STEP, finite_metrics, first_non_finite_loss

log = logging.getLogger(__name__)

TERMINATION_MESSAGE_MAX = 4096  # bytes; Kubernetes truncates longer messages
RATE_LIMITED_RETRIES, RATE_LIMITED_WAIT_S = 3, 1.0  # the operator's bucket refills one report a second


def run_metrics(metrics: dict[str, Any]) -> RunMetrics:
    """The trainer's Vertex metrics (snake_case log keys) as the API model; a NaN or infinite loss is
    left out (JSON would carry it as null), `non_finite_loss_step` says that it happened."""
    return RunMetrics(**finite_metrics(metrics))


def progress_payload(
    run_name: str,
    *,
    step: int,
    total_steps: int,
    epoch: float,
    eta_seconds: int | None,
    metrics: dict[str, Any],
    phase: Literal["Running", "Succeeded", "Failed"] = "Running",
    output_version: str | None = None,
    reason: FailureReason | None = None,
    message: str | None = None,
) -> ProgressReport:
    """One report, in the API's ProgressReport shape (camelCase on the wire, as in the CR status)."""
    percentage = min(100, int(100 * step / total_steps)) if total_steps else 0
    progress = RunProgress(
        step=step,
        total_steps=total_steps,
        epoch=max(0.0, epoch),
        percentage=percentage,
        eta_seconds=eta_seconds,
        updated_time=datetime.now(UTC),
    )
    return ProgressReport(
        run_name=run_name,
        phase=phase,
        progress=progress,
        metrics=run_metrics(metrics),
        output_version=output_version,
        reason=reason,
        message=message[:4096] if message else None,
    )


class Sender:
    """Posts the newest pending report from a daemon thread; older unsent reports are superseded."""

    def __init__(self, url: str, token: str | None, timeout_s: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.timeout_s = timeout_s
        self._pending: ProgressReport | Mapping[str, Any] | None = None
        self._cond = threading.Condition()
        self._busy = False
        self.sent = 0
        self.failed = 0
        threading.Thread(target=self._loop, name="kaizen-progress", daemon=True).start()

    def submit(self, payload: ProgressReport | Mapping[str, Any]) -> None:
        """A report (or, from evaluation, one already dumped in its manifest form)."""
        with self._cond:
            self._pending = payload
            self._cond.notify_all()

    def flush(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._pending is not None or self._busy) and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None:
                    self._cond.wait()
                payload, self._pending, self._busy = self._pending, None, True
            try:
                if self._post_retrying(payload):
                    self.sent += 1
            except (urllib.error.URLError, OSError, ValueError) as err:
                self.failed += 1
                log.warning("progress report to %s failed: %s", self.url, err)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _post_retrying(self, payload: ProgressReport | Mapping[str, Any]) -> bool:
        """Over the endpoint's rate (429) a report is sent again a moment later, unless a newer one
        supersedes it: the last reports of a fast run (its final step, its phase) must not be lost.
        False when superseded."""
        for attempt in range(RATE_LIMITED_RETRIES + 1):
            try:
                self._post(payload)
                return True
            except urllib.error.HTTPError as err:
                if err.code != 429 or attempt == RATE_LIMITED_RETRIES:
                    raise
            time.sleep(RATE_LIMITED_WAIT_S)
            with self._cond:
                if self._pending is not None:
                    return False
        return False

    def _post(self, payload: ProgressReport | Mapping[str, Any]) -> None:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if not isinstance(payload, ProgressReport):
            payload = ProgressReport.model_validate(payload)
        body = payload.model_dump_json(by_alias=True, exclude_none=True).encode()
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()


class ProgressReporter(TrainerCallback):
    """Keeps the latest Vertex metrics and reports step, total, epoch, ETA and metrics (rank 0 only)."""

    def __init__(self, run_name: str, target: ProgressTarget | None, *, interval_s: float = 15.0) -> None:
        self.run_name = run_name
        self.interval_s = interval_s
        self.metrics: dict[str, Any] = {}
        self.step = 0
        self.total_steps = 0
        self.epoch = 0.0
        self._start: tuple[float, int] | None = None
        self._last_sent = float("-inf")
        self._sender = None
        if target is not None:
            token = os.environ.get(target.token_env)
            if not token:
                log.warning(
                    "$%s is not set: progress reports to %s go without a bearer token and will likely be "
                    "refused",
                    target.token_env,
                    target.url,
                )
            self._sender = Sender(target.url, token)

    def update_metrics(self, logs: dict[str, Any]) -> None:
        """The latest metrics; of the steps a loss went NaN or infinite, the first is kept."""
        steps = [s for s in (self.metrics.get(NON_FINITE_STEP), logs.get(NON_FINITE_STEP)) if s is not None]
        self.metrics.update({k: logs[k] for k in METRIC_KEYS if k in logs})
        if steps:
            self.metrics[NON_FINITE_STEP] = min(steps)

    def eta_seconds(self) -> int | None:
        """Seconds left, from this process's own pace (a resumed run's earlier steps don't count)."""
        if self._start is None:
            return None
        started, first_step = self._start
        done = self.step - first_step
        if done <= 0:
            return None
        pace = (time.monotonic() - started) / done
        return max(0, int(pace * (self.total_steps - self.step)))

    def report(
        self,
        *,
        force: bool = False,
        phase: Literal["Running", "Succeeded", "Failed"] = "Running",
        output_version: str | None = None,
        reason: FailureReason | None = None,
        message: str | None = None,
    ) -> None:
        if self._sender is None:
            return
        now = time.monotonic()
        if not force and now - self._last_sent < self.interval_s:
            return
        self._last_sent = now
        self._sender.submit(
            progress_payload(
                self.run_name,
                step=self.step,
                total_steps=self.total_steps,
                epoch=self.epoch,
                eta_seconds=0 if phase == "Succeeded" else self.eta_seconds(),
                metrics=self.metrics,
                phase=phase,
                output_version=output_version,
                reason=reason,
                message=message,
            )
        )
        if force:
            self._sender.flush(timeout_s=30.0)

    def _track(self, state: Any) -> None:
        self.step = int(state.global_step)
        self.total_steps = int(state.max_steps or 0)
        self.epoch = float(state.epoch or 0.0)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._track(state)
        self._start = (time.monotonic(), self.step)
        if state.is_world_process_zero:
            self.report(force=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._track(state)
        # When this step logs, on_log reports it with its own metrics (a report's step and metrics agree).
        logging_now = control is not None and (control.should_log or control.should_evaluate)
        if state.is_world_process_zero and not logging_now:
            self.report()

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        self._track(state)
        if logs:
            step = first_non_finite_loss([{**logs, "step": self.step}])
            self.update_metrics({**logs, NON_FINITE_STEP: step} if step is not None else logs)
        if state.is_world_process_zero:
            self.report(force="eval_total_loss" in (logs or {}))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._track(state)
        if state.is_world_process_zero:
            self.report(force=True)


def send_failure(run_name: str, target: ProgressTarget, reason: FailureReason, message: str) -> None:
    """Tell the progress endpoint the run failed, waiting briefly for the report to leave."""
    reporter = ProgressReporter(run_name, target, interval_s=0)
    reporter.report(force=True, phase="Failed", reason=reason, message=message)


# Dropped in this order when a message is over Kubernetes' limit; the error message is cut last.
_OPTIONAL = ("warnings", "results", "train_runtime_seconds", "results_uri", "output_uri", "plan", "metrics")


def termination_message(body: TerminationMessage, limit: int = TERMINATION_MESSAGE_MAX) -> str:
    """JSON that fits Kubernetes' limit: optional parts are dropped first, then the error is cut."""

    def dump(model: TerminationMessage) -> str:
        return model.model_dump_json(by_alias=True, exclude_none=True)

    text = dump(body)
    for optional in _OPTIONAL:
        if len(text.encode()) <= limit:
            break
        body = body.model_copy(update={optional: None})
        text = dump(body)
    if len(text.encode()) > limit and body.message:
        excess = len(text.encode()) - limit
        cut = body.message.encode()[: max(0, len(body.message.encode()) - excess - 16)]
        body = body.model_copy(update={"message": cut.decode(errors="ignore") + "…"})
        text = dump(body)
    return text.encode()[:limit].decode(errors="ignore")


def write_termination_message(
    body: TerminationMessage | Mapping[str, Any], path: str | None = None
) -> Path | None:
    """Write the final report where Kubernetes picks it up; a missing /dev/termination-log is not an error.
    A mapping (evaluation's manifest form) is read as a TerminationMessage first."""
    if not isinstance(body, TerminationMessage):
        body = TerminationMessage.model_validate(body)
    target = Path(path or os.environ.get("KAIZEN_TERMINATION_LOG", TERMINATION_LOG_DEFAULT))
    try:
        target.write_text(termination_message(body), encoding="utf-8")
    except OSError as err:
        log.info("no termination message written to %s: %s", target, err)
        return None
    return target
