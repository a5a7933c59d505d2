"""Tiny models for the tests; built by the product module ``kaizen_local.tinymodels`` (the demo uses
them too). Kept here so tests and benchmarks import them from the path they always have."""

from kaizen_local.tinymodels import (
    CHAT_TEMPLATE,
    IMAGE_TOKEN,
    SAMPLES,
    SPECIAL_TOKENS,
    build_tiny_causal_lm,
    build_tiny_llava,
    build_tokenizer,
)

__all__ = [
    "CHAT_TEMPLATE",
    "IMAGE_TOKEN",
    "SAMPLES",
    "SPECIAL_TOKENS",
    "build_tiny_causal_lm",
    "build_tiny_llava",
    "build_tokenizer",
]
