"""Real training of tiny models on CPU: every trainer and data format, LoRA and full, with real outputs.

Each run overfits a handful of real sample records with the highest learning rate the API allows, so
its loss must fall; outputs must load back (adapter with PEFT, merged or full models without it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train.metrics import VERTEX_KEYS
from kaizen_runner.train.output import verify_local_version
from kaizen_runner.train.run import RunResult, run_training

from train.helpers import run_config

pytestmark = pytest.mark.slow


def train(tmp_path: Path, **kwargs: Any) -> tuple[RunResult, Path]:
    output = tmp_path / "out"
    cfg = TrainRunConfig.model_validate(run_config(output=str(output), **kwargs))
    result = run_training(cfg, work_dir=tmp_path / "work")
    version = output / cfg.run_name
    assert verify_local_version(version) == []
    return result, version


def losses(result: RunResult) -> list[float]:
    return [entry["loss"] for entry in result.log_history if "loss" in entry]


def assert_learns(result: RunResult, margin: float = 0.05) -> None:
    """The mean of the last three logged losses is clearly below the mean of the first three."""
    values = losses(result)
    assert len(values) >= 6, values
    first, last = sum(values[:3]) / 3, sum(values[-3:]) / 3
    assert last < first - margin, values


def label_tokens(dataset: Any) -> int:
    """Next-token label positions of a tokenized SFT dataset (TRL folds its masks into `labels`)."""
    return sum(sum(label != -100 for label in row["labels"][1:]) for row in dataset)


def test_sft_alpaca_lora_learns_and_reports_vertex_metrics(
    tmp_path: Path, tiny_llama: Path, data_dir: Path
) -> None:
    result, version = train(
        tmp_path,
        base=tiny_llama,
        data=data_dir / "alpaca_train.json",
        validation=data_dir / "alpaca_val.json",
        max_steps=None,
        hyper={"epochs": 6},
        runtime={"lrSchedulerType": "constant"},
        others={"evalStrategy": "epoch"},
    )
    assert_learns(result)
    assert result.global_step == 24  # 8 records, batch 2, 6 epochs
    assert set(VERTEX_KEYS) <= set(result.metrics.model_dump(exclude_none=True))
    trainer = result.trainer
    # train_num_predictions: label tokens, not TRL's num_tokens (which counts prompts too)
    per_epoch = label_tokens(trainer.train_dataset)
    assert sum(e.get("train_num_predictions", 0) for e in result.log_history) == 6 * per_epoch
    final_tokens = [e["num_tokens"] for e in result.log_history if "num_tokens" in e][-1]
    assert final_tokens > 6 * per_epoch
    evals = [e for e in result.log_history if "eval_total_loss" in e]
    assert len(evals) == 6 and all(
        e["eval_num_predictions"] == label_tokens(trainer.eval_dataset) for e in evals
    )
    assert evals[-1]["eval_total_loss"] < evals[0]["eval_total_loss"]
    for entry in result.log_history:
        if "loss" in entry:
            assert entry["train_total_loss"] == entry["loss"]
            assert entry["train_fraction_of_correct_next_step_preds"] == pytest.approx(
                entry["mean_token_accuracy"]
            )

    from peft import AutoPeftModelForCausalLM

    adapter = AutoPeftModelForCausalLM.from_pretrained(version / "adapter")
    assert any("lora_" in name for name, _ in adapter.named_parameters())
    assert not (version / "model").exists() and not (version / "adapter" / "training_args.bin").exists()
    report = json.loads((version / "training_report.json").read_text())
    assert report["dataReports"]["train"]["usable"] == 8 and report["metrics"] == result.metrics.model_dump(
        by_alias=True, exclude_none=True
    )
    assert (version / "loss_curve.png").is_file() and list((version / "logs").glob("events.out.tfevents.*"))


def test_sft_sharegpt_full_trains_assistant_turns_only(
    tmp_path: Path, tiny_qwen2: Path, data_dir: Path
) -> None:
    result, version = train(
        tmp_path,
        base=tiny_qwen2,
        fmt="sharegpt",
        data=data_dir / "sharegpt_train.json",
        max_steps=16,
        hyper={"finetuningType": "full"},
        runtime={"lrSchedulerType": "constant"},
    )
    assert_learns(result)
    report = json.loads((version / "training_report.json").read_text())
    assert report["assistantOnlyLoss"] is True
    row = result.trainer.train_dataset[0]
    assert 0 < sum(label != -100 for label in row["labels"]) < len(row["input_ids"])  # prompts are masked out

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(version / "model")
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert AutoTokenizer.from_pretrained(version / "model").chat_template
    assert not (version / "adapter").exists()


def test_pretraining_packs_corpus_and_merges_the_adapter(
    tmp_path: Path, tiny_llama: Path, data_dir: Path
) -> None:
    result, version = train(
        tmp_path,
        base=tiny_llama,
        trainer="pretraining",
        fmt="corpus",
        data=data_dir / "corpus_train.json",
        max_steps=16,
        hyper={"maxSequenceLength": 64},
        runtime={"lrSchedulerType": "constant"},
        lora={"mergeAdapter": True, "loraAlpha": 128},  # a large LoRA scale: random weights learn slowly
    )
    assert_learns(result)
    lengths = {len(row["input_ids"]) for row in result.trainer.train_dataset}
    assert lengths == {64} or max(lengths) == 64 and len(lengths) == 2  # full blocks (the last may be short)

    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(version / "model")  # plain transformers, no PEFT
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert (version / "adapter" / "adapter_config.json").is_file()
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["artifacts"] == {"adapter": "adapter", "model": "model"}


def test_dpo_lora_learns_preferences_and_merges(tmp_path: Path, tiny_llama: Path, data_dir: Path) -> None:
    result, version = train(
        tmp_path,
        base=tiny_llama,
        trainer="dpo",
        fmt="sharegpt",
        data=data_dir / "dpo_train.json",
        validation=data_dir / "dpo_val.json",
        max_steps=16,
        runtime={"lrSchedulerType": "constant"},
        others={"evalStrategy": "steps", "evalSteps": 8},
        lora={"mergeAdapter": True, "loraAlpha": 64},
    )
    assert_learns(result, margin=0.02)  # the DPO loss starts at ln 2
    assert {"rewards/margins", "train_num_predictions"} <= set(result.log_history[-4]) | set(
        result.log_history[-3]
    )
    assert (result.metrics.eval_num_predictions or 0) > 0

    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(version / "model") is not None
    adapter_config = json.loads((version / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_llama)


def test_dpo_full(tmp_path: Path, tiny_qwen2: Path, data_dir: Path) -> None:
    result, version = train(
        tmp_path,
        base=tiny_qwen2,
        trainer="dpo",
        fmt="sharegpt",
        data=data_dir / "dpo_train.json",
        max_steps=12,
        hyper={"finetuningType": "full"},
        runtime={"lrSchedulerType": "constant"},
    )
    assert_learns(result, margin=0.02)
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(version / "model") is not None


@pytest.mark.parametrize("pref_loss", ["ipo", "orpo", "simpo", "kto_pair"])
def test_other_preference_losses_train(
    pref_loss: str, tmp_path: Path, tiny_llama: Path, data_dir: Path
) -> None:
    result, _ = train(
        tmp_path,
        base=tiny_llama,
        trainer="dpo",
        fmt="sharegpt",
        data=data_dir / "dpo_train.json",
        max_steps=3,
        dpo={"prefLoss": pref_loss, "prefFtx": 0.5 if pref_loss == "simpo" else 0.0},
    )
    assert result.global_step == 3
    assert (result.metrics.train_num_predictions or 0) > 0
    assert all(isinstance(v, float) for v in losses(result))
    if pref_loss == "kto_pair":
        assert_kl_pairs_are_mismatched(result.trainer.train_dataset)


def assert_kl_pairs_are_mismatched(dataset: Any) -> None:
    """KTO's KL term needs (prompt, completion) pairs that do not belong together: no row's KL
    completion may be an answer (chosen or rejected) to its own prompt."""
    answers: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    for row in dataset:
        answers.setdefault(tuple(row["prompt_ids"]), set()).add(tuple(row["completion_ids"]))
    assert len(answers) > 1
    for row in dataset:
        assert tuple(row["KL_completion_ids"]) not in answers[tuple(row["prompt_ids"])]
