"""Two processes on CPU over gloo: DDP and DeepSpeed ZeRO-1/2/3 train, and both ranks end identical;
eval prediction counts over an eval set that does not split evenly across the ranks; ZeRO-3 LoRA merges
its adapter on rank 0 after rank 1 has returned.

One torchrun launch runs all four configurations in turn (process start-up dominates on CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kaizen_runner.train.output import verify_local_version

from train.helpers import ROOT, free_port, run_config, run_runner, runner_env, write_config

pytestmark = pytest.mark.slow

CASES = {
    "ft_ddp_full": {"finetuningType": "full"},
    "ft_zero1_full": {"finetuningType": "full", "distributedBackend": "deepspeed", "deepspeedZeroStage": 1},
    "ft_zero2_lora": {"finetuningType": "lora", "distributedBackend": "deepspeed", "deepspeedZeroStage": 2},
    "ft_zero3_full": {"finetuningType": "full", "distributedBackend": "deepspeed", "deepspeedZeroStage": 3},
}


def torchrun_driver(tmp_path: Path, configs: list[Path]) -> Path:
    """dist_driver.py under torchrun, two CPU processes over gloo; returns its per-rank results folder."""
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
    return results


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
    results = torchrun_driver(tmp_path, configs)

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


@pytest.mark.timeout(900)
def test_prediction_counts_on_two_processes(tmp_path: Path, tiny_llama: Path, data_dir: Path) -> None:
    """Eval: 5 records over 2 ranks; the sampler pads the last batch with repeated records, which must
    not be counted, and no rank's share may be cut away either. Train: counted on each rank's device
    and summed over the ranks when logged, so both ranks log the same totals, which add up to one pass
    over the 8 training records (2 steps x 2 ranks x batch 2)."""
    records = json.loads((data_dir / "alpaca_val.json").read_text())
    records += json.loads((data_dir / "alpaca_train.json").read_text())[:1]
    assert len(records) == 5
    validation = tmp_path / "val.json"
    validation.write_text(json.dumps(records))
    config = run_config(
        base=tiny_llama,
        output=str(tmp_path / "out"),
        data=data_dir / "alpaca_train.json",
        validation=validation,
        run_name="ft_ddp_eval",
        max_steps=2,
        others={"evalStrategy": "steps", "evalSteps": 1},
    )
    results = torchrun_driver(tmp_path, [write_config(tmp_path / "eval.json", config)])
    rank0, rank1 = (json.loads((results / f"ft_ddp_eval.rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == 2 and rank0["eval_records"] == 5
    expected = rank0["eval_label_tokens"]
    assert expected > 0
    assert rank0["eval_num_predictions"] == rank1["eval_num_predictions"] == [expected, expected]
    assert rank0["train_num_predictions"] == rank1["train_num_predictions"]
    assert sum(rank0["train_num_predictions"]) == rank0["train_label_tokens"] > 0


@pytest.mark.timeout(900)
def test_zero3_lora_merges_after_the_other_rank_has_returned(
    tmp_path: Path, tiny_llama: Path, data_dir: Path
) -> None:
    """ZeRO-3 + LoRA + mergeAdapter, launched as a pod does: rank 1 returns after saving, and rank 0's
    merge must load the base whole, not through ZeRO-3's zero.Init (which broadcasts to rank 1, gone)."""
    output = tmp_path / "out"
    config = run_config(
        base=tiny_llama,
        output=str(output),
        data=data_dir / "alpaca_train.json",
        run_name="ft_zero3_merge",
        max_steps=2,
        hyper={"finetuningType": "lora", "distributedBackend": "deepspeed", "deepspeedZeroStage": 3},
        lora={"mergeAdapter": True},
    )
    path = write_config(tmp_path / "run.json", config)
    done = run_runner(
        ["train", "--config", str(path), "--work-dir", str(tmp_path / "work"), "--nproc-per-node", "2"]
    )
    assert done.returncode == 0, done.stderr[-4000:]
    version = output / "ft_zero3_merge"
    assert verify_local_version(version) == []

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(version / "model").state_dict()
    expected = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama), str(version / "adapter")
    ).merge_and_unload()
    assert merged.keys() == expected.state_dict().keys()
    assert all(torch.allclose(merged[k].float(), v.float()) for k, v in expected.state_dict().items())
