"""Progress reports (HTTP, bearer token, throttled, never fatal) and the termination message."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from kaizen_api.results import EvalResults, EvalTaskResult, ProgressReport, TerminationMessage
from kaizen_api.runconfig import ProgressTarget
from kaizen_runner.train.progress import (
    ProgressReporter,
    progress_payload,
    send_failure,
    termination_message,
    write_termination_message,
)

from train.progress_server import progress_server


def state(step: int, max_steps: int = 10, epoch: float = 0.5) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=max_steps, epoch=epoch, is_world_process_zero=True)


def test_payload_uses_the_api_status_shape() -> None:
    report = progress_payload(
        "ft_x_1", step=5, total_steps=20, epoch=0.25, eta_seconds=30, metrics={"train_total_loss": 1.5}
    )
    payload = json.loads(report.model_dump_json(by_alias=True, exclude_none=True))
    assert ProgressReport.model_validate(payload) == report  # the operator parses what the runner sent
    assert payload["runName"] == "ft_x_1" and payload["phase"] == "Running"
    assert payload["progress"]["step"] == 5 and payload["progress"]["totalSteps"] == 20
    assert payload["progress"]["percentage"] == 25 and payload["progress"]["etaSeconds"] == 30
    assert "updatedTime" in payload["progress"]
    assert payload["metrics"] == {"trainTotalLoss": 1.5}


def test_reports_reach_the_endpoint_with_the_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUN_TOKEN", "s3cr3t")
    with progress_server() as server:
        reporter = ProgressReporter(
            "ft_x_1", ProgressTarget(url=server.url, token_env="RUN_TOKEN"), interval_s=3600
        )
        reporter.on_train_begin(None, state(0), None)
        for step in range(1, 4):
            reporter.on_step_end(None, state(step), None)  # throttled: nothing sent
        reporter.on_log(None, state(3), None, logs={"train_total_loss": 2.0, "train_num_predictions": 12})
        reporter.on_train_end(None, state(10, epoch=1.0), None)
    assert server.authorizations and set(server.authorizations) == {"Bearer s3cr3t"}
    assert [r["progress"]["step"] for r in server.reports] == [0, 10]
    last = server.reports[-1]
    assert last["metrics"] == {"trainTotalLoss": 2.0, "trainNumPredictions": 12}
    assert last["progress"]["percentage"] == 100


def test_a_rate_limited_final_report_is_sent_again() -> None:
    """A fast run's final report can meet the operator's rate limit; it is retried, not lost."""
    with progress_server(rate_limited_first=1) as server:
        reporter = ProgressReporter("ft_x_1", ProgressTarget(url=server.url), interval_s=3600)
        reporter.on_train_end(None, state(10, epoch=1.0), None)
    assert server.answers == [429, 200]
    assert [r["progress"]["step"] for r in server.reports] == [10, 10]
    assert reporter._sender is not None and (reporter._sender.sent, reporter._sender.failed) == (1, 0)


def test_an_unreachable_endpoint_never_fails_training() -> None:
    reporter = ProgressReporter("ft_x_1", ProgressTarget(url="http://127.0.0.1:9/nowhere"), interval_s=0)
    reporter.on_train_begin(None, state(0), None)
    reporter.on_train_end(None, state(10), None)
    assert reporter._sender is not None and reporter._sender.failed >= 1


def test_termination_message_fits_the_kubernetes_limit(tmp_path: Path) -> None:
    body = TerminationMessage(
        run_name="r",
        phase="Succeeded",
        global_step=3,
        results={f"task_{i}_with_a_long_name_{'x' * 40}": 0.5 for i in range(60)},
    )
    text = termination_message(body)
    assert len(text.encode()) <= 4096
    assert json.loads(text) == {"runName": "r", "phase": "Succeeded", "globalStep": 3}
    error = termination_message(TerminationMessage(phase="Failed", reason="RunnerError", message="é" * 4000))
    assert len(error.encode()) <= 4096
    parsed = TerminationMessage.model_validate_json(error)
    assert parsed.reason == "RunnerError" and parsed.message is not None and parsed.message.endswith("…")
    target = tmp_path / "termination-log"
    assert (
        write_termination_message(TerminationMessage(run_name="r", phase="Succeeded"), str(target)) == target
    )
    assert json.loads(target.read_text()) == {"runName": "r", "phase": "Succeeded"}
    missing = str(tmp_path / "missing" / "log")
    assert write_termination_message(TerminationMessage(phase="Succeeded"), missing) is None


def test_a_failure_reaches_the_endpoint_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_PROGRESS_TOKEN", "t")
    with progress_server() as server:
        send_failure("ft_x_1", ProgressTarget(url=server.url), "OutOfMemory", "CUDA out of memory")
    report = ProgressReport.model_validate(server.reports[-1])
    assert report.phase == "Failed" and report.reason == "OutOfMemory"
    assert report.message == "CUDA out of memory"


def test_a_missing_token_is_warned_about(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    ProgressReporter("r", ProgressTarget(url="http://127.0.0.1:9/x", token_env="NO_SUCH_TOKEN"))
    assert "$NO_SUCH_TOKEN is not set" in caplog.text


def test_nan_and_infinite_scores_leave_a_termination_message_the_operator_can_read() -> None:
    nan, inf = float("nan"), float("inf")
    scores = {"mc2": nan, "acc": 0.61234, "ppl": inf, "neg": -inf}
    results = EvalResults(run_name="r", suite="lm-eval", tasks=[EvalTaskResult(task="tqa", metrics=scores)])
    text = termination_message(TerminationMessage(run_name="r", phase="Succeeded", results=results.compact()))
    assert TerminationMessage.model_validate(json.loads(text)).results == {"tqa/acc": 0.6123}
