"""The standard suite through `kaizen-runner eval`: a tiny local model on shared Alpaca records, an
OpenAI-compatible endpoint, given predictions, `eval score`, and the models a suite refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaizen_api.evaljob import EvalParameters
from kaizen_runner.cli import main
from kaizen_runner.eval.generate import hf_generation_kwargs
from train.progress_server import progress_server

from .conftest import model_entry, write_config
from .fake_openai import endpoint_model, openai_server


def _standard(tmp_path: Path, model: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    body = {
        "runName": "std-1",
        "suite": "standard",
        "parameters": {"logSamples": True, "maxTokens": 6, "seed": 3},
        "output": {"uri": str(tmp_path / "out")},
        "device": "cpu",
        "batchSize": 4,
        **extra,
    }
    if model is not None:
        body["model"] = model
    return body


def _last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def test_generation_kwargs_sample_only_above_zero_temperature():
    assert hf_generation_kwargs(EvalParameters(temperature=0, top_k=5, max_tokens=9)) == {
        "max_new_tokens": 9,
        "repetition_penalty": 1.0,
        "do_sample": False,
    }
    sampled = hf_generation_kwargs(EvalParameters(temperature=0.8, top_k=-1, top_p=0.5))
    assert sampled["do_sample"] is True and sampled["top_k"] == 0 and sampled["top_p"] == 0.5


@pytest.mark.slow
def test_tiny_model_on_alpaca_records(tmp_path, tiny_model, alpaca_test_file, capsys, monkeypatch):
    term = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(term))
    monkeypatch.setenv("KAIZEN_PROGRESS_TOKEN", "secret-token")
    with progress_server() as recorder:
        body = _standard(
            tmp_path,
            model_entry(tiny_model),
            dataset={"uri": str(alpaca_test_file), "format": "alpaca"},
            progress={"url": recorder.url},
        )
        assert main(["eval", "--config", str(write_config(tmp_path / "eval.json", body))]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert set(summary["results"]) == {"bleu", "fuzzy_match", "rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert summary["warnings"] == ["skipped 1 unusable dataset record"]
    run = tmp_path / "out" / "std-1"
    results = json.loads((run / "results.json").read_text())
    assert results["tasks"][0]["samples"] == 6 and results["skippedRecords"] == 1
    assert results["metricSettings"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:unicode")
    samples = [json.loads(line) for line in (run / "samples_standard.jsonl").read_text().splitlines()]
    assert len(samples) == 6
    first = samples[0]
    assert first["input"][-1]["role"] == "user" and isinstance(first["prediction"], str)
    assert set(first["scores"]) == set(summary["results"])
    # Live progress: the same channel and token as training, ending with every sample done.
    reports = recorder.reports
    assert recorder.authorizations[-1] == "Bearer secret-token"
    assert reports[-1]["phase"] == "Succeeded"
    assert reports[-1]["evalProgress"]["done"] == reports[-1]["evalProgress"]["total"] == 6
    message = json.loads(term.read_text())
    assert message["phase"] == "Succeeded" and message["results"] == summary["results"]
    assert message["resultsUri"] == str(run)


def test_openai_compatible_endpoint(tmp_path, capsys, monkeypatch):
    data = tmp_path / "qa.jsonl"
    data.write_text(
        json.dumps(
            {"instruction": "首都は？", "input": "", "output": "東京は日本の首都です。"}, ensure_ascii=False
        )
    )
    monkeypatch.setenv("ENDPOINT_KEY", "sk-test")
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(tmp_path / "term"))
    with openai_server(lambda messages: "大阪は日本の都市です。") as endpoint:
        model = endpoint_model(endpoint, apiKeyEnv="ENDPOINT_KEY")
        body = _standard(tmp_path, model, dataset={"uri": str(data), "format": "alpaca"})
        body["parameters"].update(temperature=0.5, topK=-1, repetitionPenalty=1.1)
        assert main(["eval", "--config", str(write_config(tmp_path / "eval.json", body))]) == 0
    [request] = endpoint.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["messages"] == [{"role": "user", "content": "首都は？"}]
    assert request["max_tokens"] == 6 and request["temperature"] == 0.5 and request["seed"] == 3
    assert "top_k" not in request and request["repetition_penalty"] == 1.1
    results = _last_json(capsys.readouterr().out)["results"]
    assert results["rouge1"] == 0.7 and results["rougeL"] == 0.7  # the hand-computed Japanese pair


def test_given_predictions_need_no_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(tmp_path / "term"))
    pairs = tmp_path / "pairs.json"
    pairs.write_text(
        json.dumps(
            [
                {"prediction": "the dog ran. the cat sat.", "reference": "the cat sat. the dog ran."},
                {"prediction": "abcd", "reference": "abce", "input": "q"},
            ]
        )
    )
    body = _standard(tmp_path, None, predictions={"uri": str(pairs)}, metrics=["rougeLsum", "fuzzy_match"])
    assert main(["eval", "--config", str(write_config(tmp_path / "eval.json", body))]) == 0
    results = _last_json(capsys.readouterr().out)["results"]
    # rougeLsum: 1.0 (same sentences) and 0.0 (one-word texts differ); fuzzy: sorted tokens equal
    # (1.0), and abcd/abce 0.75.
    assert results["rougeLsum"] == 0.5
    assert results["fuzzy_match"] == 0.875


def test_eval_score_command(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"prediction": "東京は日本の首都です。", "reference": "大阪は日本の都市です。"},
        {"prediction": "Tôi đi học", "reference": "Tối đi học"},
    ]
    pairs.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    assert main(["eval", "score", str(pairs), "--metrics", "rouge1,rougeL", "--json", "--samples"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == 2 and out["metrics"]["rouge1"] == pytest.approx((0.7 + 2 / 3) / 2)
    assert [s["rouge1"] for s in out["samples"]] == [pytest.approx(0.7), pytest.approx(2 / 3)]
    assert main(["eval", "score", str(pairs)]) == 0
    table = capsys.readouterr().out
    assert "rougeLsum" in table and "tok:unicode" in table
    pairs.write_text('{"prediction": "x"}\n')
    assert main(["eval", "score", str(pairs)]) == 2
    assert "record 0: 'reference' is missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        ({"instructionTuned": False}, "is a base model; suite standard prompts the model through its chat"),
        ({"parameters": None}, "size (parameter count) is unknown"),
        ({"modality": None}, "modality is unknown"),
    ],
)
def test_models_the_suite_cannot_evaluate_are_refused(
    tmp_path, alpaca_test_file, capsys, monkeypatch, facts, reason
):
    term = tmp_path / "term"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(term))
    body = _standard(
        tmp_path,
        model_entry(tmp_path / "absent", **facts),
        dataset={"uri": str(alpaca_test_file), "format": "alpaca"},
    )
    assert main(["eval", "--config", str(write_config(tmp_path / "eval.json", body))]) == 2
    assert reason in capsys.readouterr().err
    assert json.loads(term.read_text())["reason"] == "ModelInvalid"


def test_image_data_needs_a_vision_language_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(tmp_path / "term"))
    body = _standard(tmp_path, model_entry(tmp_path), dataset={"uri": "x.zip", "format": "sharegpt_image"})
    assert main(["eval", "--config", str(write_config(tmp_path / "eval.json", body))]) == 2
    assert "sharegpt_image data needs a vision-language model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "source",
    [
        {"predictions": {"uri": "s3://bucket/pairs.jsonl", "connection": "hub"}},
        {"dataset": {"uri": "s3://bucket/test.json", "format": "alpaca", "connection": "hub"}},
    ],
    ids=["predictions", "dataset"],
)
def test_an_unreachable_s3_endpoint_is_retried_not_the_users_error(tmp_path, unreachable_s3, source):
    model = None if "predictions" in source else model_entry(tmp_path / "never-loaded")
    body = _standard(tmp_path, model, **source)
    assert main(["eval", "--config", str(write_config(tmp_path / "eval.json", body))]) == 3
    message = json.loads((tmp_path / "term").read_text())
    assert message["reason"] == "StorageError" and "http://127.0.0.1:9 is unreachable" in message["message"]
