"""One evaluation run: check the model, run the suite, write the results, report the end."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kaizen_api.evalconfig import EvalRunConfig
from kaizen_api.results import EvalResults

from kaizen_runner.eval.errors import EvalError
from kaizen_runner.eval.models import check_model
from kaizen_runner.eval.output import write_results
from kaizen_runner.eval.progress import EvalProgressReporter
from kaizen_runner.eval.standard import SuiteOutcome, run_standard

log = logging.getLogger(__name__)


def _suite(name: str) -> Callable[[EvalRunConfig, Path, EvalProgressReporter], SuiteOutcome]:
    """The suite's runner (imported on use: lm-eval and torch load only when a suite needs them)."""
    if name == "lm-eval-harness":
        from kaizen_runner.eval.harness import run_harness

        return run_harness
    if name == "nejumi-leaderboard3":
        from kaizen_runner.eval.nejumi import run_nejumi

        return run_nejumi
    if name == "vlmevalkit":
        from kaizen_runner.eval.vlm import run_vlmevalkit

        return run_vlmevalkit
    return run_standard


def run_eval(cfg: EvalRunConfig, *, work_dir: Path) -> tuple[EvalResults, str | None]:
    """Run the evaluation; returns its results and where they were written (None without an output)."""
    check_model(cfg)
    started = datetime.now(UTC)
    reporter = EvalProgressReporter(cfg.run_name, cfg.progress)
    try:
        outcome = _suite(cfg.suite)(cfg, work_dir, reporter)
    except EvalError as err:
        reporter.report(force=True, phase="Failed", reason=err.reason, message=err.message[:4096])
        raise
    results = EvalResults(
        run_name=cfg.run_name,
        suite=cfg.suite,
        model=cfg.model.name if cfg.model else None,
        tasks=outcome.tasks,
        parameters=cfg.parameters.to_manifest(),
        metric_settings=outcome.settings or None,
        warnings=outcome.warnings,
        skipped_records=outcome.skipped_records,
        started_time=started,
        completed_time=datetime.now(UTC),
    )
    samples = outcome.samples if cfg.parameters.log_samples else {}
    uri = write_results(cfg.output, results, samples) if cfg.output is not None else None
    reporter.report(force=True, phase="Succeeded")
    return results, uri
