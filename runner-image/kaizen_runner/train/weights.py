"""The dtype a run publishes and builds its frozen copies in, and casting saved weights to it.

Training keeps fp32 master weights under autocast (full fine-tuning) or a 16-bit frozen base (LoRA),
but what it publishes should weigh what the base weighed: a bf16 Llama fine-tuned in bf16 comes out
bf16, not twice its size in fp32. Saved weights are cast one safetensors shard at a time, so the
memory needed is one shard, never the whole model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_NAMES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "float32": "float32",
}


def config_dtype(model_dir: Path) -> str | None:
    """The dtype the base model's config.json declares (its text config's for a VLM), if any."""
    path = model_dir / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    for section in (config, config.get("text_config") or {}):
        declared = section.get("dtype") or section.get("torch_dtype")
        if isinstance(declared, str) and declared in _NAMES:
            return _NAMES[declared]
    return None


def output_dtype(base: Path, mixed_precision: str) -> Any:
    """The base config's dtype, else the run's mixed-precision dtype, else fp32."""
    import torch

    name = config_dtype(base) or _NAMES.get(mixed_precision, "float32")
    return getattr(torch, name)


def compute_dtype(mixed_precision: str, fallback: Any) -> Any:
    """The dtype forward passes run in: the mixed-precision one, else `fallback` (the policy's)."""
    import torch

    return getattr(torch, _NAMES[mixed_precision]) if mixed_precision in _NAMES else fallback


def cast_saved_weights(folder: Path, dtype: Any) -> None:
    """Rewrite every safetensors file in `folder` with its floating-point tensors in `dtype`, and say so
    in config.json; the shard index's total size follows."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    total = 0
    for shard in sorted(folder.glob("*.safetensors")):
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(shard), framework="pt") as handle:
            metadata = handle.metadata() or {}
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensor = handle.get_tensor(name)
                tensors[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        tmp = shard.with_suffix(".partial")
        save_file(tensors, str(tmp), metadata={**metadata, "format": "pt"})
        tmp.replace(shard)
        del tensors
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        body = json.loads(index.read_text())
        body.setdefault("metadata", {})["total_size"] = total
        index.write_text(json.dumps(body, indent=2))
    config = folder / "config.json"
    if config.is_file():
        body = json.loads(config.read_text())
        name = str(dtype).removeprefix("torch.")
        body["dtype"] = name
        if isinstance(body.get("text_config"), dict):
            body["text_config"]["dtype"] = name
        config.write_text(json.dumps(body, indent=2))


def saved_dtypes(folder: Path) -> set[str]:
    """The dtypes of the floating-point tensors saved in `folder` (for checks and reports)."""
    from safetensors import safe_open

    found = set()
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118
                tensor = handle.get_slice(name)
                found.add(tensor.get_dtype())
    return found
