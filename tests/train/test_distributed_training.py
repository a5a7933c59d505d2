"""Two processes on CPU over gloo: DDP and DeepSpeed ZeRO-1/2/3 train, and both ranks end identical.

One torchrun launch runs all four configurations in turn (process start-up dominates on CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kaizen_runner.train.output import verify_local_version

from train.helpers import ROOT, free_port, run_config, runner_env, write_config

pytestmark = pytest.mark.slow

CASES = {
    "ft_ddp_full": {"finetuningType": "full"},
    "ft_zero1_full": {"finetuningType": "full", "distributedBackend": "deepspeed", "deepspeedZeroStage": 1},
    "ft_zero2_lora": {"finetuningType": "lora", "distributedBackend": "deepspeed", "deepspeedZeroStage": 2},
    "ft_zero3_full": {"finetuningType": "full", "distributedBackend": "deepspeed", "deepspeedZeroStage": 3},
}


@pytest.mark.timeout(1800)  # four runs in one launch; DeepSpeed JIT-builds an op on its first CPU run
def test_ddp_and_deepspeed_stages_on_two_cpu_processes(
    tmp_path: Path, tiny_llama: Path, data_dir: Path
) -> None:
    output = tmp_path / "out"
    configs = [
        write_config(
            tmp_path / f"{name}.json",
            run_config(
                base=tiny_llama,
                output=str(output),
                data=data_dir / "alpaca_train.json",
                run_name=name,
                max_steps=4,
                hyper=hyper,
            ),
        )
        for name, hyper in CASES.items()
    ]
    results = tmp_path / "results"
    results.mkdir()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(Path(__file__).with_name("dist_driver.py")),
        str(results),
        str(tmp_path / "work"),
        *map(str, configs),
    ]
    done = subprocess.run(command, cwd=ROOT, env=runner_env(), capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]

    for name, hyper in CASES.items():
        rank0, rank1 = (json.loads((results / f"{name}.rank{r}.json").read_text()) for r in (0, 1))
        assert rank0["world_size"] == rank1["world_size"] == 2, name
        assert rank0["global_step"] == rank1["global_step"] == 4, name
        assert rank0["weights"] == rank1["weights"], f"{name}: the ranks' weights differ"
        expected_type = "DEEPSPEED" if "deepspeedZeroStage" in hyper else "MULTI_CPU"
        assert rank0["distributed_type"].endswith(expected_type), (name, rank0["distributed_type"])
        assert len(rank0["losses"]) == 4 and all(loss > 0 for loss in rank0["losses"])
        version = output / name
        assert verify_local_version(version) == [], name
        weights = version / (
            "adapter/adapter_model.safetensors" if hyper["finetuningType"] == "lora" else "model"
        )
        assert weights.exists(), name

    from transformers import AutoModelForCausalLM

    # ZeRO-3's save gathers the partitioned weights into one loadable model.
    model = AutoModelForCausalLM.from_pretrained(output / "ft_zero3_full" / "model")
    assert sum(p.numel() for p in model.parameters()) > 10_000
