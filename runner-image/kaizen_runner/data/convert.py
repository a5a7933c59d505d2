"""Conversion of normalized records to the dataset shapes TRL 1.x trainers (and our evaluation) take.

- sft, sharegpt / sharegpt_image: {"messages": [...], "tools": JSON string or None} (+ "images");
  a preference pair trains on its prompt followed by the chosen answer
- sft, alpaca: {"prompt": [...], "completion": [assistant message]} (conversational prompt/completion)
- dpo, preference (and sharegpt / sharegpt_image pairs): {"prompt": [...], "chosen": [...], "rejected": [...]}
- pretrain, corpus: {"text": ...}
- eval, alpaca / sharegpt / sharegpt_image / preference: {"prompt": [...], "reference": last assistant text}

For sharegpt_image every message's content is a list of parts, split on `<image>` into
`{"type": "image"}` and `{"type": "text", "text": ...}` in order, and `images` holds loaded PIL
images in the same order (TRL's own helper would put every image before the first user text).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from kaizen_runner.data.formats import DataFormat, parse_format
from kaizen_runner.data.images import IMAGE_ERRORS, IMAGE_TOKEN
from kaizen_runner.data.issues import DataError, Reason
from kaizen_runner.data.records import AlpacaRecord, ChatRecord, ImageRef, Message, Record, TextRecord

Task = Literal["sft", "dpo", "pretrain", "eval"]

TASK_FORMATS: dict[str, frozenset[DataFormat]] = {
    "sft": frozenset({DataFormat.ALPACA, DataFormat.SHAREGPT, DataFormat.SHAREGPT_IMAGE}),
    "dpo": frozenset({DataFormat.PREFERENCE, DataFormat.SHAREGPT, DataFormat.SHAREGPT_IMAGE}),
    "pretrain": frozenset({DataFormat.CORPUS}),
    "eval": frozenset(
        {DataFormat.ALPACA, DataFormat.SHAREGPT, DataFormat.SHAREGPT_IMAGE, DataFormat.PREFERENCE}
    ),
}


def check_task(fmt: DataFormat | str, task: str) -> DataFormat:
    """Refuse a format the task cannot train or evaluate on (SPEC §3's trainer table)."""
    fmt = parse_format(fmt)
    if task not in TASK_FORMATS:
        raise DataError(Reason.WRONG_TASK, f"unknown task {task!r}; choose one of {', '.join(TASK_FORMATS)}")
    if fmt not in TASK_FORMATS[task]:
        allowed = ", ".join(sorted(f.value for f in TASK_FORMATS[task]))
        raise DataError(Reason.WRONG_TASK, f"{task} cannot use {fmt.value} data; it takes {allowed}")
    return fmt


def to_trl(records: Iterable[Record], fmt: DataFormat | str, task: Task) -> Iterator[dict[str, Any]]:
    """Rows in the shape TRL's trainer for `task` expects; lazy, one record at a time."""
    fmt = check_task(fmt, task)
    return _rows(records, _Shaper(fmt is DataFormat.SHAREGPT_IMAGE), task)


def _rows(records: Iterable[Record], shaper: _Shaper, task: str) -> Iterator[dict[str, Any]]:
    row = shaper.row
    for record in records:
        yield row(record, task)


class _Shaper:
    def __init__(self, multimodal: bool) -> None:
        self.multimodal = multimodal

    def row(self, record: Record, task: str) -> dict[str, Any]:
        if isinstance(record, TextRecord):
            return {"text": record.text}
        if isinstance(record, AlpacaRecord):
            return self._alpaca(record, task)
        return self._chat(record, task)

    def _message(self, role: str, content: str) -> dict[str, Any]:
        if not self.multimodal:
            return {"role": role, "content": content}
        return {"role": role, "content": split_image_tokens(content)}

    def _messages(self, system: str | None, messages: Iterable[Message]) -> list[dict[str, Any]]:
        message = self._message
        head = [message("system", system)] if system else []
        return head + [message(m.role, m.content) for m in messages]

    def _alpaca(self, record: AlpacaRecord, task: str) -> dict[str, Any]:
        # Dicts straight from the fields, no Message in between: this runs once per row.
        message = self._message
        prompt = [message("system", record.system)] if record.system else []
        for question, answer in record.history:
            prompt += (message("user", question), message("assistant", answer))
        prompt.append(message("user", record.prompt_text))
        if task == "eval":
            return {"prompt": prompt, "reference": record.output}
        return {"prompt": prompt, "completion": [message("assistant", record.output)]}

    def _chat(self, record: ChatRecord, task: str) -> dict[str, Any]:
        row: dict[str, Any]
        if task == "dpo":
            if record.chosen is None or record.rejected is None:
                raise DataError(
                    Reason.WRONG_TASK, f"record {record.index}: dpo needs 'chosen' and 'rejected' answers"
                )
            row = {
                "prompt": self._messages(record.system, record.turns),
                "chosen": [self._message(record.chosen.role, record.chosen.content)],
                "rejected": [self._message(record.rejected.role, record.rejected.content)],
            }
        elif task == "eval":
            prompt, answer = (
                (record.turns, record.chosen) if record.chosen else (record.turns[:-1], record.turns[-1])
            )
            row = {"prompt": self._messages(record.system, prompt), "reference": answer.content}
        else:
            answer_turns = (record.chosen,) if record.chosen else ()
            # `tools` is on every row (None when absent): Arrow drops a column missing from the first rows.
            tools = None if record.tools is None else json.dumps(record.tools, ensure_ascii=False)
            row = {"messages": self._messages(record.system, (*record.turns, *answer_turns)), "tools": tools}
        if self.multimodal:
            row["images"] = [_open_image(record.index, at, ref) for at, ref in enumerate(record.images)]
        return row


def _open_image(index: int, position: int, ref: ImageRef) -> Any:
    """The decoded image; validation decoded it already, so this fails only for a file changed since."""
    try:
        return ref.open()
    except IMAGE_ERRORS as exc:
        raise DataError(
            Reason.NOT_AN_IMAGE, f"record {index}: image {position} ({ref.name!r}) cannot be decoded: {exc}"
        ) from exc


def split_image_tokens(text: str) -> list[dict[str, Any]]:
    """`"a <image> b"` → text "a ", an image part, text " b" (empty texts dropped, order kept)."""
    parts: list[dict[str, Any]] = []
    for position, piece in enumerate(text.split(IMAGE_TOKEN)):
        if position:
            parts.append({"type": "image"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def to_hf_dataset(rows: Iterable[dict[str, Any]], *, cache_dir: str | None = None) -> Any:
    """A `datasets.Dataset` written to Arrow from the rows one at a time (never all in memory).

    Each call gets a fresh fingerprint: the rows are a one-shot iterator that `datasets` can
    neither hash nor safely reuse a cache for.
    """
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    try:
        return Dataset.from_generator(
            _generate, gen_kwargs={"rows": rows}, fingerprint=uuid.uuid4().hex, cache_dir=cache_dir
        )
    except DatasetGenerationError as err:  # `datasets` wraps what the rows raised; a DataError stays one
        if isinstance(err.__cause__, DataError):
            raise err.__cause__ from None
        raise


def _generate(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from rows
