"""TrainRunConfig → TRL arguments: every SPEC hyperparameter mapped, SPEC's defaults (not TRL's) passed."""

from __future__ import annotations

from typing import Any

import pytest
from kaizen_api.runconfig import TrainRunConfig
from kaizen_runner.train.config import RunFacts, common_args, preference_args, sft_args, trainer_args
from kaizen_runner.train.errors import RunnerError

FACTS = RunFacts(output_dir="/tmp/out", has_eval=True, use_cpu=True)


def config(**overrides: Any) -> TrainRunConfig:
    base: dict[str, Any] = {
        "runName": "ft_x_1",
        "trainer": "sft",
        "baseModel": {"uri": "/models/x"},
        "baseModelName": "x",
        "dataset": {"uri": "/data/train.json", "format": "sharegpt"},
        "output": {"uri": "/out"},
    }
    base.update(overrides)
    return TrainRunConfig.model_validate(base)


def test_spec_defaults_are_passed_explicitly() -> None:
    args = sft_args(config(), FACTS)
    expected = {
        "learning_rate": 1e-5,  # TRL SFT would use 2e-5, DPO 1e-6
        "per_device_train_batch_size": 1,
        "per_device_eval_batch_size": 1,
        "num_train_epochs": 1,
        "gradient_accumulation_steps": 4,
        "save_steps": 1000,
        "save_strategy": "steps",
        "save_total_limit": 3,
        "max_length": 2048,  # TRL: 1024
        "bf16": True,
        "fp16": False,
        "optim": "adamw_torch",
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "activation_checkpointing": True,
        "warmup_steps": 0.0,
        "lr_scheduler_type": "cosine",
        "full_determinism": False,
        "seed": 42,
        "data_seed": 42,
        "use_liger_kernel": False,
        "logging_steps": 10,
        "eval_strategy": "steps",
        "eval_steps": 100,
        "max_steps": -1,
        "packing": False,
        "deepspeed": None,
        "report_to": ["tensorboard"],
    }
    assert {k: args[k] for k in expected} == expected


def test_every_core_and_extended_hyperparameter_is_mapped() -> None:
    cfg = config(
        hyperparameters={
            "learningRate": 5e-5,
            "batchSize": 4,
            "epochs": 3,
            "gradientAccumulationSteps": 2,
            "checkpointSteps": 50,
            "maxSequenceLength": 512,
            "finetuningType": "full",
        },
        extendedHyperparameters={
            "runtime": {
                "mixedPrecision": "none",
                "optimizer": "sgd",
                "weightDecay": 0.01,
                "maxGradNorm": 0.5,
                "disableGradientCheckpointing": True,
                "lrWarmupRatio": 0.1,
                "lrSchedulerType": "linear",
                "fullDeterminism": True,
                "seed": 7,
                "ligerKernel": True,
            },
            "others": {
                "checkpointStrategy": "epoch",
                "evalStrategy": "epoch",
                "evalSteps": 20,
                "numberOfCheckpoints": 5,
                "loggingSteps": 3,
            },
        },
        maxSteps=40,
    )
    args = common_args(cfg, FACTS)
    assert args["learning_rate"] == 5e-5
    assert args["per_device_train_batch_size"] == args["per_device_eval_batch_size"] == 4
    assert args["num_train_epochs"] == 3
    assert args["gradient_accumulation_steps"] == 2
    assert (args["save_strategy"], args["save_steps"], args["save_total_limit"]) == ("epoch", 50, 5)
    assert (args["eval_strategy"], args["eval_steps"], args["logging_steps"]) == ("epoch", 20, 3)
    assert (args["bf16"], args["fp16"]) == (False, False)
    assert args["optim"] == "sgd"
    assert (args["weight_decay"], args["max_grad_norm"]) == (0.01, 0.5)
    assert args["activation_checkpointing"] is False
    assert args["warmup_steps"] == 0.1  # a float below 1 is a ratio for transformers 5
    assert args["lr_scheduler_type"] == "linear"
    assert (args["full_determinism"], args["seed"], args["use_liger_kernel"]) == (True, 7, True)
    assert args["max_steps"] == 40
    assert sft_args(cfg, FACTS)["max_length"] == 512


def test_warmup_steps_win_over_ratio() -> None:
    cfg = config(extendedHyperparameters={"runtime": {"lrWarmupSteps": 30, "lrWarmupRatio": 0.5}})
    assert common_args(cfg, FACTS)["warmup_steps"] == 30


def test_no_validation_set_means_no_evaluation() -> None:
    no_eval = RunFacts(output_dir="/tmp/out", has_eval=False, use_cpu=True)
    assert common_args(config(), no_eval)["eval_strategy"] == "no"


def test_fp16_on_cpu_is_a_clear_error() -> None:
    cfg = config(extendedHyperparameters={"runtime": {"mixedPrecision": "fp16"}})
    with pytest.raises(RunnerError, match="fp16 needs a GPU"):
        common_args(cfg, FACTS)


def test_pretraining_packs_text_into_full_blocks() -> None:
    cfg = config(trainer="pretraining", dataset={"uri": "/d.json", "format": "corpus"})
    args = sft_args(cfg, FACTS)
    assert (args["packing"], args["packing_strategy"]) == (True, "wrapped")


def test_sft_packing_is_opt_in_and_never_for_images() -> None:
    packed = RunFacts(output_dir="/o", has_eval=False, use_cpu=True, packing=True)
    assert sft_args(config(), packed)["packing"] is True
    vision = RunFacts(output_dir="/o", has_eval=False, use_cpu=True, packing=True, is_vision=True)
    assert sft_args(config(), vision)["packing"] is False


def dpo_config(**dpo: Any) -> TrainRunConfig:
    return config(trainer="dpo", extendedHyperparameters={"dpo": dpo})


def test_dpo_defaults_and_mapping() -> None:
    args = preference_args(dpo_config(), FACTS)
    assert (args["beta"], args["loss_type"], args["loss_weights"]) == (0.1, ["sigmoid"], [1.0])
    assert args["learning_rate"] == 1e-5 and args["max_length"] == 2048
    args = preference_args(dpo_config(prefLoss="hinge", prefBeta=0.3, prefFtx=0.5), FACTS)
    assert (args["beta"], args["loss_type"], args["loss_weights"]) == (0.3, ["hinge", "sft"], [1.0, 0.5])


def test_dpo_label_smoothing_selects_the_robust_loss() -> None:
    args = preference_args(dpo_config(dpoLabelSmoothing=0.1), FACTS)
    assert (args["loss_type"], args["label_smoothing"]) == (["robust"], 0.1)


@pytest.mark.parametrize(
    ("dpo", "hyper", "named"),
    [
        ({"dpoLabelSmoothing": 0.5}, {}, "dpoLabelSmoothing"),  # TRL's robust loss needs [0, 0.5)
        ({"dpoLabelSmoothing": 0.1, "prefLoss": "hinge"}, {}, "dpoLabelSmoothing"),  # hinge would ignore it
        ({"prefLoss": "kto_pair"}, {}, "batchSize"),  # the default batch of 1: TRL's KTO refuses it
        ({"prefFtx": 0.5, "prefLoss": "orpo"}, {}, "prefFtx"),  # ORPO has its own NLL term
        ({"prefFtx": 0.5, "prefLoss": "kto_pair"}, {"batchSize": 2}, "prefFtx"),  # KTO would ignore it
    ],
)
def test_the_runner_refuses_what_admission_refuses(dpo: dict, hyper: dict, named: str) -> None:
    """One rule in kaizen_api, enforced on the run configuration too: no second copy in the runner."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=named):
        config(trainer="dpo", hyperparameters=hyper, extendedHyperparameters={"dpo": dpo})


def test_kto_pair_with_two_per_batch_builds_a_real_kto_config(tmp_path: Any) -> None:
    from trl import KTOConfig

    cfg = config(
        trainer="dpo",
        hyperparameters={"batchSize": 2},
        extendedHyperparameters={"dpo": {"prefLoss": "kto_pair"}},
    )
    built = KTOConfig(
        **{
            **trainer_args(cfg, RunFacts(output_dir=str(tmp_path), has_eval=False, use_cpu=True)),
            "bf16": False,
        }
    )
    assert built.per_device_train_batch_size == 2


def test_constant_schedule_with_warmup_warms_up() -> None:
    """transformers' `constant` has no warm-up; asked for with one, it becomes constant_with_warmup."""
    warm = config(extendedHyperparameters={"runtime": {"lrSchedulerType": "constant", "lrWarmupSteps": 10}})
    assert common_args(warm, FACTS)["lr_scheduler_type"] == "constant_with_warmup"
    ratio = config(extendedHyperparameters={"runtime": {"lrSchedulerType": "constant", "lrWarmupRatio": 0.1}})
    assert common_args(ratio, FACTS)["lr_scheduler_type"] == "constant_with_warmup"
    cold = config(extendedHyperparameters={"runtime": {"lrSchedulerType": "constant"}})
    assert common_args(cold, FACTS)["lr_scheduler_type"] == "constant"


def test_constant_with_warmup_really_warms_up() -> None:
    import torch
    from transformers import get_scheduler

    warm = config(extendedHyperparameters={"runtime": {"lrSchedulerType": "constant", "lrWarmupSteps": 4}})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_scheduler(common_args(warm, FACTS)["lr_scheduler_type"], optimizer, num_warmup_steps=4)
    assert schedule.get_last_lr()[0] == 0.0  # the first step starts from zero, not at the full rate


def test_collectives_wait_long_and_the_terminal_keeps_its_progress_bar() -> None:
    args = common_args(config(), FACTS)
    assert args["ddp_timeout"] >= 3 * 3600 and args["disable_tqdm"] is True  # a pod: plain log lines
    terminal = RunFacts(output_dir="/o", has_eval=False, use_cpu=True, interactive=True)
    assert common_args(config(), terminal)["disable_tqdm"] is False


def test_reference_free_and_kto_losses() -> None:
    simpo = preference_args(dpo_config(prefLoss="simpo", simpoGamma=1.5, prefFtx=0.2), FACTS)
    assert (simpo["loss_type"], simpo["simpo_gamma"], simpo["cpo_alpha"]) == ("simpo", 1.5, 0.2)
    assert preference_args(dpo_config(prefLoss="orpo", prefBeta=0.2), FACTS)["beta"] == 0.2
    kto = config(
        trainer="dpo",
        hyperparameters={"batchSize": 2},
        extendedHyperparameters={"dpo": {"prefLoss": "kto_pair"}},
    )
    assert preference_args(kto, FACTS)["beta"] == 0.1


@pytest.mark.parametrize("pref_loss", ["sigmoid", "hinge", "ipo", "orpo", "simpo", "kto_pair"])
def test_the_mapping_builds_a_real_trl_config(pref_loss: str, tmp_path: Any) -> None:
    """TRL accepts every key (a typo or a removed TRL field fails here, not in a pod)."""
    from kaizen_runner.train.building import trainer_class

    cfg = config(
        trainer="dpo",
        hyperparameters={"batchSize": 2},
        extendedHyperparameters={"dpo": {"prefLoss": pref_loss}},
    )
    config_cls, _ = trainer_class(cfg)
    facts = RunFacts(output_dir=str(tmp_path), has_eval=True, use_cpu=True)
    built = config_cls(**{**trainer_args(cfg, facts), "bf16": False})
    assert built.learning_rate == 1e-5


def test_sft_mapping_builds_a_real_sft_config(tmp_path: Any) -> None:
    from trl import SFTConfig

    facts = RunFacts(output_dir=str(tmp_path), has_eval=True, use_cpu=True, assistant_only_loss=True)
    built = SFTConfig(**{**trainer_args(config(), facts), "bf16": False})
    assert (built.max_length, built.assistant_only_loss, built.logging_steps) == (2048, True, 10)


def test_training_data_is_not_held_to_the_consoles_upload_limit(
    tmp_path: Any, data_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 MB is what a user may upload in the console; a Data Hub dataset a run trains on may be larger.
    The limit is a setting ($KAIZEN_MAX_DATASET_BYTES), unlimited by default for training."""
    from kaizen_api.runconfig import RunDataset
    from kaizen_runner.data.limits import DEFAULT_LIMITS, dataset_limits
    from kaizen_runner.train.data import DataPlan, load_dataset

    assert DEFAULT_LIMITS.max_upload_bytes == 100 * 1024 * 1024
    assert dataset_limits().max_upload_bytes > 1 << 40
    location = RunDataset(uri=str(data_dir / "alpaca_train.json"), format="alpaca")
    dataset, _ = load_dataset(location, DataPlan(trainer="sft"))
    assert len(dataset) == 8
    monkeypatch.setenv("KAIZEN_MAX_DATASET_BYTES", "100")
    with pytest.raises(RunnerError, match="at most 100 bytes"):
        load_dataset(location, DataPlan(trainer="sft"))
