"""Parameter counts computed from a Hugging Face `config.json`, never guessed from a model's name.

Covers the decoder families the catalog ships (Llama, Mistral, Qwen2, Gemma, Mixtral and Qwen2-MoE
experts) and LLaVA-style VLMs (a CLIP/SigLIP vision tower and a projector). An architecture the
formula does not know gives None rather than a wrong number; the caller may then fall back to the
weights index's own `total_parameters`.
"""

from __future__ import annotations

from typing import Any

# Families whose q/k/v projections carry a bias although `attention_bias` is not in their config.
_QKV_BIAS = frozenset({"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"})
_DECODERS = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "mixtral", "qwen2_moe", "qwen3_moe"}
)
_VISION = frozenset({"clip_vision_model", "siglip_vision_model", "clip"})


def _get(config: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return default


def _decoder_layer(config: dict[str, Any], model_type: str) -> int:
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(_get(config, "num_key_value_heads", default=heads))
    head_dim = int(_get(config, "head_dim", default=hidden // heads))
    qkv_bias = bool(config.get("attention_bias")) or model_type in _QKV_BIAS
    out_bias = bool(config.get("attention_bias"))
    attention = hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + heads * head_dim * hidden
    if qkv_bias:
        attention += heads * head_dim + 2 * kv_heads * head_dim
    if out_bias:
        attention += hidden
    if model_type in ("qwen3", "qwen3_moe"):
        attention += 2 * head_dim  # q_norm and k_norm
    mlp_bias = hidden if config.get("mlp_bias") else 0
    experts = int(_get(config, "num_local_experts", "num_experts", default=0))
    if experts:
        expert_size = int(_get(config, "moe_intermediate_size", "intermediate_size"))
        mlp = experts * 3 * hidden * expert_size + hidden * experts  # experts and the router
        shared = int(config.get("shared_expert_intermediate_size") or 0)
        if shared:
            mlp += 3 * hidden * shared + hidden  # the shared expert and its gate
    else:
        intermediate = int(config["intermediate_size"])
        mlp = 3 * hidden * intermediate + (2 * intermediate + hidden if mlp_bias else 0)
    norms = (4 if model_type == "gemma2" else 2) * hidden
    return attention + mlp + norms


def decoder_parameters(config: dict[str, Any]) -> int | None:
    """Parameters of a decoder-only language model (embeddings, layers, final norm, untied head)."""
    model_type = str(config.get("model_type", ""))
    if model_type not in _DECODERS:
        return None
    try:
        hidden = int(config["hidden_size"])
        vocab = int(config["vocab_size"])
        layers = int(config["num_hidden_layers"])
        per_layer = _decoder_layer(config, model_type)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    tied = config.get("tie_word_embeddings", model_type.startswith("gemma"))
    head = 0 if tied else vocab * hidden
    return vocab * hidden + layers * per_layer + hidden + head


def vision_parameters(config: dict[str, Any]) -> int | None:
    """Parameters of a ViT vision tower (CLIP or SigLIP): patch and position embeddings, layers, norms."""
    if str(config.get("model_type", "")) not in _VISION:
        return None
    try:
        hidden = int(config["hidden_size"])
        intermediate = int(config["intermediate_size"])
        layers = int(config["num_hidden_layers"])
        patch = int(config["patch_size"])
        image = int(config["image_size"])
        channels = int(config.get("num_channels", 3))
    except (KeyError, TypeError, ValueError):
        return None
    clip = config["model_type"] != "siglip_vision_model"
    patches = (image // patch) ** 2
    positions = patches + 1 if clip else patches
    embeddings = channels * hidden * patch * patch + positions * hidden
    embeddings += hidden if clip else hidden  # CLIP's class embedding, SigLIP's patch-conv bias
    layer = 4 * (hidden * hidden + hidden) + 4 * hidden + 2 * hidden * intermediate + intermediate + hidden
    norms = 4 * hidden if clip else 2 * hidden  # CLIP has pre- and post-layernorm, SigLIP only post
    return embeddings + layers * layer + norms


def _projector(config: dict[str, Any], vision_hidden: int, text_hidden: int) -> int:
    layers = config.get("vision_feature_layer", -2)
    inputs = vision_hidden * (len(layers) if isinstance(layers, list) else 1)
    bias = config.get("multimodal_projector_bias", True)
    return inputs * text_hidden + text_hidden * text_hidden + (2 * text_hidden if bias else 0)


def count_parameters(config: dict[str, Any]) -> int | None:
    """Total parameters a `config.json` describes, or None when its architecture is not covered."""
    text = config.get("text_config")
    vision = config.get("vision_config")
    if not isinstance(text, dict) or not isinstance(vision, dict):
        return decoder_parameters(config)
    text_params = decoder_parameters(text)
    vision_params = vision_parameters(vision)
    if text_params is None or vision_params is None or config.get("model_type") != "llava":
        return None
    return (
        text_params + vision_params + _projector(config, int(vision["hidden_size"]), int(text["hidden_size"]))
    )


def human_size(parameters: int) -> str:
    """8_030_261_248 -> 8B, 494_032_768 -> 0.5B, 30_000 -> 30K (one decimal below ten, whole above)."""
    for scale, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if parameters >= scale:
            value = parameters / scale
            return f"{round(value)}{suffix}" if value >= 10 else f"{value:.1f}".removesuffix(".0") + suffix
    return str(parameters)


def size_bucket(parameters: int) -> str:
    """A label value for filtering: lt-1b, 1b-10b, 10b-100b or ge-100b."""
    if parameters < 10**9:
        return "lt-1b"
    if parameters < 10**10:
        return "1b-10b"
    return "10b-100b" if parameters < 10**11 else "ge-100b"
