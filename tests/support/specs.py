"""Specs the cluster tests' objects start from, with no imports: the bench (bench/operator_scale.py)
builds its pipelines from them too."""

from __future__ import annotations

from typing import Any

# One GPU, Alpaca data and the output model in S3 through the `datahub` connection Secret, output
# PrivateModel `out`. Copy it before changing it.
S3_SFT_SPEC: dict[str, Any] = {
    "trainer": "sft",
    "baseModel": {"catalog": "Qwen2.5-0.5B-Instruct"},
    "dataset": {
        "format": "alpaca",
        "s3": {"connection": {"name": "datahub"}, "bucket": "data", "key": "a.json"},
    },
    "output": {"privateModel": "out"},
    "resources": {"gpusPerNode": 1},
}
