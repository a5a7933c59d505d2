"""Prediction counts come per record, so the eval pass can drop the records a distributed sampler
repeats (tests/train/test_distributed_training.py runs that on two processes)."""

from __future__ import annotations

import torch
from kaizen_runner.train.metrics import count_predictions


def test_labels_count_per_row_without_the_first_position_or_ignored_ones() -> None:
    labels = torch.tensor([[5, 6, -100, 7], [-100, -100, 8, 9]])
    assert count_predictions({"labels": labels}).tolist() == [2, 2]


def test_dpo_rows_fold_into_their_records() -> None:
    """DPO's collator stacks every record's chosen row above the rejected rows."""
    chosen = [[0, 1, 1, 0], [0, 1, 0, 0]]
    rejected = [[0, 1, 1, 1], [0, 0, 0, 1]]
    mask = torch.tensor(chosen + rejected)
    assert count_predictions({"completion_mask": mask}, rows_per_record=2).tolist() == [5, 2]
    assert count_predictions({"completion_mask": mask}).tolist() == [2, 1, 3, 1]  # KTO: a row per record


def test_orpo_and_cpo_sum_chosen_and_rejected_labels() -> None:
    inputs = {
        "chosen_labels": torch.tensor([[1, 2, 3], [1, -100, 3]]),
        "rejected_labels": torch.tensor([[1, -100, -100], [1, 2, 3]]),
        "prompt_input_ids": torch.tensor([[1], [2]]),
    }
    assert count_predictions(inputs).tolist() == [2, 3]
    assert count_predictions({"input_ids": torch.tensor([[1, 2]])}) is None
