"""Whole-file rules: encodings and line ends, broken files, file types, size limit, unsafe zips, streaming."""

from __future__ import annotations

import io
import json
import random
import stat
import zipfile

import pytest
from kaizen_runner.data import DataError, Limits, Reason, jsonstream, load_records
from kaizen_runner.data.jsonstream import iter_json

from .fixtures_gen import ALPACA_RECORDS, ALPACA_ROWS, CORPUS_RECORDS, CORPUS_ROWS, csv_bytes, write_zip

BOM = b"\xef\xbb\xbf"


def fails(path, fmt, reason: Reason, **options) -> DataError:
    with pytest.raises(DataError) as caught:
        load_records(path, fmt, **options)
    assert caught.value.reason is reason, caught.value.message
    return caught.value


@pytest.mark.parametrize("bom", [b"", BOM], ids=["no-bom", "bom"])
@pytest.mark.parametrize(
    ("name", "fmt", "content", "expected"),
    [
        ("a.json", "alpaca", json.dumps(ALPACA_ROWS, indent=2, ensure_ascii=False).encode(), ALPACA_RECORDS),
        ("a.csv", "alpaca", csv_bytes(ALPACA_ROWS), ALPACA_RECORDS),
        ("c.txt", "corpus", "".join(r["text"] + "\n" for r in CORPUS_ROWS).encode(), CORPUS_RECORDS),
        ("c.jsonl", "corpus", "".join(json.dumps(r) + "\n" for r in CORPUS_ROWS).encode(), CORPUS_RECORDS),
    ],
    ids=["json", "csv", "txt", "jsonl"],
)
def test_bom_and_crlf_are_tolerated(tmp_path, bom, name, fmt, content, expected):
    path = tmp_path / name
    path.write_bytes(bom + content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    with load_records(path, fmt) as result:
        assert list(result.records) == expected


def test_broken_json_array_is_refused_with_its_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"text": "a"},\n {"text": "b"}\n {"text": "c"}]')
    error = fails(path, "corpus", Reason.BAD_JSON)
    assert "line 3 column 2" in error.message and "after record 1" in error.message


def test_truncated_json_array_is_refused(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('[{"text": "a"}, {"text": "b')
    assert "in record 1" in fails(path, "corpus", Reason.BAD_JSON).message


def test_non_utf8_json_is_refused(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"text": "café"}]'.encode("latin-1"))
    assert "offset 14" in fails(path, "corpus", Reason.BAD_ENCODING).message


@pytest.mark.parametrize(
    "content", [b"", b"  \n", b"[]", b"[ ]\n"], ids=["empty", "blank", "empty-array", "spaced"]
)
def test_a_file_without_records_is_unusable(tmp_path, content):
    path = tmp_path / "empty.json"
    path.write_bytes(content)
    assert "holds no records" in fails(path, "corpus", Reason.NO_USABLE_RECORDS).message


def test_a_json_file_may_hold_one_object_per_line(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in CORPUS_ROWS))
    with load_records(path, "corpus") as result:
        assert list(result.records) == CORPUS_RECORDS


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "corpus"),
        ("a.txt", "alpaca"),
        ("a.json", "sharegpt_image"),
        ("a.xlsx", "alpaca"),
        ("noext", "corpus"),
    ],
)
def test_file_type_must_match_the_format(tmp_path, name, fmt):
    path = tmp_path / name
    path.write_text("[]")
    fails(path, fmt, Reason.UNSUPPORTED_FILE_TYPE)


def test_unknown_format_name(tmp_path):
    assert (
        "choose one of alpaca, sharegpt"
        in fails(tmp_path / "a.json", "jsonish", Reason.UNKNOWN_FORMAT).message
    )


def test_format_names_are_case_insensitive(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(CORPUS_ROWS[0]))
    for name in ("Corpus", "CORPUS", " corpus "):
        with load_records(path, name) as result:
            assert result.report.format == "corpus"


def test_a_file_over_100_mb_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as sparse:
        sparse.truncate(100 * 1024 * 1024 + 1)
    opened = []
    monkeypatch.setattr("kaizen_runner.data.readers.open", lambda *a, **k: opened.append(a), raising=False)
    error = fails(path, "corpus", Reason.FILE_TOO_LARGE)
    assert "100.0 MiB" in error.message and not opened


def test_the_same_file_at_the_limit_is_read(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text(json.dumps(CORPUS_ROWS[0]) + "\n")
    fails(path, "corpus", Reason.FILE_TOO_LARGE, limits=Limits(max_upload_bytes=path.stat().st_size - 1))
    with load_records(path, "corpus", limits=Limits(max_upload_bytes=path.stat().st_size)) as result:
        assert result.report.usable == 1


# --- zip safety ---

DATA = json.dumps(CORPUS_ROWS).encode()


def zip_with(tmp_path, *entries: tuple[zipfile.ZipInfo | str, bytes]):
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return path


@pytest.mark.parametrize(
    "name", ["../evil.json", "a/../../evil.json", "/etc/evil.json", "..\\evil.json", "C:/evil.json"]
)
def test_zip_path_traversal_is_refused(tmp_path, name):
    path = zip_with(tmp_path, ("train.json", DATA), (name, b"[]"))
    assert "outside the archive" in fails(path, "corpus", Reason.UNSAFE_ARCHIVE).message


def test_zip_symlink_is_refused(tmp_path):
    link = zipfile.ZipInfo("images/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = zip_with(tmp_path, ("train.json", DATA), (link, b"/etc/passwd"))
    assert "symbolic link" in fails(path, "corpus", Reason.UNSAFE_ARCHIVE).message


def test_zip_bomb_ratio_is_refused(tmp_path):
    path = zip_with(tmp_path, ("train.json", DATA), ("padding.bin", bytes(4 * 1024 * 1024)))
    assert "expands" in fails(path, "corpus", Reason.ZIP_BOMB).message


def test_zip_total_size_limit(tmp_path):
    path = zip_with(tmp_path, ("train.json", DATA), ("notes.txt.bak", random.randbytes(5000)))
    fails(path, "corpus", Reason.ZIP_BOMB, limits=Limits(max_zip_uncompressed_bytes=4000))


def test_zip_entry_count_limit(tmp_path):
    path = zip_with(tmp_path, ("train.json", DATA), *[(f"img/{i}.png", b"x") for i in range(5)])
    fails(path, "corpus", Reason.ZIP_BOMB, limits=Limits(max_zip_members=5))


def test_encrypted_zip_entry_is_refused(tmp_path):
    path = zip_with(tmp_path, ("train.json", DATA))
    raw = bytearray(path.read_bytes())
    # zipfile cannot write encrypted entries: set the "encrypted" flag in both headers by hand.
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        raw[raw.index(signature) + flag_offset] |= 0x1
    path.write_bytes(bytes(raw))
    assert "encrypted" in fails(path, "corpus", Reason.BAD_ARCHIVE).message


def test_not_a_zip(tmp_path):
    path = tmp_path / "fake.zip"
    path.write_bytes(DATA)
    fails(path, "corpus", Reason.BAD_ARCHIVE)


def test_corrupt_zip_member_is_reported_not_raised_raw(tmp_path):
    path = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("train.json", DATA)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"Film")
    raw[at : at + 4] = b"Blur"
    path.write_bytes(bytes(raw))
    assert "broken zip" in fails(path, "corpus", Reason.BAD_ARCHIVE).message


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"readme.md": b"hi"}, "no corpus data file"),
        ({"a.json": DATA, "b.jsonl": DATA}, "several data files"),
    ],
)
def test_zip_must_hold_one_data_file(tmp_path, members, message):
    assert message in fails(write_zip(tmp_path / "u.zip", members), "corpus", Reason.BAD_ARCHIVE).message


def test_zip_prefers_train_and_ignores_mac_metadata(tmp_path):
    members = {"data/train.json": DATA, "data/val.json": b"[]", "__MACOSX/data/._train.json": b"\0\0"}
    with load_records(write_zip(tmp_path / "u.zip", members), "corpus") as result:
        assert list(result.records) == CORPUS_RECORDS


# --- streaming ---


class CountingStream(io.RawIOBase):
    """A byte stream that remembers how much was read from it."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.inner.readinto(buffer)
        self.bytes_read += n
        return n


def test_a_large_json_array_is_read_incrementally():
    rows = [{"text": f"passage {i} " + "x" * 1000} for i in range(8000)]
    data = json.dumps(rows).encode()
    stream = CountingStream(data)
    values = iter_json(io.BufferedReader(stream), "big.json")
    assert next(values) == rows[0]
    assert stream.bytes_read <= 2 * jsonstream.CHUNK_BYTES < len(data) / 3
    assert sum(1 for _ in values) == len(rows) - 1


DOCS = [
    [1, 22, 333, -4.5e10, 0.25, True, False, None],
    [{"text": "é" * 7 + "🙂" * 5 + "\\u00e9"}, {"nested": {"a": [1, {"b": "c"}]}}],
    [{"text": "x" * 100}, "a string", 123456789012345678901234567890],
    [],
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
@pytest.mark.parametrize("doc", DOCS, ids=["numbers", "unicode", "mixed", "empty"])
def test_chunk_boundaries_never_change_what_is_parsed(monkeypatch, chunk, doc):
    monkeypatch.setattr(jsonstream, "CHUNK_BYTES", chunk)
    text = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    assert list(iter_json(io.BytesIO(text), "doc.json")) == doc


def test_the_file_is_parsed_once_and_its_spool_removed_on_close(tmp_path, monkeypatch):
    """Records come back from the validation pass's spool: iterating them twice reads the file zero more
    times, and closing the result removes the spool."""
    from kaizen_runner.data import loader

    path = tmp_path / "a.json"
    path.write_text(json.dumps(ALPACA_ROWS))
    opened = []
    real = loader.open_rows
    monkeypatch.setattr(loader, "open_rows", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    result = load_records(path, "alpaca")
    assert list(result.records) == ALPACA_RECORDS and list(result.records) == ALPACA_RECORDS
    assert opened == [path]
    spool = result.records.spool
    assert spool.is_file()
    result.close()
    assert not spool.exists()


def test_the_spool_keeps_every_record_in_order_across_batches(tmp_path, monkeypatch):
    """Records are spooled in batches sized by the records before them: a run of small records then
    large ones (and back) loses none and keeps the file's order."""
    from kaizen_runner.data import loader

    monkeypatch.setattr(loader, "_BATCH_BYTES", 64 * 1024)
    sizes = [10] * 700 + [50_000] * 40 + [10] * 300 + [200_000] * 5 + [10]
    rows = [{"instruction": f"q{i}", "output": "a" * size} for i, size in enumerate(sizes)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(rows))
    with load_records(path, "alpaca") as result:
        records = list(result.records)
        assert len(result.records) == len(records) == len(rows)
        assert [(r.index, r.instruction, len(r.output)) for r in records] == [
            (i, f"q{i}", size) for i, size in enumerate(sizes)
        ]
