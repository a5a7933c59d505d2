"""Token counts of a dataset's rows as the trainer will see them: chat template applied, cut at the
maximum sequence length.

Rows are the trainer's shapes (`kaizen_runner.data.to_trl`, then `train.data.shaped_rows`).
Pre-training text is packed into blocks of maxSequenceLength, so its examples are blocks and nothing
is truncated; SFT and DPO examples are records (kto_pair: each answer a row), and a record longer
than the limit is truncated from its end. A record that keeps no answer token within the limit is
dropped by TRL (nothing to learn) and counted as *masked*, not as an example: an SFT or DPO/KTO
prompt that fills the limit (where the answer starts: TRL's common prefix of prompt and prompt +
answer), or an SFT conversation whose assistant tokens all lie past it. ORPO and SimPO keep such
records. Image parts count as one `<image>` placeholder each (a VLM's image tokens are not counted).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

IMAGE_PLACEHOLDER = "<image>"


@dataclass
class TokenStats:
    examples: int = 0
    tokens: int = 0
    truncated: int = 0
    masked: int = 0
    longest: int = 0


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        IMAGE_PLACEHOLDER if part.get("type") == "image" else str(part.get("text", ""))
        for part in content or []
    )


def _flat(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": _text(m.get("content"))} for m in messages]


BATCH = 256  # rows tokenized per call: fast tokenizers encode a batch on every core
# Pre-training packs with TRL's `pack_dataset`, a batched `Dataset.map` at datasets' default batch_size
# of 1000 rows (trl/data_utils.py; the runner sets no dataset_num_proc, so one process maps them in order).
PACK_BATCH = 1000
# Preference trainers that drop a record whose prompt fills max_length (TRL's DPOTrainer and KTOTrainer;
# ORPO and CPO keep it, truncated).
DROPPING_FAMILIES = frozenset({"dpo", "kto"})


def _batches(items: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Counter:
    """Counts with one tokenizer; a template that refuses a conversation falls back to plain text."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def lengths(self, texts: list[str], *, special: bool) -> list[int]:
        return [len(ids) for ids in self.ids(texts, special=special)]

    def ids(self, texts: list[str], *, special: bool = False) -> list[list[int]]:
        return list(self.tokenizer(texts, add_special_tokens=special)["input_ids"])

    def render(
        self, messages: list[dict[str, Any]], tools: str | None = None, *, prompt: bool = False
    ) -> str:
        """The conversation as the trainer templates it; ``prompt``: up to where the answer starts."""
        flat = _flat(messages)
        try:
            return str(
                self.tokenizer.apply_chat_template(
                    flat,
                    tools=json.loads(tools) if tools else None,
                    tokenize=False,
                    add_generation_prompt=prompt,
                )
            )
        except Exception:  # jinja templates raise anything (role order checks, missing fields)
            return "\n".join(f"{m['role']}: {m['content']}" for m in flat)

    def texts(self, row: dict[str, Any]) -> list[str]:
        """What the trainer tokenizes for one row: one conversation, or chosen and rejected."""
        tools = row.get("tools")
        if "chosen" in row:
            return [self.render(row["prompt"] + row[k], tools) for k in ("chosen", "rejected")]
        if "completion" in row:
            return [self.render(row["prompt"] + row["completion"], tools)]
        return [self.render(row["messages"], tools)]

    def prompt(self, row: dict[str, Any]) -> str | None:
        """A row's prompt, whose tokens carry no loss; None for a whole conversation."""
        return self.render(row["prompt"], row.get("tools"), prompt=True) if "prompt" in row else None

    def first_answer_token(self, row: dict[str, Any]) -> int | None:
        """Where TRL's assistant mask starts in a conversation (the template patched as TRL patches it);
        None when it cannot tell."""
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers

        try:
            template = self.tokenizer.chat_template
            if not has_generation_markers(template):
                template = get_training_chat_template(self.tokenizer)
            tools = row.get("tools")
            mask = self.tokenizer.apply_chat_template(
                _flat(row["messages"]),
                tools=json.loads(tools) if tools else None,
                chat_template=template,
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
            )["assistant_masks"]
        except Exception:  # as in render: a template that refuses the conversation
            return None
        return list(mask).index(1) if 1 in mask else None


def _common_prefix(ids: list[int], other: list[int]) -> int:
    """Leading tokens the two share: TRL starts the completion there (its `common_prefix_length`)."""
    count = 0
    for a, b in zip(ids, other, strict=False):
        if a != b:
            break
        count += 1
    return count


def _packed(texts: Iterable[str], counter: Counter, max_length: int) -> TokenStats:
    """Pre-training: each map batch of PACK_BATCH documents is cut into blocks on its own, so every
    batch ends in its own partial block."""
    stats = TokenStats()
    for chunk in _batches(texts, PACK_BATCH):
        tokens = 0
        for n in counter.lengths(chunk, special=True):
            n += 1  # the EOS token that separates packed documents
            tokens += n
            stats.longest = max(stats.longest, n)
        stats.tokens += tokens
        stats.examples += math.ceil(tokens / max_length)
    return stats


def _kept(
    row: dict[str, Any],
    full: list[list[int]],
    prompt: list[int] | None,
    counter: Counter,
    *,
    family: str,
    max_length: int,
) -> list[list[int]]:
    """The tokenized texts of a row that the trainer keeps; empty when it drops the row because no
    answer token is left within max_length (keep_start truncation)."""
    if prompt is None:  # a conversation trained on its assistant turns
        if len(full[0]) <= max_length:
            return full
        first = counter.first_answer_token(row)
        return full if first is None or first < max_length else []
    starts = [_common_prefix(prompt, ids) for ids in full]
    if family == "kto":  # each answer is a row of its own
        return [ids for ids, start in zip(full, starts, strict=True) if start < max_length]
    return full if min(starts) < max_length else []


def count_tokens(
    rows: Iterable[dict[str, Any]],
    counter: Counter,
    *,
    trainer: str,
    max_length: int,
    family: str | None = None,
) -> TokenStats:
    """`family`: the preference trainer of a DPO run (dpo, kto, orpo, cpo); see the module docstring."""
    if trainer == "pretraining":
        return _packed((row["text"] for row in rows), counter, max_length)
    stats = TokenStats()
    drops = trainer == "sft" or family in DROPPING_FAMILIES
    for chunk in _batches(rows):
        rendered = [counter.texts(row) for row in chunk]
        prompts = [counter.prompt(row) if drops else None for row in chunk]
        texts = [text for texts in rendered for text in texts] + [p for p in prompts if p is not None]
        ids = iter(counter.ids(texts))
        ids_of = [[next(ids) for _ in texts] for texts in rendered]
        for row, full, prompt in zip(chunk, ids_of, prompts, strict=True):
            prompt_ids = next(ids) if prompt is not None else None
            kept = (
                _kept(row, full, prompt_ids, counter, family=family or trainer, max_length=max_length)
                if drops
                else full
            )
            if not kept:
                stats.masked += 1
                continue
            ns = [len(k) for k in kept]
            stats.examples += len(kept) if family == "kto" else 1
            stats.tokens += sum(min(n, max_length) for n in ns)
            stats.longest = max(stats.longest, *ns)
            stats.truncated += any(n > max_length for n in ns)
    return stats
