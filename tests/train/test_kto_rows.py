"""kto_pair's rows: every chosen row, then every rejected one, so that the KL completions TRL builds by
rotating completions within a batch come from other prompts, not from the same prompt's other answer."""

from __future__ import annotations

import json
from pathlib import Path

from kaizen_api.runconfig import RunDataset
from kaizen_runner.train.data import DataPlan, load_dataset


def test_neighbouring_kto_rows_hold_different_prompts(data_dir: Path) -> None:
    pairs = json.loads((data_dir / "dpo_train.json").read_text())
    location = RunDataset(uri=str(data_dir / "dpo_train.json"), format="sharegpt")
    dataset, _ = load_dataset(location, DataPlan(trainer="dpo", kto_rows=True))
    count = len(pairs)
    assert len(dataset) == 2 * count
    assert dataset["label"] == [True] * count + [False] * count
    prompts = [json.dumps(p) for p in dataset["prompt"]]
    assert prompts[:count] == prompts[count:]  # the same prompts, in the same order, in both halves
    assert len(set(prompts[:count])) == count
    # TRL's KL completion of a row is its neighbour's within each batch (here: of two rows)
    for first in range(0, len(dataset), 2):
        assert prompts[first] != prompts[first + 1], first
