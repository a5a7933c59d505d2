"""The readiness verdict and derived tags on real model folders (the tiny models, saved by transformers),
complete and damaged, and on a version folder laid out as the runner publishes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kaizen_operator.registry.readiness import UPLOAD_MARKER
from kaizen_operator.registry.scan import check_version
from kaizen_operator.registry.storage import LocalModelStorage

from registry.helpers import publish_like_the_runner


def verdict(folder: Path, verify: bool = False):
    return check_version(LocalModelStorage(folder), verify=verify)


def real_parameters(folder: Path) -> int:
    """The parameter count of the saved model, by instantiating it from its config."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(folder)
    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    return sum(p.numel() for p in auto.from_config(config).parameters())


@pytest.mark.parametrize(
    "name,family,type_", [("llama", "Llama", "LLM"), ("qwen2", "Qwen2", "LLM"), ("llava", "LLaVA", "VLM")]
)
def test_tiny_models_are_ready_with_tags_from_their_configs(tiny_models, name, family, type_) -> None:
    result = verdict(tiny_models[name])
    assert result.status == "ready", result.to_json()
    assert result.missing == [] and result.problems == []
    tags = result.tags
    assert tags is not None
    assert (tags.family, tags.type, tags.instruction_tuned, tags.adapter) == (family, type_, True, False)
    assert tags.parameters == real_parameters(tiny_models[name])
    assert tags.size == f"{round(tags.parameters / 1000)}K"


def test_missing_tokenizer_and_weights_are_named(model_copy) -> None:
    folder = model_copy("llama")
    (folder / "tokenizer.json").unlink()
    (folder / "model.safetensors").unlink()
    result = verdict(folder)
    assert result.status == "created" and not result.ready
    assert result.missing == [
        "model.safetensors (or pytorch_model.bin, or a sharded index)",
        "tokenizer.json (or tokenizer.model, vocab.json + merges.txt)",
    ]
    assert "missing model.safetensors" in (result.message or "")


def test_sharded_weights_need_every_shard_of_the_index(model_copy) -> None:
    folder = model_copy("qwen2")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").unlink()
    (folder / "model-00001-of-00002.safetensors").write_bytes(weights)
    index = {
        "metadata": {},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert verdict(folder).missing == ["model-00002-of-00002.safetensors"]
    (folder / "model-00002-of-00002.safetensors").write_bytes(weights)
    assert verdict(folder).ready


def test_an_empty_shard_is_a_problem_like_an_empty_weights_file(model_copy) -> None:
    folder = model_copy("qwen2")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"")  # a copy that died at its first byte
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    result = verdict(folder)
    assert result.status == "failed" and result.missing == []
    assert result.problems == ["model-00002-of-00002.safetensors is empty"]


def test_a_vlm_needs_its_processor_config(model_copy) -> None:
    folder = model_copy("llava")
    (folder / "processor_config.json").unlink()
    assert verdict(folder).missing == ["processor_config.json (or preprocessor_config.json)"]


def test_without_a_chat_template_the_model_is_not_instruction_tuned(model_copy) -> None:
    folder = model_copy("llama")
    (folder / "chat_template.jinja").unlink()
    tags = verdict(folder).tags
    assert tags is not None and tags.instruction_tuned is False


def test_broken_config_is_a_problem_not_a_crash(model_copy) -> None:
    folder = model_copy("llama")
    (folder / "config.json").write_text("{not json")
    result = verdict(folder)
    assert result.status == "failed" and result.problems == ["config.json is not valid JSON"]


def test_runner_output_is_uploading_until_its_manifest_lands(tiny_models, tmp_path) -> None:
    version = publish_like_the_runner(tiny_models["llama"], tmp_path / "ft_Llama_20250508124054")
    assert verdict(version).ready
    manifest = (version / "manifest.json").read_bytes()
    (version / "manifest.json").unlink()
    assert verdict(version).status == "uploading"
    (version / "manifest.json").write_bytes(manifest)
    (version / "model" / "tokenizer.json").write_text("{}")  # not the size the manifest lists
    result = verdict(version)
    assert result.status == "failed"
    assert result.problems[0].startswith("model/tokenizer.json has 2 bytes, the manifest says")


def test_checksums_are_checked_on_request(tiny_models, tmp_path) -> None:
    version = publish_like_the_runner(tiny_models["llama"], tmp_path / "v1")
    weights = version / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert verdict(version).ready  # same size: only a checksum tells
    assert verdict(version, verify=True).problems == [
        "model/model.safetensors does not match its sha256 in the manifest"
    ]


def test_an_adapter_names_its_base(tiny_models, tmp_path) -> None:
    version = publish_like_the_runner(tiny_models["llama"], tmp_path / "lora", adapter=True)
    result = verdict(version)
    assert result.ready, result.to_json()
    assert result.base_model == "s3://models/base"
    assert result.tags is not None and result.tags.adapter is True


def test_an_upload_marker_means_uploading(model_copy) -> None:
    folder = model_copy("llama")
    (folder / UPLOAD_MARKER).write_text("")
    assert verdict(folder).status == "uploading"


def test_an_adapter_has_its_base_models_tags_when_the_base_can_be_read(tiny_models, tmp_path) -> None:
    version = publish_like_the_runner(tiny_models["llama"], tmp_path / "lora", adapter=True)
    config = version / "adapter" / "adapter_config.json"
    config.write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(tiny_models["llama"])}))
    tags = verdict(version).tags
    assert tags is not None
    assert (tags.adapter, tags.family, tags.type, tags.instruction_tuned) == (True, "Llama", "LLM", True)
    assert tags.parameters == real_parameters(tiny_models["llama"])


def test_an_adapter_of_a_catalog_model_has_the_catalogs_tags(tiny_models, tmp_path) -> None:
    """The SPEC's example: a LoRA version of Llama-3.1-8B shows family Llama, type LLM, size 8B."""
    uri, name = "hf://meta-llama/Llama-3.1-8B", "Llama-3.1-8B"
    version = publish_like_the_runner(
        tiny_models["llama"], tmp_path / "ft", adapter=True, base_uri=uri, base_name=name
    )
    result = verdict(version)
    assert result.ready and result.tags is not None
    tags = result.tags
    assert (tags.family, tags.type, tags.size, tags.parameters) == ("Llama", "LLM", "8B", 8_030_261_248)
    assert (tags.adapter, tags.instruction_tuned) == (True, True), "the adapter ships a chat template"
