"""Live progress during a real run: what reaches the endpoint is what the trainer logged, and the
version is reported only once its manifest is stored; the final metrics land in the termination log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train.output import MANIFEST
from kaizen_runner.train.run import run_training

from train.helpers import run_config
from train.progress_server import progress_server

pytestmark = pytest.mark.slow


def test_reported_progress_matches_the_trainer_log(
    tmp_path: Path, tiny_llama: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(termination_log))
    monkeypatch.setenv("KAIZEN_PROGRESS_TOKEN", "run-token")
    manifest_seen: list[bool] = []

    def look_at_store(report: dict[str, Any]) -> None:
        if report.get("outputVersion"):
            manifest_seen.append((output / report["outputVersion"] / MANIFEST).is_file())

    with progress_server() as server:
        server.on_report = look_at_store
        cfg = TrainRunConfig.model_validate(
            run_config(
                base=tiny_llama,
                output=str(output),
                data=data_dir / "alpaca_train.json",
                validation=data_dir / "alpaca_val.json",
                max_steps=6,
                others={"evalStrategy": "steps", "evalSteps": 3},
                progress={"url": server.url, "intervalSeconds": 0},
            )
        )
        result = run_training(cfg, work_dir=tmp_path / "work")

    assert set(server.authorizations) == {"Bearer run-token"}
    reports = server.reports
    assert reports[0]["progress"]["step"] == 0 and reports[0]["progress"]["totalSteps"] == 6
    logged = {e["step"]: e for e in result.log_history if "loss" in e}
    evaluated = {e["step"]: e for e in result.log_history if "eval_loss" in e}
    checked = 0
    for report in reports:
        step, metrics = report["progress"]["step"], report["metrics"]
        if step in logged and "trainTotalLoss" in metrics and report["phase"] == "Running":
            assert metrics["trainTotalLoss"] == logged[step]["loss"]
            assert metrics["trainNumPredictions"] == logged[step]["train_num_predictions"]
            assert metrics["trainFractionOfCorrectNextStepPreds"] == pytest.approx(
                logged[step]["mean_token_accuracy"]
            )
            checked += 1
        if "evalTotalLoss" in metrics:  # the latest evaluation so far
            assert metrics["evalTotalLoss"] in [e["eval_loss"] for s, e in evaluated.items() if s <= step]
    assert checked >= 5
    steps = [r["progress"]["step"] for r in reports]
    assert steps == sorted(steps) and steps[-1] == 6

    final = reports[-1]
    assert final["phase"] == "Succeeded" and final["outputVersion"] == cfg.run_name
    assert final["progress"]["percentage"] == 100 and final["progress"]["etaSeconds"] == 0
    assert manifest_seen == [True]  # the version was announced once, after its manifest was written
    assert {k for k in final["metrics"]} >= {"trainTotalLoss", "evalTotalLoss", "evalNumPredictions"}
    assert final["metrics"]["evalTotalLoss"] == evaluated[max(evaluated)]["eval_loss"]

    message = json.loads(termination_log.read_text())
    assert message["outputVersion"] == cfg.run_name and message["globalStep"] == 6
    assert message["metrics"] == result.metrics.model_dump(by_alias=True, exclude_none=True)
    assert len(termination_log.read_bytes()) <= 4096
