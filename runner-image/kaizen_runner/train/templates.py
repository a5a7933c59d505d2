"""Chat templates for training: one for models that have none, and whether assistant-only loss works.

TRL's assistant-only loss needs `{% generation %}` markers; it patches the templates of well-known
families (Qwen2.5/3, Llama 3, Gemma, DeepSeek, …) and refuses the rest (Mistral/Mixtral, Qwen2-VL,
custom models). For those the runner trains ShareGPT data as prompt/completion instead.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any

log = logging.getLogger(__name__)


def default_chat_template() -> str:
    return files("kaizen_runner.train").joinpath("chatml_training.jinja").read_text(encoding="utf-8")


def ensure_chat_template(processing: Any) -> bool:
    """Give a template-less tokenizer/processor the ChatML training template; True when one was added."""
    if getattr(processing, "chat_template", None):
        return False
    processing.chat_template = default_chat_template()
    tokenizer = getattr(processing, "tokenizer", None)
    if tokenizer is not None and not tokenizer.chat_template:
        tokenizer.chat_template = processing.chat_template
    log.info("the base model has no chat template; using ChatML")
    return True


def supports_assistant_only_loss(processing: Any) -> bool:
    """True when TRL can mask everything but assistant turns with this template (as is, or patched)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = processing.chat_template
    if template and has_generation_markers(template):
        return True
    try:
        get_training_chat_template(processing)
    except ValueError:
        log.warning(
            "the model's chat template cannot mark assistant turns; ShareGPT conversations are trained "
            "as prompt/completion (loss on the last answer only)"
        )
        return False
    return True
