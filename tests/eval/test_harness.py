"""lm-evaluation-harness through `kaizen-runner eval`: locally defined tasks (YAML over local JSONL,
overriding the built-in gsm8k and hellaswag names the way a staged tasks/ folder does) on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kaizen_api.evaljob import EvalParameters
from kaizen_api.results import EvalResults
from kaizen_runner.cli import main
from kaizen_runner.eval.harness import HARNESS_TASKS, _task_results, gen_kwargs

from .conftest import model_entry, write_config
from .fake_openai import endpoint_model, openai_server

GSM_YAML = """task: gsm8k
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
output_type: generate_until
test_split: test
num_fewshot: 0
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs: {{until: ["\\n\\n"], do_sample: false, temperature: 0.0, max_gen_toks: 8}}
metric_list:
  - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""
HELLASWAG_YAML = """task: hellaswag
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{ctx}}}}"
doc_to_choice: "{{{{endings}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    root = tmp_path / "staged"
    tasks = root / "lm-eval" / "tasks"
    tasks.mkdir(parents=True)
    (root / "lm-eval" / "hf").mkdir()
    gsm = root / "gsm.jsonl"
    gsm.write_text(
        "".join(json.dumps({"question": f"{a} + {a} = ?", "answer": str(2 * a)}) + "\n" for a in range(4))
    )
    hs = root / "hs.jsonl"
    hs.write_text(
        "".join(
            json.dumps({"ctx": f"The sky is {i}", "endings": [" blue", " green", " red"], "label": i % 3})
            + "\n"
            for i in range(3)
        )
    )
    (tasks / "gsm8k_local.yaml").write_text(GSM_YAML.format(data=gsm))
    (tasks / "hellaswag_local.yaml").write_text(HELLASWAG_YAML.format(data=hs))
    return root


def test_spec_tasks_map_to_harness_names():
    assert HARNESS_TASKS["arc"] == ("arc_easy", "arc_challenge")
    assert HARNESS_TASKS["lambada"] == ("lambada_openai",) and HARNESS_TASKS["truthfulqa"] == (
        "truthfulqa_mc2",
    )
    assert len(HARNESS_TASKS) == 12


def test_gen_kwargs_follow_the_traps():
    sampled = gen_kwargs(EvalParameters(temperature=0.7, top_k=-1, top_p=0.9, max_tokens=16), "hf")
    assert sampled == {"max_gen_toks": 16, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}
    greedy = gen_kwargs(EvalParameters(temperature=0, top_k=40, repetition_penalty=1.2), "hf")
    assert greedy == {"max_gen_toks": 256, "do_sample": False, "temperature": 0, "repetition_penalty": 1.2}
    assert gen_kwargs(EvalParameters(temperature=0.5, seed=3), "api")["seed"] == 3


def _config(tmp_path: Path, tiny_model: Path, staged: Path, tasks: list[str], **params: object) -> Path:
    body = {
        "runName": "lm-1",
        "suite": "lm-eval-harness",
        "tasks": tasks,
        "model": model_entry(tiny_model, instructionTuned=False),
        "parameters": {"logSamples": True, **params},
        "stagedData": {"uri": str(staged)},
        "output": {"uri": str(tmp_path / "out")},
        "device": "cpu",
        "batchSize": 4,
    }
    return write_config(tmp_path / "eval.json", body)


@pytest.mark.slow
def test_local_tasks_run_with_parameters_mapped_and_warnings(tmp_path, tiny_model, staged, capsys):
    config = _config(
        tmp_path,
        tiny_model,
        staged,
        ["gsm8k", "hellaswag"],
        temperature=0.7,
        topK=-1,
        maxTokens=4,
        numFewshot=2,
    )
    assert main(["eval", "--config", str(config)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["results"]) == {"gsm8k/exact_match", "hellaswag/acc"}
    assert 0 <= summary["results"]["hellaswag/acc"] <= 1
    warnings = "\n".join(summary["warnings"])
    assert (
        "hellaswag scores log-likelihoods (multiple_choice); temperature, maxTokens have no effect"
        in warnings
    )
    assert "gsm8k is fixed at 0-shot; numFewshot 2 is ignored" in warnings
    assert "gsm8k decodes greedily by default; do_sample=True was set" in warnings
    out = tmp_path / "out" / "lm-1"
    results = json.loads((out / "results.json").read_text())
    assert [t["task"] for t in results["tasks"]] == ["gsm8k", "hellaswag"]
    samples = [json.loads(line) for line in (out / "samples_gsm8k.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    # The generation really ran with the mapped parameters (sampling on, top_k off, 4 tokens).
    args = samples[0]["arguments"]
    kwargs = args[0][1] if isinstance(args, list) else args["gen_args_0"]["arg_1"]
    assert kwargs["do_sample"] is True and kwargs["temperature"] == 0.7 and kwargs["top_k"] == 0
    assert kwargs["max_gen_toks"] == 4


@pytest.mark.slow
def test_a_task_whose_dataset_is_not_staged_fails_with_data_not_staged(
    tmp_path, tiny_model, staged, monkeypatch
):
    config = _config(tmp_path, tiny_model, staged, ["winogrande"])
    term = tmp_path / "termination-log"
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(term))
    assert main(["eval", "--config", str(config)]) == 2
    message = json.loads(term.read_text())
    assert message["phase"] == "Failed" and message["reason"] == "DataNotStaged"
    assert "winogrande" in message["message"] and "docs/evaluation.md" in message["message"]


def test_humaneval_needs_the_code_execution_opt_in(tmp_path, tiny_model, staged, capsys):
    config = _config(tmp_path, tiny_model, staged, ["humaneval"])
    assert main(["eval", "--config", str(config)]) == 2
    assert "allowCodeExecution" in capsys.readouterr().err


def test_nan_and_infinite_harness_numbers_are_left_out_so_results_json_reads_back():
    raw = {
        "results": {
            "truthfulqa_mc2": {
                "acc,none": float("nan"),
                "acc_stderr,none": float("nan"),
                "bleu,none": 0.5,
                "ppl,none": float("inf"),
                "alias": "truthfulqa_mc2",
            }
        },
        "n-samples": {"truthfulqa_mc2": {"effective": 3}},
    }
    [task] = _task_results(raw, ["truthfulqa_mc2"])
    assert (task.metrics, task.details, task.samples) == ({"bleu": 0.5}, None, 3)
    results = EvalResults(run_name="r", suite="lm-eval", tasks=[task])
    assert EvalResults.model_validate_json(results.model_dump_json(by_alias=True)) == results


def test_staged_data_on_an_unreachable_s3_endpoint_is_retried(tmp_path, tiny_model, unreachable_s3):
    """Not DataNotStaged: the data may well be staged, the endpoint was down."""
    config = _config(tmp_path, tiny_model, tmp_path, ["gsm8k"])
    body = json.loads(config.read_text())
    body["stagedData"] = {"uri": "s3://bucket/staged", "connection": unreachable_s3}
    assert main(["eval", "--config", str(write_config(config, body))]) == 3
    message = json.loads((tmp_path / "term").read_text())
    assert message["reason"] == "StorageError" and "http://127.0.0.1:9 is unreachable" in message["message"]


def test_an_endpoint_that_cannot_be_reached_is_retried(tmp_path, tiny_model, staged, monkeypatch):
    """What lm-eval's API model raises when its endpoint is down (requests' ConnectionError, after its
    own retries) is neither the staged data's fault nor the user's."""
    import requests
    from kaizen_runner.eval import harness
    from lm_eval.api.model import LM

    class DownEndpoint(LM):
        def _refused(self, requests_: object, *args: object, **kwargs: object) -> list[str]:
            raise requests.ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=9): Connection refused")

        loglikelihood = loglikelihood_rolling = generate_until = _refused

    monkeypatch.setattr(harness, "_model", lambda *args: (DownEndpoint(), False))
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(tmp_path / "term"))
    config = _config(tmp_path, tiny_model, staged, ["gsm8k"], maxTokens=4)
    assert main(["eval", "--config", str(config)]) == 3
    message = json.loads((tmp_path / "term").read_text())
    assert message["reason"] == "InfrastructureError" and "Connection refused" in message["message"]


def test_an_endpoint_model_keeps_its_timeout_and_loads_no_tokenizer(tmp_path):
    """timeoutSeconds reaches lm-eval (not its 300 s default); no tokenizer, so nothing is downloaded."""
    from kaizen_api.evalconfig import EvalRunConfig
    from kaizen_runner.eval import harness

    endpoint = {"baseUrl": "http://127.0.0.1:9/v1", "model": "served", "timeoutSeconds": 2.5}
    cfg = EvalRunConfig.model_validate(
        {
            "runName": "lm-api",
            "suite": "lm-eval-harness",
            "tasks": ["gsm8k"],
            "model": {"name": "served", "endpoint": endpoint},
        }
    )
    lm, chat = harness._model(cfg, tmp_path, "api")
    assert (lm.timeout, lm.tokenizer, lm.tokenized_requests, chat) == (3, None, False, True)
    assert lm.base_url == "http://127.0.0.1:9/v1/chat/completions"


def test_an_endpoint_refusing_the_request_is_the_users_error_as_in_the_other_suites():
    """lm-eval raises requests' HTTPError with one request in flight and aiohttp's status error with
    several; a wrong URL, model or key is not retried, a server error is."""
    import aiohttp
    import requests
    import yarl
    from kaizen_runner.eval.harness import model_failure
    from kaizen_runner.train.failures import classify
    from multidict import CIMultiDict, CIMultiDictProxy

    def aiohttp_error(status: int) -> aiohttp.ClientResponseError:
        url = yarl.URL("http://127.0.0.1:9/v1/chat/completions")
        info = aiohttp.RequestInfo(url, "POST", CIMultiDictProxy(CIMultiDict()), url)
        return aiohttp.ClientResponseError(info, (), status=status, message="refused")

    def requests_error(status: int) -> requests.HTTPError:
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(f"{status} Client Error", response=response)

    for make in (aiohttp_error, requests_error):
        for status, reason in ((401, "ConfigInvalid"), (404, "ConfigInvalid"), (503, "InfrastructureError")):
            reason_given, message = classify(model_failure(make(status), ["gsm8k"]))
            assert reason_given == reason and "lm-eval failed while evaluating gsm8k" in message
    assert classify(model_failure(ConnectionRefusedError(), ["gsm8k"]))[0] == "InfrastructureError"


@pytest.mark.slow
def test_gsm8k_against_an_openai_compatible_endpoint(tmp_path, staged, capsys, monkeypatch):
    """lm-eval's local-chat-completions end to end (its `api` extra installed, no tokenizer download):
    the fixed answer "2" is right for 1 + 1 and wrong for 0 + 0, so exact_match is 0.5."""
    monkeypatch.setenv("ENDPOINT_KEY", "sk-test")
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(tmp_path / "term"))
    with openai_server(lambda messages: "2") as endpoint:
        body = {
            "runName": "lm-api",
            "suite": "lm-eval-harness",
            "tasks": ["gsm8k"],
            "model": endpoint_model(endpoint, apiKeyEnv="ENDPOINT_KEY", concurrency=2),
            "parameters": {"maxTokens": 5},
            "stagedData": {"uri": str(staged)},
            "output": {"uri": str(tmp_path / "out")},
            "limit": 2,
        }
        assert main(["eval", "--config", str(write_config(tmp_path / "eval.json", body))]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["results"] == {"gsm8k/exact_match": 0.5}
    requests = sorted(endpoint.requests, key=lambda r: r["messages"][-1]["content"])
    assert [r["messages"] for r in requests] == [
        [{"role": "user", "content": f"Question: {a} + {a} = ?\nAnswer:"}] for a in (0, 1)
    ]
    first = requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["model"] == "served" and first["max_tokens"] == 5 and first["temperature"] == 0
