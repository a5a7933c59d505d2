"""The model under evaluation: is it one the suite may evaluate, where its files are, and loading it.

SPEC §4: an evaluated model is an LLM or VLM of known size and instruction-tuned. The facts come from
the catalog entry or registry version (the operator copies them into the run configuration); this
module refuses a model that lacks them before anything is downloaded. lm-evaluation-harness also
scores base models (its loglikelihood tasks need no chat), so only the suites that prompt the model
through its chat template require instruction tuning there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizen_api.evalconfig import EvalRunConfig, EvalRunModel
from kaizen_api.runconfig import RunLocation

from kaizen_runner.eval.errors import EvalError

log = logging.getLogger(__name__)

CHAT_SUITES = ("standard", "nejumi-leaderboard3", "vlmevalkit")


def check_model(cfg: EvalRunConfig) -> None:
    """Refuse a model the suite cannot evaluate, naming what is missing."""
    model = cfg.model
    if model is None:
        return
    name = model.name
    if model.modality is None:
        raise EvalError(
            "ModelInvalid",
            f"model {name}: its modality is unknown; only LLMs (text) and VLMs (vision-language) are "
            "evaluated, so the catalog entry or model version must say which",
        )
    if model.parameters is None and model.endpoint is None:
        raise EvalError(
            "ModelInvalid",
            f"model {name}: its size (parameter count) is unknown; evaluation needs a model of "
            "known size (set it in the catalog entry, or evaluate a registry version that records it)",
        )
    if cfg.suite in CHAT_SUITES and model.instruction_tuned is not True:
        state = (
            "is a base model" if model.instruction_tuned is False else "is not known to be instruction-tuned"
        )
        raise EvalError(
            "ModelInvalid",
            f"model {name} {state}; suite {cfg.suite} prompts the model through its chat template, so it "
            "needs an instruction-tuned model",
        )
    vision_needed = cfg.suite == "vlmevalkit" or (
        cfg.dataset is not None and cfg.dataset.format == "sharegpt_image"
    )
    if vision_needed and model.modality != "vision-language":
        what = "suite vlmevalkit" if cfg.suite == "vlmevalkit" else "sharegpt_image data"
        raise EvalError("ModelInvalid", f"model {name} is a text model; {what} needs a vision-language model")


@dataclass
class LocalModel:
    """A model loaded in this process, with its tokenizer or processor."""

    model: Any
    processing: Any
    vision: bool
    path: Path
    adapter: Path | None

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processing, "tokenizer", self.processing)


def stage_model(model: EvalRunModel, work_dir: Path) -> tuple[Path, Path | None]:
    """Local folders of the model (or base model) and of its adapter."""
    from kaizen_runner.train.errors import RunnerError
    from kaizen_runner.train.models import resolve_base_model

    assert model.location is not None
    try:
        path = resolve_base_model(model.location, work_dir / "model")
        adapter = _stage_adapter(model.adapter, work_dir / "adapter") if model.adapter else None
    except RunnerError as err:
        raise EvalError("ModelInvalid", f"model {model.name}: {err}") from err
    return path, adapter


def _stage_adapter(location: RunLocation, target: Path) -> Path:
    """A LoRA adapter folder (adapter_config.json): local, or downloaded from s3://; a model version's
    `adapter/` sub-folder is found as well."""
    from kaizen_runner.train.store import open_store

    if location.uri.startswith("s3://"):
        if not (target / "adapter_config.json").is_file() and not (target / "adapter").is_dir():
            open_store(location).download("", target)
        root = target
    else:
        root = Path(location.uri.removeprefix("file://"))
    for candidate in (root, root / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise EvalError("ModelInvalid", f"adapter {location.uri} has no adapter_config.json (not a PEFT adapter)")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_local_model(path: Path, adapter: Path | None, device: str) -> LocalModel:
    """The model in eval mode on `device` (bf16 on GPU, fp32 on CPU), the adapter applied on top."""
    import torch

    from kaizen_runner.train.models import is_vision_language, load_model, load_processing_class

    vision = is_vision_language(path)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        processing = load_processing_class(path, vision)
        model = load_model(path, vision=vision, dtype=dtype)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
    except (OSError, ValueError) as err:
        raise EvalError("ModelInvalid", f"cannot load model {path}: {err}") from err
    model.to(device).eval()
    return LocalModel(model, processing, vision, path, adapter)
