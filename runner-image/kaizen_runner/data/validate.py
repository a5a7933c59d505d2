"""Per-record validation: a raw row becomes a normalized record, or an Issue saying exactly why not.

The ShareGPT rules follow LLaMA-Factory's converter: an optional leading system turn, then user
turns at even and assistant turns at odd positions; an SFT conversation ends with the
assistant, a preference prompt ends with the user and `chosen`/`rejected` are single assistant
turns. Each record gets one issue, the first found, so skipped counts add up per reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from kaizen_runner.data.formats import DataFormat
from kaizen_runner.data.images import IMAGE_TOKEN, check_image, resolve_image
from kaizen_runner.data.issues import Issue, Reason
from kaizen_runner.data.readers import Media, RawRow
from kaizen_runner.data.records import AlpacaRecord, ChatRecord, ImageRef, Message, Record, Role, TextRecord

ROLES: dict[str, Role] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
# What API consoles put in every field of an example body; such rows are not real data.
PLACEHOLDER = "string"
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


class _Invalid(Exception):
    def __init__(self, field: str, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.field, self.reason, self.message = field, reason, message


def _type_name(value: Any) -> str:
    return _JSON_TYPES.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("record", Reason.WRONG_TYPE, f"must be a JSON object, not {_type_name(value)}")
    return value


def _string(obj: dict[str, Any], key: str, field: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if type(value) is str:
        return value
    if value is None:
        if required:
            raise _Invalid(field, Reason.MISSING_FIELD, f"{field!r} is missing")
        return None
    if not isinstance(value, str):
        raise _Invalid(field, Reason.WRONG_TYPE, f"{field!r} must be a string, not {_type_name(value)}")
    return value


def _spelling(obj: dict[str, Any], usual: str, other: str) -> str:
    """Which of two spellings a row uses (parquet rows carry both columns, one of them null)."""
    return other if obj.get(usual) is None and obj.get(other) is not None else usual


def _blank(text: str) -> bool:
    """Empty or whitespace only; unlike strip() it stops at the first visible character."""
    return not text or text.isspace()


_PLACEHOLDER_MAX = 2 * len(PLACEHOLDER)


def _is_placeholder(*values: str) -> bool:
    return all(len(v) < _PLACEHOLDER_MAX and v.strip() == PLACEHOLDER for v in values)


class _Turn(NamedTuple):
    role: Role
    spelled: str  # the role as written, for messages
    content: str
    field: str  # e.g. conversations[3]
    role_key: str
    content_key: str


def _turn(value: Any, field: str) -> _Turn:
    if not isinstance(value, dict):
        raise _Invalid(
            field, Reason.WRONG_TYPE, f"{field!r} must be an object with from/value, not {_type_name(value)}"
        )
    spelled, content = value.get("from"), value.get("value")
    role_key, content_key = "from", "value"
    if type(spelled) is not str or type(content) is not str:  # not the usual spelling, or a broken turn
        role_key = _spelling(value, "from", "role")
        # A turn missing its content is reported in the spelling its role uses.
        usual, other = ("content", "value") if role_key == "role" else ("value", "content")
        content_key = _spelling(value, usual, other)
        spelled = _string(value, role_key, f"{field}.{role_key}", required=True)
        content = _string(value, content_key, f"{field}.{content_key}", required=True)
    assert spelled is not None and content is not None
    if _is_placeholder(spelled, content):
        raise _Invalid(
            field, Reason.PLACEHOLDER_RECORD, f"{field!r} is a placeholder ({spelled!r}: {content!r})"
        )
    role = ROLES.get(spelled.strip().lower())
    if role is None:
        known = ", ".join(ROLES)
        raise _Invalid(
            f"{field}.{role_key}", Reason.UNKNOWN_ROLE, f"unknown role {spelled!r} (known: {known})"
        )
    if role != "system" and _blank(content):
        raise _Invalid(f"{field}.{content_key}", Reason.EMPTY_TURN, f"{field!r} is an empty {spelled!r} turn")
    return _Turn(role, spelled, content, field, role_key, content_key)


@dataclass(frozen=True)
class Validator:
    """Validates the rows of one file; `media` is where that file's images live. With `pairs` every
    record must be a preference pair (DPO), in whichever format it comes."""

    fmt: DataFormat
    media: Media = Media()
    max_length: int | None = None
    pairs: bool = False

    def __post_init__(self) -> None:
        # Chosen once, not per row: a 100 MB file holds over 100,000 rows.
        build = {DataFormat.ALPACA: _alpaca, DataFormat.CORPUS: _corpus}.get(self.fmt, self._chat)
        object.__setattr__(self, "_build", build)

    def __call__(self, row: RawRow) -> Record | Issue:
        if row.issue is not None:
            return row.issue
        try:
            record = self._build(_object(row.value), row.index)  # type: ignore[attr-defined]
            if self.max_length is not None:
                self._check_length(record, self.max_length)
        except _Invalid as bad:
            where = f"record {row.index} (line {row.line})" if row.line is not None else f"record {row.index}"
            return Issue(row.index, bad.field, bad.reason, f"{where}: {bad.message}")
        return record

    @staticmethod
    def _check_length(record: Record, limit: int) -> None:
        size = _length(record)
        if size > limit:
            raise _Invalid("record", Reason.TOO_LONG, f"{size} characters of text; the limit is {limit}")

    def _chat(self, obj: dict[str, Any], index: int) -> ChatRecord:
        key = _spelling(obj, "conversations", "messages")
        raw_turns = obj.get(key)
        if raw_turns is None:
            raise _Invalid(key, Reason.MISSING_FIELD, "'conversations' (or 'messages') is missing")
        if not isinstance(raw_turns, list):
            raise _Invalid(
                key, Reason.WRONG_TYPE, f"{key!r} must be an array of turns, not {_type_name(raw_turns)}"
            )
        turns = [_turn(value, f"{key}[{i}]") for i, value in enumerate(raw_turns)]
        system = _string(obj, "system", "system", required=False)
        if turns and turns[0].role == "system":
            system = turns.pop(0).content
        if not turns:
            raise _Invalid(key, Reason.EMPTY_CONVERSATION, "the conversation has no user or assistant turns")
        for position, turn in enumerate(turns):
            expected = "user" if position % 2 == 0 else "assistant"
            if turn.role != expected:
                hint = (
                    "a system turn may only come first"
                    if turn.role == "system"
                    else f"expected a {expected} turn"
                )
                raise _Invalid(
                    f"{turn.field}.{turn.role_key}",
                    Reason.ROLES_OUT_OF_ORDER,
                    f"{turn.field!r} is a {turn.spelled!r} turn; {hint}",
                )
        has_answers = obj.get("chosen") is not None or obj.get("rejected") is not None
        if not has_answers and (self.pairs or self.fmt is DataFormat.PREFERENCE):
            raise _Invalid(
                "chosen",
                Reason.MISSING_FIELD,
                "'chosen' and 'rejected' are missing; DPO trains on preference pairs, not conversations",
            )
        chosen = rejected = None
        if has_answers:
            if turns[-1].role != "user":
                raise _Invalid(
                    turns[-1].field, Reason.WRONG_LAST_TURN, "a preference prompt must end with a user turn"
                )
            chosen, rejected = _answer(obj, "chosen"), _answer(obj, "rejected")
        elif turns[-1].role != "assistant":
            raise _Invalid(
                turns[-1].field, Reason.WRONG_LAST_TURN, "the conversation must end with an assistant turn"
            )
        messages = tuple(Message(t.role, t.content) for t in turns)
        images = self._images(obj, messages, (chosen, rejected))
        return ChatRecord(index, messages, system or None, _tools(obj.get("tools")), images, chosen, rejected)

    def _images(
        self, obj: dict[str, Any], messages: tuple[Message, ...], answers: tuple[Message | None, ...]
    ) -> tuple[ImageRef, ...]:
        field, values = _image_values(obj)
        if self.fmt is not DataFormat.SHAREGPT_IMAGE:
            if values:
                raise _Invalid(
                    field, Reason.UNEXPECTED_IMAGES, "the record has images; use the sharegpt_image format"
                )
            return ()
        for key, answer in zip(("chosen", "rejected"), answers, strict=True):
            if answer is not None and IMAGE_TOKEN in answer.content:
                raise _Invalid(
                    key,
                    Reason.IMAGE_COUNT_MISMATCH,
                    f"{IMAGE_TOKEN} tokens belong in the prompt, not in {key!r}",
                )
        tokens = sum(m.content.count(IMAGE_TOKEN) for m in messages)
        if tokens != len(values):
            raise _Invalid(
                field,
                Reason.IMAGE_COUNT_MISMATCH,
                f"{tokens} {IMAGE_TOKEN} token(s) in the conversation but {len(values)} image(s)",
            )
        refs = []
        for position, value in enumerate(values):
            where = f"{field}[{position}]"
            resolved = resolve_image(value, self.media, position)
            if isinstance(resolved, tuple):
                reason, message = resolved
                raise _Invalid(where, reason, f"{where}: {message}")
            problem = check_image(resolved)
            if problem is not None:
                raise _Invalid(where, Reason.NOT_AN_IMAGE, f"{where}: {problem}")
            refs.append(resolved)
        return tuple(refs)


def _image_values(obj: dict[str, Any]) -> tuple[str, list[Any]]:
    """`images` (a list, or one value), else `image` / `image_path` for a single image."""
    for key in ("images", "image", "image_path"):
        value = obj.get(key)
        if value is not None:
            return key, value if isinstance(value, list) else [value]
    return "images", []


def _answer(obj: dict[str, Any], key: str) -> Message:
    value = obj.get(key)
    if value is None:
        raise _Invalid(key, Reason.MISSING_FIELD, f"{key!r} is missing (one assistant turn {{from, value}})")
    if isinstance(value, list):
        raise _Invalid(key, Reason.WRONG_TYPE, f"{key!r} must be one {{from, value}} object, not an array")
    turn = _turn(value, key)
    if turn.role != "assistant":
        raise _Invalid(
            f"{key}.{turn.role_key}",
            Reason.ROLES_OUT_OF_ORDER,
            f"{key!r} must be an assistant turn, not {turn.spelled!r}",
        )
    return Message("assistant", turn.content)


def _tools(value: Any) -> Any:
    """Tool definitions, kept as given; a JSON string is parsed so a bad one is caught here."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Invalid("tools", Reason.WRONG_TYPE, f"'tools' is not valid JSON ({exc.msg})") from None
    if not isinstance(value, list | dict):
        raise _Invalid("tools", Reason.WRONG_TYPE, f"'tools' must be a JSON array, not {_type_name(value)}")
    return value


def _alpaca(obj: dict[str, Any], index: int) -> AlpacaRecord:
    # The checks of _string, _blank and _is_placeholder, inlined where a row passes them: this runs
    # once per row, and most rows are plain strings in every field.
    get = obj.get
    instruction, output, input_text, system = get("instruction"), get("output"), get("input"), get("system")
    if type(instruction) is not str:
        instruction = _string(obj, "instruction", "instruction", required=True)
    if type(output) is not str:
        output = _string(obj, "output", "output", required=True)
    assert instruction is not None and output is not None
    if type(input_text) is not str:
        input_text = _string(obj, "input", "input", required=False) or ""
    if system is not None and type(system) is not str:
        system = _string(obj, "system", "system", required=False)
    if (
        len(instruction) < _PLACEHOLDER_MAX
        and len(output) < _PLACEHOLDER_MAX
        and _is_placeholder(instruction, output)
    ):
        raise _Invalid(
            "record", Reason.PLACEHOLDER_RECORD, "instruction and output are placeholders ('string')"
        )
    if (not instruction or instruction.isspace()) and (not input_text or input_text.isspace()):
        raise _Invalid("instruction", Reason.EMPTY_TURN, "'instruction' and 'input' are both empty")
    if not output or output.isspace():
        raise _Invalid("output", Reason.EMPTY_TURN, "'output' is empty")
    history = get("history")
    return AlpacaRecord(
        index,
        instruction,
        output,
        input_text,
        system or None,
        _history(history) if history is not None else (),
    )


def _history(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Invalid(
            "history", Reason.WRONG_TYPE, f"'history' must be an array of pairs, not {_type_name(value)}"
        )
    pairs = []
    for i, pair in enumerate(value):
        field = f"history[{i}]"
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise _Invalid(
                field, Reason.WRONG_TYPE, f"{field!r} must be a pair of strings [instruction, output]"
            )
        if _blank(pair[0]) or _blank(pair[1]):
            raise _Invalid(field, Reason.EMPTY_TURN, f"{field!r} has an empty turn")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _corpus(obj: dict[str, Any], index: int) -> TextRecord:
    text = _string(obj, "text", "text", required=True)
    assert text is not None
    if _is_placeholder(text):
        raise _Invalid("text", Reason.PLACEHOLDER_RECORD, "'text' is a placeholder ('string')")
    if _blank(text):
        raise _Invalid("text", Reason.EMPTY_TEXT, "'text' is empty")
    return TextRecord(index, text)


def _length(record: Record) -> int:
    if isinstance(record, TextRecord):
        return len(record.text)
    if isinstance(record, AlpacaRecord):
        texts = [record.instruction, record.input, record.output, record.system or ""]
        return sum(map(len, texts)) + sum(len(a) + len(b) for a, b in record.history)
    answers = [m.content for m in (record.chosen, record.rejected) if m is not None]
    return len(record.system or "") + sum(len(m.content) for m in record.turns) + sum(map(len, answers))


def guess_format(value: Any) -> DataFormat | None:
    """The format a raw record's keys suggest, for hints when a file does not match the chosen format."""
    if not isinstance(value, dict):
        return None
    present = {key for key, item in value.items() if item is not None}
    if present & {"conversations", "messages"}:
        if present & {"images", "image", "image_path"}:
            return DataFormat.SHAREGPT_IMAGE
        return DataFormat.PREFERENCE if "chosen" in present else DataFormat.SHAREGPT
    if "instruction" in present:
        return DataFormat.ALPACA
    return DataFormat.CORPUS if "text" in present else None
