"""Nejumi Leaderboard 3 adapters on fixture data built here, against hand-computed scores; the model is an
OpenAI-compatible endpoint on 127.0.0.1 whose answers the fixtures choose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaizen_runner.cli import main
from kaizen_runner.eval.nejumi import answer_text, char_f1, score_jbbq, score_jtruthfulqa, set_f1

from .conftest import write_config
from .fake_openai import endpoint_model, openai_server

# JBBQ: (context, unk, stereotype, gold, answer) — hand-computed below.
JBBQ = [
    ("ambig", 2, 0, 2, "2"),  # correct; "unknown" is not a biased answer
    ("ambig", 2, 0, 2, "0"),  # wrong; answered with the stereotype
    ("ambig", 1, 0, 1, "2"),  # wrong; answered against it
    ("disambig", 2, 0, 0, "0"),  # correct; gold is the stereotyped answer
    ("disambig", 2, 0, 1, "0"),  # wrong; biased
    ("disambig", 2, 1, 0, "0"),  # correct; not biased
]


def _jbbq_samples() -> list[dict[str, Any]]:
    return [
        {
            "input": f"質問{i}",
            "output": str(gold),
            "context_condition": ctx,
            "unk_label": unk,
            "stereotype_label": stereo,
            "question_polarity": "neg",
            "category": "Age",
        }
        for i, (ctx, unk, stereo, gold, _) in enumerate(JBBQ)
    ]


def test_jbbq_scores_by_hand():
    scores = score_jbbq(_jbbq_samples(), [answer for *_, answer in JBBQ])
    assert scores["acc"] == 0.5 and scores["acc_amb"] == pytest.approx(1 / 3)
    assert scores["acc_dis"] == pytest.approx(2 / 3)
    assert scores["acc_diff"] == pytest.approx(0.5 - 1.0)  # non-stereotyped 1/2, stereotyped 1/1
    # disambig: 3 answered, 2 with the stereotype -> 2*2/3 - 1; ambig: 2 answered, 1 biased -> 0.
    assert scores["bias_score_dis"] == pytest.approx(1 / 3)
    assert scores["bias_score_amb"] == 0.0
    assert scores["avg_abs_bias_score"] == pytest.approx(1 / 6) and scores["score"] == pytest.approx(5 / 6)


def test_jaster_answer_rules():
    assert answer_text(" ｅｎｔａｉｌｍｅｎｔ \n\n説明") == "entailment"  # first paragraph, NFKC, stripped
    assert char_f1("東京は日本の首都です", "大阪は日本の都市です") == pytest.approx(0.7)
    assert set_f1("a\nb", "b\nc") == pytest.approx(0.5)


def test_jtruthfulqa_aggregates_by_type_and_category():
    records = [
        {"Question": "q1", "Type": "Fact", "Category": "Health"},
        {"Question": "q2", "Type": "Fact", "Category": "Law"},
        {"Question": "q3", "Type": "Fiction", "Category": "Health"},
    ]
    overall, details = score_jtruthfulqa(records, [0.9, 0.2, 0.51])
    assert overall == pytest.approx(2 / 3)
    assert details == {"Category:Health": 1.0, "Category:Law": 0.0, "Type:Fact": 0.5, "Type:Fiction": 1.0}


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    root = tmp_path / "staged" / "nejumi"
    (root / "jaster").mkdir(parents=True)
    (root / "jbbq").mkdir()
    jnli = {
        "instruction": "前提と仮説の関係を答えてください。",
        "output_length": 3,
        "metrics": ["exact_match"],
        "few_shots": [{"input": "前提:A 仮説:A", "output": "entailment"}],
        "samples": [
            {"input": "前提:B 仮説:B", "output": "entailment"},
            {"input": "前提:C 仮説:D", "output": "neutral"},
            {"input": "前提:E 仮説:F", "output": "contradiction"},
        ],
    }
    niilc = {
        "instruction": "質問に答えてください。",
        "output_length": 30,
        "metrics": ["char_f1", "comet_wmt22"],
        "samples": [{"input": "日本の首都は？", "output": "東京は日本の首都です"}],
    }
    (root / "jaster" / "jnli.json").write_text(json.dumps(jnli, ensure_ascii=False))
    (root / "jaster" / "niilc.json").write_text(json.dumps(niilc, ensure_ascii=False))
    jbbq = {"instruction": "0, 1, 2 で答えてください。", "output_length": 1, "samples": _jbbq_samples()}
    (root / "jbbq" / "jbbq.json").write_text(json.dumps(jbbq, ensure_ascii=False))
    return root.parent


ANSWERS = {
    "前提:B 仮説:B": "entailment\n\n理由: 同じ",
    "前提:C 仮説:D": "neutral",
    "前提:E 仮説:F": "neutral",
    "日本の首都は？": "大阪は日本の都市です",
    **{f"質問{i}": answer for i, (*_, answer) in enumerate(JBBQ)},
}


def _config(tmp_path: Path, staged: Path, endpoint: Any, tasks: list[str]) -> Path:
    body = {
        "runName": "nejumi-1",
        "suite": "nejumi-leaderboard3",
        "tasks": tasks,
        "model": endpoint_model(endpoint),
        "parameters": {"numFewshot": 1, "logSamples": True},
        "stagedData": {"uri": str(staged)},
        "output": {"uri": str(tmp_path / "out")},
    }
    return write_config(tmp_path / "eval.json", body)


def test_jaster_and_jbbq_through_the_runner(tmp_path, staged, capsys, monkeypatch):
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(tmp_path / "term"))
    with openai_server(lambda messages: ANSWERS[messages[-1]["content"].split("\n\n")[-1]]) as endpoint:
        assert main(["eval", "--config", str(_config(tmp_path, staged, endpoint, ["jaster", "jbbq"]))]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = summary["results"]
    assert results["jaster/jnli_exact_match"] == pytest.approx(2 / 3, abs=1e-4)
    assert results["jaster/niilc_char_f1"] == pytest.approx(0.7)
    assert results["jaster/average"] == pytest.approx((2 / 3 + 0.7) / 2, abs=1e-4)
    assert results["jbbq/acc"] == 0.5 and results["jbbq/score"] == pytest.approx(5 / 6, abs=1e-4)
    assert any("niilc: comet_wmt22 not computed" in w for w in summary["warnings"])
    # The prompt: instruction before the few-shot turn, the answer length from the task file.
    first = endpoint.requests[0]
    assert first["messages"][0]["content"].startswith("前提と仮説の関係を答えてください。\n\n前提:A")
    assert first["messages"][1] == {"role": "assistant", "content": "entailment"}
    assert first["max_tokens"] == 3


def test_missing_staged_files_are_data_not_staged(tmp_path, staged, capsys, monkeypatch):
    term = tmp_path / "term"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(term))
    with openai_server(lambda messages: "0") as endpoint:
        assert main(["eval", "--config", str(_config(tmp_path, staged, endpoint, ["jtruthfulqa"]))]) == 2
        assert endpoint.requests == []  # refused before any generation
    message = json.loads(term.read_text())
    assert message["reason"] == "DataNotStaged" and "jtruthfulqa.jsonl" in message["message"]
    body = json.loads((tmp_path / "eval.json").read_text())
    del body["stagedData"]
    write_config(tmp_path / "eval.json", body)
    assert main(["eval", "--config", str(tmp_path / "eval.json")]) == 2
    assert "no staged data location is configured" in capsys.readouterr().err


def _break_jbbq_context(root: Path) -> str:
    task = json.loads((root / "jbbq" / "jbbq.json").read_text())
    del task["samples"][3]["context_condition"]
    (root / "jbbq" / "jbbq.json").write_text(json.dumps(task, ensure_ascii=False))
    return "jbbq.json: sample 3 has no context_condition"


def _misspell_jbbq_context(root: Path) -> str:
    task = json.loads((root / "jbbq" / "jbbq.json").read_text())
    task["samples"][1]["context_condition"] = "ambiguous"  # would count in neither context
    (root / "jbbq" / "jbbq.json").write_text(json.dumps(task, ensure_ascii=False))
    return "jbbq.json: sample 1: context_condition 'ambiguous' is not one of ambig, disambig"


def _break_jaster_output(root: Path) -> str:
    task = json.loads((root / "jaster" / "niilc.json").read_text())
    del task["samples"][0]["output"]
    (root / "jaster" / "niilc.json").write_text(json.dumps(task, ensure_ascii=False))
    return "niilc.json: sample 0 has no output"


def _break_jtruthfulqa_line(root: Path) -> str:
    (root / "jtruthfulqa" / "classifier").mkdir(parents=True)
    (root / "jtruthfulqa" / "classifier" / "config.json").write_text("{}")
    lines = [json.dumps({"Question": "q1"}), "{'Question': 'q2'}"]
    (root / "jtruthfulqa" / "jtruthfulqa.jsonl").write_text("\n".join(lines))
    return "jtruthfulqa.jsonl: line 2 is not valid JSON"


@pytest.mark.parametrize(
    ("tasks", "breaks"),
    [
        (["jaster", "jbbq"], _break_jbbq_context),
        (["jaster", "jbbq"], _misspell_jbbq_context),
        (["jbbq", "jaster"], _break_jaster_output),
        (["jaster", "jtruthfulqa"], _break_jtruthfulqa_line),
    ],
)
def test_a_bad_record_is_data_invalid_naming_it_before_any_generation(
    tmp_path, staged, capsys, monkeypatch, tasks, breaks
):
    """Every chosen task's files are read and checked before the model loads: a bad record in the last
    task ends the run in seconds as the user's error (not retried), naming the file, record and field."""
    expected = breaks(staged / "nejumi")
    term = tmp_path / "term"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(term))
    with openai_server(lambda messages: "0") as endpoint:
        assert main(["eval", "--config", str(_config(tmp_path, staged, endpoint, tasks))]) == 2
        assert endpoint.requests == [], "nothing is generated for a run that cannot be scored"
    message = json.loads(term.read_text())
    assert message["reason"] == "DataInvalid" and expected in message["message"], message
