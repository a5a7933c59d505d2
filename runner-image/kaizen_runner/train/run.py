"""One training run, start to finish, in every process of the job.

Order matters: the base model is staged before the trainer arguments exist (they need to know
whether it is a VLM and how its chat template behaves); the arguments set up the process group;
ZeRO-3 needs DeepSpeed's own init before the model is built; checkpoints resume from the output
store; the version is published by rank 0 with its manifest last, and only then reported.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaizen_api.finetune import RunMetrics
from kaizen_api.results import BaseModelInfo, RunReport, TerminationMessage, VersionManifest
from kaizen_api.runconfig import TrainRunConfig

from kaizen_runner.train.checkpoints import CheckpointSync, resolve_resume
from kaizen_runner.train.config import RunFacts, preference_family, trainer_args
from kaizen_runner.train.data import DataPlan, load_dataset
from kaizen_runner.train.deepspeed import deepspeed_config
from kaizen_runner.train.distributed import barrier, current_ranks, wait_for_local_main
from kaizen_runner.train.metrics import vertex_metrics, with_vertex_metrics
from kaizen_runner.train.models import (
    check_optional_packages,
    is_vision_language,
    load_model,
    load_processing_class,
    lora_config,
    resolve_base_model,
    weights_dtype,
)
from kaizen_runner.train.output import LOSS_CURVE, REPORT, plot_loss_curve, publish_version
from kaizen_runner.train.progress import ProgressReporter, run_metrics, write_termination_message
from kaizen_runner.train.store import Store, open_store
from kaizen_runner.train.templates import ensure_chat_template, supports_assistant_only_loss

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


@dataclass(frozen=True)
class BuiltTrainer:
    """A ready trainer and what was learned while building it."""

    trainer: Any
    base: Path
    vision: bool
    assistant_only_loss: bool
    data_reports: dict[str, Any]


@dataclass(frozen=True)
class RunPaths:
    """Local scratch of one run, and its places in the output store."""

    scratch: Path
    store: Store

    @property
    def trainer_dir(self) -> Path:
        return self.scratch / "trainer"

    @property
    def version_dir(self) -> Path:
        return self.scratch / "version"

    @property
    def logs_dir(self) -> Path:
        return self.scratch / "logs"


def _trainer_class(cfg: TrainRunConfig) -> tuple[type, type]:
    """(TRL config class, trainer class) for the trainer and, for DPO, the preference loss."""
    if cfg.trainer != "dpo":
        from trl import SFTConfig, SFTTrainer

        return SFTConfig, SFTTrainer
    family = preference_family(cfg.extended_hyperparameters.dpo)
    if family == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    if family == "cpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    if family == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    from trl import DPOConfig, DPOTrainer

    return DPOConfig, DPOTrainer


def _use_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def _stage_base_model(cfg: TrainRunConfig, paths: RunPaths) -> Path:
    """Each node's local rank 0 stages the base model; the node's other ranks wait for it."""
    cache = paths.scratch / "cache"
    marker = cache / "base-model.path"
    if current_ranks().is_local_main:
        cache.mkdir(parents=True, exist_ok=True)
        path = resolve_base_model(cfg.base_model, cache)
        marker.write_text(str(path))
        return path
    wait_for_local_main(marker)
    return Path(marker.read_text())


def _resume_point(cfg: TrainRunConfig, paths: RunPaths, args: Any) -> Path | None:
    """The checkpoint to resume from, fetched by each node's local rank 0 before its other ranks look."""
    setting = cfg.extended_hyperparameters.runtime.resume_from_checkpoint
    store = paths.store.child("checkpoints", cfg.run_name)
    with args.main_process_first(local=True, desc="fetch checkpoint"):
        return resolve_resume(
            setting,
            store,
            paths.trainer_dir,
            fetch=current_ranks().is_local_main,
            connection=cfg.output.connection,
        )


def _init_deepspeed_comm(use_cpu: bool) -> None:
    """ZeRO-3 partitions weights while they load, so DeepSpeed's process group must exist first."""
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo" if use_cpu else "nccl")


def _build_trainer(cfg: TrainRunConfig, paths: RunPaths, *, packing: bool) -> BuiltTrainer:
    hp = cfg.hyperparameters
    ext = cfg.extended_hyperparameters
    lora = hp.finetuning_type == "lora"
    use_cpu = _use_cpu()
    dtype = weights_dtype(ext.runtime.mixed_precision, lora)
    check_optional_packages(ext.runtime)  # before any download: a missing package is a config error

    base = _stage_base_model(cfg, paths)
    vision = is_vision_language(base)
    if packing and cfg.trainer == "sft" and not vision and not ext.runtime.flash_attention_v2:
        log.warning(
            "packing without flashAttentionV2: each packed batch becomes one long row whose attention "
            "costs more than the separate sequences did (see docs/training.md, Throughput)"
        )
    processing = load_processing_class(base, vision)
    ensure_chat_template(processing)
    kto = cfg.trainer == "dpo" and preference_family(ext.dpo) == "kto"
    conversation_rows = cfg.trainer != "sft" or supports_assistant_only_loss(processing)
    chat_sft = cfg.trainer == "sft" and cfg.dataset.format != "alpaca"

    config_cls, trainer_cls = _trainer_class(cfg)
    facts = RunFacts(
        output_dir=str(paths.trainer_dir),
        has_eval=cfg.validation_dataset is not None,
        use_cpu=use_cpu,
        deepspeed=deepspeed_config(hp.zero_stage) if hp.zero_stage else None,
        is_vision=vision,
        assistant_only_loss=chat_sft and conversation_rows,
        packing=packing,
    )
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(paths.logs_dir)
    args = config_cls(**trainer_args(cfg, facts))
    if facts.deepspeed is not None:
        _init_deepspeed_comm(use_cpu)

    plan = DataPlan(trainer=cfg.trainer, conversation_rows=conversation_rows, kto_rows=kto)
    with args.main_process_first(local=True, desc="prepare data"):
        train_data, train_report = load_dataset(cfg.dataset, plan)
        eval_data, eval_report = (
            load_dataset(cfg.validation_dataset, plan) if cfg.validation_dataset else (None, None)
        )
    reports = {"train": train_report, **({"validation": eval_report} if eval_report else {})}

    model = load_model(
        base,
        vision=vision,
        dtype=dtype,
        quantization_bit=ext.runtime.quantization_bit,
        flash_attention=ext.runtime.flash_attention_v2,
    )
    trainer = with_vertex_metrics(trainer_cls)(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=processing,
        peft_config=lora_config(ext.lora, model, vision) if lora else None,
    )
    return BuiltTrainer(trainer, base, vision, facts.assistant_only_loss, reports)


def _save_model(
    trainer: Any, cfg: TrainRunConfig, paths: RunPaths, base: Path, vision: bool
) -> dict[str, str]:
    """Adapter and/or full weights with the tokenizer; every rank takes part (ZeRO-3 gathers weights)."""
    lora = cfg.hyperparameters.finetuning_type == "lora"
    folder = paths.version_dir / ("adapter" if lora else "model")
    trainer.save_model(str(folder))
    barrier()
    if not current_ranks().is_main:
        return {}
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; the report holds the settings as JSON
    if not lora:
        return {"model": "model"}
    _point_adapter_at(folder, cfg.base_model.uri)
    if not cfg.extended_hyperparameters.lora.merge_adapter:
        return {"adapter": "adapter"}
    _merge(folder, base, paths.version_dir / "model", vision, trainer.processing_class)
    return {"adapter": "adapter", "model": "model"}


def _point_adapter_at(folder: Path, base_uri: str) -> None:
    """The adapter names its base by the run's URI, not by this pod's scratch path."""
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_uri
    config_path.write_text(json.dumps(config, indent=2))


def _merge(adapter: Path, base: Path, target: Path, vision: bool, processing: Any) -> None:
    """Base weights (unquantised, 32-bit) + adapter → a plain model that loads without PEFT."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    model = auto.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload(progressbar=False)
    merged.save_pretrained(str(target))
    processing.save_pretrained(str(target))


def _library_versions() -> dict[str, str]:
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


def _write_version_files(cfg: TrainRunConfig, paths: RunPaths, trainer: Any, report: RunReport) -> None:
    folder = paths.version_dir
    if paths.logs_dir.is_dir():
        shutil.copytree(paths.logs_dir, folder / "logs", dirs_exist_ok=True)
    plot_loss_curve(trainer.state.log_history, folder / LOSS_CURVE, cfg.run_name)
    (folder / REPORT).write_text(report.model_dump_json(by_alias=True, exclude_none=True, indent=2))


def run_training(cfg: TrainRunConfig, *, work_dir: Path, packing: bool = False) -> RunResult:
    """Train, save and publish one run; every process of the job calls this."""
    started = time.time()
    ranks = current_ranks()
    paths = RunPaths(scratch=work_dir / cfg.run_name, store=open_store(cfg.output))
    built = _build_trainer(cfg, paths, packing=packing)
    trainer = built.trainer
    interval = float(os.environ.get("KAIZEN_PROGRESS_INTERVAL_S", "15"))
    reporter = ProgressReporter(cfg.run_name, cfg.progress, interval_s=interval)
    trainer.add_callback(reporter)
    others = cfg.extended_hyperparameters.others
    if others.checkpoint_strategy != "no":
        trainer.add_callback(
            CheckpointSync(paths.store.child("checkpoints", cfg.run_name), others.number_of_checkpoints)
        )

    resume = _resume_point(cfg, paths, trainer.args)
    train_output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if (
        trainer.eval_dataset is not None
        and trainer.args.eval_strategy != "no"
        and not _just_evaluated(trainer)
    ):
        trainer.evaluate()

    artifacts = _save_model(trainer, cfg, paths, built.base, built.vision)
    logged = vertex_metrics(trainer.state.log_history)
    reporter.update_metrics(logged)
    metrics = run_metrics(logged)
    result = RunResult(
        cfg.run_name,
        trainer.state.global_step,
        metrics,
        log_history=trainer.state.log_history,
        trainer=trainer,
    )
    if ranks.is_main:
        report = RunReport(
            run_name=cfg.run_name,
            trainer=cfg.trainer,
            base_model=BaseModelInfo(name=cfg.base_model_name, uri=cfg.base_model.uri),
            config=cfg.model_dump(by_alias=True, mode="json"),
            resumed_from=resume.name if resume else None,
            world_size=ranks.world_size,
            global_step=trainer.state.global_step,
            epoch=trainer.state.epoch,
            train_runtime_seconds=round(time.time() - started, 3),
            train_output={k: float(v) for k, v in train_output.metrics.items() if isinstance(v, int | float)},
            metrics=metrics,
            artifacts=artifacts,
            data_reports=built.data_reports,
            assistant_only_loss=built.assistant_only_loss,
            library_versions=_library_versions(),
            log_history=trainer.state.log_history,
        )
        _write_version_files(cfg, paths, trainer, report)
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
                artifacts=artifacts,
                metrics=report.metrics,
            ),
        )
        result.version_uri, result.manifest = version_store.uri, manifest
        reporter.report(force=True, phase="Succeeded", output_version=cfg.run_name)
        result.summary = TerminationMessage(
            run_name=cfg.run_name,
            phase="Succeeded",
            output_version=cfg.run_name,
            output_uri=version_store.uri,
            global_step=trainer.state.global_step,
            metrics=report.metrics,
            train_runtime_seconds=report.train_runtime_seconds,
        )
        write_termination_message(result.summary)
    barrier()
    return result


def _just_evaluated(trainer: Any) -> bool:
    """True when the last log entry at the final step already holds eval metrics."""
    step = trainer.state.global_step
    return any("eval_loss" in e and e.get("step") == step for e in trainer.state.log_history)
