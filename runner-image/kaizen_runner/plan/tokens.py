"""Token counts of a dataset's rows as the trainer will see them: chat template applied, cut at the
maximum sequence length.

Rows are the data layer's TRL shapes (`kaizen_runner.data.to_trl`). Pre-training text is packed
into blocks of maxSequenceLength, so its examples are blocks and nothing is truncated; SFT and
DPO examples are records, and a record longer than the limit is truncated. An SFT prompt-completion
record whose prompt alone fills the limit keeps no completion token, and TRL's SFT trainer drops it
(nothing to learn): it is counted as *masked*, not as an example. Image parts count as one `<image>`
placeholder each (a VLM's image tokens are not counted).
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


def _batches(items: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Counter:
    """Counts with one tokenizer; a template that refuses a conversation falls back to plain text."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def lengths(self, texts: list[str], *, special: bool) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=special)["input_ids"]]

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
        if "chosen" in row:
            return [self.render(row["prompt"] + row[k]) for k in ("chosen", "rejected")]
        if "completion" in row:
            return [self.render(row["prompt"] + row["completion"])]
        return [self.render(row["messages"], row.get("tools"))]

    def prompt(self, row: dict[str, Any]) -> str | None:
        """An SFT prompt-completion row's prompt, whose tokens carry no loss; None for other rows."""
        return self.render(row["prompt"], prompt=True) if "completion" in row else None


def count_tokens(
    rows: Iterable[dict[str, Any]], counter: Counter, *, trainer: str, max_length: int, kto_rows: bool = False
) -> TokenStats:
    stats = TokenStats()
    if trainer == "pretraining":
        for chunk in _batches(row["text"] for row in rows):
            for n in counter.lengths(chunk, special=True):
                n += 1  # the EOS token that separates packed documents
                stats.tokens += n
                stats.longest = max(stats.longest, n)
        stats.examples = math.ceil(stats.tokens / max_length)
        return stats
    for chunk in _batches(rows):
        rendered = [counter.texts(row) for row in chunk]
        prompts = [counter.prompt(row) if trainer == "sft" else None for row in chunk]
        texts = [text for texts in rendered for text in texts] + [p for p in prompts if p is not None]
        lengths = iter(counter.lengths(texts, special=False))
        ns_of = [[next(lengths) for _ in texts] for texts in rendered]
        for ns, prompt in zip(ns_of, prompts, strict=True):
            if prompt is not None and next(lengths) >= max_length:
                stats.masked += 1
                continue
            stats.examples += 2 if kto_rows and len(ns) == 2 else 1
            stats.tokens += sum(min(n, max_length) for n in ns)
            stats.longest = max(stats.longest, *ns)
            stats.truncated += any(n > max_length for n in ns)
    return stats
