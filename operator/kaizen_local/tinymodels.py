"""Tiny models and tokenizers built locally, so training tests never download anything.

A byte-level BPE tokenizer trained on the shared sample datasets, a ~30k-parameter Llama or Qwen2 with
random weights, and a tiny LLaVA (CLIP vision tower + Llama) whose image processor needs no torchvision.
The chat template is ChatML with `{% generation %}` markers, so TRL's assistant-only loss works as it
does on a real Qwen2.5/Llama3 model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kaizen_local.paths import SHARED_DIR

SAMPLES = SHARED_DIR / "datasets" / "ai-studio-samples"

SPECIAL_TOKENS = [
    "<|pad|>",
    "<|bos|>",
    "<|eos|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
]
IMAGE_TOKEN = "<|image_pad|>"

# ChatML; string contents or content parts (text and image), assistant turns inside generation markers.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['content'] is string -%}{%- set text = m['content'] -%}"
    "{%- else -%}{%- set ns = namespace(t='') -%}{%- for p in m['content'] -%}"
    "{%- if p['type'] == 'image' -%}{%- set ns.t = ns.t + '<|vision_start|><|image_pad|><|vision_end|>' -%}"
    "{%- elif p['type'] == 'text' -%}{%- set ns.t = ns.t + p['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- set text = ns.t -%}{%- endif -%}"
    "{%- if m['role'] == 'assistant' -%}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ text + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}{{ '<|im_start|>' + m['role'] + '\n' + text + '<|im_end|>\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)


def _sample_texts(limit: int = 60) -> Iterator[str]:
    """Text from every shared sample file, so the vocabulary fits the data the tests train on."""
    for path in sorted(SAMPLES.glob("*/*.json")):
        for row in json.loads(path.read_text(encoding="utf-8"))[:limit]:
            yield json.dumps(row, ensure_ascii=False)


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer with ChatML special tokens and the training chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_sample_texts(), trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def _text_config(tokenizer, arch: str):
    from transformers import LlamaConfig, Qwen2Config

    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    return config_cls(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )


def build_tiny_causal_lm(target: Path, arch: str = "llama", seed: int = 0) -> Path:
    """Save a tiny Llama or Qwen2 (random weights) and its tokenizer under `target`."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_text_config(tokenizer, arch))
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def build_tiny_llava(target: Path, seed: int = 0) -> Path:
    """Save a tiny LLaVA (28x28 images, 4 image tokens) with a PIL-only image processor."""
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip import CLIPImageProcessorPil

    tokenizer = build_tokenizer()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}
        ),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=28,
            patch_size=14,
            projection_dim=32,
        ),
        text_config=_text_config(tokenizer, "llama"),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target
