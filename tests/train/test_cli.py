"""`kaizen-runner train`: clear errors instead of tracebacks, and the torchrun re-execution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaizen_runner.cli import main
from kaizen_runner.train import cli as train_cli

from train.helpers import run_config, write_config


def test_qlora_without_bitsandbytes_names_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    assert importlib.util.find_spec("bitsandbytes") is None, "this test expects an image without bitsandbytes"
    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(termination_log))
    config = run_config(base=tmp_path / "no-model", output=str(tmp_path / "out"), data=tmp_path / "d.json")
    config["extendedHyperparameters"]["runtime"]["quantizationBit"] = 4
    path = write_config(tmp_path / "run.json", config)
    code = main(["train", "--config", str(path), "--work-dir", str(tmp_path / "work")])
    error = capsys.readouterr().err
    assert code == 2
    assert "quantizationBit" in error and "bitsandbytes" in error and "Traceback" not in error
    message = json.loads(termination_log.read_text())
    assert message["phase"] == "Failed" and message["reason"] == "ConfigInvalid"
    assert "quantizationBit" in message["message"]


def test_a_config_from_a_newer_operator_is_refused_by_its_schema_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(termination_log))
    config = run_config(base=tmp_path, output=str(tmp_path / "out"), data=tmp_path / "d.json")
    config.update(schemaVersion=99, someFieldOfTheFuture={"x": 1})
    path = write_config(tmp_path / "run.json", config)
    assert main(["train", "--config", str(path), "--work-dir", str(tmp_path / "work")]) == 2
    error = capsys.readouterr().err
    assert "schemaVersion 99" in error and "runner image" in error
    assert "validation error" not in error and "someFieldOfTheFuture" not in error
    assert json.loads(termination_log.read_text())["reason"] == "ConfigInvalid"


def test_invalid_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = run_config(base=tmp_path, output=str(tmp_path / "out"), data=tmp_path / "d.json", fmt="corpus")
    path = write_config(tmp_path / "run.json", config)  # sft cannot train on corpus data
    assert main(["train", "--config", str(path), "--work-dir", str(tmp_path / "work")]) == 2
    assert "does not fit trainer sft" in capsys.readouterr().err


def test_missing_base_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = run_config(base=tmp_path / "nowhere", output=str(tmp_path / "out"), data=tmp_path / "d.json")
    path = write_config(tmp_path / "run.json", config)
    assert main(["train", "--config", str(path), "--work-dir", str(tmp_path / "work")]) == 2
    assert "base model folder" in capsys.readouterr().err


def test_nproc_per_node_reexecutes_under_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "PET_NNODES", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    calls: list[Any] = []

    def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        calls.append((path, argv, env))
        raise SystemExit(0)

    monkeypatch.setattr(train_cli.os, "execve", fake_execve)
    path = tmp_path / "run.json"
    path.write_text("{}")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(path), "--nproc-per-node", "2", "--work-dir", str(tmp_path)])
    _, argv, env = calls[0]
    assert argv[1:4] == ["-m", "torch.distributed.run", "--nnodes"]
    assert argv[argv.index("--nproc_per_node") + 1] == "2"
    assert argv[argv.index("--master_addr") + 1] == "127.0.0.1"
    assert argv[-6:] == ["kaizen_runner.cli", "train", "--config", str(path), "--work-dir", str(tmp_path)]
    assert "RANK" not in env
