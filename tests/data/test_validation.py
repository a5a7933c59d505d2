"""Malformed records: each is skipped with its own reason, field and 0-based index.

Every case is written as record 1 of a JSONL file whose record 0 is valid, so the file stays
usable and the report must point at exactly that record.
"""

from __future__ import annotations

import gc
import json
import sys

import pytest
from kaizen_runner.data import DataError, DataFormat, Reason, load_records

from .validation_helpers import gpt, human, only_issue

A, S, P, C = DataFormat.ALPACA, DataFormat.SHAREGPT, DataFormat.PREFERENCE, DataFormat.CORPUS

VALID = {
    A: {"instruction": "Add 1 and 1", "input": "", "output": "2"},
    S: {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    P: {
        "conversations": [{"from": "human", "value": "Hi"}],
        "chosen": {"from": "gpt", "value": "Hello"},
        "rejected": {"from": "gpt", "value": "Go away"},
    },
    C: {"text": "Some text."},
}


def pair(conversations=None, **answers):
    row = {
        "conversations": [human()] if conversations is None else conversations,
        "chosen": gpt(),
        "rejected": gpt("Bye"),
    }
    row.update(answers)
    return row


# id, format, bad record, reason, field
CASES = [
    ("alpaca-no-instruction", A, {"input": "x", "output": "y"}, Reason.MISSING_FIELD, "instruction"),
    ("alpaca-no-output", A, {"instruction": "x"}, Reason.MISSING_FIELD, "output"),
    ("alpaca-null-output", A, {"instruction": "x", "output": None}, Reason.MISSING_FIELD, "output"),
    ("alpaca-number-instruction", A, {"instruction": 5, "output": "y"}, Reason.WRONG_TYPE, "instruction"),
    ("alpaca-list-output", A, {"instruction": "x", "output": ["y"]}, Reason.WRONG_TYPE, "output"),
    ("alpaca-number-input", A, {"instruction": "x", "input": 3, "output": "y"}, Reason.WRONG_TYPE, "input"),
    (
        "alpaca-number-system",
        A,
        {"instruction": "x", "output": "y", "system": 1},
        Reason.WRONG_TYPE,
        "system",
    ),
    (
        "alpaca-empty-prompt",
        A,
        {"instruction": "", "input": " ", "output": "y"},
        Reason.EMPTY_TURN,
        "instruction",
    ),
    ("alpaca-empty-output", A, {"instruction": "x", "output": " \n"}, Reason.EMPTY_TURN, "output"),
    (
        "alpaca-placeholder",
        A,
        {"instruction": "string", "input": "string", "output": "string"},
        Reason.PLACEHOLDER_RECORD,
        "record",
    ),
    (
        "alpaca-history-string",
        A,
        {"instruction": "x", "output": "y", "history": "no"},
        Reason.WRONG_TYPE,
        "history",
    ),
    (
        "alpaca-history-half-pair",
        A,
        {"instruction": "x", "output": "y", "history": [["q"]]},
        Reason.WRONG_TYPE,
        "history[0]",
    ),
    (
        "alpaca-history-empty-answer",
        A,
        {"instruction": "x", "output": "y", "history": [["q", "a"], ["q2", ""]]},
        Reason.EMPTY_TURN,
        "history[1]",
    ),
    ("alpaca-array-record", A, ["not", "an", "object"], Reason.WRONG_TYPE, "record"),
    ("sharegpt-no-conversations", S, {"dialog": []}, Reason.MISSING_FIELD, "conversations"),
    ("sharegpt-string-conversations", S, {"conversations": "hi"}, Reason.WRONG_TYPE, "conversations"),
    ("sharegpt-empty", S, {"conversations": []}, Reason.EMPTY_CONVERSATION, "conversations"),
    (
        "sharegpt-system-only",
        S,
        {"conversations": [{"from": "system", "value": "Be nice"}]},
        Reason.EMPTY_CONVERSATION,
        "conversations",
    ),
    ("sharegpt-string-turn", S, {"conversations": ["hi", gpt()]}, Reason.WRONG_TYPE, "conversations[0]"),
    (
        "sharegpt-starts-with-gpt",
        S,
        {"conversations": [gpt(), human()]},
        Reason.ROLES_OUT_OF_ORDER,
        "conversations[0].from",
    ),
    (
        "sharegpt-two-humans",
        S,
        {"conversations": [human(), human("again"), gpt()]},
        Reason.ROLES_OUT_OF_ORDER,
        "conversations[1].from",
    ),
    (
        "sharegpt-late-system",
        S,
        {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]},
        Reason.ROLES_OUT_OF_ORDER,
        "messages[1].role",
    ),
    (
        "sharegpt-bing",
        S,
        {"conversations": [human(), {"from": "bing", "value": "Searching..."}]},
        Reason.UNKNOWN_ROLE,
        "conversations[1].from",
    ),
    (
        "sharegpt-empty-turn",
        S,
        {"conversations": [human(""), gpt()]},
        Reason.EMPTY_TURN,
        "conversations[0].value",
    ),
    (
        "sharegpt-placeholder",
        S,
        {"conversations": [{"from": "string", "value": "string"}]},
        Reason.PLACEHOLDER_RECORD,
        "conversations[0]",
    ),
    (
        "sharegpt-ends-with-human",
        S,
        {"conversations": [human(), gpt(), human()]},
        Reason.WRONG_LAST_TURN,
        "conversations[2]",
    ),
    (
        "sharegpt-no-from",
        S,
        {"conversations": [{"value": "a"}, gpt()]},
        Reason.MISSING_FIELD,
        "conversations[0].from",
    ),
    (
        "sharegpt-no-content",
        S,
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]},
        Reason.MISSING_FIELD,
        "messages[0].content",
    ),
    (
        "sharegpt-number-value",
        S,
        {"conversations": [{"from": "human", "value": 5}, gpt()]},
        Reason.WRONG_TYPE,
        "conversations[0].value",
    ),
    (
        "sharegpt-bad-tools",
        S,
        {"conversations": [human(), gpt()], "tools": "{not json"},
        Reason.WRONG_TYPE,
        "tools",
    ),
    (
        "sharegpt-images-in-text-format",
        S,
        {"conversations": [human("<image>"), gpt()], "images": ["a.png"]},
        Reason.UNEXPECTED_IMAGES,
        "images",
    ),
    ("sharegpt-number-record", S, 42, Reason.WRONG_TYPE, "record"),
    (
        "preference-no-chosen",
        P,
        {"conversations": [human()], "rejected": gpt()},
        Reason.MISSING_FIELD,
        "chosen",
    ),
    (
        "preference-no-rejected",
        P,
        {"conversations": [human()], "chosen": gpt()},
        Reason.MISSING_FIELD,
        "rejected",
    ),
    ("preference-chosen-list", P, pair(chosen=[gpt()]), Reason.WRONG_TYPE, "chosen"),
    ("preference-rejected-by-human", P, pair(rejected=human()), Reason.ROLES_OUT_OF_ORDER, "rejected.from"),
    (
        "preference-chosen-unknown-role",
        P,
        pair(chosen={"from": "bot", "value": "x"}),
        Reason.UNKNOWN_ROLE,
        "chosen.from",
    ),
    ("preference-empty-chosen", P, pair(chosen=gpt("")), Reason.EMPTY_TURN, "chosen.value"),
    (
        "preference-placeholder-rejected",
        P,
        pair(rejected={"from": "string", "value": "string"}),
        Reason.PLACEHOLDER_RECORD,
        "rejected",
    ),
    (
        "preference-prompt-ends-with-gpt",
        P,
        pair([human(), gpt()]),
        Reason.WRONG_LAST_TURN,
        "conversations[1]",
    ),
    ("preference-empty-prompt", P, pair([]), Reason.EMPTY_CONVERSATION, "conversations"),
    ("corpus-empty", C, {"text": "  "}, Reason.EMPTY_TEXT, "text"),
    ("corpus-no-text", C, {"content": "x"}, Reason.MISSING_FIELD, "text"),
    ("corpus-number-text", C, {"text": 1}, Reason.WRONG_TYPE, "text"),
    ("corpus-placeholder", C, {"text": "string"}, Reason.PLACEHOLDER_RECORD, "text"),
]


def _jsonl(tmp_path, lines: list[bytes]):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize(("fmt", "bad", "reason", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_record_gets_its_reason(tmp_path, fmt, bad, reason, field):
    path = _jsonl(tmp_path, [json.dumps(VALID[fmt]).encode(), json.dumps(bad).encode()])
    issue = only_issue(path, fmt)
    assert (issue.index, issue.reason, issue.field) == (1, reason, field)
    assert issue.message.startswith("record 1 (line 2): ")


def test_record_over_max_length_is_too_long(tmp_path):
    path = _jsonl(
        tmp_path,
        [json.dumps(VALID[A]).encode(), json.dumps({"instruction": "x" * 40, "output": "y"}).encode()],
    )
    issue = only_issue(path, A, max_length=30)
    assert (issue.index, issue.reason) == (1, Reason.TOO_LONG)
    assert "41 characters" in issue.message


def test_unparsable_jsonl_line_is_bad_json_and_the_rest_still_loads(tmp_path):
    path = _jsonl(tmp_path, [json.dumps(VALID[C]).encode(), b'{"text": "unterminated'])
    issue = only_issue(path, C)
    assert (issue.index, issue.reason) == (1, Reason.BAD_JSON)


def test_non_utf8_jsonl_line_is_bad_encoding(tmp_path):
    path = _jsonl(tmp_path, [json.dumps(VALID[C]).encode(), b'{"text": "caf\xe9"}'])
    issue = only_issue(path, C)
    assert (issue.index, issue.reason) == (1, Reason.BAD_ENCODING)


def test_blank_lines_do_not_count_as_records(tmp_path):
    path = _jsonl(tmp_path, [json.dumps(VALID[C]).encode(), b"", b"   ", json.dumps({"text": ""}).encode()])
    issue = only_issue(path, C)
    assert issue.index == 1 and "line 4" in issue.message


def test_a_file_of_only_bad_records_is_unusable_and_names_the_likely_format(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([VALID[A], VALID[A]]))
    with pytest.raises(DataError) as caught:
        load_records(path, "sharegpt")
    error = caught.value
    assert error.reason is Reason.NO_USABLE_RECORDS
    assert "all 2 were skipped" in error.message and "missing_field" in error.message
    assert "look like alpaca data" in error.message
    assert error.report.counts_by_reason == {"missing_field": 2}


def test_report_json_and_text(tmp_path):
    path = _jsonl(tmp_path, [json.dumps(VALID[S]).encode(), json.dumps({"conversations": []}).encode()])
    with load_records(path, "sharegpt") as result:
        report = result.report
    as_json = json.loads(report.to_json())
    assert as_json["total"] == 2 and as_json["usable"] == 1 and as_json["skipped"] == 1
    assert as_json["counts_by_reason"] == {"empty_conversation": 1}
    assert as_json["examples"][0] == {
        "index": 1,
        "field": "conversations",
        "reason": "empty_conversation",
        "message": "record 1 (line 2): the conversation has no user or assistant turns",
    }
    text = report.to_text()
    assert "2 records, 1 usable, 1 skipped" in text
    assert "empty_conversation: 1" in text and "record 1 (line 2)" in text


def test_report_keeps_only_the_first_examples_but_counts_all(tmp_path):
    lines = [json.dumps(VALID[C]).encode()] + [json.dumps({"text": ""}).encode()] * 50
    with load_records(_jsonl(tmp_path, lines), "corpus") as result:
        report = result.report
    assert report.counts_by_reason == {"empty_text": 50}
    assert len(report.examples) == 20 and report.examples[-1].index == 20
    assert "first 20 issue(s)" in report.to_text()


def test_a_csv_row_longer_than_its_header_is_skipped_not_cut(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("instruction,input,output\nsay hi,,hello\nsay hi,,hello, world\n")
    issue = only_issue(path, A)
    assert (issue.index, issue.reason) == (1, Reason.WRONG_TYPE)
    assert "record 1 (line 3): has 4 cells but the header names 3" in issue.message


def test_empty_csv_cells_beyond_the_header_lose_nothing(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("instruction,input,output\nsay hi,,hello,\n")
    with load_records(path, A) as result:
        assert [r.output for r in result.records] == ["hello"]


def test_a_csv_without_usable_rows_leaves_no_reader_open(tmp_path, monkeypatch):
    path = tmp_path / "a.csv"
    path.write_text("instruction,input,output\nq,,\n")
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(DataError):
        load_records(path, A)  # the format hint reads the first row again
    gc.collect()
    assert [str(u.exc_value) for u in unraisable] == []
