"""From a staged base model and the run configuration to a ready TRL trainer.

Order matters: the trainer arguments need to know whether the base is a VLM and how its chat
template behaves; creating them sets up the process group; ZeRO-3 needs DeepSpeed's own init
before the model is built; a full DPO/KTO run's frozen reference is built here, in the dtype its
forward passes run in (not a second fp32 copy of the policy).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from kaizen_api.runconfig import TrainRunConfig

from kaizen_runner.train.config import (
    DDP_TIMEOUT_S,
    RunFacts,
    preference_family,
    trainer_args,
    uses_gradient_checkpointing,
)
from kaizen_runner.train.data import DataPlan
from kaizen_runner.train.deepspeed import deepspeed_config
from kaizen_runner.train.metrics import with_vertex_metrics
from kaizen_runner.train.models import (
    check_optional_packages,
    is_vision_language,
    load_model,
    load_processing_class,
    lora_config,
    weights_dtype,
)
from kaizen_runner.train.staging import RunPaths, stage_base_model, stage_datasets
from kaizen_runner.train.templates import ensure_chat_template, supports_assistant_only_loss
from kaizen_runner.train.weights import compute_dtype

log = logging.getLogger(__name__)

# Preference families whose loss compares against a frozen reference model.
_WITH_REFERENCE = ("dpo", "kto")


@dataclass(frozen=True)
class BuiltTrainer:
    """A ready trainer and what was learned while building it."""

    trainer: Any
    base: Path
    vision: bool
    assistant_only_loss: bool
    data_reports: dict[str, Any]


def trainer_class(cfg: TrainRunConfig) -> tuple[type, type]:
    """(TRL config class, trainer class) for the trainer and, for DPO, the preference loss."""
    if cfg.trainer != "dpo":
        from trl import SFTConfig, SFTTrainer

        return SFTConfig, SFTTrainer
    family = preference_family(cfg.extended_hyperparameters.dpo)
    if family == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    if family == "cpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    if family == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    from trl import DPOConfig, DPOTrainer

    return DPOConfig, DPOTrainer


def _use_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def _init_deepspeed_comm(use_cpu: bool) -> None:
    """ZeRO-3 partitions weights while they load, so DeepSpeed's process group must exist first."""
    import deepspeed

    deepspeed.init_distributed(
        dist_backend="gloo" if use_cpu else "nccl", timeout=timedelta(seconds=DDP_TIMEOUT_S)
    )


def build_trainer(cfg: TrainRunConfig, paths: RunPaths, *, packing: bool) -> BuiltTrainer:
    hp = cfg.hyperparameters
    ext = cfg.extended_hyperparameters
    lora = hp.finetuning_type == "lora"
    use_cpu = _use_cpu()
    dtype = weights_dtype(ext.runtime.mixed_precision, lora)
    check_optional_packages(ext.runtime)  # before any download: a missing package is a config error

    base = stage_base_model(cfg, paths)
    vision = is_vision_language(base)
    if packing and cfg.trainer == "sft" and not vision and not ext.runtime.flash_attention_v2:
        log.warning(
            "packing without flashAttentionV2: each packed batch becomes one long row whose attention "
            "costs more than the separate sequences did (see docs/training.md, Throughput)"
        )
    processing = load_processing_class(base, vision)
    ensure_chat_template(processing)
    family = preference_family(ext.dpo) if cfg.trainer == "dpo" else None
    conversation_rows = cfg.trainer != "sft" or supports_assistant_only_loss(processing)
    chat_sft = cfg.trainer == "sft" and cfg.dataset.format != "alpaca"

    config_cls, trainer_cls = trainer_class(cfg)
    facts = RunFacts(
        output_dir=str(paths.trainer_dir),
        has_eval=cfg.validation_dataset is not None,
        use_cpu=use_cpu,
        deepspeed=deepspeed_config(hp.zero_stage) if hp.zero_stage else None,
        is_vision=vision,
        assistant_only_loss=chat_sft and conversation_rows,
        packing=packing,
        interactive=_interactive(),
    )
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(paths.logs_dir)
    args = config_cls(**trainer_args(cfg, facts))
    if facts.deepspeed is not None:
        _init_deepspeed_comm(use_cpu)

    plan = DataPlan(trainer=cfg.trainer, conversation_rows=conversation_rows, kto_rows=family == "kto")
    train_data, eval_data, reports = stage_datasets(cfg, paths, plan, args)

    def model(model_dtype: Any) -> Any:
        return load_model(
            base,
            vision=vision,
            dtype=model_dtype,
            quantization_bit=ext.runtime.quantization_bit,
            flash_attention=ext.runtime.flash_attention_v2,
            gradient_checkpointing=uses_gradient_checkpointing(ext.runtime),
        )

    policy = model(dtype)
    extra: dict[str, Any] = {}
    if family in _WITH_REFERENCE and not lora:  # LoRA's reference is the base with the adapter off
        extra["ref_model"] = model(compute_dtype(ext.runtime.mixed_precision, dtype))
    # DPOTrainer batches a record as two rows (chosen, rejected); ORPO, CPO and KTO as one.
    trainer = with_vertex_metrics(trainer_cls, 2 if family == "dpo" else 1)(
        model=policy,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=processing,
        peft_config=lora_config(ext.lora, policy, vision) if lora else None,
        **extra,
    )
    return BuiltTrainer(trainer, base, vision, facts.assistant_only_loss, reports)


def _interactive() -> bool:
    """A person watching a terminal gets tqdm's bar and ETA; a pod's log gets plain lines."""
    import sys

    return sys.stderr.isatty() and "KUBERNETES_SERVICE_HOST" not in os.environ
