"""VLMEvalKit adapters: scoring rules against hand-computed values, TSVs built here, DataNotStaged, and a
tiny LLaVA answering image questions through the runner."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest
from kaizen_runner.cli import main
from kaizen_runner.eval.vlm import anls, load_items, mtvqa_hit, ocrbench_hit, relaxed_correctness, score_items

from .conftest import write_config


def test_chartqa_relaxed_accuracy():
    assert relaxed_correctness("12", "12.5")  # 4.2 % off
    assert not relaxed_correctness("12", "13")  # 8.3 % off
    assert relaxed_correctness("45%", "0.45")
    assert relaxed_correctness("Yes", " yes")
    assert not relaxed_correctness("0", "0.0")  # a zero target is compared as text


def test_anls_with_its_threshold():
    assert anls(("hello",), "Hello ") == 1.0
    assert anls(("kaizen",), "kaizer") == pytest.approx(1 - 1 / 6)
    assert anls(("abcd",), "abxy") == 0.5  # exactly the threshold counts
    assert anls(("abcde",), "abxyz") == 0.0  # 0.4 is below it
    assert anls(("no", "kaizen"), "kaizen") == 1.0  # best over accepted answers


def test_ocrbench_and_mtvqa_matching():
    assert ocrbench_hit(("Kaizen",), "The word is kaizen.", "Regular Text Recognition")
    assert ocrbench_hit(("x ^ 2",), "x^2", "Handwritten Mathematical Expression Recognition")
    assert not ocrbench_hit(("x ^ 2",), "x^2", "Regular Text Recognition")
    assert mtvqa_hit(("東京.",), "答えは東京です")
    assert not mtvqa_hit(("大阪",), "東京")


def _png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (28, 28), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _tsv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["index", "image", "question", "answer", "category"], delimiter="\t"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({"image": _png(), "category": "", **row})
    return path


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    root = tmp_path / "staged" / "vlmevalkit"
    root.mkdir(parents=True)
    _tsv(
        root / "DocVQA_VAL.tsv",
        [
            {"index": "0", "question": "What is the title?", "answer": "['Kaizen', 'KAIZEN report']"},
            {"index": "1", "question": "Who signed?", "answer": "abcde"},
        ],
    )
    _tsv(
        root / "OCRBench.tsv",
        [
            {
                "index": "0",
                "question": "Read the text.",
                "answer": "['kaizen']",
                "category": "Regular Text Recognition",
            },
            {
                "index": "1",
                "question": "Read the formula.",
                "answer": "['x ^ 2']",
                "category": "Handwritten Mathematical Expression Recognition",
            },
        ],
    )
    return root.parent


def test_tsv_items_are_scored_by_hand(staged):
    docvqa = load_items(staged / "vlmevalkit" / "DocVQA_VAL.tsv")
    assert docvqa[0].answers == ("Kaizen", "KAIZEN report") and docvqa[0].image().size == (28, 28)
    result = score_items("docvqa", docvqa, ["kaizen", "abxyz"])  # 1.0 and below-threshold 0.0
    assert result.metrics == {"anls": 0.5} and result.samples == 2
    ocr = load_items(staged / "vlmevalkit" / "OCRBench.tsv")
    result = score_items("ocrbench", ocr, ["it says KAIZEN", "x^3"])
    assert result.metrics == {"accuracy": 0.5}
    assert result.details == {
        "category:Handwritten Mathematical Expression Recognition": 0.0,
        "category:Regular Text Recognition": 1.0,
        "final_score": 1.0,
    }


def _config(tmp_path: Path, staged: Path, model_path: Path, tasks: list[str]) -> Path:
    model = {
        "name": "tiny-llava",
        "location": {"uri": str(model_path)},
        "modality": "vision-language",
        "parameters": 100000,
        "instructionTuned": True,
    }
    body = {
        "runName": "vlm-1",
        "suite": "vlmevalkit",
        "tasks": tasks,
        "model": model,
        "parameters": {"maxTokens": 4, "logSamples": True},
        "stagedData": {"uri": str(staged)},
        "output": {"uri": str(tmp_path / "out")},
        "device": "cpu",
    }
    return write_config(tmp_path / "eval.json", body)


def test_a_missing_tsv_is_data_not_staged_before_the_model_loads(tmp_path, staged, capsys, monkeypatch):
    term = tmp_path / "term"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(term))
    assert main(["eval", "--config", str(_config(tmp_path, staged, tmp_path / "no-model", ["chartqa"]))]) == 2
    message = json.loads(term.read_text())
    assert message["reason"] == "DataNotStaged" and "ChartQA_TEST.tsv" in message["message"]


@pytest.mark.slow
def test_tiny_llava_answers_image_questions(tmp_path, staged, capsys, monkeypatch):
    from support.tinymodels import build_tiny_llava

    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(tmp_path / "term"))
    model = build_tiny_llava(tmp_path / "tiny-llava")
    assert main(["eval", "--config", str(_config(tmp_path, staged, model, ["docvqa", "ocrbench"]))]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert set(results) == {"docvqa/anls", "ocrbench/accuracy"}
    samples = (tmp_path / "out" / "vlm-1" / "samples_docvqa.jsonl").read_text().splitlines()
    assert len(samples) == 2 and "prediction" in json.loads(samples[0])


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("bm90IGFuIGltYWdl", "OCRBench.tsv: row 1: image is not a base64 image file"),  # "not an image"
        ("%%%", "OCRBench.tsv: row 1: image is not a base64 image file"),
    ],
)
def test_a_bad_image_is_data_invalid_naming_its_row_before_the_model_loads(
    tmp_path, staged, capsys, monkeypatch, image, expected
):
    """Every chosen task's TSV is read and its images checked before the model loads (here a model that
    is not there): a bad row of the last task is the user's error, named, not a retried crash."""
    rows = [
        {"index": "0", "question": "Read the text.", "answer": "['kaizen']"},
        {"index": "1", "question": "Read this.", "answer": "['x']", "image": image},
    ]
    _tsv(staged / "vlmevalkit" / "OCRBench.tsv", rows)
    term = tmp_path / "term"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(term))
    config = _config(tmp_path, staged, tmp_path / "no-model", ["docvqa", "ocrbench"])
    assert main(["eval", "--config", str(config)]) == 2
    message = json.loads(term.read_text())
    assert message["reason"] == "DataInvalid" and expected in message["message"], message
