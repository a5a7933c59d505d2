"""Optimizer steps of a run, computed the way the transformers Trainer computes them.

Per process, an epoch has `ceil(ceil(examples / world_size) / batch_size)` micro-batches (the
distributed sampler pads the last round), and `ceil(micro_batches / gradient_accumulation_steps)`
optimizer steps (at least one). The run has `ceil(epochs * steps_per_epoch)` steps, or `max_steps`.
"""

from __future__ import annotations

import math


def steps_per_epoch(examples: int, *, world_size: int, batch_size: int, gradient_accumulation: int) -> int:
    if examples <= 0:
        return 0
    micro_batches = math.ceil(math.ceil(examples / world_size) / batch_size)
    return max(1, math.ceil(micro_batches / gradient_accumulation))


def total_steps(per_epoch: int, *, epochs: float, max_steps: int | None) -> int:
    if max_steps:
        return max_steps
    return math.ceil(epochs * per_epoch)
