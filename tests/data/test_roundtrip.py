"""Every format × file type it accepts: generated rows load back as the same normalized records."""

from __future__ import annotations

import pytest
from kaizen_runner.data import DataFormat, load_records
from kaizen_runner.data.formats import ALLOWED_FILE_TYPES, FileType

from .fixtures_gen import IMAGE_EXPECTED, RECORDS, ROWS, write_dataset

TEXT_FORMATS = [DataFormat.ALPACA, DataFormat.SHAREGPT, DataFormat.PREFERENCE, DataFormat.CORPUS]
# (format, file type, member type inside a zip)
CASES = [(fmt, kind.value, "json") for fmt in TEXT_FORMATS for kind in sorted(ALLOWED_FILE_TYPES[fmt])]
CASES += [(fmt, "jsonlines", "json") for fmt in TEXT_FORMATS if FileType.JSONL in ALLOWED_FILE_TYPES[fmt]]
CASES += [
    (DataFormat.ALPACA, "zip", "csv"),
    (DataFormat.ALPACA, "zip", "jsonl"),
    (DataFormat.SHAREGPT, "zip", "parquet"),
    (DataFormat.CORPUS, "zip", "txt"),
]


@pytest.mark.parametrize(
    ("fmt", "file_type", "inner"), CASES, ids=[f"{f.value}-{t}-{i}" for f, t, i in CASES]
)
def test_text_formats_round_trip(tmp_path, fmt, file_type, inner):
    path = write_dataset(tmp_path, fmt, file_type, inner)
    with load_records(path, fmt) as result:
        assert result.report.total == result.report.usable == len(ROWS[fmt])
        assert list(result.records) == RECORDS[fmt]


def _image_view(record):
    return (
        record.index,
        record.turns,
        record.chosen,
        record.rejected,
        [ref.read_bytes() for ref in record.images],
    )


@pytest.mark.parametrize(("file_type", "inner"), [("zip", "json"), ("zip", "jsonl"), ("parquet", "")])
def test_sharegpt_image_round_trips(tmp_path, file_type, inner):
    path = write_dataset(tmp_path, DataFormat.SHAREGPT_IMAGE, file_type, inner or "json")
    with load_records(path, "sharegpt_image") as result:
        assert result.report.usable == len(IMAGE_EXPECTED)
        assert [_image_view(r) for r in result.records] == IMAGE_EXPECTED
        assert [ref.name for ref in next(iter(result.records)).images] == ["images/red.png"]


def test_records_can_be_iterated_twice(tmp_path):
    path = write_dataset(tmp_path, DataFormat.SHAREGPT, "jsonl")
    with load_records(path, "sharegpt") as result:
        assert list(result.records) == list(result.records) == RECORDS[DataFormat.SHAREGPT]
