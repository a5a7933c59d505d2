"""Runs on the API's untouched defaults (batch 1, accumulation 4, bf16, gradient checkpointing, LoRA),
one per trainer, and the dtype of what a run publishes: the helpers' tiny-run overrides hid both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train.output import verify_local_version
from kaizen_runner.train.run import RunResult, run_training
from kaizen_runner.train.weights import saved_dtypes

pytestmark = pytest.mark.slow


def untouched(base: Path, output: Path, trainer: str, fmt: str, data: Path, **extra: Any) -> dict[str, Any]:
    """A run configuration as the operator writes it for a pipeline that sets nothing but its data."""
    return {
        "runName": f"ft_tiny_{trainer}",
        "trainer": trainer,
        "baseModel": {"uri": str(base)},
        "baseModelName": "tiny",
        "dataset": {"uri": str(data), "format": fmt},
        "output": {"uri": str(output)},
        **extra,
    }


def run(config: dict[str, Any], tmp_path: Path) -> tuple[RunResult, Path]:
    cfg = TrainRunConfig.model_validate(config)
    result = run_training(cfg, work_dir=tmp_path / "work")
    version = Path(cfg.output.uri) / cfg.run_name
    assert verify_local_version(version) == []
    return result, version


@pytest.mark.parametrize(
    ("trainer", "fmt", "data"),
    [("pretraining", "corpus", "corpus"), ("sft", "alpaca", "alpaca"), ("dpo", "sharegpt", "dpo")],
)
def test_each_trainer_runs_on_the_api_defaults(
    trainer: str, fmt: str, data: str, tmp_path: Path, tiny_llama: Path, data_dir: Path
) -> None:
    config = untouched(tiny_llama, tmp_path / "out", trainer, fmt, data_dir / f"{data}_train.json")
    cfg = TrainRunConfig.model_validate(config)
    assert (cfg.hyperparameters.batch_size, cfg.hyperparameters.gradient_accumulation_steps) == (1, 4)
    assert cfg.extended_hyperparameters.runtime.mixed_precision == "bf16"
    result, version = run(config, tmp_path)
    args = result.trainer.args
    assert (args.bf16, args.activation_checkpointing, args.per_device_train_batch_size) == (True, True, 1)
    assert result.global_step >= 1 and (version / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "out" / ".checkpoints" / cfg.run_name).exists()  # removed after success


@pytest.fixture(scope="module")
def bf16_llama(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    """The tiny Llama as most hub models ship: bf16 weights, `dtype: bfloat16` in config.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = tmp_path_factory.mktemp("models") / "tiny-llama-bf16"
    AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16).save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(target)
    return target


def test_full_and_merged_weights_are_published_in_the_bases_dtype(
    tmp_path: Path, bf16_llama: Path, data_dir: Path
) -> None:
    data = data_dir / "alpaca_train.json"
    fast = {"maxSteps": 1, "extendedHyperparameters": {"runtime": {"mixedPrecision": "none"}}}
    full = untouched(
        bf16_llama, tmp_path / "a", "sft", "alpaca", data, hyperparameters={"finetuningType": "full"}, **fast
    )
    _, version = run(full, tmp_path / "full")
    assert saved_dtypes(version / "model") == {"BF16"}  # trained with fp32 master weights, published as bf16
    merged = untouched(bf16_llama, tmp_path / "b", "sft", "alpaca", data, **fast)
    merged["extendedHyperparameters"]["lora"] = {"mergeAdapter": True}
    _, version = run(merged, tmp_path / "merged")
    assert saved_dtypes(version / "model") == {"BF16"}
    import torch
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(version / "model").dtype == torch.bfloat16


def test_a_full_dpo_reference_is_built_in_the_compute_dtype(
    tmp_path: Path, tiny_llama: Path, data_dir: Path
) -> None:
    import torch

    config = untouched(
        tiny_llama,
        tmp_path / "out",
        "dpo",
        "sharegpt",
        data_dir / "dpo_train.json",
        maxSteps=1,
        hyperparameters={"finetuningType": "full"},
    )
    result, _ = run(config, tmp_path)
    assert result.trainer.model.dtype == torch.float32  # the policy keeps fp32 master weights
    assert result.trainer.ref_model.dtype == torch.bfloat16  # the frozen copy: half of that
