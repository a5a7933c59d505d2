"""The plan's counts against what the trainer really does: records TRL drops (no answer token within
maxSequenceLength), pre-training's packed blocks, and the memory of full blocks and of the reference."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.plan.memory import SLACK, ModelShape, TrainingShape, estimate_gpu_memory
from kaizen_runner.plan.run import plan_run, training_shape
from kaizen_runner.plan.tokens import TokenStats
from support.tinymodels import SAMPLES

from train.helpers import run_config

PAIRS = "sharegpt-dpo/dpo_agrilla_en_train_sharegpt_mini.json"


def test_full_dpo_reference_is_counted_in_the_dtype_the_runner_builds_it() -> None:
    """building.py loads the frozen reference in the compute dtype: 2 bytes in bf16, 4 without."""
    model = ModelShape(parameters=1_000_000_000, hidden_size=2048, layers=16, vocab_size=32000)

    def reference(precision: str) -> float:
        def estimate(loss: str) -> int:
            shape = TrainingShape(
                world_size=1,
                batch_size=1,
                sequence_length=512,
                finetuning_type="full",
                mixed_precision=precision,
                zero_stage=None,
                preference_loss=loss,
            )
            return estimate_gpu_memory(model, shape)

        return (estimate("sigmoid") - estimate("orpo")) / SLACK / model.parameters

    assert reference("bf16") == pytest.approx(2.0, abs=1e-6)
    assert reference("none") == pytest.approx(4.0, abs=1e-6)


def test_pretraining_memory_is_planned_for_full_blocks() -> None:
    """Pre-training packs documents into maxSequenceLength blocks: the estimate's sequence length is the
    block's, not the longest document's (unless the whole dataset is shorter than one block)."""
    config = TrainRunConfig.model_validate(
        run_config(
            base=Path("/m"),
            output="/o",
            trainer="pretraining",
            fmt="corpus",
            data="/d.json",
            hyper={"maxSequenceLength": 1024},
        )
    )
    assert training_shape(config, TokenStats(tokens=50_000, longest=300), 1).sequence_length == 1024
    assert training_shape(config, TokenStats(tokens=700, longest=300), 1).sequence_length == 700
    sft = TrainRunConfig.model_validate(
        run_config(base=Path("/m"), output="/o", data="/d.json", hyper={"maxSequenceLength": 1024})
    )
    assert training_shape(sft, TokenStats(tokens=50_000, longest=300), 1).sequence_length == 300


def _shortest(source: str, count: int) -> list[dict[str, Any]]:
    records = json.loads((SAMPLES / source).read_text())
    return sorted(records, key=lambda r: len(json.dumps(r)))[:count]


def _trainer_steps_per_epoch(config: dict[str, Any], work: Path) -> int:
    """Optimizer steps per epoch of the real trainer, from its prepared dataset (nothing trained)."""
    from kaizen_runner.train.building import build_trainer
    from kaizen_runner.train.staging import RunPaths
    from kaizen_runner.train.store import open_store

    cfg = TrainRunConfig.model_validate(config)
    paths = RunPaths(scratch=work / cfg.run_name, store=open_store(cfg.output), run_name=cfg.run_name)
    trainer = build_trainer(cfg, paths, packing=False).trainer
    return math.ceil(len(trainer.get_train_dataloader()) / cfg.hyperparameters.gradient_accumulation_steps)


DROP_CASES = {
    # 40 preference pairs at 96 tokens: TRL's DPO and KTO trainers drop the pairs whose prompt fills it.
    "dpo": (PAIRS, 40, "dpo", "sharegpt", 96, "sigmoid"),
    "kto_pair": (PAIRS, 40, "dpo", "sharegpt", 96, "kto_pair"),
    # 40 conversations at 48 tokens: SFT drops those whose assistant tokens all lie past the limit.
    "sft_chat": ("sharegpt/sharegpt_chat_train_mini.json", 40, "sft", "sharegpt", 48, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DROP_CASES))
def test_planned_steps_count_only_the_records_the_trainer_keeps(
    case: str, tmp_path: Path, tiny_llama: Path
) -> None:
    source, count, trainer, fmt, max_length, loss = DROP_CASES[case]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(_shortest(source, count)))
    config = run_config(
        base=tiny_llama,
        output=str(tmp_path / "out"),
        trainer=trainer,
        fmt=fmt,
        data=data,
        max_steps=None,
        hyper={"maxSequenceLength": max_length, "batchSize": 2, "gradientAccumulationSteps": 1},
        dpo={"prefLoss": loss} if loss else None,
    )
    planned = plan_run(
        TrainRunConfig.model_validate(config), nodes=1, gpus_per_node=1, parameters=None, work_dir=tmp_path
    )
    assert planned.masked_records > 0, case  # the case really drops records
    assert planned.steps_per_epoch == _trainer_steps_per_epoch(config, tmp_path / "train"), case


@pytest.mark.slow
def test_planned_pretraining_blocks_are_the_trainers(tmp_path: Path, tiny_llama: Path) -> None:
    """TRL packs each 1000-document map batch on its own, each ending in a partial block: 3000 short
    documents at 2048 tokens make more blocks than their total divided by 2048."""
    source = json.loads((SAMPLES / "corpus" / "corpus_wiki_en_train_mini.json").read_text())
    documents = [{"text": r["text"][:300]} for r in source]
    documents = (documents * math.ceil(3000 / len(documents)))[:3000]
    data = tmp_path / "corpus.json"
    data.write_text(json.dumps(documents))
    config = run_config(
        base=tiny_llama,
        output=str(tmp_path / "out"),
        trainer="pretraining",
        fmt="corpus",
        data=data,
        max_steps=None,
        hyper={"maxSequenceLength": 2048, "batchSize": 1, "gradientAccumulationSteps": 1},
    )
    planned = plan_run(
        TrainRunConfig.model_validate(config), nodes=1, gpus_per_node=1, parameters=None, work_dir=tmp_path
    )
    assert planned.steps_per_epoch > math.ceil(planned.tokens / 2048)
    assert planned.steps_per_epoch == _trainer_steps_per_epoch(config, tmp_path / "train")
