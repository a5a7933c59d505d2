"""A run killed right after its first checkpoint resumes from it on restart, on the real S3 server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train.checkpoints import (
    EXIT_AFTER_CHECKPOINT_CODE,
    MARKER,
    checkpoint_store,
    stored_checkpoints,
)
from kaizen_runner.train.output import MANIFEST, is_version_complete
from kaizen_runner.train.run import run_training
from kaizen_runner.train.store import open_store

from train.helpers import run_config, run_runner, runner_env, write_config

pytestmark = [pytest.mark.slow, pytest.mark.s3]


def test_killed_run_resumes_from_its_checkpoint(
    tmp_path: Path, tiny_llama: Path, data_dir: Path, s3_bucket: str, s3_connection_dir: str
) -> None:
    def config(run_name: str) -> dict:
        return run_config(
            base=tiny_llama,
            output=f"s3://{s3_bucket}/private-models/tiny-ft",
            output_connection=s3_connection_dir,
            data=data_dir / "alpaca_train.json",
            run_name=run_name,
            max_steps=None,  # 3 epochs of 8 records in batches of 2: 12 steps
            hyper={"epochs": 3, "checkpointSteps": 4},
            runtime={"fullDeterminism": True},
            others={"numberOfCheckpoints": 2},
        )

    path = write_config(tmp_path / "run.json", config("ft_tiny_20260101000001"))
    killed = run_runner(
        ["train", "--config", str(path), "--work-dir", str(tmp_path / "work-1")],
        env=runner_env(KAIZEN_TEST_EXIT_AFTER_CHECKPOINT="1"),
    )
    assert killed.returncode == EXIT_AFTER_CHECKPOINT_CODE, killed.stderr[-4000:]

    cfg = TrainRunConfig.model_validate(json.loads(path.read_text()))
    root = open_store(cfg.output)
    checkpoints = checkpoint_store(root, cfg.run_name)
    assert checkpoints.uri.endswith(f"/.checkpoints/{cfg.run_name}")  # never mistaken for a version
    assert stored_checkpoints(checkpoints) == ["checkpoint-4"]
    assert f"checkpoint-4/{MARKER}" in checkpoints.list_files()
    assert root.child(cfg.run_name).list_files() == {}  # no version from the killed attempt

    # The restarted pod: same config, a fresh scratch folder; it finds checkpoint-4 on S3 by itself.
    resumed = run_training(cfg, work_dir=tmp_path / "work-2")
    assert resumed.global_step == 12
    logged_steps = [e["step"] for e in resumed.log_history if "loss" in e]
    assert logged_steps == list(
        range(1, 13)
    )  # steps 1-4 restored from the checkpoint's state, 5-12 trained now
    version = root.child(cfg.run_name)
    assert is_version_complete(version)
    report = json.loads(version.get_bytes("training_report.json") or b"{}")
    assert report["resumedFrom"] == "checkpoint-4"
    assert checkpoints.list_files() == {}  # a succeeded run's checkpoints are removed
    assert json.loads(version.get_bytes(MANIFEST) or b"{}")["version"] == cfg.run_name

    uninterrupted_cfg = TrainRunConfig.model_validate(config("ft_tiny_20260101000002"))
    uninterrupted = run_training(uninterrupted_cfg, work_dir=tmp_path / "work-3")
    assert uninterrupted.global_step == resumed.global_step
    final = [e["loss"] for e in resumed.log_history if "loss" in e][-1]
    assert final == pytest.approx([e["loss"] for e in uninterrupted.log_history if "loss" in e][-1], rel=1e-4)
