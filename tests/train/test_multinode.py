"""Two "pods" of a PyTorchJob, each a plain `kaizen-runner train` with the environment the training
operator sets: each starts torchrun, they meet over gloo and train with DeepSpeed ZeRO-2. The first
attempt is killed after its first checkpoint, which holds every node's shards on the real S3 server;
the restarted pods (fresh scratch, as on new nodes) resume from it. Node 1's scratch keeps no more
checkpoints than asked for (only rank 0's trainer rotates its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kaizen_api.results import RunReport, TerminationMessage
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train.checkpoints import MARKER, NODE_MARKER, checkpoint_store, stored_checkpoints
from kaizen_runner.train.output import REPORT, is_version_complete
from kaizen_runner.train.store import open_store

from train.helpers import ROOT, free_port, run_config, runner_env, write_config

pytestmark = [pytest.mark.slow, pytest.mark.s3]


def start_pods(config: dict, tmp_path: Path, attempt: str, **extra_env: str) -> list[tuple[int, str, str]]:
    port = str(free_port())
    pods = []
    for node_rank in (0, 1):
        pod_dir = (
            tmp_path / f"{attempt}-pod-{node_rank}"
        )  # pods share no disk: config and scratch are per pod
        pod_dir.mkdir()
        path = write_config(pod_dir / "run.json", config)
        env = runner_env(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            WORLD_SIZE="2",
            RANK=str(node_rank),
            PET_NNODES="2",
            PET_NODE_RANK=str(node_rank),
            PET_NPROC_PER_NODE="1",
            KAIZEN_TERMINATION_LOG=str(pod_dir / "termination-log"),
            **extra_env,
        )
        command = [sys.executable, "-m", "kaizen_runner.cli", "train", "--config", str(path)]
        command += ["--work-dir", str(pod_dir / "work")]
        pods.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [pod.communicate(timeout=1200) for pod in pods]
    return [(pod.returncode, out, err) for pod, (out, err) in zip(pods, outputs, strict=True)]


@pytest.mark.timeout(2400)
def test_two_pods_checkpoint_deepspeed_shards_and_resume_together(
    tmp_path: Path, tiny_llama: Path, data_dir: Path, s3_bucket: str, s3_connection_dir: str
) -> None:
    config = run_config(
        base=tiny_llama,
        output=f"s3://{s3_bucket}/private-models/tiny-multinode",
        output_connection=s3_connection_dir,
        data=data_dir / "alpaca_train.json",
        run_name="ft_tiny_20260101000003",
        max_steps=4,
        hyper={
            "finetuningType": "full",
            "checkpointSteps": 2,
            "distributedBackend": "deepspeed",
            "deepspeedZeroStage": 2,
        },
        others={"numberOfCheckpoints": 1, "keepCheckpoints": True},
    )
    cfg = TrainRunConfig.model_validate(config)
    root = open_store(cfg.output)
    checkpoints = checkpoint_store(root, cfg.run_name)

    killed = start_pods(config, tmp_path, "first", KAIZEN_TEST_EXIT_AFTER_CHECKPOINT="1")
    for code, stdout, stderr in killed:
        assert code == 3, stdout[-2000:] + stderr[-6000:]  # died without a reason: retryable
    assert "torch.distributed.run" in killed[1][2]  # the pod started its worker under torchrun
    assert stored_checkpoints(checkpoints) == ["checkpoint-2"]
    files = set(checkpoints.list_files())
    assert {f"checkpoint-2/{MARKER}", f"checkpoint-2/{NODE_MARKER.format(1)}"} <= files
    # ZeRO-2 partitions the optimizer state by rank: rank 1's shard was only ever on pod 1's disk.
    shards = {name for name in files if "optim_states" in name}
    assert any("pp_rank_0_" in name for name in shards) and any("pp_rank_1_" in name for name in shards)
    assert root.child(cfg.run_name).list_files() == {}  # no version from the killed attempt

    resumed = start_pods(config, tmp_path, "second")
    for code, stdout, stderr in resumed:
        assert code == 0, stdout[-2000:] + stderr[-6000:]
    summary = TerminationMessage.model_validate_json(resumed[0][1].strip().splitlines()[-1])
    assert summary.global_step == 4 and summary.output_version == cfg.run_name  # only global rank 0 prints it
    version = root.child(cfg.run_name)
    assert is_version_complete(version)
    report = RunReport.model_validate_json(version.get_bytes(REPORT) or b"{}")
    assert (report.world_size, report.global_step, report.resumed_from) == (2, 4, "checkpoint-2")
    assert stored_checkpoints(checkpoints) == ["checkpoint-4"]  # kept, as asked; the newest one only
    for node in (0, 1):  # scratch on every node holds numberOfCheckpoints checkpoints, not every one
        trainer_dir = tmp_path / f"second-pod-{node}" / "work" / cfg.run_name / "trainer"
        assert sorted(p.name for p in trainer_dir.glob("checkpoint-*")) == ["checkpoint-4"], node
    assert json.loads((tmp_path / "second-pod-0" / "termination-log").read_text())["phase"] == "Succeeded"
