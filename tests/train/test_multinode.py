"""Two "pods" of a PyTorchJob, each a plain `kaizen-runner train` with the PET_* environment the training
operator sets: each re-executes itself under torchrun, they meet over gloo, and the run's checkpoints
hold every node's part (each rank's RNG state lives on its own node) on the real S3 server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train.checkpoints import stored_checkpoints
from kaizen_runner.train.output import is_version_complete
from kaizen_runner.train.store import open_store

from train.helpers import ROOT, free_port, run_config, runner_env, write_config

pytestmark = [pytest.mark.slow, pytest.mark.s3]


def test_two_pods_of_a_pytorchjob_train_together(
    tmp_path: Path, tiny_llama: Path, data_dir: Path, s3_bucket: str, s3_connection_dir: str
) -> None:
    config = run_config(
        base=tiny_llama,
        output=f"s3://{s3_bucket}/private-models/tiny-multinode",
        output_connection=s3_connection_dir,
        data=data_dir / "alpaca_train.json",
        run_name="ft_tiny_20260101000003",
        max_steps=4,
        hyper={"finetuningType": "full", "checkpointSteps": 2},
    )
    port = str(free_port())
    pods = []
    for node_rank in (0, 1):
        pod_dir = tmp_path / f"pod-{node_rank}"  # pods share no disk: config and scratch are per pod
        pod_dir.mkdir()
        path = write_config(pod_dir / "run.json", config)
        env = runner_env(
            PET_NNODES="2",
            PET_NODE_RANK=str(node_rank),
            PET_NPROC_PER_NODE="1",
            PET_MASTER_ADDR="127.0.0.1",
            PET_MASTER_PORT=port,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            WORLD_SIZE="2",
            RANK=str(node_rank),
        )
        command = [sys.executable, "-m", "kaizen_runner.cli", "train", "--config", str(path)]
        command += ["--work-dir", str(pod_dir / "work")]
        pods.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [pod.communicate(timeout=900) for pod in pods]
    for pod, (stdout, stderr) in zip(pods, outputs, strict=True):
        assert pod.returncode == 0, stdout[-2000:] + stderr[-6000:]

    assert "torch.distributed.run" in outputs[1][1]  # the pod re-executed itself under torchrun
    summary = json.loads(outputs[0][0].strip().splitlines()[-1])  # only global rank 0 prints it
    assert summary["globalStep"] == 4

    cfg = TrainRunConfig.model_validate(config)
    root = open_store(cfg.output)
    checkpoints = root.child("checkpoints", cfg.run_name)
    assert stored_checkpoints(checkpoints) == ["checkpoint-2", "checkpoint-4"]
    files = checkpoints.list_files()
    # Rank 1's RNG state was written on pod 1's disk: only its upload puts it beside rank 0's.
    assert {"checkpoint-4/rng_state_0.pth", "checkpoint-4/rng_state_1.pth"} <= set(files)
    version = root.child(cfg.run_name)
    assert is_version_complete(version)
    report = json.loads(version.get_bytes("training_report.json") or b"{}")
    assert report["worldSize"] == 2 and report["globalStep"] == 4
