"""Base model sources (folder, S3 model version, hub id offline) and LoRA targets (text, MoE)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from kaizen_api.finetune import LoraParameters
from kaizen_api.results import VersionManifest
from kaizen_api.runconfig import RunLocation
from kaizen_runner.plan.tokenizer import stage_tokenizer
from kaizen_runner.train.errors import RunnerError
from kaizen_runner.train.models import lora_config, lora_targets, quantization_config, resolve_base_model
from kaizen_runner.train.output import publish_version
from kaizen_runner.train.store import open_store


def test_local_folder_and_version_layout(tmp_path: Path, tiny_llama: Path) -> None:
    assert resolve_base_model(RunLocation(uri=str(tiny_llama)), tmp_path) == tiny_llama
    version = tmp_path / "version"
    shutil.copytree(tiny_llama, version / "model")
    assert resolve_base_model(RunLocation(uri=str(version)), tmp_path) == version / "model"
    adapter_only = tmp_path / "adapter-only"
    (adapter_only / "adapter").mkdir(parents=True)
    (adapter_only / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(RunnerError, match="LoRA adapter without merged weights"):
        resolve_base_model(RunLocation(uri=str(adapter_only)), tmp_path)


@pytest.mark.s3
def test_private_model_version_on_s3(
    tmp_path: Path, tiny_llama: Path, s3_bucket: str, s3_connection_dir: str
) -> None:
    location = RunLocation(uri=f"s3://{s3_bucket}/pm/ft_base_1", connection=s3_connection_dir)
    store = open_store(location)
    folder = tmp_path / "v"
    shutil.copytree(tiny_llama, folder / "model")
    store.put_dir(folder, "")
    missing = b'{"version": "ft_base_1", "files": [{"path": "model/missing.bin", "size": 1}]}'
    store.put_bytes(missing, "manifest.json")
    with pytest.raises(RunnerError, match="incomplete model version"):
        resolve_base_model(location, tmp_path / "cache-1")
    publish_version(folder, store, VersionManifest(version="ft_base_1"))
    staged = resolve_base_model(location, tmp_path / "cache-2")
    assert staged == tmp_path / "cache-2" / "base-model" / "model"
    assert (staged / "model.safetensors").read_bytes() == (tiny_llama / "model.safetensors").read_bytes()


def test_hub_id_offline_without_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(RunnerError, match="not in the local Hugging Face cache"):
        resolve_base_model(RunLocation(uri="hf://Qwen/Qwen2.5-0.5B-Instruct"), tmp_path)


@pytest.fixture
def hub_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online, an empty cache, and a Hub at an address that refuses connections (HF_ENDPOINT is read
    when huggingface_hub is imported, so its constants are set here)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))


@pytest.mark.parametrize("fetch", [resolve_base_model, stage_tokenizer], ids=["training", "preflight"])
def test_a_hub_that_cannot_be_reached_is_retried(fetch, tmp_path: Path, hub_down: None) -> None:
    """Training and the preflight agree: an outage is a StorageError (retried), not ModelInvalid."""
    with pytest.raises(RunnerError) as caught:
        fetch(RunLocation(uri="hf://Qwen/Qwen2.5-0.5B"), tmp_path)
    assert caught.value.reason == "StorageError"
    assert "cannot reach the Hugging Face Hub for " in caught.value.message
    assert "hf://Qwen/Qwen2.5-0.5B: ConnectError" in caught.value.message


def test_a_tokenizer_missing_from_the_offline_cache_is_the_users(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(RunnerError, match="not in the local Hugging Face cache") as caught:
        stage_tokenizer(RunLocation(uri="hf://Qwen/Qwen2.5-0.5B"), tmp_path)
    assert caught.value.reason == "ModelInvalid"


def test_qlora_needs_bitsandbytes() -> None:
    assert quantization_config(None, None) is None
    with pytest.raises(RunnerError, match="quantizationBit needs the bitsandbytes package"):
        quantization_config(4, None)


def test_text_model_targets_all_linear_layers(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert lora_targets(model, None, vision=False) == ("all-linear", None)
    assert lora_targets(model, ["q_proj", "v_proj"], vision=False) == (["q_proj", "v_proj"], None)


def _tiny_mixtral() -> Any:
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=2,
        num_experts_per_tok=1,
    )
    return MixtralForCausalLM(config)


def test_moe_experts_are_target_parameters() -> None:
    """transformers 5 stores Mixtral experts as 3-D parameters, which "all-linear" does not reach."""
    import torch
    from peft import get_peft_model

    model = _tiny_mixtral()
    targets, target_parameters = lora_targets(model, None, vision=False)
    assert targets == "all-linear"
    assert target_parameters == ["experts.down_proj", "experts.gate_up_proj"]
    config = lora_config(LoraParameters(lora_dropout=0), model, vision=False)
    assert config.target_parameters == ["experts.down_proj", "experts.gate_up_proj"]
    peft_model = get_peft_model(model, config)
    assert any("experts" in name and "lora" in name for name, _ in peft_model.named_parameters())
    peft_model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()


def test_moe_with_default_dropout_leaves_experts_out(caplog: pytest.LogCaptureFixture) -> None:
    """PEFT adapts MoE experts and routers as parameters (ours, and what its transformers-5 conversion
    makes of "all-linear"), and its ParamWrapper refuses any lora_dropout; the API's default is 0.05, so
    LoRA keeps to the attention layers, with a warning saying why, rather than the run failing."""
    import torch
    from peft import get_peft_model

    model = _tiny_mixtral()
    with caplog.at_level(logging.WARNING, logger="kaizen_runner.train.models"):
        config = lora_config(LoraParameters(), model, vision=False)
    assert config.lora_dropout == 0.05 and not config.target_parameters
    assert config.target_modules == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert "leaving the MoE experts and routers" in caplog.text and "loraDropout" in caplog.text
    peft_model = get_peft_model(model, config)
    adapted = {
        name.split(".lora_")[0].rsplit(".", 1)[-1]
        for name, _ in peft_model.named_parameters()
        if "lora_" in name
    }
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}
    peft_model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    with pytest.raises(RunnerError, match="loraDropout"):
        lora_config(LoraParameters(target_modules=["w1", "w3"]), _tiny_mixtral(), vision=False)


def test_moe_outside_peft_conversion_with_default_dropout_keeps_all_linear() -> None:
    """Qwen2-MoE's experts are ours to add (PEFT does not convert it): left out, "all-linear" stays, so
    the shared expert's linear layers are still adapted."""
    from peft import get_peft_model
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    model = Qwen2MoeForCausalLM(
        Qwen2MoeConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_experts=2,
            num_experts_per_tok=1,
        )
    )
    config = lora_config(LoraParameters(), model, vision=False)
    assert (config.target_modules, config.target_parameters) == ("all-linear", None)
    names = [name for name, _ in get_peft_model(model, config).named_parameters() if "lora_" in name]
    assert any("shared_expert.down_proj" in name for name in names)
    assert not any(".experts." in name for name in names)


@pytest.mark.parametrize(
    ("setting", "runtime"),
    [
        ("quantizationBit", {"quantizationBit": 8}),
        ("flashAttentionV2", {"flashAttentionV2": True}),
        ("ligerKernel", {"ligerKernel": True}),
    ],
)
def test_missing_optional_packages_name_their_setting(setting: str, runtime: dict[str, object]) -> None:
    from kaizen_api.finetune import RuntimeParameters
    from kaizen_runner.train.models import check_optional_packages

    with pytest.raises(RunnerError, match=f"^{setting} needs the"):
        check_optional_packages(RuntimeParameters.model_validate(runtime))


def test_hub_models_download_safetensors_only_without_the_original_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code-path check (no hub here): the download asks for one copy of the weights, not .bin and
    original/ beside the safetensors; a repo with .bin weights only gets those on a second try."""
    import fnmatch

    import huggingface_hub

    repo = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "original/consolidated.00.pth",
        "tokenizer.json",
    ]
    calls: list[dict] = []

    def fake_snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append(kwargs)
        allowed = [
            name
            for name in files
            if any(fnmatch.fnmatch(name, p) for p in kwargs["allow_patterns"])  # type: ignore[union-attr]
            and not any(fnmatch.fnmatch(name, p) for p in kwargs["ignore_patterns"])  # type: ignore[union-attr]
        ]
        folder = tmp_path / repo_id / str(len(calls))
        for name in allowed:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("{}")
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    files = repo
    folder = resolve_base_model(RunLocation(uri="hf://org/model"), tmp_path)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    files = ["config.json", "pytorch_model.bin", "tokenizer.json"]
    folder = resolve_base_model(RunLocation(uri="hf://org/legacy"), tmp_path)
    assert (folder / "pytorch_model.bin").is_file() and len(calls) == 3
