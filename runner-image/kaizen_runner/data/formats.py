"""Data format and file type names, and which file types each format accepts (SPEC §2)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePosixPath

from kaizen_runner.data.issues import DataError, Reason


class DataFormat(StrEnum):
    """The dataset formats a user can pick; the CRD mirrors these exact values."""

    ALPACA = "alpaca"
    SHAREGPT = "sharegpt"
    SHAREGPT_IMAGE = "sharegpt_image"
    CORPUS = "corpus"
    PREFERENCE = "preference"


class FileType(StrEnum):
    CSV = "csv"
    JSON = "json"
    JSONL = "jsonl"
    TXT = "txt"
    PARQUET = "parquet"
    ZIP = "zip"


_EXTENSIONS = {
    ".csv": FileType.CSV,
    ".json": FileType.JSON,
    ".jsonl": FileType.JSONL,
    ".jsonlines": FileType.JSONL,
    ".txt": FileType.TXT,
    ".parquet": FileType.PARQUET,
    ".zip": FileType.ZIP,
}

ALLOWED_FILE_TYPES: dict[DataFormat, frozenset[FileType]] = {
    DataFormat.ALPACA: frozenset(
        {FileType.CSV, FileType.JSON, FileType.JSONL, FileType.ZIP, FileType.PARQUET}
    ),
    DataFormat.SHAREGPT: frozenset({FileType.JSON, FileType.JSONL, FileType.ZIP, FileType.PARQUET}),
    DataFormat.SHAREGPT_IMAGE: frozenset({FileType.ZIP, FileType.PARQUET}),
    DataFormat.CORPUS: frozenset(
        {FileType.TXT, FileType.JSON, FileType.JSONL, FileType.ZIP, FileType.PARQUET}
    ),
    DataFormat.PREFERENCE: frozenset({FileType.JSON, FileType.JSONL, FileType.ZIP, FileType.PARQUET}),
}

# Spellings users type (the hosted console's names, and "dpo" for the preference format).
_ALIASES = {"dpo": DataFormat.PREFERENCE, "sharegpt-image": DataFormat.SHAREGPT_IMAGE}


def parse_format(name: str | DataFormat) -> DataFormat:
    """Case-insensitive: `ShareGPT_Image`, `sharegpt_image` and `SHAREGPT-IMAGE` are the same format."""
    if isinstance(name, DataFormat):
        return name
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return DataFormat(key)
    except ValueError:
        choices = ", ".join(f.value for f in DataFormat)
        raise DataError(
            Reason.UNKNOWN_FORMAT, f"unknown data format {name!r}; choose one of {choices}"
        ) from None


def file_type_of(name: str, source: str | None = None) -> FileType:
    """The file type named by a file's extension; `source` is how errors name the file (e.g. its URL)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in _EXTENSIONS:
        known = ", ".join(sorted(_EXTENSIONS))
        raise DataError(
            Reason.UNSUPPORTED_FILE_TYPE,
            f"{source or name}: unknown file type {suffix or '(none)'!r}; expected one of {known}",
        )
    return _EXTENSIONS[suffix]


def check_file_type(fmt: DataFormat, file_type: FileType, name: str) -> None:
    allowed = ALLOWED_FILE_TYPES[fmt]
    if file_type not in allowed:
        kinds = ", ".join(sorted(t.value for t in allowed))
        raise DataError(
            Reason.UNSUPPORTED_FILE_TYPE,
            f"{name}: a {fmt.value} dataset cannot be a {file_type.value} file; use one of {kinds}",
        )
