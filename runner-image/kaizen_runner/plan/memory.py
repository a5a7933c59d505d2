"""Estimated peak GPU memory per device, from the parameter count and the run's settings.

With P parameters, W processes (nodes x GPUs), micro-batch B, sequence length S (the longest
record, at most maxSequenceLength; pre-training's packed blocks are maxSequenceLength long unless the
whole dataset is shorter), hidden size h, L layers and vocabulary V (from the model's
config.json; h = sqrt(P / 12L) with L = 32 when unknown):

- **Full fine-tuning** keeps fp32 master weights (as the runner does): weights 4P, gradients 4P,
  AdamW moments 8P (SGD: none). ZeRO-1 divides the optimizer term by W, ZeRO-2 gradients and
  optimizer, ZeRO-3 all three. DPO-family losses that need a reference model (sigmoid, hinge, ipo,
  kto_pair) add a frozen copy in the compute dtype, as the runner builds it: 2P in bf16/fp16, 4P
  without mixed precision (divided by W under ZeRO-3).
- **LoRA**: the frozen base in its load precision (2 bytes in bf16/fp16, 4 without mixed
  precision, 1 byte for 8-bit and 0.5 for 4-bit QLoRA), divided by W under ZeRO-3; trainable
  adapter parameters T = P x 2r / h (rank r on every linear layer) with 16 bytes each (fp32 weight,
  gradient, two AdamW moments; 8 with SGD), sharded by ZeRO like full fine-tuning. The reference
  model of DPO is the base with the adapter disabled: no extra memory.
- **Activations** (16-bit): with gradient checkpointing one hidden state per layer (2·B·S·h·L)
  plus one recomputed layer (34·B·S·h); without, 34·B·S·h·L. Logits and their gradient in fp32
  add 8·B·S·V. Preference losses run chosen and rejected together, doubling B.
- Total = 1.1 x (weights + gradients + optimizer + reference + activations) + 1 GiB (CUDA context,
  NCCL buffers, allocator slack).

It is an estimate for planning (which GPUs, how many), not a guarantee: kernels, fragmentation
and image tokens of VLMs (not counted) move the real peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 1 << 30
OVERHEAD_BYTES = GIB
SLACK = 1.1
REFERENCE_LOSSES = frozenset({"sigmoid", "hinge", "ipo", "kto_pair"})
LOAD_BYTES = {"bf16": 2.0, "fp16": 2.0, "none": 4.0}
QUANTIZED_BYTES = {4: 0.5, 8: 1.0}


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    hidden_size: int | None = None
    layers: int | None = None
    vocab_size: int | None = None

    def dims(self) -> tuple[int, int, int]:
        layers = self.layers or 32
        hidden = self.hidden_size or max(64, int(math.sqrt(self.parameters / (12 * layers))))
        return hidden, layers, self.vocab_size or 32000


@dataclass(frozen=True)
class TrainingShape:
    world_size: int
    batch_size: int
    sequence_length: int
    finetuning_type: str  # lora | full
    mixed_precision: str  # bf16 | fp16 | none
    zero_stage: int | None
    optimizer: str = "adamw"
    quantization_bit: int | None = None
    lora_rank: int = 8
    gradient_checkpointing: bool = True
    preference_loss: str | None = None  # set for DPO runs


def _sharded(weights: float, grads: float, optimizer: float, zero: int | None, world: int) -> float:
    if zero is None:
        return weights + grads + optimizer
    if zero == 1:
        return weights + grads + optimizer / world
    if zero == 2:
        return weights + (grads + optimizer) / world
    return (weights + grads + optimizer) / world


def estimate_gpu_memory(model: ModelShape, run: TrainingShape) -> int:
    """Bytes per device (see the module docstring for the formula)."""
    p, world, zero = model.parameters, max(1, run.world_size), run.zero_stage
    hidden, layers, vocab = model.dims()
    moments = 8.0 if run.optimizer == "adamw" else 0.0
    if run.finetuning_type == "full":
        states = _sharded(4.0 * p, 4.0 * p, moments * p, zero, world)
        reference = LOAD_BYTES[run.mixed_precision] * p if run.preference_loss in REFERENCE_LOSSES else 0.0
        reference /= world if zero == 3 else 1
        frozen = 0.0
    else:
        load = QUANTIZED_BYTES.get(run.quantization_bit or 0) or LOAD_BYTES[run.mixed_precision]
        frozen = load * p / (world if zero == 3 else 1)
        trainable = min(float(p), p * 2.0 * run.lora_rank / hidden)
        states = _sharded(4.0 * trainable, 4.0 * trainable, moments * trainable, zero, world)
        reference = 0.0
    batch = run.batch_size * (2 if run.preference_loss else 1)
    tokens = batch * run.sequence_length
    if run.gradient_checkpointing:
        activations = 2.0 * tokens * hidden * layers + 34.0 * tokens * hidden
    else:
        activations = 34.0 * tokens * hidden * layers
    activations += 8.0 * tokens * vocab
    return int(SLACK * (frozen + states + reference + activations) + OVERHEAD_BYTES)
