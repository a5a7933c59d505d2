"""Resolution of a pipeline spec into the runner's TrainRunConfig and the pods' mounts."""

from __future__ import annotations

from pathlib import Path

import pytest
from api.manifests import DELETE
from kaizen_api.runconfig import TrainRunConfig
from kaizen_operator.catalog import load_catalog
from kaizen_operator.resolve import (
    CONNECTIONS_DIR,
    VOLUMES_DIR,
    ResolveError,
    base_model_facts,
    parse_spec,
    resolve_train_run,
    spec_model_name,
)
from support.pipelines import CATALOG, DISPLAY, SETTINGS, VERSION, models, pipeline, resolved


def test_catalog_model_resolves_to_its_hub_id_and_s3_data_to_a_mounted_connection() -> None:
    run = resolved()
    cfg = run.config
    assert (
        cfg.base_model.uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
        and cfg.base_model_name == "Qwen2.5-0.5B-Instruct"
    )
    assert cfg.dataset.uri == "s3://kaizen-data/samples/alpaca_train_mini.json"
    assert cfg.dataset.connection == "datahub" and cfg.validation_dataset.connection == "datahub"
    assert cfg.output.uri == "s3://kaizen-models/support-assistant" and cfg.output.connection == "datahub"
    assert cfg.run_name == DISPLAY and cfg.hyperparameters.epochs == 2
    assert cfg.progress.url == f"http://kaizen-operator.kaizen-system.svc:8081/runs/team-a/{run.names.run}"
    # One Secret volume for the one connection, where the runner looks for it.
    assert run.connections == ("datahub",)
    secret_mounts = [m for m in run.volume_mounts if m["mountPath"].startswith(CONNECTIONS_DIR)]
    assert secret_mounts == [
        {"name": secret_mounts[0]["name"], "mountPath": f"{CONNECTIONS_DIR}/datahub", "readOnly": True}
    ]
    # The configuration the runner reads is valid as it travels (JSON in a ConfigMap).
    assert TrainRunConfig.model_validate_json(run.config_json) == cfg


def test_private_model_version_resolves_to_its_folder_and_pvc_data_to_a_mount() -> None:
    run = resolved("finetune-sft-sharegpt-private.yaml")
    cfg = run.config
    assert cfg.base_model.uri == f"s3://kaizen-models/support-assistant/{VERSION}"
    assert cfg.base_model_name == "support-assistant"
    assert cfg.dataset.uri == f"{VOLUMES_DIR}/uploads/sharegpt/sharegpt_chat_train_mini.json"
    assert cfg.dataset.connection is None
    pvc = next(v for v in run.volumes if "persistentVolumeClaim" in v)
    assert pvc["persistentVolumeClaim"] == {"claimName": "uploads", "readOnly": True}
    mount = next(m for m in run.volume_mounts if m["name"] == pvc["name"])
    assert mount == {"name": pvc["name"], "mountPath": f"{VOLUMES_DIR}/uploads", "readOnly": True}
    assert run.model.parameters == 500_000_000 and run.model.vision is False
    assert run.nodes == 2 and run.gpus_per_node == 8


def test_newest_ready_version_when_none_is_named() -> None:
    run = resolved("finetune-sft-sharegpt-private.yaml", {"spec.baseModel.privateModel.version": DELETE})
    assert run.config.base_model.uri.endswith(VERSION)


def test_version_that_is_not_ready_is_refused_by_name() -> None:
    with pytest.raises(ResolveError) as info:
        resolved("finetune-sft-sharegpt-private.yaml", ready=False)
    assert info.value.reason == "ModelNotReady" and VERSION in info.value.message
    with pytest.raises(ResolveError) as info:
        resolved("finetune-sft-sharegpt-private.yaml", {"spec.baseModel.privateModel.version": "v9"})
    assert info.value.reason == "ModelNotReady" and "v9" in info.value.message


def test_image_trainer_on_a_text_model_is_a_modality_mismatch() -> None:
    assert resolved("finetune-sft-image.yaml").model.vision is True
    with pytest.raises(ResolveError) as info:
        resolved("finetune-sft-image.yaml", {"spec.baseModel": {"catalog": "Llama-3.1-8B"}})
    assert info.value.reason == "ModalityMismatch" and "Llama-3.1-8B" in info.value.message


def test_unknown_catalog_name_and_missing_models() -> None:
    with pytest.raises(ResolveError) as info:
        resolved(changes={"spec.baseModel": {"catalog": "Llama-3.2-8B-Instruct"}})
    assert info.value.reason == "UnknownModel" and "Llama-3.2-8B-Instruct" in info.value.message
    with pytest.raises(ResolveError) as info:
        resolve_train_run(pipeline(), DISPLAY, CATALOG, {}, SETTINGS)
    assert info.value.reason == "OutputModelNotFound"


def test_s3_uri_model_uses_the_output_connection_and_pvc_output_refuses_it() -> None:
    run = resolved("finetune-pretraining.yaml")
    assert run.config.base_model.uri == "s3://kaizen-models/mirror/Qwen2-0.5B-Instruct/"
    assert run.config.base_model.connection == "datahub"
    pvc_output = {"pvc": {"claimName": "models", "path": "support"}}
    with pytest.raises(ResolveError) as info:
        resolved("finetune-pretraining.yaml", storage=pvc_output)
    assert info.value.reason == "StorageNotSupported"


def test_pvc_output_is_writable_even_when_data_shares_the_claim() -> None:
    changes = {
        "spec.dataset.s3": DELETE,
        "spec.dataset.pvc": {"claimName": "models", "path": "data/a.json"},
        "spec.validationDataset": DELETE,
    }
    run = resolved(changes=changes, storage={"pvc": {"claimName": "models", "path": "support"}})
    assert run.config.output.uri == f"{VOLUMES_DIR}/models/support"
    assert [v["persistentVolumeClaim"] for v in run.volumes] == [{"claimName": "models", "readOnly": False}]


def test_catalog_mirror_wins_over_the_hub(tmp_path: Path) -> None:
    extra = tmp_path / "catalog.yaml"
    extra.write_text(
        "models: [{name: Qwen2.5-0.5B-Instruct, mirror: {pvc: {claimName: mirror, path: qwen}}}]"
    )
    run = resolve_train_run(pipeline(), DISPLAY, load_catalog(extra), models(), SETTINGS)
    assert run.config.base_model.uri == f"{VOLUMES_DIR}/mirror/qwen"


def test_base_model_facts_name_the_run_before_it_is_resolved() -> None:
    assert base_model_facts(pipeline(), CATALOG, models()).name == "Qwen2.5-0.5B-Instruct"
    hf = pipeline(changes={"spec.baseModel": {"uri": "hf://meta-llama/Llama-3.2-1B"}})
    facts = base_model_facts(hf, CATALOG, models())
    assert facts.name == "Llama-3.2-1B" and facts.parameters == 1235814400


def test_a_model_that_cannot_be_resolved_is_named_as_the_spec_gives_it() -> None:
    unknown = pipeline(changes={"spec.baseModel": {"catalog": "no-such-model"}})
    assert spec_model_name(parse_spec(unknown)) == "no-such-model"
    private = pipeline(changes={"spec.baseModel": {"privateModel": {"name": "base-llm"}}})
    assert spec_model_name(parse_spec(private)) == "base-llm"
    pvc = pipeline(changes={"spec.baseModel": {"uri": "pvc://models/llama/v2/"}})
    assert spec_model_name(parse_spec(pvc)) == "v2"
