"""Image SFT on a tiny LLaVA with ShareGPT_Image data (a zip of train.json and images)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train.models import lora_targets
from kaizen_runner.train.output import verify_local_version
from kaizen_runner.train.run import run_training

from train.helpers import run_config

pytestmark = pytest.mark.slow


def test_lora_targets_the_language_model_only(tiny_llava: Path) -> None:
    import re

    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    pattern, target_parameters = lora_targets(model, None, vision=True)
    matched = [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]
    assert matched and all("language_model" in name for name in matched)
    assert any(name.endswith("q_proj") for name in matched) and any(
        name.endswith("down_proj") for name in matched
    )
    assert target_parameters is None


def test_image_sft_on_tiny_llava(tmp_path: Path, tiny_llava: Path, image_zip: Path) -> None:
    output = tmp_path / "out"
    cfg = TrainRunConfig.model_validate(
        run_config(
            base=tiny_llava,
            output=str(output),
            fmt="sharegpt_image",
            data=image_zip,
            max_steps=12,
            runtime={"lrSchedulerType": "constant"},
            lora={"mergeAdapter": True, "loraAlpha": 64},
        )
    )
    result = run_training(cfg, work_dir=tmp_path / "work")
    version = output / cfg.run_name
    assert verify_local_version(version) == []
    losses = [e["loss"] for e in result.log_history if "loss" in e]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses
    assert (result.metrics.train_num_predictions or 0) > 0

    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    adapted = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(tiny_llava), version / "adapter"
    )
    lora_names = [name for name, _ in adapted.named_parameters() if "lora_" in name]
    assert lora_names and not any("vision_tower" in name for name in lora_names)
    merged = AutoModelForImageTextToText.from_pretrained(version / "model")
    assert type(merged).__name__ == "LlavaForConditionalGeneration"
    assert AutoProcessor.from_pretrained(version / "model").image_processor is not None
