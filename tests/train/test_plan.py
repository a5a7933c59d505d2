"""`kaizen-runner plan`: the CPU preflight on the real sample datasets with a tiny local model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from api.manifests import DELETE
from kaizen_api.results import EXIT_USER_ERROR, RecordProblem, TerminationMessage
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.cli import main
from kaizen_runner.plan.cli import fitted
from kaizen_runner.plan.memory import GIB, ModelShape, TrainingShape, estimate_gpu_memory
from kaizen_runner.plan.steps import steps_per_epoch, total_steps
from kaizen_runner.train.run import run_training
from support.tinymodels import SAMPLES

from train.helpers import run_config, write_config


@pytest.fixture
def termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(path))
    return path


def plan(tmp_path: Path, config: dict[str, Any], *args: str) -> int:
    path = write_config(tmp_path / "run.json", config)
    return main(["plan", "--config", str(path), "--work-dir", str(tmp_path / "work"), *args])


def message(path: Path) -> TerminationMessage:
    return TerminationMessage.model_validate_json(path.read_text())


def test_plan_of_the_alpaca_sample(tmp_path: Path, tiny_llama: Path, termination_log: Path, capsys) -> None:
    data = SAMPLES / "alpaca" / "alpaca_train_mini.json"
    config = run_config(base=tiny_llama, output=str(tmp_path / "out"), data=data, max_steps=None)
    config["hyperparameters"].update(batchSize=2, gradientAccumulationSteps=4, epochs=3, maxSequenceLength=64)
    assert plan(tmp_path, config, "--nodes", "2", "--gpus-per-node", "2") == 0
    result = message(termination_log)
    assert result.phase == "Succeeded" and result.run_name == config["runName"]
    p = result.plan
    assert p.records == 500 and p.usable_records + p.skipped_records + p.masked_records == 500
    assert p.usable_records + p.masked_records > 400 and p.masked_records > 0  # long prompts at 64 tokens
    assert p.world_size == 4
    # 4 processes x batch 2 x 4 accumulation steps: ceil(ceil(usable / 4) / 2 / 4) steps per epoch.
    assert p.steps_per_epoch == math.ceil(math.ceil(p.usable_records / 4) / 2 / 4)
    assert p.total_steps == 3 * p.steps_per_epoch
    assert 0 < p.truncated_records < p.usable_records  # real answers are longer than 64 tokens
    assert p.tokens <= 64 * p.usable_records
    assert p.parameters and p.estimated_gpu_memory_bytes and p.estimated_gpu_memory_bytes > GIB
    assert json.loads(capsys.readouterr().out)["totalSteps"] == p.total_steps


@pytest.mark.slow
def test_planned_steps_are_the_steps_the_trainer_takes(
    tmp_path: Path, tiny_llama: Path, termination_log: Path
) -> None:
    """Prompts that fill maxSequenceLength leave nothing to learn and TRL drops those records; the
    plan counts them as masked, so its step count is the trainer's."""
    records = json.loads((SAMPLES / "alpaca" / "alpaca_train_mini.json").read_text())[:80]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(records))
    config = run_config(base=tiny_llama, output=str(tmp_path / "out"), data=data, max_steps=None)
    config["hyperparameters"].update(batchSize=4, epochs=1, maxSequenceLength=64)
    assert plan(tmp_path, config) == 0
    p = message(termination_log).plan
    assert p is not None and 0 < p.masked_records < 80 and p.usable_records == 80 - p.masked_records
    assert p.total_steps == math.ceil(p.usable_records / 4)
    result = run_training(TrainRunConfig.model_validate(config), work_dir=tmp_path / "train")
    assert result.global_step == p.total_steps


def test_plan_counts_exactly_what_the_tokenizer_sees(
    tmp_path: Path, tiny_llama: Path, termination_log: Path
) -> None:
    from transformers import AutoTokenizer

    records = [{"text": "alpha beta gamma"}, {"text": "delta " * 50}]
    data = tmp_path / "corpus.json"
    data.write_text(json.dumps(records))
    config = run_config(
        base=tiny_llama,
        output=str(tmp_path / "out"),
        trainer="pretraining",
        fmt="corpus",
        data=data,
        max_steps=None,
    )
    config["hyperparameters"].update(batchSize=1, gradientAccumulationSteps=1, maxSequenceLength=16)
    assert plan(tmp_path, config, "--gpus-per-node", "1") == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    expected = sum(len(tokenizer(r["text"])["input_ids"]) + 1 for r in records)
    p = message(termination_log).plan
    assert p.tokens == expected and p.truncated_records == 0  # packed: nothing is cut
    assert p.steps_per_epoch == math.ceil(expected / 16)  # one step per packed 16-token block


def test_plan_of_preference_pairs_and_chats(tmp_path: Path, tiny_llama: Path, termination_log: Path) -> None:
    dpo = SAMPLES / "sharegpt-dpo" / "dpo_agrilla_en_train_sharegpt_mini.json"
    config = run_config(base=tiny_llama, output=str(tmp_path / "o"), trainer="dpo", fmt="sharegpt", data=dpo)
    assert plan(tmp_path, config) == 0
    p = message(termination_log).plan
    assert p.usable_records > 0 and p.total_steps == 6  # maxSteps wins over epochs
    chat = SAMPLES / "sharegpt" / "sharegpt_chat_val_mini.json"
    config = run_config(
        base=tiny_llama, output=str(tmp_path / "o"), fmt="sharegpt", data=chat, max_steps=None
    )
    assert plan(tmp_path, config) == 0
    p = message(termination_log).plan
    assert p.records == 100 and p.tokens > p.usable_records


def test_bad_data_fails_with_data_invalid_and_record_indexes(
    tmp_path: Path, tiny_llama: Path, termination_log: Path, capsys
) -> None:
    data = tmp_path / "bad.json"
    data.write_text(
        json.dumps([{"instruction": "no answer"}, {"input": "x"}, {"instruction": "", "output": ""}])
    )
    config = run_config(base=tiny_llama, output=str(tmp_path / "out"), data=data)
    assert plan(tmp_path, config) == EXIT_USER_ERROR
    result = message(termination_log)
    assert result.phase == "Failed" and result.reason == "DataInvalid"
    assert result.plan.records == 3 and result.plan.usable_records == 0
    assert [p.index for p in result.plan.first_problems] == [0, 1, 2]
    assert "missing_field" in result.plan.first_problems[0].reason
    assert "no usable records" in result.message
    assert "Traceback" not in capsys.readouterr().err


def test_skipped_records_are_reported_but_do_not_fail(
    tmp_path: Path, tiny_llama: Path, termination_log: Path
) -> None:
    good = {"instruction": "Say hi", "input": "", "output": "Hi!"}
    data = tmp_path / "mixed.json"
    data.write_text(
        json.dumps([good, {"instruction": "x"}, good, {"from": "string", "value": "string"}, good])
    )
    config = run_config(base=tiny_llama, output=str(tmp_path / "out"), data=data)
    assert plan(tmp_path, config) == 0
    p = message(termination_log).plan
    assert (p.records, p.usable_records, p.skipped_records) == (5, 3, 2)
    assert [problem.index for problem in p.first_problems] == [1, 3]


def test_missing_model_is_a_user_error(tmp_path: Path, termination_log: Path) -> None:
    data = SAMPLES / "alpaca" / "alpaca_eval_mini.json"
    config = run_config(base=tmp_path / "nothing", output=str(tmp_path / "out"), data=data)
    assert plan(tmp_path, config) == EXIT_USER_ERROR
    assert message(termination_log).reason == "ModelInvalid"


def test_counted_parameters_match_the_model(tmp_path: Path, tiny_llama: Path) -> None:
    from kaizen_runner.plan.tokenizer import model_shape
    from transformers import AutoModelForCausalLM

    shape, vision = model_shape(tiny_llama, None)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert shape.parameters == sum(p.numel() for p in model.parameters()) and not vision
    assert shape.hidden_size == 32 and shape.layers == 2


def test_termination_message_always_fits_as_json() -> None:
    problems = [RecordProblem(index=i, reason="x" * 1024) for i in range(20)]
    from kaizen_api.results import PreflightPlan

    body = TerminationMessage(
        phase="Failed",
        reason="DataInvalid",
        message="m" * 4000,
        plan=PreflightPlan(records=20, first_problems=problems),
    )
    text = fitted(body)
    assert len(text.encode()) <= 4096
    kept = TerminationMessage.model_validate_json(text)
    assert kept.reason == "DataInvalid" and kept.plan.records == 20


def test_steps_follow_the_trainer() -> None:
    assert steps_per_epoch(100, world_size=1, batch_size=1, gradient_accumulation=4) == 25
    assert steps_per_epoch(101, world_size=1, batch_size=1, gradient_accumulation=4) == 26
    assert steps_per_epoch(100, world_size=8, batch_size=2, gradient_accumulation=4) == 2  # ceil(13/2)=7 → 2
    assert steps_per_epoch(3, world_size=8, batch_size=4, gradient_accumulation=16) == 1
    assert steps_per_epoch(0, world_size=1, batch_size=1, gradient_accumulation=1) == 0
    assert total_steps(7, epochs=3, max_steps=None) == 21 and total_steps(7, epochs=3, max_steps=5) == 5


def test_memory_estimate_orders_the_settings_sensibly() -> None:
    llama8b = ModelShape(parameters=8_030_261_248, hidden_size=4096, layers=32, vocab_size=128256)

    def gib(**kw: Any) -> float:
        base = dict(
            world_size=8,
            batch_size=1,
            sequence_length=2048,
            finetuning_type="lora",
            mixed_precision="bf16",
            zero_stage=None,
        )
        return estimate_gpu_memory(llama8b, TrainingShape(**{**base, **kw})) / GIB

    lora, full = gib(), gib(finetuning_type="full")
    assert 17 < lora < 30  # bf16 weights (16 GB) + a small adapter + activations
    assert full > 120  # 16 bytes per parameter without sharding
    assert gib(finetuning_type="full", zero_stage=3) < gib(finetuning_type="full", zero_stage=2)
    assert gib(finetuning_type="full", zero_stage=2) < gib(finetuning_type="full", zero_stage=1) < full
    assert gib(quantization_bit=4) < lora
    assert gib(gradient_checkpointing=False) > lora
    assert gib(finetuning_type="full", preference_loss="sigmoid") > gib(
        finetuning_type="full", preference_loss="orpo"
    )


@pytest.mark.s3
def test_plan_fetches_only_tokenizer_files_of_a_model_version_on_s3(
    tmp_path: Path,
    tiny_llama: Path,
    s3_server: Any,
    s3_bucket: str,
    s3_connection_dir: str,
    termination_log: Path,
) -> None:
    client = s3_server.client()
    version = "private-models/tiny/ft_tiny_20260101000000"
    for path in tiny_llama.iterdir():  # a PrivateModel version keeps full weights under model/
        client.upload_file(str(path), s3_bucket, f"{version}/model/{path.name}")
    client.put_object(Bucket=s3_bucket, Key=f"{version}/manifest.json", Body=b"{}")
    data = SAMPLES / "alpaca" / "alpaca_eval_mini.json"
    config = run_config(base=tmp_path, output=str(tmp_path / "out"), data=data)
    config["baseModel"] = {"uri": f"s3://{s3_bucket}/{version}", "connection": s3_connection_dir}
    assert plan(tmp_path, config) == 0
    counted = message(termination_log).plan
    assert counted.usable_records + counted.masked_records == counted.records == 100
    staged = {p.name for p in (tmp_path / "work").rglob("*") if p.is_file()}
    assert "tokenizer.json" in staged and "config.json" in staged
    assert not any(name.endswith(".safetensors") for name in staged)  # weights are never fetched


def test_plan_of_an_image_dataset_with_a_vlm(
    tmp_path: Path, tiny_llava: Path, image_zip: Path, termination_log: Path
) -> None:
    config = run_config(base=tiny_llava, output=str(tmp_path / "out"), fmt="sharegpt_image", data=image_zip)
    assert plan(tmp_path, config) == 0
    p = message(termination_log).plan
    assert p.records == p.usable_records == 6 and p.tokens > 0 and p.parameters


def test_the_preflight_job_runs_as_the_operator_builds_it(
    tmp_path: Path, tiny_llama: Path, termination_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder's command, flags and ConfigMap, with the pod's mounts mapped onto local folders."""
    from kaizen_operator.resolve import CONFIG_FILE, VOLUMES_DIR, resolve_train_run
    from kaizen_operator.workloads import build_config_map, build_preflight_job
    from support.pipelines import CATALOG, DISPLAY, SETTINGS, pipeline, private_model

    changes = {
        "spec.baseModel": {"uri": "pvc://models/tiny-llama"},
        "spec.dataset.s3": DELETE,
        "spec.dataset.pvc": {"claimName": "uploads", "path": "alpaca/train.json"},
        "spec.validationDataset": DELETE,
        "spec.resources": {"nodes": 2, "gpusPerNode": 4},
    }
    doc = pipeline(changes=changes)
    models = {"support-assistant": private_model(storage={"pvc": {"claimName": "models", "path": "support"}})}
    run = resolve_train_run(doc, DISPLAY, CATALOG, models, SETTINGS)
    volumes = tmp_path / "volumes"
    (volumes / "uploads" / "alpaca").mkdir(parents=True)
    (volumes / "uploads" / "alpaca" / "train.json").symlink_to(SAMPLES / "alpaca" / "alpaca_eval_mini.json")
    (volumes / "models").mkdir()
    (volumes / "models" / "tiny-llama").symlink_to(tiny_llama)
    config = build_config_map(run, doc, run.names)["data"][CONFIG_FILE].replace(VOLUMES_DIR, str(volumes))
    (tmp_path / CONFIG_FILE).write_text(config)

    container = build_preflight_job(run, doc, run.names, SETTINGS)["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert container["command"] == ["kaizen-runner"]
    args = [str(tmp_path / CONFIG_FILE) if a.endswith(CONFIG_FILE) else a for a in container["args"]]
    monkeypatch.setenv("KAIZEN_WORK_DIR", str(tmp_path / "work"))
    assert main(args) == 0
    p = message(termination_log).plan
    assert p.world_size == 8 and p.records == 100 and p.steps_per_epoch >= 1
