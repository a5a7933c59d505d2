"""Smoke test of bench/crd_write_cost.py at a tiny size (the benchmark itself is not a test): every
kind of write is measured, the pipeline's status patch is the one the API server admits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
BENCH = Path(__file__).resolve().parents[2] / "bench" / "crd_write_cost.py"


def test_bench_reports_every_kind(control_plane, tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--writes", "20"]
        + ["--kubeconfig", str(control_plane.kubeconfig), "--json", str(summary_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]  # a status the API server refused fails the bench
    summary = json.loads(summary_path.read_text())
    kinds = summary["kinds"]
    assert set(kinds) == {"configmap_create", "job_create", "pipeline_create", "pipeline_status_patch"}
    for figures in kinds.values():
        assert figures["cpu_ms"] >= 0 and figures["alloc_mb"] > 0
    assert kinds["configmap_create"]["alloc_ratio_to_configmap"] == 1
