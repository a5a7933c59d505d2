"""QLoRA and disableGradientCheckpointing: PEFT's k-bit preparation turns activation checkpointing on
by default, so the runner passes the run's own answer. bitsandbytes' 4-bit loading needs a GPU; here
the loader hands back the tiny model marked as 4-bit (the attribute PEFT and TRL read), so the real
`load_model` path runs on CPU up to the quantized weights themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kaizen_api.finetune import RuntimeParameters
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train import models
from kaizen_runner.train.config import RunFacts, trainer_args, uses_gradient_checkpointing

from train.helpers import run_config


@pytest.mark.parametrize("disabled", [True, False])
def test_the_decision_follows_disable_gradient_checkpointing(disabled: bool, tmp_path: Path) -> None:
    runtime = RuntimeParameters.model_validate(
        {"quantizationBit": 4, "disableGradientCheckpointing": disabled}
    )
    assert uses_gradient_checkpointing(runtime) is not disabled
    config = run_config(
        base=tmp_path,
        output=str(tmp_path / "out"),
        data=tmp_path / "d.json",
        runtime={"quantizationBit": 4, "disableGradientCheckpointing": disabled},
    )
    args = trainer_args(
        TrainRunConfig.model_validate(config), RunFacts(output_dir="o", has_eval=False, use_cpu=True)
    )
    assert args["activation_checkpointing"] is not disabled


@pytest.fixture
def fake_4bit_loading(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """`from_pretrained` given a quantization config loads the plain weights and marks them 4-bit."""
    from transformers import AutoModelForCausalLM

    quant = object()
    seen: list[Any] = []
    real = AutoModelForCausalLM.from_pretrained

    def load(path: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.pop("quantization_config", None))
        model = real(path, **kwargs)
        model.is_loaded_in_4bit = seen[-1] is quant
        return model

    monkeypatch.setattr(models, "quantization_config", lambda bits, dtype: quant if bits else None)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", load)
    return seen


@pytest.mark.parametrize("checkpointing", [False, True])
def test_qlora_loading_enables_checkpointing_only_when_asked(
    checkpointing: bool, tiny_llama: Path, fake_4bit_loading: list[Any]
) -> None:
    import torch

    model = models.load_model(
        tiny_llama,
        vision=False,
        dtype=torch.float32,
        quantization_bit=4,
        gradient_checkpointing=checkpointing,
    )
    assert fake_4bit_loading[-1] is not None  # the quantization config reached the loader
    assert not any(p.requires_grad for p in model.parameters())  # PEFT's preparation ran: base frozen
    assert model.is_activation_checkpointing is checkpointing


def test_without_quantization_nothing_is_prepared(tiny_llama: Path, fake_4bit_loading: list[Any]) -> None:
    import torch

    model = models.load_model(tiny_llama, vision=False, dtype=torch.float32, gradient_checkpointing=True)
    assert fake_4bit_loading[-1] is None
    assert all(p.requires_grad for p in model.parameters()) and not model.is_activation_checkpointing
