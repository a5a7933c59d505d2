"""The published sample datasets (../shared/datasets/) load with exact counts and convert.

The bad records were found by reading the files: ShareGPT chats with an empty human turn, and
in the DPO validation file one `{"from": "string", "value": "string"}` placeholder and one turn
whose role is the placeholder `string` while its value is real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kaizen_runner.data import DataError, DataFormat, Reason, load_records, to_hf_dataset, to_trl

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "ai-studio-samples"

EMPTY, PLACEHOLDER, UNKNOWN = Reason.EMPTY_TURN, Reason.PLACEHOLDER_RECORD, Reason.UNKNOWN_ROLE

# file, format, total, {skipped index: reason}
EXPECTED = [
    ("alpaca/alpaca_train_mini.json", DataFormat.ALPACA, 500, {}),
    ("alpaca/alpaca_eval_mini.json", DataFormat.ALPACA, 100, {}),
    ("alpaca/alpaca_test_mini.json", DataFormat.ALPACA, 100, {}),
    ("corpus/corpus_wiki_en_train_mini.json", DataFormat.CORPUS, 500, {}),
    ("corpus/corpus_wiki_en_val_mini.json", DataFormat.CORPUS, 100, {}),
    (
        "sharegpt/sharegpt_chat_train_mini.json",
        DataFormat.SHAREGPT,
        500,
        {i: EMPTY for i in (53, 166, 245, 302, 382, 423, 431, 493)},
    ),
    ("sharegpt/sharegpt_chat_val_mini.json", DataFormat.SHAREGPT, 100, {79: EMPTY}),
    ("sharegpt/sharegpt_chat_test_mini.json", DataFormat.SHAREGPT, 100, {21: EMPTY, 93: EMPTY}),
    ("sharegpt-dpo/dpo_agrilla_en_train_sharegpt_mini.json", DataFormat.PREFERENCE, 500, {}),
    (
        "sharegpt-dpo/dpo_agrilla_en_val_sharegpt_mini.json",
        DataFormat.PREFERENCE,
        100,
        {0: PLACEHOLDER, 1: UNKNOWN},
    ),
]
TASK = {
    DataFormat.ALPACA: "sft",
    DataFormat.CORPUS: "pretrain",
    DataFormat.SHAREGPT: "sft",
    DataFormat.PREFERENCE: "dpo",
}
ROW_KEYS = {
    DataFormat.ALPACA: {"prompt", "completion"},
    DataFormat.CORPUS: {"text"},
    DataFormat.SHAREGPT: {"messages", "tools"},
    DataFormat.PREFERENCE: {"prompt", "chosen", "rejected"},
}


def sample(name: str) -> Path:
    path = SAMPLES / name
    assert path.is_file(), (
        f"sample dataset missing: {path} (the tests expect ../shared/datasets/ beside the repo)"
    )
    return path


@pytest.mark.parametrize(("name", "fmt", "total", "skipped"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_sample_loads_with_exact_counts_and_converts(name, fmt, total, skipped):
    with load_records(sample(name), fmt) as result:
        report = result.report
        assert (report.total, report.usable, report.skipped) == (total, total - len(skipped), len(skipped))
        assert {issue.index: issue.reason for issue in report.examples} == skipped
        assert dict(report.counts_by_reason) == {
            reason.value: list(skipped.values()).count(reason) for reason in set(skipped.values())
        }
        records = list(result.records)
        assert len(records) == len(result.records) == report.usable
        assert not {r.index for r in records} & set(skipped)
        rows = list(to_trl(result.records, fmt, TASK[fmt]))
    assert len(rows) == report.usable
    assert all(set(row) == ROW_KEYS[fmt] for row in rows)


def test_sharegpt_sample_rows_map_roles_for_trl():
    with load_records(sample("sharegpt/sharegpt_chat_val_mini.json"), "sharegpt") as result:
        rows = list(to_trl(result.records, "sharegpt", "sft"))
    roles = {m["role"] for row in rows for m in row["messages"]}
    assert roles == {"user", "assistant"}
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)


def test_dpo_sample_rows_have_single_turn_answers():
    with load_records(sample("sharegpt-dpo/dpo_agrilla_en_train_sharegpt_mini.json"), "preference") as result:
        rows = list(to_trl(result.records, "preference", "dpo"))
    assert all(len(row["chosen"]) == len(row["rejected"]) == 1 for row in rows)
    assert all(row["prompt"][-1]["role"] == "user" for row in rows)
    # 142 of the 500 prompts open with a system turn, which stays first.
    assert sum(row["prompt"][0]["role"] == "system" for row in rows) == 142


def test_dpo_sample_is_usable_as_sharegpt_pairs_for_dpo():
    """SPEC §3: the DPO trainer also takes ShareGPT data holding preference pairs."""
    with load_records(sample("sharegpt-dpo/dpo_agrilla_en_val_sharegpt_mini.json"), "ShareGPT") as result:
        assert result.report.usable == 98
        assert len(list(to_trl(result.records, "sharegpt", "dpo"))) == 98


@pytest.mark.parametrize(
    ("name", "fmt", "reference_of_first"),
    [
        ("alpaca/alpaca_test_mini.json", "alpaca", "Sure, based on your budget"),
        ("sharegpt/sharegpt_chat_test_mini.json", "sharegpt", None),
    ],
)
def test_samples_convert_for_the_standard_evaluation(name, fmt, reference_of_first):
    with load_records(sample(name), fmt) as result:
        rows = list(to_trl(result.records, fmt, "eval"))
    assert all(set(row) == {"prompt", "reference"} and row["reference"].strip() for row in rows)
    assert all(row["prompt"][-1]["role"] == "user" for row in rows)
    if reference_of_first:
        assert rows[0]["reference"].startswith(reference_of_first)


def test_sample_as_crlf_jsonl_with_bom_gives_the_same_records(tmp_path):
    """Windows-made uploads: BOM, CRLF line ends, one record per line."""
    source = sample("sharegpt/sharegpt_chat_test_mini.json")
    rows = json.loads(source.read_text(encoding="utf-8"))
    converted = tmp_path / "chat.jsonl"
    converted.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\r\n" for r in rows).encode())
    with load_records(source, "sharegpt") as original, load_records(converted, "sharegpt") as crlf:
        assert list(crlf.records) == list(original.records)
        assert crlf.report.as_dict()["counts_by_reason"] == {"empty_turn": 2}


def test_strict_mode_refuses_the_dpo_validation_sample():
    with pytest.raises(DataError) as caught:
        load_records(sample("sharegpt-dpo/dpo_agrilla_en_val_sharegpt_mini.json"), "preference", strict=True)
    assert caught.value.reason is Reason.STRICT_VIOLATION
    assert "2 of 100 records are unusable" in caught.value.message
    assert "record 0" in caught.value.message
    assert caught.value.report.usable == 98


def test_a_sample_becomes_a_hugging_face_dataset(tmp_path):
    with load_records(sample("alpaca/alpaca_eval_mini.json"), "alpaca") as result:
        dataset = to_hf_dataset(to_trl(result.records, "alpaca", "sft"), cache_dir=str(tmp_path))
    assert dataset.num_rows == 100
    assert dataset[0]["prompt"][0]["role"] == "user"
    assert dataset[0]["completion"][0]["role"] == "assistant"
