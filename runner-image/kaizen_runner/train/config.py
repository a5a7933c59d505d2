"""TrainRunConfig → keyword arguments of TRL's SFTConfig / DPOConfig (and ORPO/CPO/KTO for other losses).

A pure function of the run configuration and a few facts about the run (where it writes, whether
it has a validation set, CPU or GPU, DeepSpeed config). Every value is passed explicitly: TRL's own
defaults differ from SPEC's (learning rate 2e-5/1e-6, max_length 1024, logging every 10 steps,
gradient checkpointing and bf16 on), so nothing may be left to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaizen_api.finetune import DpoParameters, RuntimeParameters
from kaizen_api.runconfig import TrainRunConfig

from kaizen_runner.train.errors import RunnerError

OPTIMIZERS = {"adamw": "adamw_torch", "sgd": "sgd"}
# Collectives may wait this long: one rank can be busy for a long time while the others wait at a
# barrier (staging a 70B base model, fetching a checkpoint, gathering ZeRO-3 weights to save).
# torch's default (30 min) would let the NCCL watchdog kill such a run.
DDP_TIMEOUT_S = 4 * 3600

# pref_loss → (trainer family, TRL loss type). sigmoid/hinge/ipo are DPOTrainer losses; ORPO and SimPO
# are reference-free objectives with their own trainers; kto_pair trains KTO on each pair's chosen
# (desirable) and rejected (undesirable) completion.
PREFERENCE_TRAINERS = {
    "sigmoid": ("dpo", "sigmoid"),
    "hinge": ("dpo", "hinge"),
    "ipo": ("dpo", "ipo"),
    "orpo": ("orpo", None),
    "simpo": ("cpo", "simpo"),
    "kto_pair": ("kto", None),
}


@dataclass(frozen=True)
class RunFacts:
    """What the mapping needs to know besides the configuration."""

    output_dir: str
    has_eval: bool
    use_cpu: bool
    deepspeed: dict[str, Any] | None = None
    is_vision: bool = False
    assistant_only_loss: bool = False
    packing: bool = False
    interactive: bool = False  # a terminal: tqdm's progress bar instead of plain log lines


def uses_gradient_checkpointing(runtime: RuntimeParameters) -> bool:
    """One answer for the trainer and QLoRA's k-bit preparation: PEFT's default would turn activation
    checkpointing on for a quantized base even when disableGradientCheckpointing asks for it off."""
    return not runtime.disable_gradient_checkpointing


def preference_family(dpo: DpoParameters) -> str:
    return PREFERENCE_TRAINERS[dpo.pref_loss][0]


def common_args(cfg: TrainRunConfig, facts: RunFacts) -> dict[str, Any]:
    """TrainingArguments fields shared by every trainer."""
    hp = cfg.hyperparameters
    rt = cfg.extended_hyperparameters.runtime
    others = cfg.extended_hyperparameters.others
    if rt.mixed_precision == "fp16" and facts.use_cpu:
        raise RunnerError("mixedPrecision fp16 needs a GPU; use bf16 or none on CPU")
    evaluating = facts.has_eval and others.eval_strategy != "no"
    gradient_checkpointing = uses_gradient_checkpointing(rt)
    args: dict[str, Any] = {
        "output_dir": facts.output_dir,
        "learning_rate": hp.learning_rate,
        "per_device_train_batch_size": hp.batch_size,
        "per_device_eval_batch_size": hp.batch_size,
        "num_train_epochs": hp.epochs,
        "max_steps": cfg.max_steps or -1,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        "save_strategy": others.checkpoint_strategy,
        "save_steps": hp.checkpoint_steps,
        "save_total_limit": others.number_of_checkpoints,
        "eval_strategy": others.eval_strategy if evaluating else "no",
        "eval_steps": others.eval_steps,
        "logging_strategy": "steps",
        "logging_steps": others.logging_steps,
        "logging_first_step": True,
        # Transformers' filter replaces a NaN step's loss by the window's running mean, so a run that
        # diverged from its first step logs a loss of 0.0; the true mean shows it (metrics.py).
        "logging_nan_inf_filter": False,
        "bf16": rt.mixed_precision == "bf16",
        "fp16": rt.mixed_precision == "fp16",
        "optim": OPTIMIZERS[rt.optimizer],
        "weight_decay": rt.weight_decay,
        "max_grad_norm": rt.max_grad_norm,
        "activation_checkpointing": gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if gradient_checkpointing else None,
        # An explicit step count wins over the ratio (SPEC: lrWarmupSteps overrides lrWarmupRatio).
        "warmup_steps": rt.lr_warmup_steps if rt.lr_warmup_steps > 0 else rt.lr_warmup_ratio,
        "lr_scheduler_type": _scheduler(
            rt.lr_scheduler_type, rt.lr_warmup_steps > 0 or rt.lr_warmup_ratio > 0
        ),
        "full_determinism": rt.full_determinism,
        "seed": rt.seed,
        "data_seed": rt.seed,
        "use_liger_kernel": rt.liger_kernel,
        "use_cpu": facts.use_cpu,
        # Text models use every parameter each step; TRL turns the search on for VLMs itself.
        "ddp_find_unused_parameters": None if facts.is_vision else False,
        "deepspeed": facts.deepspeed,
        "report_to": ["tensorboard"],
        "save_only_model": False,
        "disable_tqdm": not facts.interactive,
        "ddp_timeout": DDP_TIMEOUT_S,
    }
    return args


def _scheduler(name: str, warmup: bool) -> str:
    """transformers' `constant` ignores warm-up; with warm-up asked for, its warm-up twin is meant."""
    return "constant_with_warmup" if name == "constant" and warmup else name


def sft_args(cfg: TrainRunConfig, facts: RunFacts) -> dict[str, Any]:
    """SFTConfig fields: SFT on chat/instruction data, or pre-training on packed text."""
    pretraining = cfg.trainer == "pretraining"
    args = common_args(cfg, facts)
    args.update(
        max_length=cfg.hyperparameters.max_sequence_length,
        dataset_text_field="text",
        # Pre-training concatenates and cuts text into full-length blocks; SFT packs whole examples (BFD).
        packing=pretraining or (facts.packing and not facts.is_vision),
        packing_strategy="wrapped" if pretraining else "bfd",
        assistant_only_loss=facts.assistant_only_loss,
        completion_only_loss=None,
        loss_type="nll",
        shuffle_dataset=False,
    )
    return args


def preference_args(cfg: TrainRunConfig, facts: RunFacts) -> dict[str, Any]:
    """DPOConfig (or ORPOConfig / CPOConfig / KTOConfig) fields for the chosen preference loss."""
    dpo = cfg.extended_hyperparameters.dpo
    family, loss = PREFERENCE_TRAINERS[dpo.pref_loss]
    args = common_args(cfg, facts)
    args["max_length"] = cfg.hyperparameters.max_sequence_length
    if family == "dpo":
        losses, weights = [loss], [1.0]
        if dpo.pref_loss == "sigmoid" and dpo.dpo_label_smoothing > 0:
            # Noisy-label DPO: TRL's sigmoid loss ignores label smoothing; its "robust" loss succeeds cDPO.
            # The API admits smoothing only below 0.5 and only for sigmoid (and simpo): see DpoParameters.
            losses = ["robust"]
        if dpo.pref_ftx > 0:
            losses, weights = [*losses, "sft"], [*weights, dpo.pref_ftx]
        args.update(
            beta=dpo.pref_beta,
            loss_type=losses,
            loss_weights=weights,
            label_smoothing=dpo.dpo_label_smoothing,
            precompute_ref_log_probs=False,
        )
    elif family == "orpo":
        # ORPO's λ (odds-ratio term weight beside its built-in NLL term) is pref_beta, as in LLaMA-Factory.
        args.update(beta=dpo.pref_beta)
    elif family == "cpo":
        # SimPO: reference-free, length-normalised, target margin γ; pref_ftx adds the NLL (SFT) term.
        args.update(
            loss_type="simpo",
            beta=dpo.pref_beta,
            simpo_gamma=dpo.simpo_gamma,
            cpo_alpha=dpo.pref_ftx,
            label_smoothing=dpo.dpo_label_smoothing,
        )
    else:  # kto
        args.update(beta=dpo.pref_beta, desirable_weight=1.0, undesirable_weight=1.0)
    return args


def trainer_args(cfg: TrainRunConfig, facts: RunFacts) -> dict[str, Any]:
    if cfg.trainer == "dpo":
        return preference_args(cfg, facts)
    return sft_args(cfg, facts)
