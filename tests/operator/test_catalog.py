"""The model catalog: every SPEC §1 model is an entry, every entry validates, user entries merge over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaizen_operator.catalog import CatalogError, load_catalog

SPEC_MODELS = [
    "Llama-3.1-8B",
    "Llama-3.2-1B",
    "Llama-3.2-11B-Vision-Instruct",
    "Llama-3.3-70B-Instruct",
    "Meta-Llama-3-8B-Instruct",
    "Qwen2-0.5B-Instruct",
    "Qwen2-VL-7B-Instruct",
    "Qwen2-VL-72B",
    "Qwen2-VL-72B-Instruct",
    "Qwen2.5-0.5B-Instruct",
    "Qwen2.5-14B-Instruct",
    "Qwen2.5-32B-Instruct",
    "Qwen2.5-VL-72B-Instruct",
    "Mixtral-8x7B-v0.1",
    "Mixtral-8x22B-v0.1",
    "Mixtral-8x22B-Instruct-v0.1",
    "DeepSeek-R1",
    "DeepSeek-R1-Distill-Llama-70B",
    "DeepSeek-V3-0324",
]


def test_every_spec_model_is_in_the_shipped_catalog() -> None:
    catalog = load_catalog()
    missing = [name for name in SPEC_MODELS if catalog.get(name) is None]
    assert not missing
    assert sum(e.family == "Gemma" for e in catalog) >= 4


def test_every_entry_is_complete_and_consistent() -> None:
    for entry in load_catalog():
        assert entry.hub_id or entry.mirror, entry.name
        assert entry.parameters > 1e8, entry.name
        if entry.moe:
            assert entry.active_parameters and entry.active_parameters < entry.parameters, entry.name
        # "VL" and "Vision" names are vision-language models, and only they (and Gemma 3 >= 4B) are.
        if "VL" in entry.name or "Vision" in entry.name:
            assert entry.vision, entry.name
        assert entry.instruction_tuned == any(
            tag in entry.name for tag in ("Instruct", "-it", "DeepSeek-R1", "DeepSeek-V3")
        ), entry.name


def test_known_facts() -> None:
    catalog = load_catalog()
    mixtral = catalog.get("Mixtral-8x7B-v0.1")
    assert mixtral.moe and not mixtral.instruction_tuned and mixtral.modality == "text"
    assert catalog.get("Qwen2-VL-7B-Instruct").modality == "vision"
    assert catalog.get("Llama-3.2-1B").hub_id == "meta-llama/Llama-3.2-1B"
    assert catalog.get("Llama-3.1-8B").size_label == "8B"
    assert catalog.get("Qwen2.5-0.5B-Instruct").size_label == "0.5B"
    # The console's spelling and a different case find the same entry.
    assert catalog.get("DeepSeek-R1-V3-0324").name == "DeepSeek-V3-0324"
    assert catalog.get("llama-3.2-1b").name == "Llama-3.2-1B"
    assert catalog.get("Llama-3.2-8B-Instruct") is None  # no public release (SPEC §1)


def test_user_entries_add_and_merge_field_by_field(tmp_path: Path) -> None:
    extra = tmp_path / "catalog.yaml"
    extra.write_text(
        """
models:
  - name: Llama-3.1-8B
    mirror: {s3: {connection: {name: mirror}, bucket: models, key: meta/llama-3.1-8b}}
  - {name: tiny-lab-model, family: Lab, modality: text, parameters: 200000000,
     instructionTuned: true, moe: false, recommendedGpus: 1,
     mirror: {pvc: {claimName: models, path: lab/tiny}}}
"""
    )
    catalog = load_catalog(extra)
    llama = catalog.get("Llama-3.1-8B")
    assert llama.mirror.s3.bucket == "models"
    assert llama.hub_id == "meta-llama/Llama-3.1-8B" and llama.parameters == 8030261248
    assert catalog.get("tiny-lab-model").mirror.pvc.claim_name == "models"
    assert len(catalog) == len(load_catalog()) + 1


@pytest.mark.parametrize(
    "text,needle",
    [
        (
            "models: [{name: x, family: F, modality: audio, parameters: 1, instructionTuned: true, "
            "moe: false, recommendedGpus: 1, hubId: a/b}]",
            "modality",
        ),
        (
            "models: [{name: x, family: F, modality: text, parameters: 1, instructionTuned: true, "
            "moe: false, recommendedGpus: 1}]",
            "hubId or a mirror",
        ),
        ("models: [{family: F}]", "no name"),
        (
            "models: [{name: x, family: F, modality: text, parameters: 1, instructionTuned: true, "
            "moe: false, recommendedGpus: 1, hubId: a/b, weights: fp8}]",
            "weights",
        ),
        ("{models: [", "not YAML"),
    ],
)
def test_invalid_user_entries_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    extra = tmp_path / "catalog.yaml"
    extra.write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog(extra)
    assert needle in str(info.value) and str(extra) in str(info.value)
