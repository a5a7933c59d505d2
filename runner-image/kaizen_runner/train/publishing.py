"""After training: the model saved in the base's dtype, the run report, and the version published.

Every rank takes part in saving (ZeRO-3 gathers its partitioned weights); everything after that is
rank 0's alone, and no rank waits for it: torchrun waits for all workers anyway, so a long merge or
upload holds no barrier that a collective timeout could break.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizen_api.finetune_status import RunMetrics
from kaizen_api.results import BaseModelInfo, RunReport, TerminationMessage, VersionManifest
from kaizen_api.runconfig import TrainRunConfig
from pydantic import ValidationError

from kaizen_runner.train.distributed import barrier, current_ranks
from kaizen_runner.train.output import (
    LOSS_CURVE,
    REPORT,
    complete_manifest,
    plot_loss_curve,
    publish_version,
    published_version,
)
from kaizen_runner.train.staging import RunPaths
from kaizen_runner.train.store import Store
from kaizen_runner.train.weights import cast_saved_weights, output_dtype

log = logging.getLogger(__name__)


def save_model(
    trainer: Any, cfg: TrainRunConfig, paths: RunPaths, base: Path, vision: bool
) -> dict[str, str]:
    """Adapter and/or full weights with the tokenizer, in the base's dtype; returns the artifacts (rank 0)."""
    lora = cfg.hyperparameters.finetuning_type == "lora"
    folder = paths.version_dir / ("adapter" if lora else "model")
    trainer.save_model(str(folder))
    barrier()  # ZeRO-3's gathered weights are written: the folder is whole
    if not current_ranks().is_main:
        return {}
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; the report holds the settings as JSON
    dtype = output_dtype(base, cfg.extended_hyperparameters.runtime.mixed_precision)
    if not lora:
        cast_saved_weights(folder, dtype)  # fp32 master weights, published as the base was
        return {"model": "model"}
    _point_adapter_at(folder, cfg.base_model.uri)
    if not cfg.extended_hyperparameters.lora.merge_adapter:
        return {"adapter": "adapter"}
    with _zero3_init_off(trainer.args):
        merge(folder, base, paths.version_dir / "model", vision, trainer.processing_class, dtype)
    return {"adapter": "adapter", "model": "model"}


def _point_adapter_at(folder: Path, base_uri: str) -> None:
    """The adapter names its base by the run's URI, not by this pod's scratch path."""
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_uri
    config_path.write_text(json.dumps(config, indent=2))


@contextmanager
def _zero3_init_off(args: Any) -> Iterator[None]:
    """Transformers' global DeepSpeed config switched off for rank 0's merge: under ZeRO-3 it would load
    the base through `zero.Init`, which broadcasts every weight to ranks that have already returned.
    Restored afterwards, so the trainer's ZeRO-3 state is as it was."""
    from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if getattr(args, "hf_deepspeed_config", None) is not None:
            set_hf_deepspeed_config(args.hf_deepspeed_config)


def merge(adapter: Path, base: Path, target: Path, vision: bool, processing: Any, dtype: Any) -> None:
    """Base weights (unquantised, in `dtype`: half of fp32's memory) + adapter → a plain model that
    loads without PEFT."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    model = auto.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload(progressbar=False)
    merged.save_pretrained(str(target))
    processing.save_pretrained(str(target))


def library_versions() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers
    import trl

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }


def write_version_files(
    cfg: TrainRunConfig, paths: RunPaths, log_history: list[dict[str, Any]], report: RunReport
) -> None:
    folder = paths.version_dir
    if paths.logs_dir.is_dir():
        shutil.copytree(paths.logs_dir, folder / "logs", dirs_exist_ok=True)
    plot_loss_curve(log_history, folder / LOSS_CURVE, cfg.run_name)
    (folder / REPORT).write_text(report.model_dump_json(by_alias=True, exclude_none=True, indent=2))


def build_report(
    cfg: TrainRunConfig,
    trainer: Any,
    *,
    metrics: RunMetrics,
    artifacts: dict[str, str],
    data_reports: dict[str, Any],
    assistant_only_loss: bool,
    resumed_from: str | None,
    train_output: dict[str, Any],
    runtime_s: float,
) -> RunReport:
    return RunReport(
        run_name=cfg.run_name,
        trainer=cfg.trainer,
        base_model=BaseModelInfo(name=cfg.base_model_name, uri=cfg.base_model.uri),
        config=cfg.model_dump(by_alias=True, mode="json"),
        resumed_from=resumed_from,
        world_size=current_ranks().world_size,
        global_step=trainer.state.global_step,
        epoch=trainer.state.epoch,
        train_runtime_seconds=round(runtime_s, 3),
        train_output={k: float(v) for k, v in train_output.items() if isinstance(v, int | float)},
        metrics=metrics,
        artifacts=artifacts,
        data_reports=data_reports,
        assistant_only_loss=assistant_only_loss,
        library_versions=library_versions(),
        log_history=trainer.state.log_history,
    )


def publish(
    cfg: TrainRunConfig, paths: RunPaths, report: RunReport
) -> tuple[str, VersionManifest, TerminationMessage]:
    """Report written, version uploaded with its manifest last; then the run's checkpoints go."""
    write_version_files(cfg, paths, report.log_history, report)
    version_store = paths.store.child(cfg.run_name)
    manifest = publish_version(
        paths.version_dir,
        version_store,
        VersionManifest(
            version=cfg.run_name,
            base_model=cfg.base_model_name,
            base_model_uri=cfg.base_model.uri,
            trainer=cfg.trainer,
            finetuning_type=cfg.hyperparameters.finetuning_type,
            artifacts=report.artifacts,
            metrics=report.metrics,
        ),
    )
    _remove_checkpoints(cfg, paths)
    return version_store.uri, manifest, _summary(cfg, version_store.uri, report)


@dataclass(frozen=True)
class Published:
    """A version an earlier attempt of this run published: where, its manifest, what to report."""

    uri: str
    manifest: VersionManifest
    summary: TerminationMessage
    epoch: float = 0.0


def already_published(cfg: TrainRunConfig, paths: RunPaths) -> Published | None:
    """The version an earlier attempt of this run published before its pod died unreported, else None.

    Its checkpoints are gone by then, so training again would start from step 0, and its result would
    be thrown away (the published version wins). Every rank looks, so that all of them skip training
    together; rank 0 finishes that attempt's clean-up. The summary's metrics come from the published
    training report, else from the manifest."""
    version_store = paths.store.child(cfg.run_name)
    main = current_ranks().is_main
    manifest = published_version(version_store) if main else complete_manifest(version_store)
    if manifest is None:
        return None
    if main:
        _remove_checkpoints(cfg, paths)
    report = _stored_report(version_store)
    summary = _summary(cfg, version_store.uri, report)
    if report is None:
        return Published(
            version_store.uri, manifest, summary.model_copy(update={"metrics": manifest.metrics})
        )
    return Published(version_store.uri, manifest, summary, report.epoch or 0.0)


def _stored_report(version_store: Store) -> RunReport | None:
    raw = version_store.get_bytes(REPORT)
    try:
        return RunReport.model_validate_json(raw) if raw is not None else None
    except ValidationError:
        log.warning("the published %s cannot be read; reporting the manifest's metrics", REPORT)
        return None


def _remove_checkpoints(cfg: TrainRunConfig, paths: RunPaths) -> None:
    """A succeeded run never resumes: its checkpoints go, unless the user keeps them."""
    if not cfg.extended_hyperparameters.others.keep_checkpoints:
        paths.checkpoints.delete("")
        log.info("removed the run's checkpoints from %s", paths.checkpoints.uri)


def _summary(cfg: TrainRunConfig, uri: str, report: RunReport | None) -> TerminationMessage:
    return TerminationMessage(
        run_name=cfg.run_name,
        phase="Succeeded",
        output_version=cfg.run_name,
        output_uri=uri,
        global_step=report.global_step if report else None,
        metrics=report.metrics if report else None,
        train_runtime_seconds=report.train_runtime_seconds if report else None,
    )
