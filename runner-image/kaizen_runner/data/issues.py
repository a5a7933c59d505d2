"""Reason codes, per-record issues and the one exception the data layer raises.

Reason values are stable snake_case strings: reports, the CLI's JSON output and the operator's
preflight status all carry them, so renaming one is a breaking change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    # A record that cannot be used (skipped by default, fatal with strict=True).
    BAD_JSON = "bad_json"
    BAD_ENCODING = "bad_encoding"
    WRONG_TYPE = "wrong_type"
    MISSING_FIELD = "missing_field"
    PLACEHOLDER_RECORD = "placeholder_record"
    EMPTY_CONVERSATION = "empty_conversation"
    EMPTY_TURN = "empty_turn"
    EMPTY_TEXT = "empty_text"
    UNKNOWN_ROLE = "unknown_role"
    ROLES_OUT_OF_ORDER = "roles_out_of_order"
    WRONG_LAST_TURN = "wrong_last_turn"
    IMAGE_COUNT_MISMATCH = "image_count_mismatch"
    MISSING_IMAGE = "missing_image"
    NOT_AN_IMAGE = "not_an_image"
    IMAGE_TOO_LARGE = "image_too_large"
    UNEXPECTED_IMAGES = "unexpected_images"
    TOO_LONG = "too_long"
    # A whole file or source that cannot be used (always fatal).
    UNKNOWN_FORMAT = "unknown_format"
    UNSUPPORTED_FILE_TYPE = "unsupported_file_type"
    FILE_TOO_LARGE = "file_too_large"
    SOURCE_NOT_FOUND = "source_not_found"
    SOURCE_UNREACHABLE = "source_unreachable"
    ACCESS_DENIED = "access_denied"
    BAD_SOURCE = "bad_source"
    BAD_ARCHIVE = "bad_archive"
    UNSAFE_ARCHIVE = "unsafe_archive"
    ZIP_BOMB = "zip_bomb"
    BAD_FILE = "bad_file"
    NO_USABLE_RECORDS = "no_usable_records"
    STRICT_VIOLATION = "strict_violation"
    WRONG_TASK = "wrong_task"


@dataclass(frozen=True)
class Issue:
    """Why one record was skipped. `index` is the record's 0-based position in the file."""

    index: int
    field: str
    reason: Reason
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason.value}


class DataError(Exception):
    """The data cannot be used. The message is meant for the user as is (no traceback needed)."""

    def __init__(self, reason: Reason, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.report = report
