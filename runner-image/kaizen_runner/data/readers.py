"""File readers: turn a local file of any supported type into a stream of raw rows.

Every reader streams: JSON arrays element by element, JSONL/txt/csv line by line, parquet
batch by batch, and a zip's data member straight from the archive. Row indices are 0-based
positions in the file (blank lines of line-based files are not rows).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kaizen_runner.data.archive import check_archive, find_data_member
from kaizen_runner.data.formats import ALLOWED_FILE_TYPES, DataFormat, FileType
from kaizen_runner.data.issues import DataError, Issue, Reason
from kaizen_runner.data.jsonstream import iter_json
from kaizen_runner.data.limits import DEFAULT_LIMITS, Limits

_BOM = b"\xef\xbb\xbf"
_PARQUET_BATCH_ROWS = 64


@dataclass(slots=True)
class RawRow:
    """One row as read, before validation; `issue` is set when the row could not even be parsed.

    Not frozen: one is made per row, and a frozen dataclass's __init__ costs twice as much."""

    index: int
    value: Any = None
    line: int | None = None
    issue: Issue | None = None


Rows = Generator[RawRow, None, None]


@dataclass(frozen=True)
class Media:
    """Where the images named by rows live: the uploaded zip (with the data file's folder) or the rows."""

    zip_path: str | None = None
    folder: str = ""
    member_sizes: Mapping[str, int] = field(default_factory=dict)
    max_image_bytes: int = DEFAULT_LIMITS.max_image_bytes
    embedded: bool = False


def _where(index: int, line: int | None) -> str:
    return f"record {index} (line {line})" if line is not None else f"record {index}"


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, str | None, bytes]]:
    """(line number, decoded text or None if not UTF-8, raw bytes) for each non-blank line."""
    for number, raw in enumerate(stream, start=1):
        data = raw[len(_BOM) :] if number == 1 and raw.startswith(_BOM) else raw
        if not data.strip():
            continue
        try:
            yield number, data.decode("utf-8"), data
        except UnicodeDecodeError:
            yield number, None, data


def _encoding_issue(index: int, line: int, field: str) -> Issue:
    return Issue(index, field, Reason.BAD_ENCODING, f"{_where(index, line)}: not UTF-8 text")


def read_jsonl(stream: IO[bytes], name: str) -> Rows:
    for index, (line, text, _) in enumerate(_lines(stream)):
        if text is None:
            yield RawRow(index, line=line, issue=_encoding_issue(index, line, "record"))
            continue
        try:
            yield RawRow(index, json.loads(text), line)
        except json.JSONDecodeError as exc:
            message = f"{_where(index, line)}: not valid JSON: {exc.msg} (column {exc.colno})"
            yield RawRow(index, line=line, issue=Issue(index, "record", Reason.BAD_JSON, message))


def read_json(stream: IO[bytes], name: str) -> Rows:
    for index, value in enumerate(iter_json(stream, name)):
        yield RawRow(index, value)


def read_txt(stream: IO[bytes], name: str) -> Rows:
    """Plain text corpus: each non-blank line is one `{text}` record."""
    for index, (line, text, _) in enumerate(_lines(stream)):
        if text is None:
            yield RawRow(index, line=line, issue=_encoding_issue(index, line, "text"))
        else:
            yield RawRow(index, {"text": text.rstrip("\r\n")}, line)


def read_csv(stream: IO[bytes], name: str) -> Rows:
    """CSV with a header row; a `history` cell holds JSON (a list of [instruction, output] pairs)."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    csv.field_size_limit(DEFAULT_LIMITS.max_upload_bytes)
    reader = csv.DictReader(text)
    try:
        for index, row in enumerate(reader):
            extra = row.pop(None, None)  # cells beyond the header (DictReader's restkey)
            if extra and any(cell.strip() for cell in extra):
                yield RawRow(index, line=reader.line_num, issue=_extra_cells(index, reader, len(extra)))
                continue
            history = row.get("history")
            if isinstance(history, str):
                row["history"] = _json_cell(history)
            yield RawRow(index, row, reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataError(Reason.BAD_ENCODING, f"{name}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(Reason.BAD_FILE, f"{name}: broken CSV at line {reader.line_num}: {exc}") from None
    finally:
        text.detach()


def _extra_cells(index: int, reader: csv.DictReader[str], extra: int) -> Issue:
    """A row longer than its header: its last cells would be lost (often an unquoted comma in a cell).
    Empty cells beyond the header (a trailing comma) lose nothing and are dropped."""
    named = len(reader.fieldnames or [])
    message = (
        f"{_where(index, reader.line_num)}: has {named + extra} cells but the header names {named} "
        "(quote a cell that holds a comma)"
    )
    return Issue(index, "record", Reason.WRONG_TYPE, message)


def _json_cell(cell: str) -> Any:
    if not cell.strip():
        return None
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        return cell  # validation reports it as the wrong type


def read_parquet(source: str | IO[bytes], name: str) -> Rows:
    # pyarrow is imported only for parquet: it is most of this package's import time.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
        index = 0
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                yield RawRow(index, row)
                index += 1
    except (pa.ArrowException, OSError) as exc:
        raise DataError(Reason.BAD_FILE, f"{name}: not a readable parquet file ({exc})") from None


_STREAM_READERS = {
    FileType.JSON: read_json,
    FileType.JSONL: read_jsonl,
    FileType.TXT: read_txt,
    FileType.CSV: read_csv,
}


@contextlib.contextmanager
def open_rows(
    path: Path, name: str, file_type: FileType, fmt: DataFormat, limits: Limits
) -> Iterator[tuple[Iterator[RawRow], Media]]:
    """Open a local data file; yields its rows and where its images are. Rows left unread (the format
    hint reads one) are closed before their file, so a reader's cleanup still finds it open."""
    if file_type is FileType.ZIP:
        with _open_zip_rows(path, name, fmt, limits) as opened:
            yield opened
    elif file_type is FileType.PARQUET:
        with contextlib.closing(read_parquet(str(path), name)) as rows:
            yield rows, Media(embedded=True)
    else:
        with open(path, "rb") as stream, contextlib.closing(_STREAM_READERS[file_type](stream, name)) as rows:
            yield rows, Media()


@contextlib.contextmanager
def _open_zip_rows(
    path: Path, name: str, fmt: DataFormat, limits: Limits
) -> Iterator[tuple[Iterator[RawRow], Media]]:
    infos = check_archive(path, name, limits)
    allowed = ALLOWED_FILE_TYPES[fmt] - {FileType.ZIP}
    if fmt is DataFormat.SHAREGPT_IMAGE:
        allowed = frozenset({FileType.JSON, FileType.JSONL})
    member = find_data_member(infos, fmt, allowed, name)
    sizes = {info.filename: info.file_size for info in infos}
    media = Media(str(path), member.folder, sizes, limits.max_image_bytes)
    member_name = f"{name}!{member.name}"
    with zipfile.ZipFile(path) as archive:
        if member.file_type is FileType.PARQUET:
            # Parquet needs random access, which a compressed member does not give: copy it out.
            with tempfile.TemporaryDirectory(prefix="kaizen-zip-") as tmp:
                local = Path(tmp) / "data.parquet"
                with archive.open(member.name) as src, open(local, "wb") as dst:
                    _copy_member(src, dst, name)
                with contextlib.closing(read_parquet(str(local), member_name)) as rows:
                    yield rows, Media(embedded=True)
            return
        with archive.open(member.name) as stream:
            rows = _guard_archive(_STREAM_READERS[member.file_type](stream, member_name), name)
            with contextlib.closing(rows):
                yield rows, media


def _copy_member(src: IO[bytes], dst: IO[bytes], name: str) -> None:
    try:
        shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(Reason.BAD_ARCHIVE, f"{name}: broken zip archive ({exc})") from None


def _guard_archive(rows: Rows, name: str) -> Rows:
    """A corrupt member only shows while it is read (bad CRC, truncated deflate stream)."""
    try:
        yield from rows
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(Reason.BAD_ARCHIVE, f"{name}: broken zip archive ({exc})") from None
