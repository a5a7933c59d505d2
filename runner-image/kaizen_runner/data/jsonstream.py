"""Incremental JSON readers: a 100 MB JSON array is parsed one element at a time.

`json.load` on a whole file needs several times the file's size in memory; here only the
current chunk and the element being decoded are held. The standard library's
`JSONDecoder.raw_decode` does the parsing, so speed stays that of the C scanner.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import IO, Any

from kaizen_runner.data.issues import DataError, Reason

CHUNK_BYTES = 1 << 20
_SPACE = re.compile(r"[ \t\n\r]*")
_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
# An error this far before the end of the buffer cannot be caused by the buffer ending early.
_TRUNCATION_MARGIN = 64
_DECODER = json.JSONDecoder()


class _Chars:
    """A sliding window of decoded text over a binary stream."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self._stream = stream
        self._name = name
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._bytes_read = 0
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # line number of buf[0]

    def more(self, at_least: int = CHUNK_BYTES) -> bool:
        """Append at least `at_least` more bytes' worth of text; False at end of stream."""
        if self.eof:
            return False
        data = self._stream.read(max(at_least, CHUNK_BYTES))
        try:
            text = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            offset = self._bytes_read + exc.start
            raise DataError(
                Reason.BAD_ENCODING, f"{self._name}: not UTF-8 text (invalid byte at offset {offset})"
            ) from None
        self._bytes_read += len(data)
        self.eof = not data
        # Drop what was consumed while appending: one copy, and the window stays about a chunk long.
        self.line += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :] + text
        self.pos = 0
        return True

    def skip_space(self) -> str | None:
        """Move past whitespace; the next character, or None at end of input."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return None

    def where(self, pos: int) -> str:
        line = self.line + self.buf.count("\n", 0, pos)
        column = pos - self.buf.rfind("\n", 0, pos)
        return f"line {line} column {column}"

    def fail(self, pos: int, problem: str, context: str) -> DataError:
        return DataError(
            Reason.BAD_JSON, f"{self._name}: not valid JSON at {self.where(pos)} ({context}): {problem}"
        )

    def decode(self, count: int) -> Any:
        """Decode the value at the current position, reading more text until it is complete."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                truncated = exc.pos >= len(self.buf) - _TRUNCATION_MARGIN or exc.msg.startswith(
                    "Unterminated"
                )
                if self.eof or not truncated:
                    raise self.fail(exc.pos, exc.msg, f"in record {count}") from None
            else:
                # A number at the very end of the buffer may continue in the next chunk.
                if end < len(self.buf) or self.eof:
                    self.pos = end
                    return value
            self.more(len(self.buf) - self.pos)


def iter_json(stream: IO[bytes], name: str) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array, or each of a sequence of JSON values."""
    chars = _Chars(stream, name)
    first = chars.skip_space()
    if first is None:
        return
    if first != "[":
        yield from _iter_values(chars)
        return
    chars.pos += 1
    count = 0
    first = chars.skip_space()
    if first is None:
        raise chars.fail(chars.pos, "the array is not closed", _after(count))
    if first == "]":
        chars.pos += 1
    else:
        scan, comma_at = _DECODER.scan_once, _COMMA.match  # type: ignore[attr-defined]
        while True:  # at the start of an element (not whitespace, not the end of the buffer)
            try:  # the usual case: the element and the comma after it are whole in the buffer
                value, end = scan(chars.buf, chars.pos)
                comma = comma_at(chars.buf, end)
            except (StopIteration, json.JSONDecodeError):  # no value here, or cut off by the buffer's end
                comma = None
            if comma is not None and comma.end() < len(chars.buf):
                chars.pos = comma.end()
                yield value
                count += 1
                continue
            yield chars.decode(count)  # decodes again, reading on and reporting errors
            count += 1
            sep = chars.skip_space()
            if sep == ",":
                chars.pos += 1
                if chars.skip_space() is None:
                    raise chars.fail(chars.pos, "the array is not closed", _after(count))
                continue
            if sep == "]":
                chars.pos += 1
                break
            raise chars.fail(chars.pos, "expected ',' or ']' after an array element", _after(count))
    if chars.skip_space() is not None:
        raise chars.fail(chars.pos, "extra data after the array", _after(count))


def _after(count: int) -> str:
    return f"after record {count - 1}" if count else "before the first record"


def _iter_values(chars: _Chars) -> Iterator[Any]:
    count = 0
    while chars.skip_space() is not None:
        yield chars.decode(count)
        count += 1
