"""Base models: where their files come from, how they load, and which of their layers LoRA adapts.

A base model is a local folder (a PVC mount or a catalog mirror on a volume), an `s3://` prefix
(a catalog mirror or a PrivateModel version, verified against its manifest) or `hf://org/name`
(a hub id, read from the local cache when HF_HUB_OFFLINE is set).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import Any

from kaizen_api.finetune import LoraParameters, RuntimeParameters
from kaizen_api.runconfig import RunLocation

from kaizen_runner.train.errors import RunnerError, missing_package
from kaizen_runner.train.hub import hub_snapshot
from kaizen_runner.train.output import MANIFEST, is_version_complete, verify_local_version
from kaizen_runner.train.store import open_store

log = logging.getLogger(__name__)

_READY = ".kaizen-download-complete"


def resolve_base_model(location: RunLocation, cache_dir: Path) -> Path:
    """A local folder with the base model's config, weights and tokenizer."""
    uri = location.uri
    if uri.startswith("s3://"):
        return _from_s3(location, cache_dir)
    if uri.startswith("hf://"):
        return _from_hub(uri.removeprefix("hf://"))
    if uri.startswith(("http://", "https://")):
        raise RunnerError(
            f"base model {uri}: http(s) is not a model source; use s3://, hf:// or a folder",
            reason="ModelInvalid",
        )
    path = Path(uri.removeprefix("file://"))
    if not path.is_dir():
        raise RunnerError(f"base model folder {path} does not exist", reason="ModelInvalid")
    return _model_folder(path, uri)


# What a model folder needs: config, tokenizer, chat template and safetensors weights. Hub repos often
# also hold the same weights as .bin/.pth and the original checkpoint under original/ (Llama 3: +16 GB).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja", "*.py"]
# Only for repos without safetensors weights.
HUB_LEGACY_WEIGHTS = ["*.json", "*.bin", "*.model", "*.tiktoken", "*.txt", "*.jinja", "*.py"]
HUB_IGNORED = ["original/*", "*/original/*"]


def _from_hub(repo_id: str) -> Path:
    folder = hub_snapshot(repo_id, HUB_PATTERNS, what="base model", ignore_patterns=HUB_IGNORED)
    if not any(folder.glob("*.safetensors")):
        folder = hub_snapshot(repo_id, HUB_LEGACY_WEIGHTS, what="base model", ignore_patterns=HUB_IGNORED)
    return folder


def _from_s3(location: RunLocation, cache_dir: Path) -> Path:
    """Download once per node (a marker file says the copy is whole); a model version must be complete."""
    store = open_store(location)
    target = cache_dir / "base-model"
    if not (target / _READY).is_file():
        is_version = store.get_bytes(MANIFEST) is not None
        if is_version and not is_version_complete(store):
            raise RunnerError(
                f"base model {location.uri} is an incomplete model version (files missing)",
                reason="ModelInvalid",
            )
        store.download("", target)
        if is_version and (problems := verify_local_version(target)):
            raise RunnerError(
                f"base model {location.uri} failed verification: {'; '.join(problems[:3])}",
                reason="ModelInvalid",
            )
        (target / _READY).write_text(location.uri)
    return _model_folder(target, location.uri)


def _model_folder(path: Path, uri: str) -> Path:
    """The folder holding config.json: the root, or a model version's `model/` (full or merged weights)."""
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file():
            return candidate
    if (path / "adapter" / "adapter_config.json").is_file():
        raise RunnerError(
            f"base model {uri} is a LoRA adapter without merged weights; fine-tune from a version saved with "
            "mergeAdapter, or from its base model",
            reason="ModelInvalid",
        )
    raise RunnerError(
        f"base model {uri} has no config.json (not a Hugging Face model folder)", reason="ModelInvalid"
    )


def is_vision_language(path: Path) -> bool:
    """A VLM has a vision tower in its config (LLaVA, Qwen2-VL, Mllama, …)."""
    config = json.loads((path / "config.json").read_text())
    return "vision_config" in config


def load_processing_class(path: Path, vision: bool) -> Any:
    """The tokenizer (text) or processor (VLM), with a pad token set."""
    from transformers import AutoProcessor, AutoTokenizer

    processing = AutoProcessor.from_pretrained(path) if vision else AutoTokenizer.from_pretrained(path)
    tokenizer = getattr(processing, "tokenizer", processing)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processing


def _require(module: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise missing_package(module, purpose)


def check_optional_packages(runtime: RuntimeParameters) -> None:
    """Settings that need packages the image may lack fail here, naming the setting, before any work."""
    if runtime.quantization_bit is not None:
        _require("bitsandbytes", f"{runtime.quantization_bit}-bit QLoRA")
    if runtime.flash_attention_v2:
        _require("flash_attn", "FlashAttention-2 kernels")
    if runtime.liger_kernel:
        _require("liger_kernel", "Liger Triton kernels")


def quantization_config(bits: int | None, compute_dtype: Any) -> Any:
    """bitsandbytes settings for QLoRA (4-bit NF4 with double quantisation, or 8-bit); None without."""
    if bits is None:
        return None
    _require("bitsandbytes", f"{bits}-bit QLoRA")
    from transformers import BitsAndBytesConfig

    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def weights_dtype(mixed_precision: str, lora: bool) -> Any:
    """Full fine-tuning keeps fp32 master weights (under autocast); a frozen LoRA base can be 16-bit."""
    import torch

    if lora and mixed_precision == "bf16":
        return torch.bfloat16
    if lora and mixed_precision == "fp16":
        return torch.float16
    return torch.float32


def load_model(
    path: Path,
    *,
    vision: bool,
    dtype: Any,
    quantization_bit: int | None = None,
    flash_attention: bool = False,
    gradient_checkpointing: bool = True,
) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": "flash_attention_2" if flash_attention else "sdpa",
        "trust_remote_code": False,
    }
    quant = quantization_config(quantization_bit, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    model = auto.from_pretrained(path, **kwargs)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        # The trainer turns checkpointing on or off per disableGradientCheckpointing; PEFT must not force it.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return model


def lora_targets(model: Any, requested: list[str] | None, vision: bool) -> tuple[Any, list[str] | None]:
    """`target_modules` and `target_parameters` for PEFT.

    Default: every linear layer of the language model. On a VLM PEFT's "all-linear" would also adapt
    the vision tower and projector, so the language model's linear layers are named by regex. MoE
    experts in transformers 5 are 3-D parameters, not Linear modules, so they are added as target
    parameters.
    """
    import torch

    experts = sorted(
        {
            "experts." + name.rsplit(".experts.", 1)[1]
            for name, param in model.named_parameters()
            if ".experts." in name and param.ndim == 3
        }
    )
    target_parameters = experts or None
    if requested:
        return list(requested), target_parameters
    if not vision:
        return "all-linear", target_parameters
    leaves = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and "language_model." in name
        }
    )
    if not leaves:
        raise RunnerError("found no linear layers in the model's language_model; set lora.targetModules")
    return _language_model_regex(leaves), target_parameters


def _language_model_regex(leaves: list[str]) -> str:
    return rf".*language_model\..*\.({'|'.join(map(re.escape, leaves))})"


def lora_config(params: LoraParameters, model: Any, vision: bool) -> Any:
    targets, target_parameters = lora_targets(model, params.target_modules, vision)
    if params.lora_dropout:
        targets, target_parameters = _modules_only(
            _lora_config(params, targets, target_parameters), model, vision
        )
    return _lora_config(params, targets, target_parameters)


def _lora_config(params: LoraParameters, targets: Any, target_parameters: list[str] | None) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=params.lora_rank,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=targets,
        target_parameters=target_parameters,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _modules_only(config: Any, model: Any, vision: bool) -> tuple[Any, None]:
    """Targets without any that PEFT adapts as a parameter, for a LoRA with dropout.

    PEFT's ParamWrapper refuses any lora_dropout (there is no per-module dropout), and parameters are
    what PEFT adapts on MoE models: our 3-D expert targets, and what its transformers-5 conversion makes
    of module names (under "all-linear", the router and every expert) — probed here on a copy, so the
    names left are those PEFT keeps as modules. The run then trains fewer weights than by default, so it
    says so; loraDropout 0 adapts them all.
    """
    from peft.utils.transformers_weight_conversion import convert_peft_config_for_transformers

    probe = copy.deepcopy(config)
    convert_peft_config_for_transformers(probe, model, None)
    parameters = sorted(probe.target_parameters or [])
    if not parameters:
        return config.target_modules, None
    kept = probe.target_modules  # unconverted: still "all-linear" or the regex; else the leaf names left
    if not kept:
        raise RunnerError(
            "lora.targetModules name only MoE experts or routers, which PEFT cannot adapt with dropout; "
            "set lora.loraDropout to 0"
        )
    targets: str | list[str]
    if isinstance(kept, str):
        targets, described = kept, ("the linear layers" if kept == "all-linear" else kept)
    else:
        leaves = sorted(kept)
        targets, described = (_language_model_regex(leaves) if vision else leaves), ", ".join(leaves)
    log.warning(
        "LoRA adapts %s only, leaving the MoE experts and routers (%s) unadapted: PEFT adapts those as "
        "parameters and cannot apply loraDropout %s to them; set lora.loraDropout to 0 to adapt them too",
        described,
        ", ".join(parameters),
        config.lora_dropout,
    )
    return targets, None
