"""Normalized records: what a valid row of each format becomes, whatever its spelling or file type.

Roles are already mapped (human→user, gpt→assistant), a leading system turn is lifted into
`system`, and images are references that load on demand, so one record stays small.

The classes are plain (not frozen) dataclasses: every row of a file is built twice, once by
validation and once read back from the loader's spool, and a frozen __init__ costs twice as much.
Treat them as values all the same.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from PIL import Image

Role = Literal["system", "user", "assistant"]


class _Compact:
    """Pickled as its class and field values (the __init__ order): smaller and faster than the
    default state dict, which matters for the loader's spool of every record."""

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return type(self), tuple(self.__dict__.values())


@dataclass
class Message(_Compact):
    role: Role
    content: str


@dataclass
class ImageRef(_Compact):
    """One image: bytes embedded in the data (parquet) or a member of the uploaded zip."""

    name: str
    data: bytes | None = None
    zip_path: str | None = None
    member: str | None = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.zip_path is not None and self.member is not None
        stat = os.stat(self.zip_path)
        return _open_zip(self.zip_path, stat.st_mtime_ns, stat.st_size).read(self.member)

    def open(self) -> Image.Image:
        """A fully loaded PIL image (no file handle stays open)."""
        with Image.open(io.BytesIO(self.read_bytes())) as image:
            image.load()
            return image


@lru_cache(maxsize=4)
def _open_zip(path: str, mtime_ns: int, size: int) -> zipfile.ZipFile:
    """Parsing a central directory of many images once, not once per image; keyed on the file's identity."""
    return zipfile.ZipFile(path)


@dataclass
class ChatRecord(_Compact):
    """A ShareGPT conversation; `chosen`/`rejected` are set for preference (DPO) pairs."""

    index: int
    turns: tuple[Message, ...]
    system: str | None = None
    tools: Any = None
    images: tuple[ImageRef, ...] = ()
    chosen: Message | None = None
    rejected: Message | None = None

    @property
    def is_pair(self) -> bool:
        return self.chosen is not None


@dataclass
class AlpacaRecord(_Compact):
    index: int
    instruction: str
    output: str
    input: str = ""
    system: str | None = None
    history: tuple[tuple[str, str], ...] = field(default=())

    @property
    def prompt_text(self) -> str:
        """LLaMA-Factory's user turn: instruction and input joined by a newline, empty parts left out."""
        if self.instruction and self.input:
            return f"{self.instruction}\n{self.input}"
        return self.instruction or self.input


@dataclass
class TextRecord(_Compact):
    index: int
    text: str


Record = ChatRecord | AlpacaRecord | TextRecord
