"""One training run, start to finish, in every process of the job: stage, build, train, publish.

Staging (`staging`) puts the base model, data and checkpoint on local disk once per node; building
(`building`) makes the TRL trainer; `publishing` saves the model and, on rank 0, publishes the
version with its manifest last and only then reports it. Checkpoints go to the output store in the
background while training continues (`checkpoints`). A restart of a run whose version is already
published (its pod died before reporting it) reports that version instead of training again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen_api.finetune_status import RunMetrics
from kaizen_api.results import TerminationMessage, VersionManifest
from kaizen_api.runconfig import TrainRunConfig

from kaizen_runner.train.building import build_trainer
from kaizen_runner.train.checkpoints import CheckpointSync
from kaizen_runner.train.distributed import current_ranks
from kaizen_runner.train.metrics import check_not_diverged, vertex_metrics
from kaizen_runner.train.progress import ProgressReporter, run_metrics, write_termination_message
from kaizen_runner.train.publishing import Published, already_published, build_report, publish, save_model
from kaizen_runner.train.staging import RunPaths, resume_point
from kaizen_runner.train.store import open_store

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced (rank 0 fills in the version)."""

    run_name: str
    global_step: int
    metrics: RunMetrics
    version_uri: str | None = None
    manifest: VersionManifest | None = None
    summary: TerminationMessage | None = None  # rank 0: what the pod's termination message says
    log_history: list[dict[str, Any]] = field(default_factory=list)
    trainer: Any = field(default=None, repr=False)  # for callers in the same process (tests, benchmarks)


def run_training(cfg: TrainRunConfig, *, work_dir: Path, packing: bool = False) -> RunResult:
    """Train, save and publish one run; every process of the job calls this."""
    started = time.time()
    paths = RunPaths(scratch=work_dir / cfg.run_name, store=open_store(cfg.output), run_name=cfg.run_name)
    published = already_published(cfg, paths)
    if published is not None:
        return _report_published(cfg, published)
    built = build_trainer(cfg, paths, packing=packing)
    trainer = built.trainer
    interval = cfg.progress.interval_seconds if cfg.progress else 0
    reporter = ProgressReporter(cfg.run_name, cfg.progress, interval_s=interval)
    trainer.add_callback(reporter)
    others = cfg.extended_hyperparameters.others
    if others.checkpoint_strategy != "no":
        trainer.add_callback(
            CheckpointSync(
                paths.checkpoints,
                others.number_of_checkpoints,
                zero_stage=cfg.hyperparameters.zero_stage,
                upload_final=others.keep_checkpoints,
            )
        )

    resume = resume_point(cfg, paths, trainer.args)
    train_output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if (
        trainer.eval_dataset is not None
        and trainer.args.eval_strategy != "no"
        and not _just_evaluated(trainer)
    ):
        trainer.evaluate()
    check_not_diverged(trainer.state.log_history)

    artifacts = save_model(trainer, cfg, paths, built.base, built.vision)
    logged = vertex_metrics(trainer.state.log_history)
    reporter.update_metrics(logged)
    result = RunResult(
        cfg.run_name,
        trainer.state.global_step,
        run_metrics(logged),
        log_history=trainer.state.log_history,
        trainer=trainer,
    )
    if not current_ranks().is_main:
        return result  # no final barrier: rank 0 may take long to publish, and torchrun waits for it
    report = build_report(
        cfg,
        trainer,
        metrics=result.metrics,
        artifacts=artifacts,
        data_reports=built.data_reports,
        assistant_only_loss=built.assistant_only_loss,
        resumed_from=resume.name if resume else None,
        train_output=train_output.metrics,
        runtime_s=time.time() - started,
    )
    result.version_uri, result.manifest, result.summary = publish(cfg, paths, report)
    reporter.report(force=True, phase="Succeeded", output_version=cfg.run_name)
    write_termination_message(result.summary)
    return result


def _report_published(cfg: TrainRunConfig, published: Published) -> RunResult:
    """A restart after the version was published: report it (rank 0) instead of training again."""
    summary = published.summary
    log.info(
        "version %s was published by an earlier attempt of this run: nothing to train", summary.output_uri
    )
    result = RunResult(
        cfg.run_name,
        summary.global_step or 0,
        summary.metrics or RunMetrics(),
        version_uri=published.uri,
        manifest=published.manifest,
    )
    if not current_ranks().is_main:
        return result
    result.summary = summary
    reporter = ProgressReporter(cfg.run_name, cfg.progress, interval_s=0)
    reporter.step = reporter.total_steps = result.global_step
    reporter.epoch = published.epoch
    reporter.update_metrics(result.metrics.model_dump(exclude_none=True))
    reporter.report(force=True, phase="Succeeded", output_version=cfg.run_name)
    write_termination_message(summary)
    return result


def _just_evaluated(trainer: Any) -> bool:
    """True when the last log entry at the final step already holds eval metrics."""
    step = trainer.state.global_step
    return any("eval_loss" in e and e.get("step") == step for e in trainer.state.log_history)
