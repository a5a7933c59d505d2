"""A run whose loss becomes NaN or infinite (it diverged) says so: JSON has no NaN, and transformers'
default filter would log such a run's loss as 0.0."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from kaizen_api.results import EXIT_USER_ERROR, TerminationMessage
from kaizen_runner.cli import main
from kaizen_runner.train.errors import RunnerError
from kaizen_runner.train.failures import classify, exit_code
from kaizen_runner.train.metrics import check_not_diverged, vertex_metrics
from kaizen_runner.train.progress import ProgressReporter, run_metrics

from train.helpers import run_config, write_config
from train.progress_server import progress_server

NAN = float("nan")


def _poisoned(tiny_llama: Path, target: Path) -> Path:
    """The tiny model with a NaN in its final norm: every forward pass, so every loss, is NaN."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_llama, target)
    weights = load_file(target / "model.safetensors")
    weights["model.norm.weight"][0] = NAN
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


@pytest.mark.slow
def test_a_run_whose_loss_is_nan_fails_saying_it_diverged(
    tmp_path: Path, tiny_llama: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(termination_log))
    monkeypatch.setenv("KAIZEN_PROGRESS_TOKEN", "t")
    output = tmp_path / "out"
    with progress_server() as server:
        config = run_config(
            base=_poisoned(tiny_llama, tmp_path / "nan-llama"),
            output=str(output),
            data=data_dir / "alpaca_train.json",
            max_steps=3,
            progress={"url": server.url, "intervalSeconds": 0},
        )
        path = write_config(tmp_path / "run.json", config)
        code = main(["train", "--config", str(path), "--work-dir", str(tmp_path / "work")])
    assert code == 2  # the same settings diverge again: not retried
    failure = json.loads(termination_log.read_text())
    assert (failure["phase"], failure["reason"]) == ("Failed", "Diverged")
    assert failure["message"].startswith("training diverged: the training loss is nan at step 3")
    assert "not finite since step 1" in failure["message"]
    assert not (output / config["runName"] / "manifest.json").exists(), "no version published"
    running = [r for r in server.reports if r["phase"] == "Running" and r.get("metrics")]
    assert running and running[-1]["metrics"]["nonFiniteLossStep"] == 1
    assert all("trainTotalLoss" not in r["metrics"] for r in running), "no null, no 0.0"
    assert server.reports[-1]["phase"] == "Failed"


def test_a_loss_that_was_nan_once_is_flagged_with_its_first_step() -> None:
    """A run that recovered keeps its latest finite loss and says when the loss was not finite."""
    history = [
        {"loss": 2.0, "train_total_loss": 2.0, "step": 1},
        {"loss": NAN, "train_total_loss": NAN, "step": 2},
        {"eval_loss": math.inf, "eval_total_loss": math.inf, "step": 2},
        {"loss": NAN, "train_total_loss": NAN, "step": 3},
        {"loss": 1.5, "train_total_loss": 1.5, "step": 4},
    ]
    metrics = run_metrics(vertex_metrics(history))
    assert metrics.model_dump(by_alias=True, exclude_none=True) == {
        "trainTotalLoss": 1.5,
        "nonFiniteLossStep": 2,
    }
    reporter = ProgressReporter("r", None)
    for entry in history:
        state = SimpleNamespace(global_step=entry["step"], max_steps=4, epoch=1.0, is_world_process_zero=True)
        reporter.on_log(None, state, None, logs={k: v for k, v in entry.items() if k != "step"})
        if entry["step"] == 3:
            live = json.loads(run_metrics(reporter.metrics).model_dump_json(by_alias=True, exclude_none=True))
            assert live == {"nonFiniteLossStep": 2}, "the NaN loss is left out, not sent as null"
    assert run_metrics(reporter.metrics) == metrics


def test_a_diverged_run_fails_with_its_own_reason_and_is_not_retried() -> None:
    """Diverged, not ConfigInvalid: the operator shows it as the run's reason, from the termination
    message; a user error (exit 2), as the same settings diverge again."""
    history = [{"loss": 2.0, "step": 1}, {"loss": NAN, "step": 2}, {"loss": math.inf, "step": 3}]
    with pytest.raises(RunnerError) as caught:
        check_not_diverged(history)
    reason, message = classify(caught.value)
    assert (reason, exit_code(reason)) == ("Diverged", EXIT_USER_ERROR)
    assert message.startswith(
        "training diverged: the training loss is inf at step 3 (not finite since step 2)"
    )
    assert "lower learningRate" in message
    term = TerminationMessage(phase="Failed", reason=reason, message=message)
    assert TerminationMessage.model_validate_json(term.model_dump_json(by_alias=True)).reason == "Diverged"
    check_not_diverged([{"loss": NAN, "step": 1}, {"loss": 1.5, "step": 2}])  # recovered: no failure
