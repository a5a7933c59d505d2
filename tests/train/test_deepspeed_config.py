"""Generated DeepSpeed configs pass DeepSpeed's own parser once the Trainer resolves their "auto" fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaizen_runner.train.deepspeed import deepspeed_config


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_generated_config_validates_with_deepspeed(stage: int, tiny_llama: Path, tmp_path: Path) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import AutoModelForCausalLM, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    model = AutoModelForCausalLM.from_pretrained(
        tiny_llama
    )  # before the config: a ZeRO-3 config would shard it
    config = deepspeed_config(stage)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        max_grad_norm=0.5,
        bf16=True,
        use_cpu=True,
    )
    hf_config = HfTrainerDeepSpeedConfig(config)
    try:
        hf_config.trainer_config_process(args)
        # ZeRO-3's bucket sizes follow the model's hidden size, filled in when the model is known.
        hf_config.trainer_config_finalize(args, model, 100)
    finally:
        unset_hf_deepspeed_config()  # it is process-global; later tests must not see ZeRO-3
    resolved = hf_config.config
    parsed = DeepSpeedConfig(resolved)
    assert parsed.zero_optimization_stage == stage
    assert parsed.train_micro_batch_size_per_gpu == 2
    assert parsed.gradient_accumulation_steps == 4
    assert parsed.gradient_clipping == 0.5
    assert parsed.bfloat16_config.enabled and not parsed.float16_config.enabled
    assert "auto" not in repr(resolved)


def test_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="1, 2 or 3"):
        deepspeed_config(4)


def test_zero3_saves_a_gathered_model() -> None:
    assert deepspeed_config(3)["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
