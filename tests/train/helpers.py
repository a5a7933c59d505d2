"""Helpers of the training tests: run configurations and runner subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_config(
    *,
    base: Path,
    output: str,
    trainer: str = "sft",
    fmt: str = "alpaca",
    data: Path | str,
    validation: Path | str | None = None,
    run_name: str = "ft_tiny_20260101000000",
    max_steps: int | None = 6,
    hyper: dict[str, Any] | None = None,
    runtime: dict[str, Any] | None = None,
    others: dict[str, Any] | None = None,
    lora: dict[str, Any] | None = None,
    dpo: dict[str, Any] | None = None,
    progress: dict[str, Any] | None = None,
    output_connection: str | None = None,
) -> dict[str, Any]:
    """A TrainRunConfig manifest (camelCase) for a tiny CPU run: no mixed precision, no checkpointing of
    activations, frequent logs."""
    config: dict[str, Any] = {
        "runName": run_name,
        "trainer": trainer,
        "baseModel": {"uri": str(base)},
        "baseModelName": "tiny",
        "dataset": {"uri": str(data), "format": fmt},
        "hyperparameters": {
            "learningRate": 1e-3,
            "batchSize": 2,
            "gradientAccumulationSteps": 1,
            "checkpointSteps": 1000,
            "maxSequenceLength": 256,
            **(hyper or {}),
        },
        "extendedHyperparameters": {
            "runtime": {"mixedPrecision": "none", "disableGradientCheckpointing": True, **(runtime or {})},
            "others": {"loggingSteps": 1, "evalSteps": 1000, **(others or {})},
            "lora": {**(lora or {})},
            "dpo": {**(dpo or {})},
        },
        "output": {"uri": output, **({"connection": output_connection} if output_connection else {})},
    }
    if max_steps is not None:
        config["maxSteps"] = max_steps
    if validation is not None:
        config["validationDataset"] = {"uri": str(validation), "format": fmt}
    if progress is not None:
        config["progress"] = progress
    return config


def runner_env(**extra: str) -> dict[str, str]:
    """Environment for a runner subprocess: the venv's packages, offline hubs, one thread per process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "TORCHELASTIC"))}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def run_runner(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """`python -m kaizen_runner.cli <args>` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "kaizen_runner.cli", *args],
        cwd=cwd,
        env=env or runner_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config, indent=2))
    return path


def free_port() -> int:
    """A free TCP port on the loopback interface (a stand-in PyTorchJob master's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
