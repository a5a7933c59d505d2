"""Smoke test of bench/train_throughput.py at a tiny size (the benchmark itself is not a test).

It checks that both sides train on the same records and that every ratio is reported, so the
benchmark keeps working as the runner changes; the ratios' values are the benchmark's business.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"


@pytest.mark.slow
def test_bench_runs_both_sides_on_the_same_records(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--records", "8", "--max-length", "128", "--repeat", "1"]
        + ["--json", str(summary_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(summary_path.read_text())
    runs = summary["runs"]
    assert set(runs) == {"runner_unpacked", "trl_unpacked", "runner_packed", "trl_packed"}
    assert {run["records"] for run in runs.values()} == {runs["trl_unpacked"]["records"]}
    assert runs["trl_unpacked"]["records"] > 0
    # Same data and batch size without packing: the same number of optimizer steps on both sides.
    assert runs["runner_unpacked"]["steps"] == runs["trl_unpacked"]["steps"]
    for key in (
        "runner_vs_trl_unpacked",
        "runner_vs_trl_packed",
        "runner_packed_vs_unpacked",
        "trl_packed_vs_unpacked",
    ):
        assert summary[key] > 0, key
