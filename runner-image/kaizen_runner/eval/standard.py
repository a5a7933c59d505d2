"""The standard suite: the user's Alpaca / ShareGPT / ShareGPT_Image test set (or given predictions),
scored with BLEU, ROUGE and Fuzzy Match."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen_api.evalconfig import EvalRunConfig
from kaizen_api.results import EvalTaskResult

from kaizen_runner.eval.errors import EvalError
from kaizen_runner.eval.metrics import MetricError, score_pairs
from kaizen_runner.eval.pairs import read_pairs
from kaizen_runner.eval.progress import EvalProgressReporter


@dataclass
class SuiteOutcome:
    """What a suite produced: per-task results, samples per task, and notes."""

    tasks: list[EvalTaskResult]
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    skipped_records: int = 0


@dataclass
class _Items:
    prompts: list[Any]
    references: list[str]
    images: list[list[Any]] | None
    skipped: int


def _dataset_items(cfg: EvalRunConfig) -> _Items:
    """Prompts and references through the data layer (bad records skipped and counted, as in training)."""
    from kaizen_runner.data import DataError, load_records, to_trl
    from kaizen_runner.train.connections import s3_connection
    from kaizen_runner.train.failures import classify

    assert cfg.dataset is not None
    location = cfg.dataset
    connection = s3_connection(location.connection) if location.uri.startswith("s3://") else None
    prompts: list[Any] = []
    references: list[str] = []
    images: list[list[Any]] = []
    try:
        with load_records(location.uri, location.format, connection=connection) as loaded:
            for row in to_trl(loaded.records, location.format, "eval"):
                if cfg.limit is not None and len(prompts) >= cfg.limit:
                    break
                prompts.append(row["prompt"])
                references.append(row["reference"])
                images.append(row.get("images") or [])
            skipped = loaded.report.skipped
    except DataError as err:  # as in training: an unreachable source is retried, bad records are not
        reason, message = classify(err)
        raise EvalError(reason, f"dataset {location.uri}: {message}") from err
    return _Items(prompts, references, images if any(images) else None, skipped)


def run_standard(cfg: EvalRunConfig, work_dir: Path, reporter: EvalProgressReporter) -> SuiteOutcome:
    """Generate (unless predictions are given), then score every sample."""
    if cfg.predictions is not None:
        pairs = read_pairs(cfg.predictions)[: cfg.limit]
        inputs: list[Any] = [p.input for p in pairs]
        references = [p.reference for p in pairs]
        predictions = [p.prediction for p in pairs]
        skipped = 0
        reporter.add_total(len(pairs), "standard")
        reporter.advance(len(pairs))
    else:
        from kaizen_runner.eval.generate import make_generator

        items = _dataset_items(cfg)
        generator = make_generator(cfg, work_dir)
        reporter.add_total(len(items.prompts), "standard")
        predictions = generator.generate(items.prompts, items.images, on_batch=reporter.advance)
        inputs, references, skipped = items.prompts, items.references, items.skipped
    try:
        scores = score_pairs(predictions, references, cfg.metrics, bleu_tokenize=cfg.bleu_tokenize)
    except MetricError as err:
        raise EvalError("ConfigInvalid", str(err)) from err
    samples = [
        {
            "index": i,
            "input": inputs[i],
            "reference": references[i],
            "prediction": predictions[i],
            "scores": s,
        }
        for i, s in enumerate(scores.per_sample)
    ]
    task = EvalTaskResult(task="standard", metrics=scores.aggregate, samples=len(samples))
    noun = "record" if skipped == 1 else "records"
    warnings = [f"skipped {skipped} unusable dataset {noun}"] if skipped else []
    return SuiteOutcome([task], {"standard": samples}, warnings, scores.settings, skipped)
