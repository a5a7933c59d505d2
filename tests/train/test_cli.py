"""`kaizen-runner train`: clear errors instead of tracebacks, and the torchrun re-execution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaizen_api.results import TerminationMessage
from kaizen_runner.cli import main

from train.helpers import run_config, run_runner, runner_env, write_config
from train.progress_server import progress_server


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


def test_a_broken_image_fails_at_once_naming_the_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module the image cannot import fails every retry the same way: exit 2, not a retried 3."""
    import sys

    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(termination_log))
    monkeypatch.setitem(sys.modules, "kaizen_runner.train.run", None)  # as if the image lacked it
    config = run_config(base=tmp_path / "no-model", output=str(tmp_path / "out"), data=tmp_path / "d.json")
    path = write_config(tmp_path / "run.json", config)
    assert main(["train", "--config", str(path), "--work-dir", str(tmp_path / "work")]) == 2
    message = json.loads(termination_log.read_text())
    assert (message["phase"], message["reason"]) == ("Failed", "ConfigInvalid")
    assert message["message"].startswith(
        "the runner image cannot import the Python module kaizen_runner.train.run"
    )
    assert "kaizen_runner.train.run" in capsys.readouterr().err


def test_a_module_the_cli_itself_cannot_import_fails_at_once_naming_it(tmp_path: Path) -> None:
    """Raised while the command groups are imported (before any command's own catch-all): still exit
    2, which the podFailurePolicy fails at once, and a termination message; a traceback's exit 1 was
    retried in new pods of the same image."""
    import subprocess
    import sys

    termination_log = tmp_path / "termination-log"
    broken = "import sys; sys.modules['yaml'] = None; from kaizen_runner.cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", broken, "train", "--config", str(tmp_path / "run.json")],
        env=runner_env(KAIZEN_TERMINATION_LOG=str(termination_log)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "the Python module yaml" in done.stderr
    message = json.loads(termination_log.read_text())
    assert (message["phase"], message["reason"]) == ("Failed", "ConfigInvalid")
    assert message["message"].startswith("the runner image cannot import the Python module yaml")


def test_an_image_whose_pydantic_is_broken_fails_at_once_with_a_termination_message(
    tmp_path: Path,
) -> None:
    """pydantic (or kaizen_api) failing to import leaves nothing to write the termination message with:
    the CLI still exits 2 (not a retried traceback's 1) and writes it by hand, for the operator to read."""
    import os

    shim = tmp_path / "shim" / "pydantic"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text('raise ImportError("pydantic is broken here", name="pydantic")\n')
    termination_log = tmp_path / "termination-log"
    path = os.pathsep.join(filter(None, [str(shim.parent), os.environ.get("PYTHONPATH")]))
    done = run_runner(
        ["train", "--config", str(tmp_path / "run.json")],
        env=runner_env(KAIZEN_TERMINATION_LOG=str(termination_log), PYTHONPATH=path),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "the Python module pydantic" in done.stderr
    message = TerminationMessage.model_validate_json(termination_log.read_text())
    assert (message.phase, message.reason) == ("Failed", "ConfigInvalid")
    assert message.message and message.message.startswith(
        "the runner image cannot import the Python module pydantic (ImportError: pydantic is broken here)"
    )


def test_the_hand_written_termination_message_is_the_models() -> None:
    """The JSON the CLI writes without pydantic is what TerminationMessage writes, with the message
    `missing_package` words and the exit code the podFailurePolicy fails at once: they cannot drift."""
    from kaizen_api import results
    from kaizen_runner import cli
    from kaizen_runner.train.errors import missing_package

    err = ImportError("pydantic is broken here", name="pydantic")
    body, text = cli.core_termination_message(err)
    parsed = json.loads(body)
    model = TerminationMessage.model_validate_json(body)
    assert parsed == json.loads(model.model_dump_json(by_alias=True, exclude_none=True))
    failure = missing_package("pydantic", "ImportError: pydantic is broken here")
    assert (model.phase, model.reason, model.message) == ("Failed", failure.reason, failure.message)
    assert text == failure.message
    assert cli.EXIT_USER_ERROR == results.EXIT_USER_ERROR
    overlong = TerminationMessage.model_validate_json(
        cli.core_termination_message(ImportError("x" * 5000))[0]
    )
    assert (overlong.message or "").startswith("the runner image cannot import a Python module (ImportError")


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


@pytest.mark.parametrize("command", ["train", "plan", "eval"])
def test_a_config_file_that_does_not_parse_is_the_users_error(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a RunnerError retried with a traceback: ConfigInvalid naming the file, line and column, and
    not quoting the line (it may hold a secret)."""
    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(termination_log))
    path = tmp_path / "run.yaml"
    path.write_text("runName: x\n  apiKey: [sk-secret\n")
    assert main([command, "--config", str(path), "--work-dir", str(tmp_path / "work")]) == 2
    failure = json.loads(termination_log.read_text())
    assert failure["reason"] == "ConfigInvalid"
    problem = "mapping values are not allowed here at line 2, column 9"
    assert failure["message"] == f"the run configuration {path} is not valid YAML: {problem}"
    missing = tmp_path / "missing.yaml"
    assert main([command, "--config", str(missing), "--work-dir", str(tmp_path / "work")]) == 2
    failure = json.loads(termination_log.read_text())
    assert failure["reason"] == "ConfigInvalid" and str(missing) in failure["message"]


def test_a_json_config_error_says_where(tmp_path: Path) -> None:
    from kaizen_runner.configfile import read_config
    from kaizen_runner.train.errors import RunnerError

    path = tmp_path / "run.json"
    path.write_text('{"runName": "x",\n "token": sk-secret}')
    with pytest.raises(RunnerError) as caught:
        read_config(path)
    assert (
        caught.value.message
        == f"the run configuration {path} is not valid JSON: Expecting value at line 2, column 11"
    )
    assert caught.value.reason == "ConfigInvalid"


def test_missing_base_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = run_config(base=tmp_path / "nowhere", output=str(tmp_path / "out"), data=tmp_path / "d.json")
    path = write_config(tmp_path / "run.json", config)
    assert main(["train", "--config", str(path), "--work-dir", str(tmp_path / "work")]) == 2
    assert "base model folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_user_error_survives_torchrun_with_its_exit_code_and_reason(tmp_path: Path) -> None:
    """Two workers under torchrun fail on a missing base model: the pod exits 2 (user error, not
    torchrun's 1), its termination message says why, and the progress endpoint hears Failed."""
    termination_log = tmp_path / "termination-log"
    with progress_server() as server:
        config = run_config(
            base=tmp_path / "nowhere",
            output=str(tmp_path / "out"),
            data=tmp_path / "d.json",
            progress={"url": server.url},
        )
        path = write_config(tmp_path / "run.json", config)
        env = runner_env(KAIZEN_TERMINATION_LOG=str(termination_log), KAIZEN_PROGRESS_TOKEN="t")
        done = run_runner(
            ["train", "--config", str(path), "--work-dir", str(tmp_path / "w"), "--nproc-per-node", "2"],
            env=env,
        )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "torch.distributed.run" in done.stderr and "base model folder" in done.stderr
    message = TerminationMessage.model_validate_json(termination_log.read_text())
    assert message.phase == "Failed" and message.reason == "ModelInvalid"
    assert message.run_name == config["runName"] and "base model folder" in (message.message or "")
    assert [r["phase"] for r in server.reports] == ["Failed"]
    assert server.reports[0]["reason"] == "ModelInvalid"


def test_an_unexpected_error_is_an_infrastructure_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception nobody anticipated (here: a CUDA OOM) still ends with a reason and exit code 3."""
    import torch
    from kaizen_runner.train import run

    def out_of_memory(*args: Any, **kwargs: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    termination_log = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(termination_log))
    monkeypatch.setattr(run, "run_training", out_of_memory)
    config = run_config(base=tmp_path, output=str(tmp_path / "out"), data=tmp_path / "d.json")
    path = write_config(tmp_path / "run.json", config)
    assert main(["train", "--config", str(path), "--work-dir", str(tmp_path / "work")]) == 3
    message = TerminationMessage.model_validate_json(termination_log.read_text())
    assert message.reason == "OutOfMemory" and "batchSize" in (message.message or "")
