"""DeepSpeed configs generated per ZeRO stage, so users pick a stage and never write JSON.

Batch sizes, clipping and precision are "auto": the HF Trainer fills them from the run's own
arguments, so the two can never disagree (DeepSpeed rejects inconsistent batch sizes).
The bodies follow LLaMA-Factory's ds_z2/ds_z3 files; stage 1 reuses the stage-2 buckets.
"""

from __future__ import annotations

from typing import Any

_BUCKET = 500_000_000


# Stages 1 and 2 partition optimizer state (and, at 2, gradients) with the same bucketed collectives.
_BUCKETED = {
    "allgather_partitions": True,
    "allgather_bucket_size": _BUCKET,
    "overlap_comm": False,
    "reduce_scatter": True,
    "reduce_bucket_size": _BUCKET,
}


def _zero_section(stage: int) -> dict[str, Any]:
    if stage == 1:
        return {"stage": 1, **_BUCKETED}
    if stage == 2:
        return {"stage": 2, **_BUCKETED, "contiguous_gradients": True, "round_robin_gradients": True}
    if stage == 3:
        return {
            "stage": 3,
            "overlap_comm": False,
            "contiguous_gradients": True,
            "sub_group_size": 1_000_000_000,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1_000_000_000,
            "stage3_max_reuse_distance": 1_000_000_000,
            # Saves a plain (gathered) model.safetensors beside the sharded checkpoint.
            "stage3_gather_16bit_weights_on_model_save": True,
        }
    raise ValueError(f"DeepSpeed ZeRO stage must be 1, 2 or 3, not {stage}")


def deepspeed_config(stage: int) -> dict[str, Any]:
    """The DeepSpeed config for a ZeRO stage, with Trainer-resolved ("auto") batch and precision fields."""
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "fp16": {
            "enabled": "auto",
            "loss_scale": 0,
            "loss_scale_window": 1000,
            "initial_scale_power": 16,
            "hysteresis": 2,
            "min_loss_scale": 1,
        },
        "bf16": {"enabled": "auto"},
        "zero_optimization": _zero_section(stage),
        "steps_per_print": 1_000_000_000,
        "wall_clock_breakdown": False,
    }
