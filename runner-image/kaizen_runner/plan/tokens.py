"""Token counts of a dataset's rows as the trainer will see them: chat template applied, cut at the
maximum sequence length.

Rows are the data layer's TRL shapes (`kaizen_runner.data.to_trl`). Pre-training text is packed
into blocks of maxSequenceLength, so its examples are blocks and nothing is truncated; SFT and
DPO examples are records, and a record longer than the limit is truncated. Image parts count as
one `<image>` placeholder each (a VLM's image tokens are not counted).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

IMAGE_PLACEHOLDER = "<image>"


@dataclass
class TokenStats:
    examples: int = 0
    tokens: int = 0
    truncated: int = 0
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


class Counter:
    """Counts with one tokenizer; a template that refuses a conversation falls back to plain text."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def text(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def chat(self, messages: list[dict[str, Any]], tools: str | None = None) -> int:
        flat = _flat(messages)
        try:
            rendered = self.tokenizer.apply_chat_template(
                flat, tools=json.loads(tools) if tools else None, tokenize=False
            )
        except Exception:  # jinja templates raise anything (role order checks, missing fields)
            rendered = "\n".join(f"{m['role']}: {m['content']}" for m in flat)
        return len(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])


def count_tokens(
    rows: Iterable[dict[str, Any]], counter: Counter, *, trainer: str, max_length: int, kto_rows: bool = False
) -> TokenStats:
    stats = TokenStats()
    if trainer == "pretraining":
        for row in rows:
            n = counter.text(row["text"]) + 1  # the EOS token that separates packed documents
            stats.tokens += n
            stats.longest = max(stats.longest, n)
        stats.examples = math.ceil(stats.tokens / max_length)
        return stats
    for row in rows:
        if "chosen" in row:
            lengths = [counter.chat(row["prompt"] + row[k]) for k in ("chosen", "rejected")]
            stats.examples += 2 if kto_rows else 1
        elif "completion" in row:
            lengths = [counter.chat(row["prompt"] + row["completion"])]
            stats.examples += 1
        else:
            lengths = [counter.chat(row["messages"], row.get("tools"))]
            stats.examples += 1
        stats.tokens += sum(min(n, max_length) for n in lengths)
        stats.longest = max(stats.longest, *lengths)
        stats.truncated += any(n > max_length for n in lengths)
    return stats
