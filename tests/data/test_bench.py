"""Smoke test of bench/data_ingest.py at a tiny size (the benchmark itself is not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "data_ingest.py"


def test_bench_runs_and_reports_ratios():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--size-mb", "1", "--formats", "alpaca", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert result["format"] == "alpaca" and 0.9 < result["file_mb"] < 1.2
    assert result["kaizen_usable_rows"] == result["records"] > 0
    for key in ("kaizen_mb_s", "datasets_mb_s", "speed_ratio", "memory_ratio"):
        assert result[key] > 0, key
