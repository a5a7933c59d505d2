"""Smoke test of bench/operator_scale.py at a tiny size (the benchmark itself is not a test): every
figure is reported and every pipeline got its workload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
BENCH = Path(__file__).resolve().parents[2] / "bench" / "operator_scale.py"


def test_bench_reports_every_figure(control_plane, tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--pipelines", "20", "--rate", "20", "--idle-seconds", "5"]
        + ["--kubeconfig", str(control_plane.kubeconfig), "--json", str(summary_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(summary_path.read_text())
    assert (summary["pipelines"], summary["rate_per_s"]) == (20, 20)
    figures = ("ratio_p50", "ratio_p90", "ratio_p99", "ratio_under_load_p99", "operator_peak_rss_mb")
    for key in (*figures, "operator_idle_cpu_percent"):
        assert summary[key] >= 0, key
    assert summary["operator_create_to_workload_s"]["p50"] > 0
    for floor in ("one_write_controller", "required_writes_controller"):
        assert summary[f"{floor}_create_to_workload_s"]["p50"] > 0
        assert summary[f"{floor}_ratio_p99"] > 0
    assert summary["apiserver_gogc"] > 0
    load = summary["apiserver_load"]
    assert set(load) == {"bare", "one_write_controller", "required_writes_controller", "operator"}
    for phase in load.values():
        assert phase["cpu_ms_per_create"] > 0 and phase["gc_cycles"] >= 0
